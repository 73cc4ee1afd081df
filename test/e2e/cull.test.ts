import {expect} from 'chai'
import fs from 'node:fs/promises'
import path from 'node:path'

import {HubApi} from '../../src/lib/stack/hubapi.js'
import {Layout} from '../../src/lib/config/layout.js'
import {findRoute, proxyRoutes} from '../../src/lib/stack/servers.js'
import {VENV_JUPYTERHUB, hubctl, portFlags, tempPrefix} from '../helpers/cli.js'
import {killPids, serverPids, waitUntil} from '../helpers/processes.js'

/*
 * User servers followed by the supervisor. `hubctl start --cull-idle`: bad durations are refused before anything starts (exit 2); with a
 * real stack (the virtualenv's JupyterHub, dummy authenticator, SimpleLocalProcessSpawner so no
 * system user is needed) a server idle longer than the duration is stopped through the hub API by
 * the supervisor, and `hubctl status` reports it. A server whose process is gone while the hub
 * still believes it running (the hub's own poll turned off, so that only hubctl can notice) is
 * cleaned up through the hub API after its port refused three checks.
 */

interface Status {
  servers: Array<{user: string; ready: boolean; routeOk?: boolean | null}>
  serverWatch?: {
    checkedAt: string
    cullIdleSeconds: number | null
    actions: Array<{user: string; action: string; result: string; reason: string}>
  }
}

/** `hubctl init` of a hub for one user under `prefix` (dummy authenticator, SimpleLocalProcessSpawner, the virtualenv's JupyterHub); its ports. */
async function initHub(prefix: string, user: string): Promise<Awaited<ReturnType<typeof portFlags>>['ports']> {
  const portInfo = await portFlags()
  const init = await hubctl([
    'init',
    '--prefix',
    prefix,
    '--yes',
    '--domain',
    'localhost',
    '--admin',
    user,
    '--authenticator',
    'dummy',
    '--spawner',
    'simple',
    '--tls',
    'self-signed',
    '--dhparam',
    'ffdhe2048',
    '--jupyterhub',
    VENV_JUPYTERHUB,
    '--no-systemd',
    '--no-schedule',
    ...portInfo.flags,
  ])
  expect(init.exitCode, init.stderr).to.equal(0)
  return portInfo.ports
}

describe('hubctl start --cull-idle', function () {
  this.timeout(300_000)

  let prefix = ''
  let layout: Layout
  let ports: Awaited<ReturnType<typeof portFlags>>['ports']
  const user = 'cullme'

  before(async () => {
    prefix = await tempPrefix('hubctl-cull')
    layout = new Layout(prefix)
    ports = await initHub(prefix, user)
  })

  after(async function () {
    this.timeout(120_000)
    if (prefix) {
      await hubctl(['stop', '--prefix', prefix, '--json'])
      await fs.rm(prefix, {recursive: true, force: true})
    }
  })

  it('refuses a bad duration with exit 2 and the fix, before anything starts', async () => {
    for (const bad of ['30', '5x', '0s', '-1h', 'soon']) {
      const result = await hubctl(['start', '--prefix', prefix, '--cull-idle', bad])
      expect(result.exitCode, `${bad}: ${result.stderr}`).to.equal(2)
      expect(result.stderr).to.match(
        /^hubctl: --cull-idle .*\. Fix: give a number and a unit, e\.g\. --cull-idle 90s, 30m, 2h/,
      )
      const json = await hubctl(['start', '--prefix', prefix, '--cull-idle', bad, '--detach', '--json'])
      expect(json.exitCode).to.equal(2)
      expect((JSON.parse(json.stdout) as {error: {exitCode: number}}).error.exitCode).to.equal(2)
    }
    await fs.access(layout.pidFile).then(
      () => expect.fail('a pid file was written'),
      () => {},
    )
    await fs.access(layout.stateFile).then(
      () => expect.fail('a state file was written'),
      () => {},
    )
  })

  it('stops a server idle longer than the duration, through the hub API, and status says so', async () => {
    const started = await hubctl(['start', '--detach', '--prefix', prefix, '--cull-idle', '2s', '--json'])
    expect(started.exitCode, started.stderr + started.stdout).to.equal(0)
    const api = HubApi.forLayout(layout, {ports})
    await api.startServer(user)
    await waitUntil('the server to be ready', async () => (await api.userServers(user)).find((s) => s.ready), {
      tries: 120,
      intervalMs: 500,
    })
    // The supervisor checks every 30 s: bounded wait for the server to be gone.
    await waitUntil(
      'the idle server to be stopped',
      async () => ((await api.userServers(user)).length === 0 ? true : undefined),
      {tries: 120, intervalMs: 1000},
    )
    const status = await hubctl(['status', '--prefix', prefix, '--json'])
    const parsed = JSON.parse(status.stdout) as Status
    expect(parsed.servers).to.deep.equal([])
    expect(parsed.serverWatch?.cullIdleSeconds).to.equal(2)
    const culled = parsed.serverWatch?.actions.filter((a) => a.user === user && a.action === 'culled') ?? []
    expect(culled, JSON.stringify(parsed.serverWatch)).to.have.length(1)
    expect(['stopped', 'pending']).to.include(culled[0].result)
    expect(culled[0].reason).to.match(/^idle for \S+ \(more than 2s\)$/)
    const events = await fs.readFile(layout.supervisorLog, 'utf8')
    expect(events).to.match(/user servers idle longer than 2s will be stopped/)
    expect(events).to.match(new RegExp(`culled the server of ${user}: idle for`))
    const text = await hubctl(['status', '--prefix', prefix])
    expect(text.stdout).to.match(/idle servers culled after 2s/)
    expect(text.stdout).to.match(new RegExp(`culled ${user}: idle for`))
  })
})

