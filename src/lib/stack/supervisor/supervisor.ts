import {ChildProcess, spawn as nodeSpawn} from 'node:child_process'
import {randomBytes} from 'node:crypto'
import fs from 'node:fs/promises'
import path from 'node:path'

import {ensureLogFile, writeFileAtomic} from '../../files/atomic.js'
import {ExitCode, HubctlError, errnoCode, messageOf, runtimeError, usageError} from '../../errors.js'
import {HubApi, FetchLike, fallbackWarning, hubApiUrl, keepAlive, proxyApiUrl} from '../hubapi.js'
import {Layout} from '../../config/layout.js'
import {supervisorCulling} from '../../config/culler.js'
import {PortOwner, portAnswers, portOwnedBy, verifyServerListener} from '../listeners.js'
import {procStartTime, processAlive} from '../../processes.js'
import {endOrphans, orphanedServices} from '../orphans.js'
import {SecretStore} from '../../files/secrets.js'
import {ProxyRoute, ServerWatcher, ServersReport, createServerWatcher, proxyRoutes} from '../servers.js'
import {Settings} from '../../config/settings.js'
import {Clock, systemClock} from '../clock.js'
import {
  ChildName,
  ChildSpec,
  ControlRequest,
  ControlResult,
  DEFAULT_TIMINGS,
  EventLog,
  SHUTDOWN_ORDER,
  SpawnFn,
  SupervisorEvent,
  SupervisorState,
  SupervisorTimings,
  label,
  readControlRequest,
  readState,
  releasePidFile,
  round,
  terminatePid,
} from '../state.js'
import {childSpecs, proxySpec} from '../children.js'
import {StateWriter} from './statewriter.js'
import {NO_RESTARTS, RestartHistory, nextRestart, started} from './policy.js'
import {SupervisedChild, crashLoopError, spawnWithLog} from './child.js'
import {Readiness} from './readiness.js'
import {SupervisorContext, eventLogger} from './context.js'

/*
 * hubctl's process supervisor: configurable-http-proxy, then JupyterHub, then (for a prefix other
 * than /) nginx in the foreground. Each child is restarted with exponential backoff when it exits;
 * after the proxy comes back the hub is asked at once (POST /hub/api/proxy) to re-add every route.
 * User servers are the hub's children, in sessions of their own: shutting the supervisor down
 * leaves them running (cleanup_servers = False); `hubctl stop` stops them through the hub first.
 *
 * Nothing here imports oclif: clock, spawn, fetch and the event log are parameters.
 */

/** The standby proxy: always beside the proxy while the stack runs. */
interface Standby {
  proc: ChildProcess
  pid: number
  startTime: string | null
  exited: Promise<void>
  /** Its API token: its own, in memory and its environment only. */
  token: string
  /** Set before hubctl stops it: its exit is not a crash. */
  intentional: boolean
}

/** Whether the standby's route has the proxy's target and data (last_activity aside). */
function sameRoute(have: ProxyRoute | undefined, want: Record<string, unknown>): boolean {
  if (!have) return false
  const {last_activity: _ignored, ...rest} = have as ProxyRoute & {last_activity?: unknown}
  const keys = new Set([...Object.keys(rest), ...Object.keys(want)])
  return [...keys].every((key) => JSON.stringify((rest as Record<string, unknown>)[key]) === JSON.stringify(want[key]))
}

export interface SupervisorDeps {
  layout: Layout
  settings: Settings
  /** Defaults to the prefix's SecretStore. */
  secrets?: Pick<SecretStore, 'read'>
  spawn?: SpawnFn
  clock?: Clock
  fetch?: FetchLike
  log?: EventLog
  timings?: Partial<SupervisorTimings>
  env?: NodeJS.ProcessEnv
  /** Replaces childSpecs() (tests). */
  specs?: ChildSpec[]
  /**
   * Stop user servers idle longer than this (the deprecated `hubctl start --cull-idle`); without it,
   * the supervisor culls only when hubctl.json says jupyterhub-idle-culler could not be used.
   */
  cullIdleMs?: number
  /** Replaces the ServerWatcher made from the settings (tests). */
  watcher?: Pick<ServerWatcher, 'tick'>
  /**
   * Whether `pid` (or a process it started) is what listens on 127.0.0.1:port (listeners.ts; tests
   * replace it). A health answer counts, and a token is sent, only when it is.
   */
  ownsPort?: (port: number, pid: number | undefined) => Promise<PortOwner>
  /** Keep the standby proxy running beside the proxy (default: unless `specs` replaces the programs). */
  standby?: boolean
}

export interface SupervisorResult {
  pid: number
  readySeconds: number | null
  restarts: Record<string, number>
  reloads: number
}

