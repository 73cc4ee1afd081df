import {expect} from 'chai'

import {ExitCode, HubctlError, runtimeError} from '../../../../src/lib/errors.js'
import {readState} from '../../../../src/lib/stack/state.js'
import {announcedDelays, crash, removePrefixes, restarted, startHarness, until} from './harness.js'

/* A supervised child's exits and restarts, through the Supervisor and its harness (harness.ts). */

describe('supervised child (fake spawn and clock): restart, backoff, crash loop', function () {
  this.timeout(60_000)

  after(removePrefixes)

  it('a child that exits is restarted after the first backoff, and its restart counted', async () => {
    const h = await startHarness()
    const hub = h.latest('hub')
    hub.exit(1)
    expect(announcedDelays(h.events, 'hub')).to.deep.equal([500])
    await h.clock.advance(499)
    expect(h.spawned('hub'), 'not before its backoff').to.equal(1)
    await h.clock.advance(1)
    await restarted(h, 'hub', 2)
    await until('state.json to show the restart', async () => (await readState(h.layout))?.hub.restarts === 1)
    const state = await readState(h.layout)
    expect(state?.hub.pid).to.equal(h.latest('hub').pid)
    expect(state?.hub.lastExit).to.include({code: 1, signal: null})
    expect(state?.proxy.restarts).to.equal(0)
    const result = await h.finish()
    expect(result.restarts).to.deep.equal({proxy: 0, hub: 1})
  })

  it('one process at a time: a start while it runs, or two starts at once, start no second process', async () => {
    const h = await startHarness()
    const hub = (h.supervisor as unknown as {children: Map<string, {launch(): Promise<void>}>}).children.get('hub')!
    await hub.launch()
    expect(h.spawned('hub'), 'a start while it runs').to.equal(1)
    h.latest('hub').exit(1)
    await Promise.all([hub.launch(), hub.launch()])
    expect(h.spawned('hub'), 'two starts at once (a backoff restart meeting a control restart)').to.equal(2)
    await h.clock.advance(500)
    expect(h.spawned('hub'), 'the backoff restart finds it running').to.equal(2)
    await h.finish()
  })

  it('a child whose restart fails at once (a missing executable) is retried with the next backoff', async () => {
    const h = await startHarness({failSpawn: (name, n) => name === 'hub' && n === 2})
    h.latest('hub').exit(1)
    await h.clock.advance(500)
    await until('the failed start to be reported', () => announcedDelays(h.events, 'hub').length === 2)
    expect(h.events.filter((e) => e.event === 'exited').at(-1)?.message).to.match(/could not be started \(ENOENT\)/)
    expect(announcedDelays(h.events, 'hub')).to.deep.equal([500, 1000])
    await until('the retry to be scheduled', () => h.clock.sleepsFor(1000))
    await h.clock.advance(1000)
    await restarted(h, 'hub', 3)
    expect((await readState(h.layout))?.hub).to.include({running: true, restarts: 2})
    await h.finish()
  })

  it('backoff doubles for each exit in a row, is capped, and starts again after a stable run', async () => {
    const h = await startHarness()
    for (let i = 1; i <= 8; i++) {
      await crash(h, 'proxy', {signal: 'SIGKILL'})
      await restarted(h, 'proxy', i + 1)
    }
    expect(announcedDelays(h.events, 'proxy')).to.deep.equal([500, 1000, 2000, 4000, 8000, 16_000, 30_000, 30_000])
    // A run longer than stableMs: the next exit is the first of a new series.
    await h.clock.advance(60_000)
    h.latest('proxy').exit(1)
    expect(announcedDelays(h.events, 'proxy').at(-1)).to.equal(500)
    await h.finish()
  })

  it('five restarts within the window is a crash loop; it clears once the child has run stableMs', async () => {
    const h = await startHarness()
    const crashLoop = async () => Boolean((await readState(h.layout))?.hub.crashLoop)
    for (let i = 1; i <= 5; i++) {
      await crash(h, 'hub')
      if (i === 4)
        expect(
          h.events.some((e) => e.event === 'crash-loop'),
          'not after 4 exits',
        ).to.equal(false)
      await restarted(h, 'hub', i + 1)
    }
    expect(h.events.filter((e) => e.event === 'crash-loop').map((e) => e.child)).to.deep.equal(['hub'])
    await until('state.json to show the crash loop', crashLoop)
    const restartedAt = h.clock.now()
    await h.clock.advance(55_000)
    expect(await crashLoop(), 'still a crash loop before stableMs').to.equal(true)
    await until('the crash loop to clear', async () => !(await crashLoop()), {clock: h.clock, stepMs: 1000})
    expect(h.clock.now() - restartedAt).to.be.at.least(60_000)
    expect(h.events.some((e) => e.event === 'stable' && e.child === 'hub')).to.equal(true)
    expect((await readState(h.layout))?.hub.restarts).to.equal(5)
    await h.finish()
  })

  it('a hub that exits on a database older than its JupyterHub is not restarted: the supervisor stops with exit 7 naming hubctl upgrade', async () => {
    let databaseOld = false
    const h = await startHarness({
      checkHub: async () => {
        if (databaseOld) throw runtimeError('the database is older than JupyterHub 6.1.1', 'run `hubctl upgrade`')
      },
    })
    databaseOld = true
    h.latest('hub').exit(1)
    await h.clock.advance(500)
    await until('run() to end', () => h.settled.done, {clock: h.clock, stepMs: 200})
    expect(h.spawned('hub'), 'no restart of the hub').to.equal(1)
    expect((h.settled.error as HubctlError).exitCode).to.equal(ExitCode.RUNTIME)
    expect((h.settled.error as HubctlError).line).to.match(/hubctl upgrade/)
    expect(h.latest('proxy').signals).to.include('SIGTERM')
  })

  it('a crash loop before the hub was ever ready fails the start (exit 7) and stops everything', async () => {
    const h = await startHarness({hubHealthy: false, waitReady: false})
    await until('the hub to start', () => h.spawned('hub') === 1)
    for (let i = 1; i <= 4; i++) {
      await crash(h, 'hub')
      await restarted(h, 'hub', i + 1)
    }
    h.latest('hub').exit(1)
    await until('run() to end', () => h.settled.done, {clock: h.clock, stepMs: 200})
    expect(h.settled.error).to.be.instanceOf(HubctlError)
    expect((h.settled.error as HubctlError).exitCode).to.equal(ExitCode.RUNTIME)
    expect((h.settled.error as HubctlError).message).to.match(/kept exiting before the hub became ready/)
    expect(h.latest('proxy').signals).to.include('SIGTERM')
  })
})