describe('a user server whose process is gone', function () {
  this.timeout(300_000)

  let prefix = ''
  let layout: Layout
  let ports: Awaited<ReturnType<typeof portFlags>>['ports']
  const user = 'ghost'

  before(async () => {
    prefix = await tempPrefix('hubctl-gone')
    layout = new Layout(prefix)
    ports = await initHub(prefix, user)
    // The hub's own poll of its spawners would notice a dead server first: off, for this test.
    await fs.writeFile(path.join(layout.hubConfigD, '90-no-poll.py'), 'c.Spawner.poll_interval = 0\n', {mode: 0o644})
    const started = await hubctl(['start', '--detach', '--prefix', prefix, '--json'])
    expect(started.exitCode, started.stderr + started.stdout).to.equal(0)
  })

  after(async function () {
    this.timeout(120_000)
    if (prefix) {
      await hubctl(['stop', '--prefix', prefix, '--json'])
      killPids(await serverPids({user, hubPort: ports.hub}))
      await fs.rm(prefix, {recursive: true, force: true})
    }
  })

  it("while it runs, the supervisor's checks are not activity in the proxy's route", async () => {
    const api = HubApi.forLayout(layout, {ports})
    await api.startServer(user)
    await waitUntil('the server to be ready', async () => (await api.userServers(user)).find((s) => s.ready), {
      tries: 120,
      intervalMs: 500,
    })
    const status = async () => JSON.parse((await hubctl(['status', '--prefix', prefix, '--json'])).stdout) as Status
    const checked = await waitUntil(
      'a check that found the route',
      async () => {
        const s = await status()
        return s.servers[0]?.routeOk === true ? s.serverWatch!.checkedAt : undefined
      },
      {tries: 90, intervalMs: 1000},
    )
    const routes = proxyRoutes(
      `http://127.0.0.1:${ports.proxyApi}`,
      async () => (await fs.readFile(layout.proxyAuthToken, 'utf8')).trim(),
      fetch,
    )
    const activity = async () =>
      (findRoute(await routes(), {user, name: '', url: `/user/${user}/`}) as {last_activity?: string} | undefined)
        ?.last_activity
    const before = await activity()
    expect(before, 'the proxy keeps a last_activity per route').to.be.a('string')
    await waitUntil(
      'the next check',
      async () => ((await status()).serverWatch!.checkedAt !== checked ? true : undefined),
      {tries: 90, intervalMs: 1000},
    )
    expect((await status()).servers[0].routeOk).to.equal(true)
    expect(await activity()).to.equal(before)
  })

  it('is cleaned up through the hub API once its port refused three checks', async () => {
    const api = HubApi.forLayout(layout, {ports})
    await waitUntil('the server to be ready', async () => (await api.userServers(user)).find((s) => s.ready), {
      tries: 120,
      intervalMs: 500,
    })
    const pids = await waitUntil(
      'the server process',
      async () => {
        const found = await serverPids({user, hubPort: ports.hub})
        return found.length > 0 ? found : undefined
      },
      {tries: 20, intervalMs: 500},
    )
    for (const pid of pids) process.kill(pid, 'SIGKILL')
    // The hub still lists it as ready: it does not poll.
    expect((await api.userServers(user)).map((s) => s.ready)).to.deep.equal([true])
    // Three checks 30 s apart, then the DELETE: bounded wait for the hub to forget it.
    await waitUntil(
      'the gone server to be cleaned up',
      async () => ((await api.userServers(user)).length === 0 ? true : undefined),
      {tries: 150, intervalMs: 1000},
    )
    const parsed = JSON.parse((await hubctl(['status', '--prefix', prefix, '--json'])).stdout) as Status
    expect(parsed.servers).to.deep.equal([])
    const cleaned = parsed.serverWatch?.actions.filter((a) => a.user === user) ?? []
    expect(
      cleaned.map((a) => a.action),
      JSON.stringify(parsed.serverWatch),
    ).to.deep.equal(['cleaned-up'])
    expect(cleaned[0].reason).to.match(/refused 3 checks in a row/)
    const events = await fs.readFile(layout.supervisorLog, 'utf8')
    expect(events).to.match(
      new RegExp(`cleaned up the server of ${user}: its route's target refused 3 checks in a row`),
    )
  })
})
