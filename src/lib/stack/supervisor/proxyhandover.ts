import type {ChildProcess} from 'node:child_process'
import {randomBytes} from 'node:crypto'
import fs from 'node:fs/promises'

import {writeFileAtomic} from '../../files/atomic.js'
import {errnoCode, messageOf} from '../../errors.js'
import type {SecretStore} from '../../files/secrets.js'
import {HubApi, keepAlive, proxyApiUrl} from '../hubapi.js'
import {PortOwner, portAnswers} from '../listeners.js'
import {procStartTime} from '../../processes.js'
import {ProxyRoute, proxyRoutes} from '../servers.js'
import {proxySpec} from '../children.js'
import {ChildName, SpawnFn, SupervisorState, round, terminatePid} from '../state.js'
import {AdoptedStandby, HandoverRecord, handedOverStandby, systemdRestarting} from '../handover.js'
import {SupervisedChild, spawnWithLog} from './child.js'
import type {SupervisorContext} from './context.js'
import {NO_RESTARTS, RestartHistory, nextRestart, started} from './policy.js'
import type {Readiness} from './readiness.js'

/*
 * The proxy's handover: the standby proxy (always running beside the proxy, its routes kept in step
 * at each health tick), the proxy replaced by one seeded with the current routes (a new token, a
 * crash), the routes snapshot it is seeded with, and the hub asked to restore every route after a
 * proxy start. It owns the token the running proxy was started with.
 */

/** What the handover reads of the other parts (the orchestrator gives it). */
export interface HandoverParts {
  child(name: ChildName): SupervisedChild
  readonly readiness: Readiness
  /** The hub's REST API (made once the start was prepared). */
  api(): HubApi | undefined
  readonly secrets: Pick<SecretStore, 'read'>
  readonly spawn: SpawnFn
  readonly ownsPort: (port: number, pid: number | undefined) => Promise<PortOwner>
  /** Keep the standby proxy running beside the proxy. */
  readonly standbyEnabled: boolean
  /** The programs are the tests' (SupervisorDeps.specs): a crashed proxy is not seeded. */
  readonly injectedSpecs: boolean
  /** Whether systemd is restarting the unit at this stop (handover.ts's systemdRestarting; tests replace it). */
  readonly restarting?: () => Promise<boolean>
}

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

export class ProxyHandover {
  /** The token the running proxy was started with (the hub is told it after each proxy start). */
  private proxyToken = ''
  private routesSnapshot?: Record<string, ProxyRoute>
  private standby?: Standby
  private history: RestartHistory = NO_RESTARTS
  private lastRouteSync: SupervisorState['lastRouteSync'] = null
  // handover.ts: the standby a supervisor stopped by `systemctl restart` left to this one, until
  // this one's own replaces it; and the standby this one leaves to the next.
  private adopted?: AdoptedStandby
  private record?: HandoverRecord
  /** A handover is replacing the proxy: the health tick leaves the standby's routes alone meanwhile. */
  private handingOver = false

  constructor(
    private readonly ctx: SupervisorContext,
    private readonly parts: HandoverParts,
  ) {}

  /** The proxy is first started with `token` (from its file). */
  useToken(token: string): void {
    this.proxyToken = token
  }

  /** The standby a previous supervisor handed over, while this one has adopted it. */
  get adoptedStandby(): AdoptedStandby | undefined {
    return this.adopted
  }

  /** The standby's pid, while it runs. */
  get standbyPid(): number | undefined {
    return this.standby?.pid
  }

  /** Its part of state.json. */
  state(): Pick<SupervisorState, 'lastRouteSync' | 'standby' | 'handover'> {
    return {
      lastRouteSync: this.lastRouteSync,
      standby: this.standby
        ? {pid: this.standby.pid, startTime: this.standby.startTime, restarts: this.history.restarts}
        : this.adopted
          ? {pid: this.adopted.pid, startTime: this.adopted.startTime}
          : null,
      ...(this.record ? {handover: this.record} : {}),
    }
  }

