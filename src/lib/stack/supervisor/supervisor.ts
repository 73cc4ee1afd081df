import {spawn as nodeSpawn} from 'node:child_process'
import fs from 'node:fs/promises'
import path from 'node:path'

import {ensureLogFile} from '../../files/atomic.js'
import {ExitCode, HubctlError, messageOf, runtimeError, usageError} from '../../errors.js'
import {HubApi, FetchLike, fallbackWarning, hubApiUrl} from '../hubapi.js'
import {Layout} from '../../config/layout.js'
import {supervisorCulling} from '../../config/culler.js'
import {checkSchemaBeforeStart} from '../../config/dbschema.js'
import {execaRunner} from '../../runner.js'
import {PortOwner, portOwnedBy, verifyServerListener} from '../listeners.js'
import {procStartTime, processAlive} from '../../processes.js'
import {endOrphans, orphanedServices} from '../orphans.js'
import {SecretStore} from '../../files/secrets.js'
import {ServerWatcher, ServersReport, createServerWatcher} from '../servers.js'
import {SERVER_WATCH_SECONDS, Settings} from '../../config/settings.js'
import {Clock, systemClock} from '../clock.js'
import {
  ChildName,
  ChildSpec,
  ControlRequest,
  DEFAULT_TIMINGS,
  EventLog,
  SHUTDOWN_ORDER,
  SpawnFn,
  SupervisorEvent,
  SupervisorState,
  SupervisorTimings,
  label,
  readState,
  releasePidFile,
  round,
  terminatePid,
} from '../state.js'
import {childSpecs} from '../children.js'
import {StateWriter} from './statewriter.js'
import {SupervisedChild, crashLoopError} from './child.js'
import {Readiness} from './readiness.js'
import {ProxyHandover} from './proxyhandover.js'
import {ControlChannel} from './channel.js'
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
  /** Whether systemd is restarting the unit at this stop (handover.ts's systemdRestarting; tests replace it). */
  restarting?: () => Promise<boolean>
  /**
   * Asked before the hub is started again after it exited: throws (exit 7) when it cannot run as it
   * is, a database older than the JupyterHub installed (config/dbschema; tests replace it).
   */
  checkHub?: () => Promise<void>
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
  private readonly checkHub: () => Promise<void>
  private stopping = false
  private ready = false
  private readyAt: string | null = null
  private readySeconds: number | null = null
  private startedAt = ''
  private startedAtMs = 0
  private selfStartTime: string | null = null
  private readonly standbyEnabled: boolean
  private readonly ownsPort: (port: number, pid: number | undefined) => Promise<PortOwner>
  private readonly state: StateWriter
  private readonly readiness: Readiness
  private readonly handover: ProxyHandover
  private readonly channel: ControlChannel
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
    this.checkHub =
      deps.checkHub ?? (() => checkSchemaBeforeStart(this.layout, execaRunner, this.settings.executables.jupyterhub))
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
        pidOf: (name) => (name === 'standby' ? this.handover.standbyPid : this.children.get(name)?.pid),
        standbyEnabled: this.standbyEnabled,
        adoptedStandby: () => this.handover.adoptedStandby,
      },
      this.ownsPort,
    )
    this.handover = new ProxyHandover(this.ctx, {
      child: (name) => this.child(name),
      readiness: this.readiness,
      api: () => this.api,
      secrets: this.secrets,
      spawn: this.spawnFn,
      ownsPort: this.ownsPort,
      standbyEnabled: this.standbyEnabled,
      injectedSpecs: deps.specs !== undefined,
      restarting: deps.restarting,
    })
    this.channel = new ControlChannel(this.ctx, {
      child: (name) => this.child(name),
      children: this.children,
      readiness: this.readiness,
      handover: this.handover,
      secrets: this.secrets,
    })
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
      await this.handover.launchFirstProxy()
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
      // handover.ts: the adopted standby goes once this proxy answers, and this one's own replaces it.
      await this.handover.retireAdopted(true)
      // While the hub starts: the standby holds its ports before nginx can send it anything.
      if (this.standbyEnabled) await this.handover.startStandby()
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
      reloads: this.channel.restartsDone,
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
    return this.channel.restart()
  }

  /** A request of another hubctl command (control.json + SIGUSR2), queued behind restarts. */
  control(request: ControlRequest): Promise<void> {
    return this.channel.control(request)
  }

  /** The state as written to state.json. */
  snapshot(): SupervisorState {
    const nginx = this.children.get('nginx')
    const handover = this.handover.state()
    const channel = this.channel.state()
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
      reloads: channel.reloads,
      lastReload: channel.lastReload,
      lastRouteSync: handover.lastRouteSync,
      servers: this.serversReport ?? null,
      lastControl: channel.lastControl,
      standby: handover.standby,
      ...(handover.handover ? {handover: handover.handover} : {}),
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
    this.handover.useToken(proxyToken)
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
    // handover.ts: the standby a supervisor stopped by `systemctl restart` left running is adopted.
    const adopted = await this.handover.adopt(previous)
    if (!adopted && previous.standby && (await processAlive(previous.standby.pid, previous.standby.startTime))) {
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
        // A hub that exited because its database is older than its JupyterHub (the package upgraded
        // under it) would exit again at every restart: the supervisor stops, saying what to run.
        if (child.name === 'hub') {
          const problem = await this.checkHub().then(
            () => undefined,
            (error: unknown) => error,
          )
          if (problem instanceof HubctlError && problem.exitCode === ExitCode.RUNTIME) {
            this.fail(problem)
            this.stop('the hub cannot start on its database')
            return
          }
        }
        if (child.name === 'hub' && this.ready) await this.handover.ensureProxyTokenCurrent()
        if (child.name === 'proxy' && this.ready) await this.handover.launchProxyWithKnownRoutes(child)
        else await child.launch()
      },
      restarted: async (child) => {
        if (child.name === 'proxy') await this.handover.restoreRoutes()
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

  /** Health of the hub every few seconds, crash loops cleared once a child has run long enough. */
  private async monitor(): Promise<void> {
    while (!this.stopping) {
      await this.clock.sleep(this.timings.healthIntervalMs, this.shutdownController.signal)
      if (this.stopping) return
      let changed = false
      await this.handover
        .tick()
        .catch((error: unknown) =>
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
        intervalMs: (this.settings.serverWatchSeconds ?? SERVER_WATCH_SECONDS.default) * 1000,
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

  private async shutdown(): Promise<void> {
    this.stopping = true
    this.shutdownController.abort()
    if (this.children.size === 0) {
      // Failed before starting anything: leave the previous state.json as it was.
      await releasePidFile(this.layout).catch(() => {})
      return
    }
    // handover.ts: when systemd restarts the unit, the standby stays for the next supervisor.
    const handingOver = await this.handover.prepareHandover(this.ready && !this.failure && !this.children.has('nginx'))
    for (const name of SHUTDOWN_ORDER) {
      const child = this.children.get(name)
      if (!child) continue
      try {
        await child.stop()
      } catch (error) {
        this.log('error', 'stop-failed', `stopping ${label(name)} failed: ${messageOf(error)}`, name)
      }
    }
    if (!handingOver) await this.handover.stopStandby()
    await this.handover.retireAdopted(false)
    const state = this.snapshot()
    state.supervisor.stoppedAt = new Date().toISOString()
    await this.writeState(state)
    await releasePidFile(this.layout).catch(() => {})
    this.log(
      'info',
      'stopped',
      'hubctl stopped the proxy, the hub' +
        (this.children.has('nginx') ? ' and nginx' : '') +
        '; user servers, if any, keep running' +
        (handingOver ? ', and the standby proxy serves them until the next supervisor takes over' : ''),
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

/** The major version of "6.1.1" (0 when unknown). */
function majorVersion(version: string | undefined): number {
  const major = Number.parseInt(version ?? '', 10)
  return Number.isFinite(major) ? major : 0
}