export class Supervisor {
  readonly layout: Layout
  readonly settings: Settings
  private readonly spawnFn: SpawnFn
  private readonly clock: Clock
  private readonly fetchFn: FetchLike
  private readonly emit: EventLog
  private readonly timings: SupervisorTimings
  private readonly secrets: Pick<SecretStore, 'read'>
  private readonly children = new Map<ChildName, SupervisedChild>()
  private readonly shutdownController = new AbortController()
  private stopRequested!: () => void
  private readonly stopPromise: Promise<void>
  private failure?: HubctlError
  private stopping = false
  private ready = false
  private readyAt: string | null = null
  private readySeconds: number | null = null
  private startedAt = ''
  private startedAtMs = 0
  private selfStartTime: string | null = null
  private reloads = 0
  private lastReload: SupervisorState['lastReload'] = null
  private lastRouteSync: SupervisorState['lastRouteSync'] = null
  private reloadQueue: Promise<void> = Promise.resolve()
  /** The token the running proxy was started with (the hub is told it after each proxy start). */
  private proxyToken = ''
  private lastControl: ControlResult | null = null
  private routesSnapshot?: Record<string, ProxyRoute>
  private standby?: Standby
  private standbyHistory: RestartHistory = NO_RESTARTS
  private readonly standbyEnabled: boolean
  private readonly ownsPort: (port: number, pid: number | undefined) => Promise<PortOwner>
  private readonly state: StateWriter
  private readonly readiness: Readiness
  /** What every part reads (context.ts). */
  private readonly ctx: SupervisorContext
  private api?: HubApi

  constructor(private readonly deps: SupervisorDeps) {
    this.layout = deps.layout
    this.settings = deps.settings
    this.spawnFn = deps.spawn ?? nodeSpawn
    this.clock = deps.clock ?? systemClock
    this.fetchFn = deps.fetch ?? fetch
    this.emit = deps.log ?? (() => {})
    this.timings = {...DEFAULT_TIMINGS, ...deps.timings}
    this.secrets = deps.secrets ?? new SecretStore(deps.layout)
    this.standbyEnabled = deps.standby ?? deps.specs === undefined
    this.ownsPort = deps.ownsPort ?? ((port, pid) => portOwnedBy(port, pid))
    this.ctx = {
      layout: this.layout,
      settings: this.settings,
      clock: this.clock,
      fetch: this.fetchFn,
      timings: this.timings,
      env: deps.env,
      shutdown: this.shutdownController.signal,
      stopping: () => this.stopping,
      ready: () => this.ready,
      log: eventLogger(this.emit),
      writeState: () => this.writeState(),
    }
    this.readiness = new Readiness(
      this.ctx,
      {
        child: (name) => this.child(name),
        pidOf: (name) => (name === 'standby' ? this.standby?.pid : this.children.get(name)?.pid),
        standbyEnabled: this.standbyEnabled,
      },
      this.ownsPort,
    )
    this.state = new StateWriter(
      this.layout.stateFile,
      () => (this.children.size === 0 ? undefined : this.snapshot()),
      (level, event, message) => this.log(level, event, message),
    )
    this.stopPromise = new Promise((resolve) => {
      this.stopRequested = resolve
    })
  }

  /** Start everything, supervise until stop() (SIGTERM/SIGINT), then shut down. Throws when the stack never became ready. */
  async run(): Promise<SupervisorResult> {
    this.startedAtMs = this.clock.now()
    this.startedAt = new Date(this.startedAtMs).toISOString()
    this.selfStartTime = (await procStartTime(process.pid)) ?? null
    try {
      const specs = await this.prepare()
      for (const spec of specs) this.children.set(spec.name, this.newChild(spec))
      this.log('info', 'starting', `supervising the hub under ${this.layout.prefix} (pid ${process.pid})`)
      await this.child('proxy').launch()
      // JupyterHub 6 retries its first call to the proxy's API until the proxy answers, and spends
      // its first seconds importing and opening its database: it starts beside the proxy. Older
      // ones give up on a refused connection, and start once the API answers.
      const hubBesideProxy = this.deps.specs === undefined && majorVersion(this.settings.jupyterhubVersion) >= 6
      if (hubBesideProxy) await this.child('hub').launch()
      const proxyUp = await this.readiness.waitForProxyApi()
      // The hub sends the proxy's token to that port: it must be the proxy's (checked long before
      // the hub is far enough along to call; a squatter there made the proxy fail, and the stack stops).
      if (hubBesideProxy && !proxyUp && !this.stopping)
        throw runtimeError(
          `configurable-http-proxy did not answer on its API port ${this.settings.ports.proxyApi}`,
          `read ${this.layout.proxyLog}, fix the cause, then run \`hubctl start\` again`,
        )
      if (proxyUp && hubBesideProxy)
        await this.readiness.verifyOwnPort(
          'proxy',
          this.settings.ports.proxyApi,
          "the proxy's token (the hub's first call)",
        )
      if (!hubBesideProxy) await this.child('hub').launch()
      // While the hub starts: the standby holds its ports before nginx can send it anything.
      if (this.standbyEnabled) await this.startStandby()
      if (this.children.has('nginx')) await this.child('nginx').launch()
      await this.readiness.waitReady()
      if (!this.stopping) {
        this.ready = true
        this.readySeconds = round((this.clock.now() - this.startedAtMs) / 1000)
        this.readyAt = new Date().toISOString()
        this.log(
          'info',
          'ready',
          `ready in ${this.readySeconds}s: the hub answers /hub/health through the proxy at http://127.0.0.1:${this.settings.ports.proxy}/`,
        )
        await this.writeState()
        void this.monitor()
        await this.stopPromise
      }
    } catch (error) {
      this.fail(
        error instanceof HubctlError
          ? error
          : new HubctlError(`supervisor failed: ${messageOf(error)}`, {exitCode: ExitCode.INTERNAL, cause: error}),
      )
    }
    await this.shutdown()
    if (this.failure) throw this.failure
    return {
      pid: process.pid,
      readySeconds: this.readySeconds,
      restarts: Object.fromEntries([...this.children].map(([name, child]) => [name, child.restarts])),
      reloads: this.reloads,
    }
  }

