import {expect} from 'chai'
import {EventEmitter} from 'node:events'
import {ChildProcess} from 'node:child_process'
import {readFileSync} from 'node:fs'
import fs from 'node:fs/promises'
import os from 'node:os'
import path from 'node:path'

import {ExitCode, HubctlError} from '../../../../src/lib/errors.js'
import {Layout} from '../../../../src/lib/config/layout.js'
import {ServersReport} from '../../../../src/lib/stack/servers.js'
import type {Settings} from '../../../../src/lib/config/settings.js'
import {ChildName, ChildSpec, SupervisorEvent, readState} from '../../../../src/lib/stack/state.js'
import {Clock} from '../../../../src/lib/stack/clock.js'
import {Supervisor, SupervisorResult} from '../../../../src/lib/stack/supervisor/supervisor.js'
import {childSpecs} from '../../../../src/lib/stack/children.js'
import {seededStoreModule} from '../../../../src/lib/stack/proxy.js'
import {freePort} from '../../../helpers/cli.js'

/*
 * The Supervisor with a fake spawn (no program runs), a fake fetch (the proxy's API, the hub's
 * health and REST API) and a fake clock that moves only when a test moves it: backoff, crash loops
 * and culling are checked by what the supervisor did and asked for, never by how long it took.
 * Files (logs, state.json) are real, in a temporary prefix.
 */

/** A clock whose time moves only by advance(); sleeps are timers on it. */
class FakeClock implements Clock {
  private t = Date.parse('2026-01-10T12:00:00Z')
  private timers: Array<{at: number; resolve: () => void}> = []

  now(): number {
    return this.t
  }

  sleep(ms: number, signal?: AbortSignal): Promise<void> {
    return new Promise((resolve) => {
      if (signal?.aborted) return resolve()
      const timer = {
        at: this.t + ms,
        resolve: () => {
          this.timers = this.timers.filter((other) => other !== timer)
          resolve()
        },
      }
      this.timers.push(timer)
      signal?.addEventListener('abort', () => timer.resolve(), {once: true})
    })
  }

  /** Move time forward by `ms`, firing each timer due on the way (in order), letting the code it wakes run. */
  async advance(ms: number): Promise<void> {
    const target = this.t + ms
    for (;;) {
      await settle()
      const due = this.timers.filter((timer) => timer.at <= target).sort((a, b) => a.at - b.at)[0]
      if (!due) break
      this.t = Math.max(this.t, due.at)
      due.resolve()
    }
    this.t = target
    await settle()
  }

  /** Sleeps under way. */
  get pending(): number {
    return this.timers.length
  }

  /** Whether a sleep ends `ms` from now (a restart's backoff, once it is scheduled). */
  sleepsFor(ms: number): boolean {
    return this.timers.some((timer) => timer.at === this.t + ms)
  }
}

/** Let promise chains and real file I/O that are under way go on (a few turns of the event loop). */
async function settle(): Promise<void> {
  for (let i = 0; i < 3; i++) {
    for (let j = 0; j < 5; j++) await new Promise((resolve) => setImmediate(resolve))
    await new Promise((resolve) => setTimeout(resolve, 1))
  }
}

/** Wait (a bounded number of event-loop turns, no time asserted) until `check` holds. */
async function until(
  what: string,
  check: () => boolean | Promise<boolean>,
  options: {clock?: FakeClock; stepMs?: number} = {},
): Promise<void> {
  for (let i = 0; i < 2000; i++) {
    if (await check()) return
    await new Promise((resolve) => setTimeout(resolve, 1))
    if (options.clock && options.stepMs) await options.clock.advance(options.stepMs)
  }
  throw new Error(`gave up waiting for ${what}`)
}

let nextPid = 900_000_001 // above any pid_max: never a real process