  // ---------------------------------------------------------------------------------------------
  // handover.ts's hooks: `systemctl restart` without a lost request.

  /** A standby the previous supervisor (`previous`, gone) left running for this restart is adopted; whether it was. */
  async adopt(previous: SupervisorState): Promise<boolean> {
    this.adopted = await handedOverStandby(previous, {now: Date.now()})
    if (this.adopted)
      this.ctx.log(
        'info',
        'handover',
        `adopting the standby proxy (pid ${this.adopted.pid}) the previous supervisor left running for this restart: it serves until this supervisor's proxy runs`,
        'proxy',
        this.adopted.pid,
      )
    return this.adopted !== undefined
  }

  /** The first proxy: with an adopted standby, seeded with the routes handed over (the seed file). */
  async launchFirstProxy(): Promise<void> {
    const proxy = this.parts.child('proxy')
    const seeded =
      this.adopted && !this.parts.injectedSpecs && (await fs.stat(this.ctx.layout.proxySeed).catch(() => undefined))
    if (!seeded) return proxy.launch()
    await this.launchSeeded(proxy, this.ctx.layout.proxySeed)
  }

  /**
   * Stop the adopted standby: at start (`whenProxyAnswers`) once this supervisor's proxy answers on
   * its port (nginx sends it everything from then on), or at once when this supervisor stops.
   */
  async retireAdopted(whenProxyAnswers: boolean): Promise<void> {
    const adopted = this.adopted
    if (!adopted) return
    const {clock, timings} = this.ctx
    if (whenProxyAnswers) {
      const deadline = clock.now() + 30_000
      while (!this.ctx.stopping() && clock.now() < deadline && !(await portAnswers(this.ctx.settings.ports.proxy)))
        await clock.sleep(timings.pollMs, this.ctx.shutdown)
      if (this.ctx.stopping()) return
      await fs.rm(this.ctx.layout.proxySeed, {force: true})
    }
    await terminatePid(adopted.pid, adopted.startTime, {
      clock,
      timeoutMs: timings.stopTimeoutMs,
      pollMs: timings.pollMs,
    })
    this.adopted = undefined
    this.ctx.log('info', 'handover', `the adopted standby proxy stopped (pid ${adopted.pid})`, 'proxy', adopted.pid)
  }

  /**
   * At a stop: when systemd is restarting the unit (and the stack was ready, with its standby and
   * without an nginx of its own: `eligible`), bring the standby's routes in step with the proxy's,
   * write them to the seed file for the next proxy, and record the handover; the standby is then
   * left running.
   */
  async prepareHandover(eligible: boolean): Promise<boolean> {
    const standby = this.standby
    if (!eligible || !standby?.startTime) return false
    const restarting = this.parts.restarting ?? (() => systemdRestarting({layout: this.ctx.layout, env: this.ctx.env}))
    if (!(await restarting().catch(() => false))) return false
    try {
      const routes = await this.currentRoutes()
      await this.syncStandby(routes)
      await this.writeSeed(routes)
      this.record = {
        at: new Date().toISOString(),
        standby: {pid: standby.pid, startTime: standby.startTime},
        routes: Object.keys(routes).length,
      }
    } catch (error) {
      this.ctx.log('warn', 'handover', `could not hand the standby proxy over: ${messageOf(error)}; stopping it`)
      return false
    }
    this.ctx.log(
      'info',
      'handover',
      `systemd restarts the unit: the standby proxy (pid ${standby.pid}) keeps serving ${this.record.routes} route(s) until the next supervisor takes over`,
      'proxy',
      standby.pid,
    )
    return true
  }

