import {keepAlive, proxyApiUrl} from './hubapi.js'
import type {FetchLike, HubApi, ServerInfo} from './hubapi.js'
import {formatDuration} from '../duration.js'
import {messageOf} from '../errors.js'

/*
 * hubctl follows the user servers the hub spawns: it lists them through the hub's REST API, checks
 * each ready one's route, and reports them; with a cull time it asks the hub to stop those idle
 * longer than that (only when jupyterhub-idle-culler cannot run, culler.ts, or with the deprecated
 * `start --cull-idle`); and it cleans up, through the API, a server the hub believes running whose
 * process is gone.
 *
 * A route is checked where the proxy would send a request: hubctl reads configurable-http-proxy's
 * routing table (GET /api/routes with the proxy's token) and asks the route's target for
 * `<server url>api`, which a Jupyter server answers 200 with its version and without a login.
 * The answer counts only from the process the hub started for that server (`verifyTarget`, the
 * proof of listeners.ts: another local user can bind the port of a server that died and answer as
 * a Jupyter server would). Not through the proxy's public port: the proxy records every successful request as activity of
 * the route, the hub copies that into the server's last activity every 5 minutes, and a probe
 * every 30 s would then keep every server "active" for ever (no idle culling, hubctl's or
 * jupyterhub-idle-culler's). A direct, unauthenticated request is not activity to the server either.
 *
 * "Gone" is decided without the hub's server state (that needs admin:server_state, which hubctl's
 * service does not have and should not: for some spawners the state holds credentials). A
 * connection *refused* at the route's target means nothing listens on the server's port: hubctl
 * first has the hub re-check the proxy's routes (POST /hub/api/proxy: a route left pointing at an
 * old port is corrected), and after `goneAfterRefusals` such checks in a row (default 3, one check
 * per `intervalMs`) asks the hub to stop the server (DELETE /hub/api/users/NAME/server), which
 * clears its record and its route; the user can start it again. A timeout, a reset or any HTTP
 * answer is never taken for "gone" (a busy server is slow, not dead). For the LocalProcessSpawner
 * the hub's own poll usually notices a dead pid first; this covers what it does not (polling
 * turned off, a pid reused by another process, a spawner whose poll cannot see the process, a
 * server that stopped listening).
 *
 * Nothing here imports oclif: the hub API, the clock and fetch are parameters.
 */

export interface WatchedServer extends ServerInfo {
  /** Seconds since its last activity (or its start), when the hub said either. */
  idleSeconds: number | null
  /** Whether the server answered at its route's target in the proxy; null when not probed (not ready yet, stopping) or the proxy's table could not be read. */
  routeOk: boolean | null
  /** What the failed probe saw. */
  routeProblem?: string
  /** Checks in a row in which its own port refused connections. */
  refusals: number
}

export interface ServerAction {
  at: string
  user: string
  name: string
  action: 'culled' | 'cleaned-up'
  reason: string
  result: 'stopped' | 'pending' | 'failed'
  error?: string
}

export interface ServersReport {
  at: string
  /** false when the hub's API could not be asked (the servers are then those of the previous report). */
  ok: boolean
  error?: string
  cullIdleSeconds: number | null
  servers: WatchedServer[]
  /** The most recent culls and clean-ups, newest last. */
  actions: ServerAction[]
}

/** A route of configurable-http-proxy's table (GET /api/routes). */
export interface ProxyRoute {
  target: string
  user?: string
  server_name?: string
}

export type ProxyRoutes = () => Promise<Record<string, ProxyRoute>>

export interface ServerWatcherOptions {
  api: Pick<HubApi, 'listServers' | 'stopServer'> & Partial<Pick<HubApi, 'syncProxy'>>
  /** The proxy's routing table: where each server's route leads. */
  routes: ProxyRoutes
  clock: {now(): number}
  fetch: FetchLike
  /** Stop servers idle longer than this; undefined: never. */
  cullIdleMs?: number
  /** Stop servers running longer than this, however active; undefined: never. */
  cullMaxAgeMs?: number
  /** Minimum time between two checks; tick() before that returns nothing. Default 30 s. */
  intervalMs?: number
  /** Refused checks in a row before a server is taken for gone. Default 3. */
  goneAfterRefusals?: number
  probeTimeoutMs?: number
  /** Probes at once. Default 8. */
  concurrency?: number
  log?: (level: 'info' | 'warn' | 'error', event: string, message: string) => void
  /**
   * Whether the listener at a route's target is the server's own process (listeners.ts): undefined
   * when it is, else the problem. Without it, any Jupyter-like answer there counts.
   */
  verifyTarget?: (server: ServerInfo, target: string) => Promise<string | undefined>
}