/** A child process that runs until the test ends it or hubctl signals it. */
class FakeProc extends EventEmitter {
  pid: number | undefined = nextPid++
  exitCode: number | null = null
  signalCode: NodeJS.Signals | null = null
  readonly signals: string[] = []
  /** What it was started with; `seed`: the content of the file HUBCTL_PROXY_SEED named at its start. */
  args: string[] = []
  env: NodeJS.ProcessEnv = {}
  seed?: string

  constructor(readonly name: ChildName) {
    super()
  }

  kill(signal: NodeJS.Signals = 'SIGTERM'): boolean {
    this.signals.push(signal)
    if (signal === 'SIGTERM' || signal === 'SIGKILL') setImmediate(() => this.exit(null, signal))
    return true
  }

  /** The program ends (a crash when hubctl did not ask for it). */
  exit(code: number | null, signal: NodeJS.Signals | null = null): void {
    if (this.exitCode !== null || this.signalCode !== null) return
    this.exitCode = code
    this.signalCode = signal
    this.emit('exit', code, signal)
  }
}

interface Harness {
  supervisor: Supervisor
  clock: FakeClock
  layout: Layout
  procs: FakeProc[]
  events: SupervisorEvent[]
  requests: Array<{method: string; url: string}>
  running: Promise<SupervisorResult>
  settled: {done: boolean; error?: unknown}
  hub: {healthy: boolean; users: unknown[]}
  latest(name: ChildName): FakeProc
  spawned(name: ChildName): number
  finish(): Promise<SupervisorResult>
}

const prefixes: string[] = []