  /** Ask for a shutdown (SIGTERM, SIGINT); run() resolves once everything stopped. */
  stop(reason = 'stop requested'): void {
    if (this.stopping) return
    this.log('info', 'stopping', reason)
    this.stopping = true
    this.shutdownController.abort()
    this.stopRequested()
  }

  /** Restart the proxy and the hub (SIGHUP), keeping user servers and their routes; nginx reloads. */
  restart(): Promise<void> {
    this.reloadQueue = this.reloadQueue.then(() => this.doRestart())
    return this.reloadQueue
  }

  /** The state as written to state.json. */
  snapshot(): SupervisorState {
    const nginx = this.children.get('nginx')
    return {
      version: 1,
      prefix: this.layout.prefix,
      supervisor: {
        pid: process.pid,
        startTime: this.selfStartTime,
        startedAt: this.startedAt,
        ready: this.ready,
        readyAt: this.readyAt,
        readySeconds: this.readySeconds,
        stopping: this.stopping,
        stoppedAt: null,
      },
      proxy: this.child('proxy').state(),
      hub: this.child('hub').state(),
      ...(nginx ? {nginx: nginx.state()} : {}),
      reloads: this.reloads,
      lastReload: this.lastReload,
      lastRouteSync: this.lastRouteSync,
      servers: this.serversReport ?? null,
      lastControl: this.lastControl,
      standby: this.standby
        ? {pid: this.standby.pid, startTime: this.standby.startTime, restarts: this.standbyHistory.restarts}
        : null,
      updatedAt: new Date().toISOString(),
    }
  }

  // -------------------------------------------------------------------------------------------

  private async prepare(): Promise<ChildSpec[]> {
    const {jupyterhub} = this.settings.executables
    if (jupyterhub.includes('/') && !path.isAbsolute(jupyterhub)) {
      throw usageError(
        `${this.layout.settings} names the JupyterHub executable by a relative path (${jupyterhub})`,
        'run `hubctl init` again with --jupyterhub and an absolute path',
      )
    }
    await fs.mkdir(this.layout.logDir, {recursive: true, mode: 0o755})
    // Every log 0640 or tighter, nginx's before nginx makes them 0644 itself.
    for (const file of [
      this.layout.hubLog,
      this.layout.proxyLog,
      ...(this.settings.nginxSupervised && !this.layout.isSystem
        ? [this.layout.nginxAccessLog, this.layout.nginxErrorLog]
        : []),
    ])
      await ensureLogFile(file)
    await fs.mkdir(this.layout.runDir, {recursive: true, mode: 0o755})
    await this.stopLeftovers()
    await this.readiness.checkPorts()
    const proxyToken = await this.secrets.read('proxyAuthToken')
    this.proxyToken = proxyToken
    const backups = new SecretStore(this.layout)
    this.api = new HubApi({
      baseUrl: hubApiUrl(this.settings),
      token: () => this.secrets.read('apiToken'),
      fallbackToken: () => backups.latestBackup('apiToken'),
      onFallback: (request) => this.log('warn', 'api-token-fallback', fallbackWarning(request), 'hub'),
      verify: () => this.readiness.verifyOwnPort('hub', this.settings.ports.hub, 'its API token'),
      fetch: this.fetchFn,
      timeoutMs: 10_000,
    })
    return this.deps.specs ?? childSpecs(this.layout, this.settings, proxyToken, this.deps.env)
  }