const MAX_ACTIONS = 20

/** The probe's verdict on one server (routeOk null: could not be told). */
type Probe = {routeOk: true} | {routeOk: false | null; problem: string; refused: boolean}

export class ServerWatcher {
  private readonly intervalMs: number
  private readonly goneAfter: number
  private readonly probeTimeoutMs: number
  private readonly concurrency: number
  private readonly log: NonNullable<ServerWatcherOptions['log']>
  private readonly refusals = new Map<string, number>()
  private actions: ServerAction[] = []
  private last?: ServersReport
  private lastCheckAt = Number.NEGATIVE_INFINITY

  constructor(private readonly options: ServerWatcherOptions) {
    this.intervalMs = options.intervalMs ?? 30_000
    this.goneAfter = options.goneAfterRefusals ?? 3
    this.probeTimeoutMs = options.probeTimeoutMs ?? 3000
    this.concurrency = options.concurrency ?? 8
    this.log = options.log ?? (() => {})
  }

  /** The last report, if any. */
  get report(): ServersReport | undefined {
    return this.last
  }

  /** check() when `intervalMs` passed since the last one; undefined otherwise. */
  async tick(): Promise<ServersReport | undefined> {
    if (this.options.clock.now() - this.lastCheckAt < this.intervalMs) return undefined
    return this.check()
  }

  /** List, probe, cull, clean up; never throws (a failure is in the report). */
  async check(): Promise<ServersReport> {
    const now = this.options.clock.now()
    this.lastCheckAt = now
    const at = new Date(now).toISOString()
    const cullIdleSeconds = this.options.cullIdleMs === undefined ? null : Math.round(this.options.cullIdleMs / 1000)
    let servers: ServerInfo[]
    try {
      servers = await this.options.api.listServers()
    } catch (error) {
      const message = messageOf(error)
      this.last = {
        ...(this.last ?? {servers: [], actions: []}),
        at,
        ok: false,
        error: message,
        cullIdleSeconds,
        actions: [...this.actions],
      }
      return this.last
    }
    const probes = await this.probeAll(servers)
    const watched: WatchedServer[] = []
    const seen = new Set<string>()
    for (const [index, server] of servers.entries()) {
      const key = serverKey(server)
      seen.add(key)
      const probe = probes[index]
      let refusals = 0
      if (probe && !probe.routeOk && probe.refused) refusals = (this.refusals.get(key) ?? 0) + 1
      this.refusals.set(key, refusals)
      const activity = Date.parse(server.lastActivity ?? server.started ?? '')
      watched.push({
        user: server.user,
        name: server.name,
        url: server.url,
        ready: server.ready,
        pending: server.pending,
        lastActivity: server.lastActivity,
        started: server.started,
        idleSeconds: Number.isNaN(activity) ? null : Math.max(0, Math.round((now - activity) / 1000)),
        routeOk: probe ? probe.routeOk : null,
        ...(probe && !probe.routeOk ? {routeProblem: probe.problem} : {}),
        refusals,
      })
    }
    for (const key of this.refusals.keys()) if (!seen.has(key)) this.refusals.delete(key)

    for (const server of watched) {
      if (!server.ready || server.pending) continue
      if (server.refusals >= this.goneAfter) {
        const reason = `its route's target refused ${server.refusals} checks in a row: its process is gone`
        await this.stop(server, 'cleaned-up', reason, at)
        this.refusals.delete(serverKey(server))
      } else if (
        this.options.cullIdleMs !== undefined &&
        server.idleSeconds !== null &&
        server.idleSeconds * 1000 > this.options.cullIdleMs
      ) {
        await this.stop(
          server,
          'culled',
          `idle for ${formatDuration(server.idleSeconds * 1000)} (more than ${formatDuration(this.options.cullIdleMs)})`,
          at,
        )
      } else if (this.options.cullMaxAgeMs !== undefined && server.started) {
        const age = now - Date.parse(server.started)
        if (age > this.options.cullMaxAgeMs)
          await this.stop(
            server,
            'culled',
            `running for ${formatDuration(age)} (more than ${formatDuration(this.options.cullMaxAgeMs)})`,
            at,
          )
      }
    }
    this.last = {at, ok: true, cullIdleSeconds, servers: watched, actions: [...this.actions]}
    return this.last
  }