async function startHarness(
  options: {
    failSpawn?: (name: ChildName, n: number) => boolean
    cullIdleMs?: number
    cull?: Settings['cull']
    watcher?: {tick(): Promise<ServersReport | undefined>}
    hubHealthy?: boolean
    waitReady?: boolean
    /**
     * The programs childSpecs() makes from the settings (hubctl's proxy, the settings' JupyterHub),
     * not injected specs: the supervisor's own proxy launches run, the seeded one included.
     */
    realSpecs?: boolean
    /** What the proxy's API lists (GET /api/routes). */
    routes?: Record<string, unknown>
    /** Run on the new prefix before the supervisor starts. */
    beforeRun?: (layout: Layout) => Promise<void>
  } = {},
): Promise<Harness> {
  const prefix = await fs.mkdtemp(path.join(os.tmpdir(), 'hubctl-sup-unit-'))
  prefixes.push(prefix)
  const layout = new Layout(prefix)
  const ports = {
    http: await freePort(),
    https: await freePort(),
    proxy: await freePort(),
    proxyApi: await freePort(),
    hub: await freePort(),
    proxyStandby: await freePort(),
    proxyStandbyApi: await freePort(),
  }
  const settings = {
    version: 1,
    domains: ['localhost'],
    admins: ['alice'],
    allowedUsers: [],
    authenticator: 'dummy',
    spawner: 'simple',
    tls: {mode: 'self-signed'},
    ports,
    dhparam: {mode: 'ffdhe2048', bits: 2048},
    executables: {
      jupyterhub: '/nonexistent/jupyterhub',
      singleuser: '/nonexistent/jupyterhub-singleuser',
      node: process.execPath,
      proxy: '/nonexistent/chp',
    },
    jupyterhubVersion: '5.2.1',
    nginxSupervised: false,
    cull: options.cull,
  } as unknown as Settings
  const logDir = path.join(prefix, 'var/log/jupyterhub')
  const specs: ChildSpec[] = (['proxy', 'hub'] as const).map((name) => ({
    name,
    command: `/nonexistent/${name}`,
    args: [],
    env: {},
    logFile: path.join(logDir, `${name}.log`),
  }))
  const clock = new FakeClock()
  const procs: FakeProc[] = []
  const events: SupervisorEvent[] = []
  const requests: Array<{method: string; url: string}> = []
  const hub = {healthy: options.hubHealthy ?? true, users: [] as unknown[]}
  const fetchFn = async (url: string, init: RequestInit = {}): Promise<Response> => {
    const method = init.method ?? 'GET'
    requests.push({method, url})
    const json = (status: number, body: unknown) =>
      new Response(JSON.stringify(body), {status, headers: {'Content-Type': 'application/json'}})
    if (url === `http://127.0.0.1:${ports.proxyApi}/api/routes`) {
      if (!procs.some((p) => p.name === 'proxy' && p.exitCode === null && p.signalCode === null))
        throw new TypeError('fetch failed', {cause: {code: 'ECONNREFUSED'}})
      return json(200, options.routes ?? {})
    }
    if (url.endsWith('/hub/health')) return new Response(null, {status: hub.healthy ? 200 : 503})
    if (url === `http://127.0.0.1:${ports.hub}/hub/api/proxy`) return new Response(null, {status: 200})
    if (url.startsWith(`http://127.0.0.1:${ports.hub}/hub/api/users?`))
      return json(200, {items: hub.users, _pagination: {next: null}})
    if (method === 'DELETE' && url.startsWith(`http://127.0.0.1:${ports.hub}/hub/api/users/`))
      return new Response(null, {status: 204})
    return json(404, {message: 'Not Found'})
  }
  const spawn = (command: string, args: readonly string[] = [], spawnOptions: {env?: NodeJS.ProcessEnv} = {}) => {
    // Injected specs are /nonexistent/<name>; childSpecs' are node (the proxy) and the settings' jupyterhub.
    const base = path.basename(command)
    const name = (command === process.execPath ? 'proxy' : base === 'jupyterhub' ? 'hub' : base) as ChildName
    const proc = new FakeProc(name)
    proc.args = [...args]
    proc.env = {...spawnOptions.env}
    if (proc.env.HUBCTL_PROXY_SEED) proc.seed = readFileSync(proc.env.HUBCTL_PROXY_SEED, 'utf8')
    procs.push(proc)
    if (options.failSpawn?.(proc.name, procs.filter((p) => p.name === proc.name).length)) {
      // What spawn() does for a missing executable: no pid, 'error' (ENOENT) at once.
      proc.pid = undefined
      process.nextTick(() => proc.emit('error', Object.assign(new Error(`spawn ${command} ENOENT`), {code: 'ENOENT'})))
    }
    return proc as unknown as ChildProcess
  }
  await options.beforeRun?.(layout)
  const supervisor = new Supervisor({
    layout,
    settings,
    ...(options.realSpecs ? {standby: false, env: {PATH: '/usr/bin:/bin'}} : {specs}),
    clock,
    fetch: fetchFn,
    spawn,
    secrets: {read: async () => 'f'.repeat(64)},
    // The fake children hold no real socket: every port is taken for theirs.
    ownsPort: async () => ({owned: true}),
    log: (event) => events.push(event),
    cullIdleMs: options.cullIdleMs,
    watcher: options.watcher,
    timings: {
      backoffInitialMs: 500,
      backoffMaxMs: 30_000,
      stableMs: 60_000,
      crashLoopRestarts: 5,
      crashLoopWindowMs: 120_000,
      healthIntervalMs: 5000,
      pollMs: 200,
      stopTimeoutMs: 10_000,
      healthTimeoutMs: 180_000,
    },
  })
  const settled: Harness['settled'] = {done: false}
  const running = supervisor.run()
  running.then(
    () => {
      settled.done = true
    },
    (error: unknown) => {
      settled.done = true
      settled.error = error
    },
  )
  const harness: Harness = {
    supervisor,
    clock,
    layout,
    procs,
    events,
    requests,
    running,
    settled,
    hub,
    latest: (name) => procs.filter((p) => p.name === name).at(-1)!,
    spawned: (name) => procs.filter((p) => p.name === name).length,
    finish: async () => {
      supervisor.stop('test done')
      return running
    },
  }
  if (options.waitReady ?? true) {
    // Ready, in state.json, and the monitor asleep until its first tick.
    await until(
      'the supervisor to be ready',
      async () => settled.done || ((await readState(layout))?.supervisor.ready === true && clock.pending > 0),
    )
  }
  return harness
}

