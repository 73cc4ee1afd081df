// e2e-lane: parallel
import {expect} from 'chai'
import fs from 'node:fs/promises'
import path from 'node:path'

import {HubApi} from '../../src/lib/stack/hubapi.js'
import {Layout} from '../../src/lib/config/layout.js'
import {findRoute, proxyRoutes} from '../../src/lib/stack/servers.js'
import {
  checkServersEvery,
  DEBIAN_JUPYTERHUB,
  hubctl,
  initTestHub,
  portFlags,
  tempPrefix,
  testHubInitArgs,
  type TestHubOptions,
  VENV_JUPYTERHUB,
} from '../helpers/cli.js'
import {killPids, pidsWhere, serverPids, waitUntil} from '../helpers/processes.js'

/*
 * Idle user servers, stopped by jupyterhub-idle-culler run by the hub as a service (`init
 * --cull-idle`), on the virtualenv's JupyterHub and on Debian's 3.0 (whose own Python has no
 * culler: it runs with the Python of hubctl's environment); bad durations are refused before
 * anything is written (exit 2). A real stack (dummy authenticator, SimpleLocalProcessSpawner so no
 * system user is needed): a server idle longer than the duration is stopped by the culler (the
 * hub's log says so, and `hubctl logs --user` shows it), `status` and `doctor` report the culling,
 * and the culler ends with the hub. The deprecated `hubctl start --cull-idle` still works, by
 * hubctl's supervisor. A server whose process is gone while the hub still believes it running (the
 * hub's own poll turned off, so that only hubctl can notice) is cleaned up through the hub API
 * after its port refused three checks.
 */

interface Status {
  servers: Array<{user: string; ready: boolean; routeOk?: boolean | null}>
  serverWatch?: {
    checkedAt: string
    cullIdleSeconds: number | null
    actions: Array<{user: string; action: string; result: string; reason: string}>
  }
  culling?: {on: boolean; idle: string | null; maxAge: string | null; by: string | null; python?: string}
}

/** A hub of one user under `prefix`: dummy authenticator, SimpleLocalProcessSpawner. */
function hubOptions(user: string, options: {jupyterhub?: string; extra?: string[]} = {}): TestHubOptions {
  return {
    admin: user,
    jupyterhub: options.jupyterhub ?? VENV_JUPYTERHUB,
    extra: ['--authenticator', 'dummy', '--spawner', 'simple', ...(options.extra ?? [])],
  }
}

/** The culler processes of the hub on this port (the hub gives each service its API URL and name). */
function cullerPids(hubPort: number): Promise<number[]> {
  return pidsWhere({
    program: 'jupyterhub_idle_culler',
    environ: ['JUPYTERHUB_SERVICE_NAME=idle-culler', `JUPYTERHUB_API_URL=http://127.0.0.1:${hubPort}/hub/api`],
  })
}

const HUBS = [
  {label: "the virtualenv's JupyterHub", jupyterhub: VENV_JUPYTERHUB, user: 'cullme'},
  {
    label: "Debian's JupyterHub 3.0, the culler run by hubctl's environment's Python",
    jupyterhub: DEBIAN_JUPYTERHUB,
    user: 'cullme3',
  },
]