  private async stop(server: WatchedServer, action: ServerAction['action'], reason: string, at: string): Promise<void> {
    const who = server.name ? `${server.user}/${server.name}` : server.user
    let record: ServerAction
    try {
      const result = await this.options.api.stopServer(server.user, server.name)
      record = {at, user: server.user, name: server.name, action, reason, result}
      server.pending = 'stop'
      this.log(
        'info',
        action,
        `${action === 'culled' ? 'culled' : 'cleaned up'} the server of ${who}: ${reason} (${result})`,
      )
    } catch (error) {
      record = {at, user: server.user, name: server.name, action, reason, result: 'failed', error: messageOf(error)}
      this.log('warn', action, `could not stop the server of ${who} (${reason}): ${messageOf(error)}`)
    }
    this.actions = [...this.actions, record].slice(-MAX_ACTIONS)
  }

  /** Probe every ready server, `concurrency` at a time; undefined for those not probed. */
  private async probeAll(servers: ServerInfo[]): Promise<Array<Probe | undefined>> {
    const results: Array<Probe | undefined> = servers.map(() => undefined)
    const todo = servers
      .map((server, index) => ({server, index}))
      .filter(({server}) => server.ready && !server.pending && server.url)
    if (todo.length === 0) return results
    let table: Record<string, ProxyRoute>
    try {
      table = await this.options.routes()
    } catch (error) {
      const problem = `the proxy's routing table could not be read (${messageOf(error)})`
      for (const {index} of todo) results[index] = {routeOk: null, problem, refused: false}
      return results
    }
    const next = async (): Promise<void> => {
      for (let item = todo.shift(); item; item = todo.shift()) {
        results[item.index] = await this.probe(item.server, table)
      }
    }
    await Promise.all(Array.from({length: Math.min(this.concurrency, todo.length)}, next))
    if (
      results.some((result) => result !== undefined && result.routeOk !== true && result.refused) &&
      this.options.api.syncProxy
    ) {
      // A route may point at a port the server left: the hub corrects its routes before anything is taken for gone.
      await this.options.api
        .syncProxy()
        .catch((error: unknown) =>
          this.log('warn', 'routes', `could not have the hub re-check the proxy's routes: ${messageOf(error)}`),
        )
    }
    return results
  }

  /** The route's target, asked directly for `<server url>api`: a Jupyter server answers 200 with its version. */
  private async probe(server: ServerInfo, table: Record<string, ProxyRoute>): Promise<Probe> {
    const route = findRoute(table, server)
    if (!route) return {routeOk: false, problem: `the proxy has no route for ${server.url}`, refused: false}
    const target = route.target.replace(/\/+$/, '')
    const answer = await this.get(`${target}${server.url}api`)
    if (answer.status === 200 && answer.jupyter) {
      // A Jupyter-like answer is not enough: another local user may hold the port the server left.
      const problem = await this.options.verifyTarget?.(server, target)
      return problem ? {routeOk: false, problem, refused: false} : {routeOk: true}
    }
    if (answer.status !== undefined)
      return {
        routeOk: false,
        problem: `its route's target ${target} answered ${answer.status}${answer.status === 200 ? " without a Jupyter server's version" : ''}`,
        refused: false,
      }
    const refused = answer.error === 'ECONNREFUSED'
    return {
      routeOk: false,
      problem: `its route's target ${target} ${refused ? 'refused the connection' : `did not answer (${answer.error})`}`,
      refused,
    }
  }

  private async get(url: string): Promise<{status?: number; jupyter?: boolean; error?: string}> {
    try {
      const response = await keepAlive(
        this.probeTimeoutMs,
        this.options.fetch(url, {
          redirect: 'manual',
          signal: AbortSignal.timeout(this.probeTimeoutMs),
          headers: {Accept: 'application/json'},
        }),
      )
      let jupyter = false
      if (response.status === 200) {
        try {
          jupyter = typeof ((await response.json()) as {version?: unknown}).version === 'string'
        } catch {
          jupyter = false
        }
      } else {
        await response.body?.cancel()
      }
      return {status: response.status, jupyter}
    } catch (error) {
      return {error: errorCode(error)}
    }
  }
}

/** The route of a server in the proxy's table: by its path, or by the user and server name the hub stores with it. */
export function findRoute(
  table: Record<string, ProxyRoute>,
  server: Pick<ServerInfo, 'user' | 'name' | 'url'>,
): ProxyRoute | undefined {
  const exact = table[server.url] ?? table[server.url.replace(/\/$/, '')]
  if (exact?.target) return exact
  return Object.values(table).find(
    (route) => route.target && route.user === server.user && (route.server_name ?? '') === server.name,
  )
}