/** Two users in the fake hub, each with a ready server started a day ago: sleepy idle 2 h, busy 1 min. */
function sleepyAndBusy(h: Harness): void {
  const now = h.clock.now()
  const server = (user: string, idleMs: number) => ({
    '': {
      name: '',
      ready: true,
      pending: null,
      url: `/user/${user}/`,
      started: new Date(now - 86_400_000).toISOString(),
      last_activity: new Date(now - idleMs).toISOString(),
    },
  })
  h.hub.users = [
    {name: 'sleepy', servers: server('sleepy', 2 * 3_600_000)},
    {name: 'busy', servers: server('busy', 60_000)},
  ]
}

/** Wait until the child's start number `n` is done: spawned, and its pid in state.json. */
async function restarted(h: Harness, name: ChildName, n: number): Promise<void> {
  await until(
    `${name} start ${n}`,
    async () => h.spawned(name) === n && (await readState(h.layout))?.[name]?.pid === h.latest(name).pid,
  )
  await settle()
}

/**
 * End the child's latest process and move the clock by the backoff the supervisor announced, once
 * its restart is scheduled (it may be scheduled only when a restart still under way is done).
 */
async function crash(
  h: Harness,
  name: ChildName,
  how: {code?: number; signal?: NodeJS.Signals} = {code: 1},
): Promise<number> {
  h.latest(name).exit(how.code ?? null, how.signal ?? null)
  const delay = announcedDelays(h.events, name).at(-1)!
  await until(`the ${name}'s restart to be scheduled`, () => h.clock.sleepsFor(delay))
  await h.clock.advance(delay)
  return delay
}

/** The delay of the restart an 'exited' event announced, in ms. */
function announcedDelays(events: SupervisorEvent[], child: ChildName): number[] {
  return events
    .filter((e) => e.event === 'exited' && e.child === child)
    .map((e) => Math.round(Number(/ in ([\d.]+)s$/.exec(e.message)?.[1]) * 1000))
}