  /** Children of a supervisor that died without stopping them (kill -9): stop them before starting anew. */
  private async stopLeftovers(): Promise<void> {
    const previous = await readState(this.layout)
    if (!previous || previous.supervisor.pid === process.pid) return
    if (await processAlive(previous.supervisor.pid, previous.supervisor.startTime)) return
    if (previous.standby && (await processAlive(previous.standby.pid, previous.standby.startTime))) {
      this.log(
        'warn',
        'leftover',
        `stopping the standby proxy left running by a supervisor that died (pid ${previous.standby.pid})`,
        'proxy',
        previous.standby.pid,
      )
      await terminatePid(previous.standby.pid, previous.standby.startTime, {
        clock: this.clock,
        timeoutMs: this.timings.stopTimeoutMs,
        pollMs: this.timings.pollMs,
      })
    }
    for (const name of SHUTDOWN_ORDER) {
      const child = previous[name]
      if (!child?.pid || !(await processAlive(child.pid, child.startTime))) continue
      this.log(
        'warn',
        'leftover',
        `stopping ${label(name)} left running by a supervisor that died (pid ${child.pid})`,
        name,
        child.pid,
      )
      await terminatePid(child.pid, child.startTime, {
        clock: this.clock,
        timeoutMs: this.timings.stopTimeoutMs,
        pollMs: this.timings.pollMs,
        group: name === 'nginx',
      })
    }
  }

  private newChild(spec: ChildSpec): SupervisedChild {
    return new SupervisedChild(spec, this.ctx, this.spawnFn, {
      started: (pid) => {
        if (spec.name === 'hub') void this.endOrphanedServices(pid)
      },
      relaunch: async (child) => {
        if (child.name === 'hub' && this.ready) await this.ensureProxyTokenCurrent()
        if (child.name === 'proxy' && this.ready) await this.launchProxyWithKnownRoutes(child)
        else await child.launch()
      },
      restarted: async (child) => {
        if (child.name === 'proxy') await this.restoreRoutes()
        else if (child.name === 'hub') await this.readiness.waitHubHealthy(this.timings.healthTimeoutMs, true)
      },
      failedBeforeReady: (child, how) => {
        this.fail(crashLoopError(child, how))
        this.stop(`${label(child.name)} is in a crash loop`)
      },
    })
  }

  private child(name: ChildName): SupervisedChild {
    const child = this.children.get(name)
    if (!child) throw new HubctlError(`no ${name} is supervised`, {exitCode: ExitCode.INTERNAL})
    return child
  }

  /**
   * A hub that died without stopping its services (SIGKILL, the OOM killer) left them running in
   * sessions of their own; the hub just started starts its own. Not awaited: nothing waits on it.
   */
  private async endOrphanedServices(hubPid: number): Promise<void> {
    const orphans = await orphanedServices({
      apiUrl: hubApiUrl(this.settings),
      hubPid,
      uid: process.getuid?.() ?? 0,
    })
    if (orphans.length === 0) return
    this.log(
      'warn',
      'orphans',
      `stopping what a hub that is gone left running: ${orphans.map((o) => `service ${o.service} (pid ${o.pid})`).join(', ')}`,
      'hub',
      hubPid,
    )
    await endOrphans(orphans)
  }

  /** After the proxy (re)starts: once its API listens, have the hub re-add every route at once. */
  private async restoreRoutes(): Promise<void> {
    const began = this.clock.now()
    if (!(await this.readiness.waitForProxyApi())) return
    await fs.rm(this.layout.proxySeed, {force: true})
    const hub = this.child('hub')
    if (!hub.running) {
      this.log('info', 'routes', 'the hub is not running: it adds the routes itself when it starts')
      return
    }
    const deadline = this.clock.now() + this.timings.healthTimeoutMs
    let lastError = ''
    while (!this.stopping && this.clock.now() < deadline) {
      try {
        // PATCH, not POST: the hub also learns the token this proxy runs with (it may have changed).
        await this.api?.updateProxy({auth_token: this.proxyToken})
        const seconds = round((this.clock.now() - began) / 1000)
        this.lastRouteSync = {at: new Date().toISOString(), ok: true, seconds}
        this.log('info', 'routes', `the hub restored every route in the proxy (${seconds}s after the proxy started)`)
        await this.writeState()
        return
      } catch (error) {
        lastError = messageOf(error)
        if ((error as {status?: number}).status === 403 || (error as {status?: number}).status === 401) break
      }
      await this.clock.sleep(this.timings.pollMs * 2, this.shutdownController.signal)
    }
    if (this.stopping) return
    this.lastRouteSync = {at: new Date().toISOString(), ok: false, seconds: round((this.clock.now() - began) / 1000)}
    this.log('error', 'routes', `could not have the hub restore the proxy's routes: ${lastError}`)
    await this.writeState()
  }