for (const hub of HUBS) {
  describe(`idle servers stopped by jupyterhub-idle-culler (${hub.label})`, function () {
    this.timeout(300_000)

    let prefix = ''
    let layout: Layout
    let ports: Awaited<ReturnType<typeof portFlags>>['ports']
    const {user} = hub

    before(async function () {
      this.timeout(300_000)
      prefix = await tempPrefix('hubctl-cull')
      layout = new Layout(prefix)
      if (hub.jupyterhub === DEBIAN_JUPYTERHUB) {
        // Debian's Python has no culler: an environment hubctl built before (here the test's) has it.
        const venv = path.dirname(path.dirname(await fs.realpath(VENV_JUPYTERHUB)))
        await fs.mkdir(layout.hubEnvRoot, {recursive: true, mode: 0o755})
        await fs.writeFile(layout.hubEnvMarker, '')
        await fs.symlink(venv, layout.hubEnvCurrent)
      }
      ports = await initTestHub(prefix, hubOptions(user, {jupyterhub: hub.jupyterhub, extra: ['--cull-idle', '20s']}))
    })

    after(async function () {
      this.timeout(120_000)
      if (prefix) {
        await hubctl(['stop', '--prefix', prefix, '--json'])
        if (ports) killPids(await serverPids({user, hubPort: ports.hub}))
        await fs.rm(prefix, {recursive: true, force: true})
      }
    })

    it('refuses a bad --cull-idle or --cull-max-age with exit 2 and the fix, and changes nothing', async () => {
      const before = await fs.readFile(layout.settings, 'utf8')
      for (const [flag, bad] of [
        ['--cull-idle', '30'],
        ['--cull-idle', 'soon'],
        ['--cull-max-age', '0s'],
        ['--cull-max-age', '-1h'],
      ]) {
        const result = await hubctl(
          testHubInitArgs(
            prefix,
            hubOptions(user, {jupyterhub: hub.jupyterhub, extra: [flag, bad]}),
            (await portFlags()).flags,
          ),
        )
        expect(result.exitCode, `${flag} ${bad}: ${result.stderr}`).to.equal(2)
        expect(result.stderr).to.match(
          new RegExp(`^hubctl: ${flag} .*\\. Fix: give a number and a unit, e\\.g\\. ${flag} 90s`),
        )
      }
      expect(await fs.readFile(layout.settings, 'utf8')).to.equal(before)
    })

    it('keeps the culling in hubctl.json, runs the culler with a Python that has it, and doctor says so', async () => {
      const settings = JSON.parse(await fs.readFile(layout.settings, 'utf8')) as {
        cull: unknown
        executables: {idleCuller?: string}
      }
      expect(settings.cull).to.deep.equal({idleSeconds: 20, maxAgeSeconds: null, by: 'jupyterhub-idle-culler'})
      const python = settings.executables.idleCuller
      expect(python).to.be.a('string')
      if (hub.jupyterhub === DEBIAN_JUPYTERHUB) expect(python).to.equal(layout.hubEnvCurrentPython)
      const config = await fs.readFile(layout.hubConfig, 'utf8')
      expect(config).to.include(
        `"command": [${JSON.stringify(python)}, "-I", "-m", "jupyterhub_idle_culler", "--config=", "--timeout=20", "--cull-every=2", ]`,
      )
      // Only the culling check is read here: no user server is started (doctor.test.ts runs that check).
      const doctor = JSON.parse(
        (await hubctl(['doctor', '--prefix', prefix, '--no-server-check', '--json'])).stdout,
      ) as {
        checks: Array<{check: string; status: string; message: string}>
      }
      expect(doctor.checks.find((c) => c.check === 'idle culling')).to.deep.include({
        status: 'pass',
        message: `idle servers stopped after 20s by jupyterhub-idle-culler (${python})`,
      })
    })

    it("stops a server idle longer than the duration; the hub's log and `logs --user` say so; the culler ends with the hub", async () => {
      const started = await hubctl(['start', '--detach', '--prefix', prefix, '--json'])
      expect(started.exitCode, started.stderr + started.stdout).to.equal(0)
      const hubPid = (
        JSON.parse((await hubctl(['status', '--prefix', prefix, '--json'])).stdout) as {hub: {pid: number}}
      ).hub.pid
      const cullers = await waitUntil(
        'the hub to start the culler',
        async () => {
          const found = await cullerPids(ports.hub)
          return found.length > 0 ? found : undefined
        },
        {tries: 60, intervalMs: 500},
      )
      expect(cullers).to.have.length(1)
      const parent = Number(/^PPid:\s+(\d+)/m.exec(await fs.readFile(`/proc/${cullers[0]}/status`, 'utf8'))?.[1])
      expect(parent, "the culler is the hub's child").to.equal(hubPid)

      const api = HubApi.forLayout(layout, {ports}, {timeoutMs: 60_000})
      await api.startServer(user)
      await waitUntil('the server to be ready', async () => (await api.userServers(user)).find((s) => s.ready), {
        tries: 120,
        intervalMs: 500,
      })
      // 20 s idle, a look every 2 s: bounded wait for the server to be gone.
      await waitUntil(
        'the idle server to be stopped',
        async () => ((await api.userServers(user)).length === 0 ? true : undefined),
        {tries: 180, intervalMs: 1000},
      )
      const hubLog = await fs.readFile(layout.hubLog, 'utf8')
      expect(hubLog).to.match(new RegExp(`Culling server ${user} \\(inactive for`))

      const status = JSON.parse((await hubctl(['status', '--prefix', prefix, '--json'])).stdout) as Status
      expect(status.servers).to.deep.equal([])
      expect(status.culling).to.deep.include({on: true, idle: '20s', maxAge: null, by: 'jupyterhub-idle-culler'})
      // Not hubctl's doing: its supervisor culls nothing.
      expect(status.serverWatch?.cullIdleSeconds ?? null).to.equal(null)
      expect(status.serverWatch?.actions ?? []).to.deep.equal([])
      const text = await hubctl(['status', '--prefix', prefix])
      expect(text.stdout).to.match(/culling: idle servers stopped after 20s by jupyterhub-idle-culler/)

      const logs = await hubctl(['logs', '--prefix', prefix, '--user', user, '--json'])
      expect(logs.exitCode, logs.stderr).to.equal(0)
      const lines = (JSON.parse(logs.stdout) as {lines: Array<{source: string; text: string}>}).lines.map((l) => l.text)
      expect(
        lines.some((l) => new RegExp(`Culling server ${user} `).test(l)),
        lines.join('\n'),
      ).to.equal(true)
      expect(
        lines.some((l) => /took [\d.]+ seconds to start/.test(l) && l.includes(user)),
        lines.join('\n'),
      ).to.equal(true)
      expect(lines.every((l) => l.includes(user))).to.equal(true)

      const stopped = await hubctl(['stop', '--prefix', prefix, '--json'])
      expect(stopped.exitCode, stopped.stderr).to.equal(0)
      await waitUntil(
        'the culler to end with the hub',
        async () => ((await cullerPids(ports.hub)).length === 0 ? true : undefined),
        {
          tries: 30,
          intervalMs: 500,
        },
      )
    })

    it('a hub killed with SIGKILL leaves its culler behind; the supervisor ends it when it starts the next hub', async () => {
      const started = await hubctl(['start', '--detach', '--prefix', prefix, '--json'])
      expect(started.exitCode, started.stderr + started.stdout).to.equal(0)
      const hubPid = async () =>
        (JSON.parse((await hubctl(['status', '--prefix', prefix, '--json'])).stdout) as {hub: {pid: number | null}}).hub
          .pid
      const first = await hubPid()
      const parentOf = async (pid: number) =>
        Number(/^PPid:\s+(\d+)/m.exec(await fs.readFile(`/proc/${pid}/status`, 'utf8'))?.[1])
      const [old] = await waitUntil(
        'the hub to start the culler',
        async () => {
          const found = await cullerPids(ports.hub)
          return found.length === 1 && (await parentOf(found[0])) === first ? found : undefined
        },
        {tries: 60, intervalMs: 500},
      )
      process.kill(first!, 'SIGKILL')
      const second = await waitUntil(
        'the supervisor to start another hub',
        async () => {
          const pid = await hubPid()
          return pid && pid !== first ? pid : undefined
        },
        {tries: 120, intervalMs: 500},
      )
      // The new hub's culler, and no other: the one the killed hub left (re-parented) is gone.
      await waitUntil(
        "one culler, the new hub's",
        async () => {
          const found = await cullerPids(ports.hub)
          return found.length === 1 && found[0] !== old && (await parentOf(found[0]).catch(() => 0)) === second
            ? true
            : undefined
        },
        {tries: 120, intervalMs: 500},
      )
      const events = await fs.readFile(layout.supervisorLog, 'utf8')
      expect(events).to.match(
        new RegExp(`stopping what a hub that is gone left running: service idle-culler \\(pid ${old}\\)`),
      )
      const stopped = await hubctl(['stop', '--prefix', prefix, '--json'])
      expect(stopped.exitCode, stopped.stderr).to.equal(0)
    })
  })
}

