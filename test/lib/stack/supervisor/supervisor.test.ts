import {expect} from 'chai'
import fs from 'node:fs/promises'
import path from 'node:path'

import {ServersReport} from '../../../../src/lib/stack/servers.js'
import {readState} from '../../../../src/lib/stack/state.js'
import {removePrefixes, sleepyAndBusy, startHarness, until} from './harness.js'

/* The orchestrator: start, stop, the monitor tick (user servers, culling), with the harness (harness.ts). */

describe('Supervisor (fake spawn and clock)', function () {
  this.timeout(60_000)

  after(removePrefixes)

  it('starts the proxy, then the hub, and is ready once the hub answers', async () => {
    const h = await startHarness()
    expect(h.procs.map((p) => p.name)).to.deep.equal(['proxy', 'hub'])
    const state = await readState(h.layout)
    expect(state?.supervisor.ready).to.equal(true)
    expect(state?.proxy).to.include({pid: h.latest('proxy').pid, running: true, restarts: 0})
    await h.finish()
  })

  it("the hub's and the proxy's existing logs, 0644, are made 0640 (content kept) before they are started", async () => {
    const h = await startHarness({
      beforeRun: async (layout) => {
        await fs.mkdir(path.dirname(layout.hubLog), {recursive: true})
        for (const log of [layout.hubLog, layout.proxyLog]) {
          await fs.writeFile(log, 'an earlier run\n')
          await fs.chmod(log, 0o644)
        }
      },
    })
    for (const log of [h.layout.hubLog, h.layout.proxyLog]) {
      expect((await fs.stat(log)).mode & 0o777, log).to.equal(0o640)
      expect(await fs.readFile(log, 'utf8')).to.equal('an earlier run\n')
    }
    await h.finish()
  })

  it('an intentional stop is not a crash: nothing restarted, no restart counted', async () => {
    const h = await startHarness()
    const result = await h.finish()
    expect(result.restarts).to.deep.equal({proxy: 0, hub: 0})
    expect(h.procs.map((p) => [p.name, p.signals])).to.deep.equal([
      ['proxy', ['SIGTERM']],
      ['hub', ['SIGTERM']],
    ])
    // The hub is stopped first, then the proxy.
    const stopped = h.events.filter((e) => e.event === 'stopped' && e.child).map((e) => e.child)
    expect(stopped).to.deep.equal(['hub', 'proxy'])
    expect(h.events.filter((e) => e.event === 'exited')).to.deep.equal([])
    await h.clock.advance(120_000)
    expect(h.procs).to.have.length(2)
    const state = await readState(h.layout)
    expect(state?.supervisor.stoppedAt).to.be.a('string')
    expect(state?.proxy).to.include({running: false, restarts: 0})
  })

  it('each monitor tick hands the user servers to the watcher and keeps its last report in state.json', async () => {
    const reports: ServersReport[] = []
    const watcher = {
      tick: async () => {
        const report: ServersReport = {
          at: new Date(h.clock.now()).toISOString(),
          ok: true,
          cullIdleSeconds: null,
          actions: [],
          servers: [
            {
              user: 'alice',
              name: '',
              url: '/user/alice/',
              ready: true,
              pending: null,
              lastActivity: null,
              started: null,
              idleSeconds: null,
              routeOk: true,
              refusals: 0,
            },
          ],
        }
        reports.push(report)
        return report
      },
    }
    const h = await startHarness({watcher})
    expect(reports, 'not before the first tick').to.have.length(0)
    await h.clock.advance(5000)
    await until(
      'a report in state.json',
      async () => (await readState(h.layout))?.servers?.servers[0]?.user === 'alice',
    )
    expect(h.supervisor.snapshot().servers).to.deep.equal(reports.at(-1))
    await h.finish()
  })

  for (const [label, options, culled] of [
    ['with cullIdleMs (start --cull-idle)', {cullIdleMs: 3_600_000}, true],
    [
      'when hubctl.json says hubctl culls (no jupyterhub-idle-culler found)',
      {cull: {idleSeconds: 3600, maxAgeSeconds: null, by: 'hubctl' as const}},
      true,
    ],
    [
      'not when jupyterhub-idle-culler culls',
      {cull: {idleSeconds: 3600, maxAgeSeconds: null, by: 'jupyterhub-idle-culler' as const}},
      false,
    ],
  ] as const)
    it(`${label}, its own watcher ${culled ? 'DELETEs the idle servers and only those' : 'DELETEs nothing'}`, async () => {
      const h = await startHarness(options)
      sleepyAndBusy(h)
      await h.clock.advance(5000)
      await until('the watcher report', async () => Boolean((await readState(h.layout))?.servers)) // null until the first report
      if (culled) await until('the cull', async () => (await readState(h.layout))?.servers?.actions.length === 1)
      const deletes = h.requests.filter((r) => r.method === 'DELETE').map((r) => new URL(r.url).pathname)
      expect(deletes).to.deep.equal(culled ? ['/hub/api/users/sleepy/server'] : [])
      expect((await readState(h.layout))?.servers?.cullIdleSeconds).to.equal(culled ? 3600 : null)
      await h.finish()
    })

  it("its own watcher lists the user servers again after hubctl.json's serverWatchSeconds, not 30 s", async () => {
    const h = await startHarness({serverWatchSeconds: 5})
    const listings = () => h.requests.filter((r) => r.url.includes('/hub/api/users?')).length
    await h.clock.advance(1000)
    await until('the first listing', () => listings() === 1, {clock: h.clock, stepMs: 100})
    const first = h.clock.now()
    // The fake clock stepped a quarter second at a time: the next listing comes 5 s later, not at the
    // default 30 s. The upper bound leaves room for the steps a loaded machine takes before the
    // listing's own I/O is done (CI, 4 lanes on 2 cores: 15 s with steps of 1 s); the default is past it.
    await until('the next listing', () => listings() === 2, {clock: h.clock, stepMs: 250})
    expect(h.clock.now() - first).to.be.within(5000, 29_000)
    await h.finish()
  })

  it('with cullIdleMs, its own watcher DELETEs the idle servers and only those', async () => {
    const h = await startHarness({cullIdleMs: 3_600_000})
    sleepyAndBusy(h)
    await h.clock.advance(5000)
    await until('the watcher report', async () => (await readState(h.layout))?.servers?.actions.length === 1)
    const deletes = h.requests.filter((r) => r.method === 'DELETE').map((r) => new URL(r.url).pathname)
    expect(deletes).to.deep.equal(['/hub/api/users/sleepy/server'])
    const state = await readState(h.layout)
    expect(state?.servers?.cullIdleSeconds).to.equal(3600)
    expect(state?.servers?.actions[0]).to.include({user: 'sleepy', action: 'culled', result: 'stopped'})
    expect(h.events.some((e) => e.event === 'culled' && /sleepy/.test(e.message))).to.equal(true)
    await h.finish()
  })
})