  /** Health of the hub every few seconds, crash loops cleared once a child has run long enough. */
  private async monitor(): Promise<void> {
    while (!this.stopping) {
      await this.clock.sleep(this.timings.healthIntervalMs, this.shutdownController.signal)
      if (this.stopping) return
      let changed = false
      await this.refreshRoutesSnapshot()
      await this.syncStandby().catch((error: unknown) =>
        this.log('warn', 'standby', `could not bring the standby proxy's routes in step: ${messageOf(error)}`),
      )
      await this.readiness.watchPorts()
      const hub = this.child('hub')
      if (await this.readiness.checkHub()) changed = true
      for (const child of this.children.values()) {
        if (child.settle()) changed = true
      }
      if (hub.running && hub.isHealthy && !hub.restartPending) this.watchServers()
      if (changed) await this.writeState()
    }
  }

  // User servers (servers.ts): checked from the monitor's ticks, at most once per the watcher's
  // interval and without holding up the tick; the last report goes to state.json for `status`.
  private serverWatcher?: Pick<ServerWatcher, 'tick'>
  private serversReport?: ServersReport
  private watchingServers = false

  private watchServers(): void {
    if (this.watchingServers || !this.api || this.stopping) return
    this.serverWatcher ??=
      this.deps.watcher ??
      createServerWatcher({
        ports: this.settings.ports,
        api: this.api,
        proxyToken: () => this.secrets.read('proxyAuthToken'),
        fetch: this.fetchFn,
        clock: this.clock,
        cullIdleMs: this.deps.cullIdleMs ?? supervisorCulling(this.settings).idleMs,
        cullMaxAgeMs: supervisorCulling(this.settings).maxAgeMs,
        log: (level, event, message) => this.log(level, event, message),
        verifyProxy: () => this.readiness.verifyOwnPort('proxy', this.settings.ports.proxyApi, "the proxy's token"),
        verifyTarget: (server, target) => verifyServerListener(this.layout, server, target),
      })
    this.watchingServers = true
    void this.serverWatcher
      .tick()
      .then(async (report) => {
        if (!report || this.stopping) return
        this.serversReport = report
        await this.writeState()
      })
      .catch((error: unknown) => {
        this.log('warn', 'servers', `watching the user servers failed: ${messageOf(error)}`)
      })
      .finally(() => {
        this.watchingServers = false
      })
  }

  private async doRestart(): Promise<void> {
    if (this.stopping || !this.ready) return
    const began = this.clock.now()
    this.log('info', 'restart', 'restarting the proxy and the hub; user servers keep running')
    let ok = true
    let error: string | undefined
    try {
      await this.handoverProxy(await this.secrets.read('proxyAuthToken'))
      if (this.stopping) return
      const hub = this.child('hub')
      await hub.stop()
      if (this.stopping) return
      await hub.launch()
      ok = await this.readiness.waitHubHealthy(this.timings.healthTimeoutMs, true)
      if (!ok) error = `the hub did not answer /hub/health within ${round(this.timings.healthTimeoutMs / 1000)}s`
      const nginx = this.children.get('nginx')
      if (nginx?.signal('SIGHUP')) {
        this.log('info', 'reload', 'nginx reloads its configuration', 'nginx', nginx.pid)
      }
    } catch (caught) {
      ok = false
      error = messageOf(caught)
    }
    if (this.stopping) return
    this.reloads++
    const seconds = round((this.clock.now() - began) / 1000)
    this.lastReload = {at: new Date().toISOString(), ok, seconds, ...(error ? {error} : {})}
    this.log(
      ok ? 'info' : 'error',
      'restarted',
      ok ? `proxy and hub restarted in ${seconds}s` : `restart failed: ${error}`,
    )
    await this.writeState()
  }

  /** A request of another hubctl command (control.json + SIGUSR2), queued behind restarts. */
  control(request: ControlRequest): Promise<void> {
    this.reloadQueue = this.reloadQueue.then(() => this.doControl(request))
    return this.reloadQueue
  }

  private async doControl(request: ControlRequest): Promise<void> {
    if (this.stopping) return
    const began = this.clock.now()
    let error: string | undefined
    if (!this.ready) {
      error = 'the stack is not ready yet'
    } else {
      try {
        if (request.action === 'proxy-token') await this.handoverProxy(await this.secrets.read('proxyAuthToken'))
        else await this.restartHub()
      } catch (caught) {
        error = messageOf(caught)
      }
    }
    if (this.stopping) return
    const seconds = round((this.clock.now() - began) / 1000)
    this.lastControl = {
      id: request.id,
      action: request.action,
      ok: error === undefined,
      at: new Date().toISOString(),
      seconds,
      ...(error ? {error} : {}),
    }
    this.log(
      error ? 'error' : 'info',
      'control',
      error ? `${request.action} failed: ${error}` : `${request.action} done in ${seconds}s`,
    )
    await this.writeState()
  }