describe("hubctl start --cull-idle (deprecated: hubctl's own culling)", function () {
  this.timeout(300_000)

  let prefix = ''
  let layout: Layout
  let ports: Awaited<ReturnType<typeof portFlags>>['ports']
  const user = 'cullold'

  before(async () => {
    prefix = await tempPrefix('hubctl-cull-old')
    layout = new Layout(prefix)
    ports = await initTestHub(prefix, hubOptions(user, {extra: ['--cull-idle', 'off']}))
    await checkServersEvery(layout.settings, 5)
  })

  after(async function () {
    this.timeout(120_000)
    if (prefix) {
      await hubctl(['stop', '--prefix', prefix, '--json'])
      if (ports) killPids(await serverPids({user, hubPort: ports.hub}))
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

  it("still stops a server idle longer than the duration, by hubctl's supervisor, saying it is deprecated", async () => {
    expect(await fs.readFile(layout.hubConfig, 'utf8')).not.to.include('jupyterhub_idle_culler')
    const started = await hubctl(['start', '--detach', '--prefix', prefix, '--cull-idle', '2s', '--json'])
    expect(started.exitCode, started.stderr + started.stdout).to.equal(0)
    const api = HubApi.forLayout(layout, {ports}, {timeoutMs: 60_000})
    await api.startServer(user)
    await waitUntil('the server to be ready', async () => (await api.userServers(user)).find((s) => s.ready), {
      tries: 120,
      intervalMs: 500,
    })
    // The supervisor checks every 5 s: bounded wait for the server to be gone.
    await waitUntil(
      'the idle server to be stopped',
      async () => ((await api.userServers(user)).length === 0 ? true : undefined),
      {tries: 120, intervalMs: 1000},
    )
    const status = await hubctl(['status', '--prefix', prefix, '--json'])
    const parsed = JSON.parse(status.stdout) as Status
    expect(parsed.servers).to.deep.equal([])
    expect(parsed.serverWatch?.cullIdleSeconds).to.equal(2)
    expect(parsed.culling).to.deep.include({on: false, by: null})
    const culled = parsed.serverWatch?.actions.filter((a) => a.user === user && a.action === 'culled') ?? []
    expect(culled, JSON.stringify(parsed.serverWatch)).to.have.length(1)
    expect(['stopped', 'pending']).to.include(culled[0].result)
    expect(culled[0].reason).to.match(/^idle for \S+ \(more than 2s\)$/)
    const events = await fs.readFile(layout.supervisorLog, 'utf8')
    expect(events).to.match(/user servers idle longer than 2s will be stopped/)
    expect(events).to.match(/`hubctl start --cull-idle` is deprecated.*Fix: run `hubctl init --cull-idle 2s`/)
    expect(events).to.match(new RegExp(`culled the server of ${user}: idle for`))
    const text = await hubctl(['status', '--prefix', prefix])
    expect(text.stdout).to.match(/hubctl culls servers idle after 2s/)
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
    ports = await initTestHub(prefix, hubOptions(user))
    await checkServersEvery(layout.settings, 5)
    // The hub's own poll of its spawners would notice a dead server first: off, for this test.
    await fs.writeFile(path.join(layout.hubConfigD, '90-no-poll.py'), 'c.Spawner.poll_interval = 0\n', {mode: 0o644})
    const started = await hubctl(['start', '--detach', '--prefix', prefix, '--json'])
    expect(started.exitCode, started.stderr + started.stdout).to.equal(0)
  })

  after(async function () {
    this.timeout(120_000)
    if (prefix) {
      await hubctl(['stop', '--prefix', prefix, '--json'])
      if (ports) killPids(await serverPids({user, hubPort: ports.hub}))
      await fs.rm(prefix, {recursive: true, force: true})
    }
  })

  it("while it runs, the supervisor's checks are not activity in the proxy's route", async () => {
    const api = HubApi.forLayout(layout, {ports}, {timeoutMs: 60_000})
    await api.startServer(user)
    await waitUntil('the server to be ready', async () => (await api.userServers(user)).find((s) => s.ready), {
      tries: 120,
      intervalMs: 500,
    })
    const status = async () => JSON.parse((await hubctl(['status', '--prefix', prefix, '--json'])).stdout) as Status
    // What the waits below look at (the supervisor's last check: routeOk, checkedAt) comes from its
    // state file, rewritten after each check 5 s apart: `status` (a hubctl process, most of a
    // second of CPU) is asked again only once that file changed, not every second.
    let seen: string | undefined
    let last: Status | undefined
    const statusOnceStateChanged = async () => {
      const now = await fs.readFile(layout.stateFile, 'utf8').catch(() => '')
      if (last === undefined || now !== seen) [seen, last] = [now, await status()]
      return last
    }
    const checked = await waitUntil(
      'a check that found the route',
      async () => {
        const s = await statusOnceStateChanged()
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
      async () => ((await statusOnceStateChanged()).serverWatch!.checkedAt !== checked ? true : undefined),
      {tries: 90, intervalMs: 1000},
    )
    expect((await status()).servers[0].routeOk).to.equal(true)
    expect(await activity()).to.equal(before)
  })

  it('is cleaned up through the hub API once its port refused three checks', async () => {
    const api = HubApi.forLayout(layout, {ports}, {timeoutMs: 60_000})
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
    // Three checks 5 s apart, then the DELETE: bounded wait for the hub to forget it.
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