  /** After the proxy (re)starts: once its API listens, have the hub re-add every route at once. */
  async restoreRoutes(): Promise<void> {
    const began = this.ctx.clock.now()
    if (!(await this.parts.readiness.waitForProxyApi())) return
    await fs.rm(this.ctx.layout.proxySeed, {force: true})
    const hub = this.parts.child('hub')
    if (!hub.running) {
      this.ctx.log('info', 'routes', 'the hub is not running: it adds the routes itself when it starts')
      return
    }
    const deadline = this.ctx.clock.now() + this.ctx.timings.healthTimeoutMs
    let lastError = ''
    while (!this.ctx.stopping() && this.ctx.clock.now() < deadline) {
      try {
        // PATCH, not POST: the hub also learns the token this proxy runs with (it may have changed).
        await this.parts.api()?.updateProxy({auth_token: this.proxyToken})
        const seconds = round((this.ctx.clock.now() - began) / 1000)
        this.lastRouteSync = {at: new Date().toISOString(), ok: true, seconds}
        this.ctx.log(
          'info',
          'routes',
          `the hub restored every route in the proxy (${seconds}s after the proxy started)`,
        )
        await this.ctx.writeState()
        return
      } catch (error) {
        lastError = messageOf(error)
        if ((error as {status?: number}).status === 403 || (error as {status?: number}).status === 401) break
      }
      await this.ctx.clock.sleep(this.ctx.timings.pollMs * 2, this.ctx.shutdown)
    }
    if (this.ctx.stopping()) return
    this.lastRouteSync = {
      at: new Date().toISOString(),
      ok: false,
      seconds: round((this.ctx.clock.now() - began) / 1000),
    }
    this.ctx.log('error', 'routes', `could not have the hub restore the proxy's routes: ${lastError}`)
    await this.ctx.writeState()
  }