  /** Restart the hub alone (cookie secret, API token): user servers and the proxy keep running. */
  private async restartHub(): Promise<void> {
    const hub = this.child('hub')
    this.log('info', 'restart', 'restarting the hub; the proxy and user servers keep running', 'hub', hub.pid)
    await hub.stop()
    if (this.stopping) return
    await this.ensureProxyTokenCurrent()
    await hub.launch()
    if (!(await this.readiness.waitHubHealthy(this.timings.healthTimeoutMs, true))) {
      if (this.readiness.hubPortTaken)
        throw new Error(
          `the hub's port was taken while it restarted: ${this.readiness.hubPortTaken}; see ${this.layout.hubLog}`,
        )
      throw new Error(
        `the hub did not answer /hub/health within ${round(this.timings.healthTimeoutMs / 1000)}s; see ${this.layout.hubLog}`,
      )
    }
  }

  /** The hub reads the proxy's token from its file when it starts: the proxy must run with that one. */
  private async ensureProxyTokenCurrent(): Promise<void> {
    let fileToken: string
    try {
      fileToken = await this.secrets.read('proxyAuthToken')
    } catch {
      return
    }
    if (fileToken !== this.proxyToken) {
      this.log('warn', 'proxy-token', 'the proxy token file changed since the proxy started: replacing the proxy first')
      await this.handoverProxy(fileToken)
    }
  }

  /**
   * Replace the running proxy by one with `token`, without a failed request: the standby proxy
   * (always running, routes kept in step at each health tick) gets the current routes, the proxy
   * stops (nginx sends the standby whatever the proxy's port refuses) and starts again with the
   * same routes, then the hub is told the token (PATCH /hub/api/proxy, which also re-checks every
   * route). The standby keeps running: its port is never left to another program.
   */
  private async handoverProxy(token: string): Promise<void> {
    const proxy = this.child('proxy')
    const began = this.clock.now()
    const routes = await this.currentRoutes()
    const seedFile = await this.writeSeed(routes)
    try {
      if (this.standbyEnabled) {
        if (!this.standby) await this.startStandby()
        await this.syncStandby(routes)
      }
      if (this.stopping) return
      await proxy.stop()
      if (this.stopping) return
      this.proxyToken = token
      await this.launchSeeded(proxy, seedFile)
      if (!(await this.readiness.waitForProxyApi()))
        throw new Error(
          `the new proxy did not answer on port ${this.settings.ports.proxyApi}; see ${this.layout.proxyLog}`,
        )
      // Its ports were free while it restarted: another program may have taken one.
      for (const key of ['proxy', 'proxyApi'] as const) {
        const owner = await this.ownsPort(this.settings.ports[key], proxy.pid)
        if (!owner.owned) throw new Error(`the proxy's port was taken while it restarted: ${owner.problem}`)
      }
      await this.api?.updateProxy({auth_token: token})
      this.lastRouteSync = {at: new Date().toISOString(), ok: true, seconds: round((this.clock.now() - began) / 1000)}
      this.log(
        'info',
        'handover',
        `the proxy was replaced with ${Object.keys(routes).length} route(s) in place (${round((this.clock.now() - began) / 1000)}s)`,
        'proxy',
        proxy.pid,
      )
    } finally {
      await fs.rm(seedFile, {force: true})
      await this.writeState()
    }
  }

  /**
   * A proxy that crashed comes back with the routes it had at the last health tick (seeded store),
   * so users' routes answer as soon as it listens; the hub then re-checks every route (PATCH).
   */
  private async launchProxyWithKnownRoutes(proxy: SupervisedChild): Promise<void> {
    const routes = this.routesSnapshot
    if (this.deps.specs || !routes || Object.keys(routes).length <= 1) return proxy.launch()
    await this.launchSeeded(proxy, await this.writeSeed(routes))
  }

  /** The routes a replacement proxy starts with (0600: user names and their servers' addresses). */
  private async writeSeed(routes: Record<string, unknown>): Promise<string> {
    await writeFileAtomic(this.layout.proxySeed, `${JSON.stringify({routes})}\n`, {mode: 0o600})
    return this.layout.proxySeed
  }

  /** Start the proxy with the current token and the routes in `seedFile`; later (crash) restarts start empty. */
  private async launchSeeded(proxy: SupervisedChild, seedFile: string): Promise<void> {
    proxy.setSpec(proxySpec(this.layout, this.settings, this.proxyToken, {baseEnv: this.deps.env}))
    await proxy.launch(proxySpec(this.layout, this.settings, this.proxyToken, {baseEnv: this.deps.env, seedFile}))
  }