/** Reads configurable-http-proxy's routing table with its token (read afresh each time: it may be rotated). */
export function proxyRoutes(
  apiUrl: string,
  token: () => Promise<string>,
  fetchFn: FetchLike,
  timeoutMs = 3000,
  verify?: () => Promise<void>,
): ProxyRoutes {
  return async () => {
    // The token goes only to the proxy hubctl started (listeners.ts): `verify` throws otherwise.
    await verify?.()
    const response = await keepAlive(
      timeoutMs,
      fetchFn(`${apiUrl.replace(/\/+$/, '')}/api/routes`, {
        headers: {Authorization: `token ${await token()}`},
        signal: AbortSignal.timeout(timeoutMs),
        redirect: 'manual',
      }),
    )
    if (!response.ok) {
      await response.body?.cancel()
      throw new Error(`the proxy's API answered ${response.status}`)
    }
    return (await response.json()) as Record<string, ProxyRoute>
  }
}

/** The watcher the supervisor runs: the proxy's routing table on its API port, read with its token. */
export function createServerWatcher(options: {
  ports: {proxyApi: number}
  api: ServerWatcherOptions['api']
  proxyToken: () => Promise<string>
  fetch: FetchLike
  clock: {now(): number}
  cullIdleMs?: number
  cullMaxAgeMs?: number
  intervalMs?: number
  log?: ServerWatcherOptions['log']
  /** Throws unless the proxy's API port is held by the proxy hubctl started. */
  verifyProxy?: () => Promise<void>
  /** Undefined when the listener at a server's route target is that server's own process; else the problem. */
  verifyTarget: NonNullable<ServerWatcherOptions['verifyTarget']>
}): ServerWatcher {
  return new ServerWatcher({
    api: options.api,
    routes: proxyRoutes(proxyApiUrl(options.ports), options.proxyToken, options.fetch, 3000, options.verifyProxy),
    clock: options.clock,
    fetch: options.fetch,
    cullIdleMs: options.cullIdleMs,
    cullMaxAgeMs: options.cullMaxAgeMs,
    intervalMs: options.intervalMs,
    log: options.log,
    verifyTarget: options.verifyTarget,
  })
}

function serverKey(server: Pick<ServerInfo, 'user' | 'name' | 'started'>): string {
  // A server started anew is another server: its count of refusals starts again.
  return `${server.user}/${server.name}@${server.started ?? ''}`
}

function errorCode(error: unknown): string {
  const cause = (error as {cause?: {code?: string; cause?: {code?: string}}}).cause
  return cause?.code ?? cause?.cause?.code ?? (error as Error).name ?? 'error'
}

/** One server as `hubctl status` shows it: the hub's live view, with the supervisor's last probe of its route. */
export type StatusServer = Pick<ServerInfo, 'user' | 'name' | 'url' | 'ready' | 'lastActivity'> & {
  /** true: answered at its route's target; false: did not (routeProblem says why); null: not probed yet. */
  routeOk: boolean | null
  routeProblem?: string
  /** --spawner slurm: the server's jobs in the queue (squeue; a user's default server has one). */
  slurmJobs?: Array<{id: string; state: string; node: string; reason: string}>
}

/** What the supervisor's watcher last did, for `hubctl status`. */
export interface ServerWatchSummary {
  checkedAt: string
  ok: boolean
  error?: string
  cullIdleSeconds: number | null
  actions: ServerAction[]
}

/** The live list of servers, each with its last probe from the running supervisor's report (when there is one). */
export function serversForStatus(
  live: ServerInfo[],
  report?: ServersReport | null,
): {servers: StatusServer[]; watch?: ServerWatchSummary} {
  const probed = new Map(
    (report?.servers ?? []).map((server) => [`${server.user}/${server.name}@${server.started ?? ''}`, server]),
  )
  const servers = live.map(({user, name, url, ready, lastActivity, started}) => {
    const seen = probed.get(`${user}/${name}@${started ?? ''}`)
    return {
      user,
      name,
      url,
      ready,
      lastActivity,
      routeOk: seen?.routeOk ?? null,
      ...(seen?.routeProblem ? {routeProblem: seen.routeProblem} : {}),
    }
  })
  if (!report) return {servers}
  return {
    servers,
    watch: {
      checkedAt: report.at,
      ok: report.ok,
      ...(report.error ? {error: report.error} : {}),
      cullIdleSeconds: report.cullIdleSeconds,
      actions: report.actions,
    },
  }
}