describe('Supervisor (fake spawn and clock)', function () {
  this.timeout(60_000)

  after(async () => {
    for (const prefix of prefixes) await fs.rm(prefix, {recursive: true, force: true})
  })

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

  it('after the proxy restarts, the hub is asked to restore every route (/hub/api/proxy)', async () => {
    const h = await startHarness()
    const proxyApiCalls = () => h.requests.filter((r) => /\/hub\/api\/proxy$/.test(r.url))
    expect(proxyApiCalls(), 'none while the first proxy runs').to.deep.equal([])
    expect(await crash(h, 'proxy', {signal: 'SIGKILL'})).to.equal(500)
    await until('the hub API call', () => proxyApiCalls().length > 0)
    expect(['POST', 'PATCH']).to.include(proxyApiCalls()[0].method)
    // README: the hub learns the proxy's token at runtime, PATCH /hub/api/proxy (a POST only re-checks the routes).
    expect(proxyApiCalls().map((call) => call.method)).to.deep.equal(['PATCH'])
    await until('the route sync in state.json', async () => (await readState(h.layout))?.lastRouteSync?.ok === true)
    await h.finish()
  })

  it('a crashed proxy comes back seeded with the routes of the last health tick, then the hub re-checks them (PATCH)', async () => {
    const routes = {
      '/': {hub: true, target: 'http://127.0.0.1:1', jupyterhub: true},
      '/user/alice': {user: 'alice', target: 'http://127.0.0.1:2', jupyterhub: true},
    }
    const h = await startHarness({realSpecs: true, routes})
    const first = h.latest('proxy')
    expect(first.args, 'the first proxy starts with the default store').to.not.include('--storage-backend')
    expect(first.env.HUBCTL_PROXY_SEED).to.equal(undefined)
    // A health tick reads the proxy's routes: what a crashed proxy restarts with.
    await h.clock.advance(5000)
    await until('the health tick to read the routes', () =>
      h.requests.some((r) => r.url.endsWith(`/api/routes`) && r.method === 'GET'),
    )
    await settle()
    const proxyApiCalls = () => h.requests.filter((r) => /\/hub\/api\/proxy$/.test(r.url))
    await crash(h, 'proxy', {signal: 'SIGKILL'})
    await restarted(h, 'proxy', 2)
    const second = h.latest('proxy')
    expect(second.args).to.include.members(['--storage-backend', seededStoreModule()])
    expect(second.env.HUBCTL_PROXY_SEED).to.equal(h.layout.proxySeed)
    expect(second.env.CONFIGPROXY_AUTH_TOKEN).to.equal('f'.repeat(64))
    expect(JSON.parse(second.seed!)).to.deep.equal({routes})
    await until('the hub API call', () => proxyApiCalls().length > 0)
    expect(proxyApiCalls().map((call) => call.method)).to.deep.equal(['PATCH'])
    await until('the route sync in state.json', async () => (await readState(h.layout))?.lastRouteSync?.ok === true)
    await fs.access(h.layout.proxySeed).then(
      () => expect.fail('the seed file (user names and addresses) is left once the proxy runs'),
      () => {},
    )
    await h.finish()
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
      await until('the watcher report', async () => (await readState(h.layout))?.servers !== undefined)
      if (culled) await until('the cull', async () => (await readState(h.layout))?.servers?.actions.length === 1)
      const deletes = h.requests.filter((r) => r.method === 'DELETE').map((r) => new URL(r.url).pathname)
      expect(deletes).to.deep.equal(culled ? ['/hub/api/users/sleepy/server'] : [])
      expect((await readState(h.layout))?.servers?.cullIdleSeconds).to.equal(culled ? 3600 : null)
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

describe("childSpecs: the operator's environment", () => {
  it("never gives the hub or the proxy JPY_COOKIE_SECRET or the operator's CONFIGPROXY_AUTH_TOKEN (they would override the files); JUPYTERHUB_CRYPT_KEY stays", () => {
    const layout = new Layout('/tmp/hubctl-env-unit')
    const settings = {
      version: 1,
      domains: ['localhost'],
      admins: ['alice'],
      allowedUsers: [],
      authenticator: 'pam',
      spawner: 'local',
      tls: {mode: 'self-signed'},
      ports: {http: 80, https: 443, proxy: 8000, proxyApi: 8001, hub: 8081, proxyStandby: 8002, proxyStandbyApi: 8003},
      dhparam: {mode: 'ffdhe2048', bits: 2048},
      executables: {
        jupyterhub: '/usr/bin/jupyterhub',
        singleuser: '/usr/bin/jupyterhub-singleuser',
        node: process.execPath,
        proxy: '/x/chp',
      },
      jupyterhubVersion: '3.0.0',
      nginxSupervised: true,
    } as unknown as Settings
    const specs = childSpecs(layout, settings, 'from-the-file', {
      PATH: '/usr/bin:/bin',
      JPY_COOKIE_SECRET: 'ab'.repeat(32),
      CONFIGPROXY_AUTH_TOKEN: 'operator',
      JUPYTERHUB_CRYPT_KEY: 'cd'.repeat(32),
    })
    expect(specs.map((s) => s.name)).to.deep.equal(['proxy', 'hub', 'nginx'])
    for (const spec of specs) {
      expect(spec.env.JPY_COOKIE_SECRET, spec.name).to.equal(undefined)
      expect(spec.env.PATH, spec.name).to.equal('/usr/bin:/bin')
    }
    expect(specs[0].env.CONFIGPROXY_AUTH_TOKEN).to.equal('from-the-file')
    expect(specs[1].env.CONFIGPROXY_AUTH_TOKEN).to.equal(undefined)
    expect(specs[1].env.JUPYTERHUB_CRYPT_KEY).to.equal('cd'.repeat(32))
  })
})