  /** The running proxy's routing table, with the token it runs with. */
  private readRoutes(timeoutMs: number): Promise<Record<string, ProxyRoute>> {
    return proxyRoutes(
      proxyApiUrl(this.settings.ports),
      async () => this.proxyToken,
      this.fetchFn,
      timeoutMs,
      () => this.readiness.verifyOwnPort('proxy', this.settings.ports.proxyApi, "the proxy's token"),
    )()
  }

  /** The proxy's routing table, kept at each health tick for a crashed proxy's restart. */
  private async refreshRoutesSnapshot(): Promise<void> {
    const proxy = this.children.get('proxy')
    if (!proxy?.running || proxy.restartPending) return
    try {
      this.routesSnapshot = await this.readRoutes(2000)
    } catch {
      // The proxy is restarting: keep the previous table.
    }
  }

  /** The routes to hand over; empty when the proxy does not answer (the hub re-adds them after). */
  private async currentRoutes(): Promise<Record<string, ProxyRoute>> {
    try {
      return await this.readRoutes(5000)
    } catch (error) {
      this.log(
        'warn',
        'handover',
        `could not read the proxy's routes (${messageOf(error)}): the hub re-adds them after the handover`,
      )
      return {}
    }
  }

  /**
   * Start the standby proxy on the standby ports. It runs as long as the stack does, so that the
   * port nginx falls back to is always held by hubctl's own process. Its API token is its own,
   * made here and kept in memory and in its environment only (hubctl alone talks to its API).
   */
  private async startStandby(): Promise<void> {
    const token = randomBytes(32).toString('hex')
    const spec = proxySpec(this.layout, this.settings, token, {baseEnv: this.deps.env, standby: true})
    const proc = await spawnWithLog(this.spawnFn, spec)
    this.standbyHistory = started(this.standbyHistory, this.clock.now())
    let running = true
    let resolveExit!: () => void
    const exited = new Promise<void>((resolve) => {
      resolveExit = resolve
    })
    const standby: Standby = {proc, pid: proc.pid ?? 0, startTime: null, exited, token, intentional: false}
    // Listeners before any await: a spawn error is emitted on the next tick.
    const onGone = (how: string) => {
      if (!running) return
      running = false
      resolveExit()
      this.onStandbyExit(standby, how)
    }
    proc.once('exit', (code, signal) => onGone(signal ? `was killed by ${signal}` : `exited with code ${code}`))
    proc.once('error', (error) => onGone(`could not be started (${errnoCode(error) ?? error.message})`))
    if (proc.pid === undefined) throw new Error('the standby proxy could not be started')
    this.standby = standby
    standby.startTime = (await procStartTime(proc.pid)) ?? null
    this.log(
      'info',
      'standby',
      `standby proxy started (pid ${proc.pid}) on port ${this.settings.ports.proxyStandby}`,
      'proxy',
      proc.pid,
    )
    await this.writeState()
    if (
      !(await this.readiness.waitForProxyApi(30_000, this.settings.ports.proxyStandbyApi, () => running)) ||
      !(await portAnswers(this.settings.ports.proxyStandby))
    ) {
      throw new Error(`the standby proxy did not start; see ${this.layout.proxyLog}`)
    }
    if (this.routesSnapshot) await this.syncStandby()
  }

  /** The standby exited: unless hubctl stopped it, start it again (the same backoff as a child's). */
  private onStandbyExit(standby: Standby, how: string): void {
    if (this.standby === standby) this.standby = undefined
    if (standby.intentional || this.stopping) return
    // The same backoff as a child's; a standby that keeps exiting is said at each exit, not as a crash loop.
    const {history, delayMs: delay, ranMs} = nextRestart(this.standbyHistory, this.clock.now(), this.timings)
    this.standbyHistory = history
    this.log(
      'warn',
      'exited',
      `the standby proxy (pid ${standby.pid}) ${how} after ${round(ranMs / 1000)}s; restart ${history.restarts} in ${round(delay / 1000)}s`,
      'proxy',
      standby.pid,
    )
    void this.writeState()
    void this.clock
      .sleep(delay, this.shutdownController.signal)
      .then(async () => {
        if (this.stopping || this.standby) return
        await this.startStandby()
      })
      .catch((error: unknown) =>
        this.log('error', 'restart-failed', `restarting the standby proxy failed: ${messageOf(error)}`, 'proxy'),
      )
  }