  /** The hub reads the proxy's token from its file when it starts: the proxy must run with that one. */
  async ensureProxyTokenCurrent(): Promise<void> {
    let fileToken: string
    try {
      fileToken = await this.parts.secrets.read('proxyAuthToken')
    } catch {
      return
    }
    if (fileToken !== this.proxyToken) {
      this.ctx.log(
        'warn',
        'proxy-token',
        'the proxy token file changed since the proxy started: replacing the proxy first',
      )
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
  async handoverProxy(token: string): Promise<void> {
    const proxy = this.parts.child('proxy')
    const began = this.ctx.clock.now()
    this.handingOver = true
    try {
      await this.replaceProxy(proxy, token, began)
    } finally {
      this.handingOver = false
    }
  }

  private async replaceProxy(proxy: SupervisedChild, token: string, began: number): Promise<void> {
    const routes = await this.currentRoutes()
    // The freshest table: a crash of the new proxy comes back with it too.
    if (Object.keys(routes).length > 0) this.routesSnapshot = routes
    const seedFile = await this.writeSeed(routes)
    try {
      if (this.parts.standbyEnabled) {
        if (!this.standby) await this.startStandby()
        await this.syncStandby(routes)
      }
      if (this.ctx.stopping()) return
      await proxy.stop()
      if (this.ctx.stopping()) return
      this.proxyToken = token
      await this.launchSeeded(proxy, seedFile)
      if (!(await this.parts.readiness.waitForProxyApi()))
        throw new Error(
          `the new proxy did not answer on port ${this.ctx.settings.ports.proxyApi}; see ${this.ctx.layout.proxyLog}`,
        )
      // Its ports were free while it restarted: another program may have taken one.
      for (const key of ['proxy', 'proxyApi'] as const) {
        const owner = await this.parts.ownsPort(this.ctx.settings.ports[key], proxy.pid)
        if (!owner.owned) throw new Error(`the proxy's port was taken while it restarted: ${owner.problem}`)
      }
      await this.parts.api()?.updateProxy({auth_token: token})
      this.lastRouteSync = {
        at: new Date().toISOString(),
        ok: true,
        seconds: round((this.ctx.clock.now() - began) / 1000),
      }
      this.ctx.log(
        'info',
        'handover',
        `the proxy was replaced with ${Object.keys(routes).length} route(s) in place (${round((this.ctx.clock.now() - began) / 1000)}s)`,
        'proxy',
        proxy.pid,
      )
    } finally {
      await fs.rm(seedFile, {force: true})
      await this.ctx.writeState()
    }
  }

  /**
   * A proxy that crashed comes back with the routes it had at the last health tick (seeded store),
   * so users' routes answer as soon as it listens; the hub then re-checks every route (PATCH).
   */
  async launchProxyWithKnownRoutes(proxy: SupervisedChild): Promise<void> {
    const routes = this.routesSnapshot
    if (this.parts.injectedSpecs || !routes || Object.keys(routes).length <= 1) return proxy.launch()
    await this.launchSeeded(proxy, await this.writeSeed(routes))
  }

  /** The routes a replacement proxy starts with (0600: user names and their servers' addresses). */
  private async writeSeed(routes: Record<string, unknown>): Promise<string> {
    await writeFileAtomic(this.ctx.layout.proxySeed, `${JSON.stringify({routes})}\n`, {mode: 0o600})
    return this.ctx.layout.proxySeed
  }

  /** Start the proxy with the current token and the routes in `seedFile`; later (crash) restarts start empty. */
  private async launchSeeded(proxy: SupervisedChild, seedFile: string): Promise<void> {
    proxy.setSpec(proxySpec(this.ctx.layout, this.ctx.settings, this.proxyToken, {baseEnv: this.ctx.env}))
    await proxy.launch(
      proxySpec(this.ctx.layout, this.ctx.settings, this.proxyToken, {baseEnv: this.ctx.env, seedFile}),
    )
  }

  /** The running proxy's routing table, with the token it runs with. */
  private readRoutes(timeoutMs: number): Promise<Record<string, ProxyRoute>> {
    return proxyRoutes(
      proxyApiUrl(this.ctx.settings.ports),
      async () => this.proxyToken,
      this.ctx.fetch,
      timeoutMs,
      () => this.parts.readiness.verifyOwnPort('proxy', this.ctx.settings.ports.proxyApi, "the proxy's token"),
    )()
  }

  /**
   * The health tick's part: the proxy's routing table read again (kept for a crashed proxy's
   * restart), and the standby's brought in step with it. Only with a table just read from the
   * running proxy, and never during a handover: an older table would take from the standby a route
   * the handover has just given it, while the standby is the one answering (CI at 7207747: a tick
   * between the proxy's stop and its replacement's start deleted the user's route, added after the
   * previous tick, from the standby, and her requests went to the hub for 0.6 s).
   */
  async tick(): Promise<void> {
    if (this.handingOver || !(await this.refreshRoutesSnapshot()) || this.handingOver) return
    await this.syncStandby()
  }

  /** The proxy's routing table read into the snapshot; whether it was (not while the proxy is down or replaced). */
  private async refreshRoutesSnapshot(): Promise<boolean> {
    const proxy = this.parts.child('proxy')
    if (!proxy?.running || proxy.restartPending) return false
    try {
      this.routesSnapshot = await this.readRoutes(2000)
      return true
    } catch {
      // The proxy is restarting: keep the previous table.
      return false
    }
  }

  /**
   * The routes to hand over: the proxy's, or when its API does not answer (a loaded machine), those
   * of the last health tick; empty only without either (the hub re-adds them after). A new proxy
   * seeded with none would send every user to the hub until then.
   */
  private async currentRoutes(): Promise<Record<string, ProxyRoute>> {
    try {
      const read = await this.readRoutes(5000)
      if (Object.keys(read).length > 0) return read
    } catch (error) {
      this.ctx.log(
        'warn',
        'handover',
        `could not read the proxy's routes (${messageOf(error)}): ${this.routesSnapshot ? "handing over the last health tick's" : 'the hub re-adds them after the handover'}`,
      )
    }
    return this.routesSnapshot ?? {}
  }

  /**
   * Start the standby proxy on the standby ports. It runs as long as the stack does, so that the
   * port nginx falls back to is always held by hubctl's own process. Its API token is its own,
   * made here and kept in memory and in its environment only (hubctl alone talks to its API).
   */
  async startStandby(): Promise<void> {
    const token = randomBytes(32).toString('hex')
    const spec = proxySpec(this.ctx.layout, this.ctx.settings, token, {baseEnv: this.ctx.env, standby: true})
    const proc = await spawnWithLog(this.parts.spawn, spec)
    this.history = started(this.history, this.ctx.clock.now())
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
    this.ctx.log(
      'info',
      'standby',
      `standby proxy started (pid ${proc.pid}) on port ${this.ctx.settings.ports.proxyStandby}`,
      'proxy',
      proc.pid,
    )
    await this.ctx.writeState()
    if (
      !(await this.parts.readiness.waitForProxyApi(30_000, this.ctx.settings.ports.proxyStandbyApi, () => running)) ||
      !(await portAnswers(this.ctx.settings.ports.proxyStandby))
    ) {
      throw new Error(`the standby proxy did not start; see ${this.ctx.layout.proxyLog}`)
    }
    if (this.routesSnapshot) await this.syncStandby()
  }

  /** The standby exited: unless hubctl stopped it, start it again (the same backoff as a child's). */
  private onStandbyExit(standby: Standby, how: string): void {
    if (this.standby === standby) this.standby = undefined
    if (standby.intentional || this.ctx.stopping()) return
    // The same backoff as a child's; a standby that keeps exiting is said at each exit, not as a crash loop.
    const {history, delayMs: delay, ranMs} = nextRestart(this.history, this.ctx.clock.now(), this.ctx.timings)
    this.history = history
    this.ctx.log(
      'warn',
      'exited',
      `the standby proxy (pid ${standby.pid}) ${how} after ${round(ranMs / 1000)}s; restart ${history.restarts} in ${round(delay / 1000)}s`,
      'proxy',
      standby.pid,
    )
    void this.ctx.writeState()
    void this.ctx.clock
      .sleep(delay, this.ctx.shutdown)
      .then(async () => {
        if (this.ctx.stopping() || this.standby) return
        await this.startStandby()
      })
      .catch((error: unknown) =>
        this.ctx.log('error', 'restart-failed', `restarting the standby proxy failed: ${messageOf(error)}`, 'proxy'),
      )
  }

  /**
   * Bring the standby's routing table in step with the proxy's (`routes`, by default the last
   * health tick's): add or replace what differs, remove what the proxy no longer has.
   */
  async syncStandby(routes = this.routesSnapshot): Promise<void> {
    const standby = this.standby
    // An empty table is a proxy that did not answer (its own has the default route, '/'): keep the standby's.
    if (!standby || !routes || Object.keys(routes).length === 0) return
    const verify = () =>
      this.parts.readiness.verifyOwnPort(
        'standby',
        this.ctx.settings.ports.proxyStandbyApi,
        "the standby proxy's token",
      )
    const base = proxyApiUrl({proxyApi: this.ctx.settings.ports.proxyStandbyApi})
    const current = await proxyRoutes(base, async () => standby.token, this.ctx.fetch, 2000, verify)()
    const send = async (method: 'POST' | 'DELETE', routePath: string, body?: unknown) => {
      await verify()
      const response = await keepAlive(
        2000,
        this.ctx.fetch(`${base}/api/routes${routePath}`, {
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

  async stopStandby(): Promise<void> {
    const standby = this.standby
    if (!standby) return
    standby.intentional = true
    standby.proc.kill('SIGTERM')
    const timeout = new AbortController()
    const inTime = await Promise.race([
      standby.exited.then(() => true),
      this.ctx.clock.sleep(this.ctx.timings.stopTimeoutMs, timeout.signal).then(() => false),
    ])
    timeout.abort()
    if (!inTime) {
      standby.proc.kill('SIGKILL')
      await standby.exited
    }
    this.standby = undefined
    this.ctx.log('info', 'stopped', `standby proxy stopped (pid ${standby.pid})`, 'proxy', standby.pid)
  }
}
