import {EventEmitter} from 'node:events'
import {ChildProcess} from 'node:child_process'
import {readFileSync} from 'node:fs'
import fs from 'node:fs/promises'
import os from 'node:os'
import path from 'node:path'

import {Layout} from '../../../../src/lib/config/layout.js'
import {ServersReport} from '../../../../src/lib/stack/servers.js'
import type {Settings} from '../../../../src/lib/config/settings.js'
import {ChildName, ChildSpec, SupervisorEvent, readState} from '../../../../src/lib/stack/state.js'
import {Clock} from '../../../../src/lib/stack/clock.js'
import {Supervisor, SupervisorResult} from '../../../../src/lib/stack/supervisor/supervisor.js'
import {freePort} from '../../../helpers/cli.js'

/*
 * The test harness of the supervisor's tests (supervisor, child, proxyhandover): the Supervisor with a fake spawn (no program runs), a fake fetch (the proxy's API, the hub's
 * health and REST API) and a fake clock that moves only when a test moves it: backoff, crash loops
 * and culling are checked by what the supervisor did and asked for, never by how long it took.
 * Files (logs, state.json) are real, in a temporary prefix.
 */

/** A clock whose time moves only by advance(); sleeps are timers on it. */
export class FakeClock implements Clock {
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
export async function settle(): Promise<void> {
  for (let i = 0; i < 3; i++) {
    for (let j = 0; j < 5; j++) await new Promise((resolve) => setImmediate(resolve))
    await new Promise((resolve) => setTimeout(resolve, 1))
  }
}

/** Wait (a bounded number of event-loop turns, no time asserted) until `check` holds. */
export async function until(
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
export class FakeProc extends EventEmitter {
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

export interface Harness {
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

/** Remove the temporary prefixes the harness made (an after() hook of each test file). */
export async function removePrefixes(): Promise<void> {
  for (const prefix of prefixes.splice(0)) await fs.rm(prefix, {recursive: true, force: true})
}

export async function startHarness(
  options: {
    failSpawn?: (name: ChildName, n: number) => boolean
    cullIdleMs?: number
    cull?: Settings['cull']
    /** hubctl.json's serverWatchSeconds (absent: the default, 30 s). */
    serverWatchSeconds?: number
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
    /** Whether the proxy's API answers GET /api/routes now (default: while a proxy runs). */
    routesAnswer?: () => boolean
    /** The proxy token's file (default: 'f' × 64). */
    proxyToken?: () => string
    /** Run on the new prefix before the supervisor starts. */
    beforeRun?: (layout: Layout) => Promise<void>
    /** The check before the hub is started again (default: none). */
    checkHub?: () => Promise<void>
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
    serverWatchSeconds: options.serverWatchSeconds,
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
      if (options.routesAnswer && !options.routesAnswer())
        throw new DOMException('The operation was aborted due to timeout', 'TimeoutError')
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
    secrets: {read: async () => options.proxyToken?.() ?? 'f'.repeat(64)},
    // The fake children hold no real socket: every port is taken for theirs.
    ownsPort: async () => ({owned: true}),
    log: (event) => events.push(event),
    cullIdleMs: options.cullIdleMs,
    watcher: options.watcher,
    checkHub: options.checkHub ?? (async () => {}),
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
export function sleepyAndBusy(h: Harness): void {
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
export async function restarted(h: Harness, name: ChildName, n: number): Promise<void> {
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
export async function crash(
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
export function announcedDelays(events: SupervisorEvent[], child: ChildName): number[] {
  return events
    .filter((e) => e.event === 'exited' && e.child === child)
    .map((e) => Math.round(Number(/ in ([\d.]+)s$/.exec(e.message)?.[1]) * 1000))
}