  /**
   * Bring the standby's routing table in step with the proxy's (`routes`, by default the last
   * health tick's): add or replace what differs, remove what the proxy no longer has.
   */
  private async syncStandby(routes = this.routesSnapshot): Promise<void> {
    const standby = this.standby
    // An empty table is a proxy that did not answer (its own has the default route, '/'): keep the standby's.
    if (!standby || !routes || Object.keys(routes).length === 0) return
    const verify = () =>
      this.readiness.verifyOwnPort('standby', this.settings.ports.proxyStandbyApi, "the standby proxy's token")
    const base = proxyApiUrl({proxyApi: this.settings.ports.proxyStandbyApi})
    const current = await proxyRoutes(base, async () => standby.token, this.fetchFn, 2000, verify)()
    const send = async (method: 'POST' | 'DELETE', routePath: string, body?: unknown) => {
      await verify()
      const response = await keepAlive(
        2000,
        this.fetchFn(`${base}/api/routes${routePath}`, {
          method,
          headers: {Authorization: `token ${standby.token}`, ...(body ? {'Content-Type': 'application/json'} : {})},
          body: body ? JSON.stringify(body) : undefined,
          signal: AbortSignal.timeout(2000),
          redirect: 'manual',
        }),
      )
      await response.body?.cancel()
      // A route already gone is what a DELETE wants: two syncs (a health tick and a handover) may race.
      if (method === 'DELETE' && response.status === 404) return
      if (!response.ok) throw new Error(`the standby proxy's API answered ${response.status} to ${method} ${routePath}`)
    }
    const wanted = new Set<string>()
    for (const [routePath, route] of Object.entries(routes)) {
      if (routePath === '/' || !route?.target) continue
      wanted.add(routePath)
      const {last_activity: _ignored, ...data} = route as ProxyRoute & {last_activity?: unknown}
      if (sameRoute(current[routePath], data)) continue
      await send('POST', routePath, data)
    }
    for (const routePath of Object.keys(current)) {
      if (routePath !== '/' && !wanted.has(routePath)) await send('DELETE', routePath)
    }
  }

  private async stopStandby(): Promise<void> {
    const standby = this.standby
    if (!standby) return
    standby.intentional = true
    standby.proc.kill('SIGTERM')
    const timeout = new AbortController()
    const inTime = await Promise.race([
      standby.exited.then(() => true),
      this.clock.sleep(this.timings.stopTimeoutMs, timeout.signal).then(() => false),
    ])
    timeout.abort()
    if (!inTime) {
      standby.proc.kill('SIGKILL')
      await standby.exited
    }
    this.standby = undefined
    this.log('info', 'stopped', `standby proxy stopped (pid ${standby.pid})`, 'proxy', standby.pid)
  }

  private async shutdown(): Promise<void> {
    this.stopping = true
    this.shutdownController.abort()
    if (this.children.size === 0) {
      // Failed before starting anything: leave the previous state.json as it was.
      await releasePidFile(this.layout).catch(() => {})
      return
    }
    for (const name of SHUTDOWN_ORDER) {
      const child = this.children.get(name)
      if (!child) continue
      try {
        await child.stop()
      } catch (error) {
        this.log('error', 'stop-failed', `stopping ${label(name)} failed: ${messageOf(error)}`, name)
      }
    }
    await this.stopStandby()
    const state = this.snapshot()
    state.supervisor.stoppedAt = new Date().toISOString()
    await this.writeState(state)
    await releasePidFile(this.layout).catch(() => {})
    this.log(
      'info',
      'stopped',
      'hubctl stopped the proxy, the hub' +
        (this.children.has('nginx') ? ' and nginx' : '') +
        '; user servers, if any, keep running',
    )
  }

  private fail(error: HubctlError): void {
    if (this.failure) return
    this.failure = error
    this.log('error', 'failed', error.message)
  }

  private writeState(state?: SupervisorState): Promise<void> {
    return this.state.write(state)
  }

  private log(level: SupervisorEvent['level'], event: string, message: string, child?: ChildName, pid?: number): void {
    this.ctx.log(level, event, message, child, pid)
  }
}

/** SIGTERM/SIGINT stop the supervisor, SIGHUP restarts proxy and hub. Returns a function that removes the handlers. */
export function installSignalHandlers(supervisor: Supervisor): () => void {
  const onStop = (signal: NodeJS.Signals) =>
    supervisor.stop(
      `${signal} received: stopping the hub, then the proxy${supervisor.settings.nginxSupervised ? ', then nginx' : ''}`,
    )
  const onHup = () => {
    void supervisor.restart()
  }
  const onControl = () => {
    void readControlRequest(supervisor.layout).then((request) => request && supervisor.control(request))
  }
  process.on('SIGTERM', onStop)
  process.on('SIGINT', onStop)
  process.on('SIGHUP', onHup)
  process.on('SIGUSR2', onControl)
  return () => {
    process.off('SIGTERM', onStop)
    process.off('SIGINT', onStop)
    process.off('SIGHUP', onHup)
    process.off('SIGUSR2', onControl)
  }
}

/** The major version of "6.1.1" (0 when unknown). */
function majorVersion(version: string | undefined): number {
  const major = Number.parseInt(version ?? '', 10)
  return Number.isFinite(major) ? major : 0
}
