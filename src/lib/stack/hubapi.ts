import {ExitCode, HubctlError} from '../errors.js'
import {Layout} from '../config/layout.js'
import {verifyRecordedListener} from './listeners.js'
import {SecretStore} from '../files/secrets.js'
import type {Settings} from '../config/settings.js'

/** How long a spawn request may take to be answered: JupyterHub's slow_spawn_timeout (10 s) and a margin for a loaded machine. */
const SPAWN_ANSWER_MS = 60_000

/** One user server as hubctl reports it. */
export interface ServerInfo {
  user: string
  /** '' for the default server. */
  name: string
  url: string
  ready: boolean
  /** 'spawn', 'stop' or null, as the hub says. */
  pending: string | null
  lastActivity: string | null
  started: string | null
}

export interface HubUser {
  name: string
  admin: boolean
  lastActivity: string | null
  servers: ServerInfo[]
}

export type FetchLike = (input: string, init?: RequestInit) => Promise<Response>

export interface HubApiOptions {
  /** http://127.0.0.1:<hub port>/hub/api */
  baseUrl: string
  /** The hubctl service's token; read lazily, never logged. */
  token: string | (() => Promise<string>)
  /**
   * Tried once when the hub refuses `token` (403): the previous token, kept as a backup by
   * `hubctl secrets rotate`, which a hub not yet restarted after an interrupted rotation still uses.
   */
  fallbackToken?: () => Promise<string | undefined>
  /**
   * Told each time the fallback token was used and the hub accepted it: the hub still runs with
   * the previous token, which only a restart ends. Never silent: whoever passes `fallbackToken`
   * says (logs, warns) that it happened.
   */
  onFallback?: (request: string) => void
  /**
   * Called before every request, before the token is read: throws unless what listens on the
   * hub's port is the hub hubctl started (listeners.ts). A token is never sent to anything else.
   */
  verify: () => Promise<void>
  fetch?: FetchLike
  timeoutMs?: number
}

/** A hub API call that failed: the status and the hub's own message, never the token. */
export class HubApiError extends HubctlError {
  constructor(
    message: string,
    readonly status?: number,
    options: {fix?: string; cause?: unknown} = {},
  ) {
    super(message, {
      exitCode: ExitCode.RUNTIME,
      fix: options.fix ?? 'check that the hub runs (`hubctl status`) and read its log',
      cause: options.cause,
    })
    this.name = 'HubApiError'
  }
}

/** The warning when a request went through only with the previous API token. */
export function fallbackWarning(request: string): string {
  return `the hub refused hubctl's current API token for ${request} and accepted the previous one: it still runs with the token of before a rotation that did not finish. Fix: run \`hubctl restart\``
}

/** The hub's API base URL for these settings (the hub's own port, loopback). */
export function hubApiUrl(settings: Pick<Settings, 'ports'>): string {
  return `http://127.0.0.1:${settings.ports.hub}/hub/api`
}

/** configurable-http-proxy's REST API (the hub's c.ConfigurableHTTPProxy.api_url). */
export function proxyApiUrl(ports: Pick<Settings['ports'], 'proxyApi'>): string {
  return `http://127.0.0.1:${ports.proxyApi}`
}

/** The hub's health URL: through the hub's own port, or through the proxy. */
export function hubHealthUrl(settings: Pick<Settings, 'ports'>, via: 'hub' | 'proxy' = 'hub'): string {
  return `http://127.0.0.1:${via === 'hub' ? settings.ports.hub : settings.ports.proxy}/hub/health`
}

/**
 * The check a HubApi of another hubctl command (status, stop, rotate) makes before each request:
 * the hub recorded in the supervisor's state.json runs and is what listens on the hub's port.
 */
export function hubVerifier(layout: Layout, settings: Pick<Settings, 'ports'>): () => Promise<void> {
  return async () => {
    const problem = await verifyRecordedListener(layout, 'hub', settings.ports.hub)
    if (problem)
      throw new HubApiError(`hubctl did not send its API token: ${problem}`, undefined, {
        fix: `start the hub with \`hubctl start\`; if another program holds port ${settings.ports.hub}, stop it (\`ss -ltnp 'sport = :${settings.ports.hub}'\` names it)`,
      })
  }
}

/**
 * AbortSignal.timeout()'s timer does not keep Node running. When undici never settles a fetch (it
 * happens when the other end hangs up at once: a port held by another program), the command would
 * end with exit 13 and no output. A plain timer, cleared once the fetch settles, keeps the process
 * alive until the abort fires.
 */
export async function keepAlive<T>(timeoutMs: number, work: Promise<T>): Promise<T> {
  const timer = setTimeout(() => {}, timeoutMs + 100)
  try {
    return await work
  } finally {
    clearTimeout(timer)
  }
}

/** GET a health URL; true on a 2xx answer, false on anything else (never throws). */
export async function checkHealth(
  url: string,
  options: {fetch?: FetchLike; timeoutMs?: number} = {},
): Promise<boolean> {
  const doFetch = options.fetch ?? fetch
  try {
    const timeoutMs = options.timeoutMs ?? 2000
    const response = await keepAlive(
      timeoutMs,
      doFetch(url, {signal: AbortSignal.timeout(timeoutMs), redirect: 'manual'}),
    )
    await response.body?.cancel()
    return response.ok
  } catch {
    return false
  }
}

/**
 * A small client for the JupyterHub REST API with hubctl's service token (scopes: proxy,
 * list:users, read:users:activity, read:servers, servers, admin:users).
 */
export class HubApi {
  private readonly baseUrl: string
  private readonly doFetch: FetchLike
  private readonly timeoutMs: number

  constructor(private readonly options: HubApiOptions) {
    this.baseUrl = options.baseUrl.replace(/\/+$/, '')
    this.doFetch = options.fetch ?? fetch
    this.timeoutMs = options.timeoutMs ?? 10_000
  }

  /** The client for the hub under `layout`, with the token from its 0600 file. */
  static forLayout(
    layout: Layout,
    settings: Pick<Settings, 'ports'>,
    options: {
      secrets?: SecretStore
      fetch?: FetchLike
      timeoutMs?: number
      /**
       * Called when the hub refused the current token and accepted the previous one (a rotation
       * that did not finish: README, "until then hubctl's own API calls fall back to the previous
       * API token"); false: no fallback, the current token or a failure.
       */
      onFallback?: ((request: string) => void) | false
    } = {},
  ): HubApi {
    const secrets = options.secrets ?? new SecretStore(layout)
    return new HubApi({
      baseUrl: hubApiUrl(settings),
      token: () => secrets.read('apiToken'),
      ...(options.onFallback === false
        ? {}
        : {fallbackToken: () => secrets.latestBackup('apiToken'), onFallback: options.onFallback}),
      verify: hubVerifier(layout, settings),
      fetch: options.fetch,
      timeoutMs: options.timeoutMs,
    })
  }

  /** The hub's version (GET /hub/api/, no scope needed). */
  async version(): Promise<string> {
    const body = await this.request<{version: string}>('GET', '/')
    return body.version
  }

  /**
   * Every user with their servers, a page of 200 at a time (JupyterHub 2+ pages when asked with
   * Accept: application/jupyterhub-pagination+json; a plain list is read too). `active`: only the
   * users with a server started or starting (?state=active), so the cost grows with running
   * servers, not with everyone who ever logged in.
   */
  async listUsers(options: {active?: boolean} = {}): Promise<HubUser[]> {
    const users: HubUser[] = []
    let offset = 0
    const limit = 200
    const state = options.active ? '&state=active' : ''
    for (let page = 0; page < 10_000; page++) {
      const body = await this.request<unknown>('GET', `/users?offset=${offset}&limit=${limit}${state}`, {
        accept: 'application/jupyterhub-pagination+json',
      })
      const items = Array.isArray(body) ? body : ((body as {items?: unknown[]}).items ?? [])
      users.push(...items.map((item) => toUser(item as RawUser)))
      const next = Array.isArray(body)
        ? undefined
        : (body as {_pagination?: {next?: {offset?: number} | null}})._pagination?.next
      if (!next || typeof next.offset !== 'number' || items.length === 0) break
      offset = next.offset
    }
    return users
  }

  /** Every server the hub knows as started or starting, across users (asking only for active users). */
  async listServers(): Promise<ServerInfo[]> {
    return (await this.listUsers({active: true})).flatMap((user) => user.servers)
  }

  /** Ask the hub to start a server; 'started' (201) or 'pending' (202). */
  async startServer(user: string, name = '', options: Record<string, unknown> = {}): Promise<'started' | 'pending'> {
    // JupyterHub answers a spawn only once the server is up or its slow_spawn_timeout (10 s) has
    // passed: on a loaded machine, later than a plain request's timeout.
    const status = await this.requestStatus('POST', serverPath(user, name), options, [201, 202], SPAWN_ANSWER_MS)
    return status === 201 ? 'started' : 'pending'
  }

  /** Ask the hub to stop a server; 'stopped' (204) or 'pending' (202). */
  async stopServer(user: string, name = ''): Promise<'stopped' | 'pending'> {
    // JupyterHub holds a stop up to slow_stop_timeout (10 s) before it answers 202: as a start.
    const status = await this.requestStatus('DELETE', serverPath(user, name), undefined, [202, 204], SPAWN_ANSWER_MS)
    return status === 204 ? 'stopped' : 'pending'
  }

  /** One user's servers. */
  async userServers(user: string): Promise<ServerInfo[]> {
    return toUser(await this.request<RawUser>('GET', `/users/${encodeURIComponent(user)}`)).servers
  }

  /** DELETE /hub/api/users/NAME: the user leaves the hub's database ('absent' when it had none). */
  async deleteUser(user: string): Promise<'deleted' | 'absent'> {
    const status = await this.requestStatus('DELETE', `/users/${encodeURIComponent(user)}`, undefined, [204, 404])
    return status === 204 ? 'deleted' : 'absent'
  }

  /** POST /hub/api/proxy: the hub compares the proxy's routes with its own and re-adds what is missing. */
  async syncProxy(): Promise<void> {
    await this.requestStatus('POST', '/proxy', undefined, [200, 204])
  }

  /** PATCH /hub/api/proxy: the hub uses this token (and URL) for the proxy from now on, then re-checks every route. */
  async updateProxy(fields: {auth_token?: string; api_url?: string}): Promise<void> {
    await this.requestStatus('PATCH', '/proxy', fields, [200, 204])
  }

  private async authHeader(): Promise<string> {
    // A function is asked each time: the token's file may have been rotated since the last request.
    const token = typeof this.options.token === 'string' ? this.options.token : await this.options.token()
    return `token ${token}`
  }

  private async send(
    method: string,
    path: string,
    body: unknown,
    accept = 'application/json',
    atLeastMs = 0,
  ): Promise<Response> {
    const timeoutMs = Math.max(this.timeoutMs, atLeastMs)
    await this.options.verify()
    const headers: Record<string, string> = {Authorization: await this.authHeader(), Accept: accept}
    if (body !== undefined) headers['Content-Type'] = 'application/json'
    const attempt = () =>
      keepAlive(
        timeoutMs,
        this.doFetch(`${this.baseUrl}${path}`, {
          method,
          headers,
          body: body === undefined ? undefined : JSON.stringify(body),
          signal: AbortSignal.timeout(timeoutMs),
          redirect: 'manual',
        }),
      )
    try {
      const response = await attempt()
      if (response.status !== 403 || !this.options.fallbackToken) return response
      const fallback = await this.options.fallbackToken().catch(() => undefined)
      if (!fallback || headers.Authorization === `token ${fallback}`) return response
      await response.body?.cancel()
      await this.options.verify()
      headers.Authorization = `token ${fallback}`
      const second = await attempt()
      if (second.status !== 403) this.options.onFallback?.(`${method} ${path}`)
      return second
    } catch (error) {
      const reason = (error as {cause?: {code?: string}}).cause?.code ?? (error as Error).name
      throw new HubApiError(`the hub API at ${this.baseUrl} did not answer ${method} ${path} (${reason})`, undefined, {
        fix: 'start the hub with `hubctl start`, or look at `hubctl status`',
        cause: error,
      })
    }
  }

  private async request<T>(method: string, path: string, options: {accept?: string; body?: unknown} = {}): Promise<T> {
    const response = await this.send(method, path, options.body, options.accept)
    if (!response.ok) throw await failure(method, path, response)
    return (await response.json()) as T
  }

  private async requestStatus(
    method: string,
    path: string,
    body: unknown,
    expected: number[],
    atLeastMs = 0,
  ): Promise<number> {
    const response = await this.send(method, path, body, undefined, atLeastMs)
    if (!expected.includes(response.status)) throw await failure(method, path, response)
    await response.body?.cancel()
    return response.status
  }
}

interface RawServer {
  name?: string
  url?: string
  ready?: boolean
  pending?: string | null
  last_activity?: string | null
  started?: string | null
}

interface RawUser {
  name: string
  admin?: boolean
  last_activity?: string | null
  servers?: Record<string, RawServer>
}

function toUser(raw: RawUser): HubUser {
  const servers = Object.entries(raw.servers ?? {}).map(([key, server]) => ({
    user: raw.name,
    name: server.name ?? key,
    url: server.url ?? '',
    ready: Boolean(server.ready),
    pending: server.pending ?? null,
    lastActivity: server.last_activity ?? null,
    started: server.started ?? null,
  }))
  return {name: raw.name, admin: Boolean(raw.admin), lastActivity: raw.last_activity ?? null, servers}
}

function serverPath(user: string, name: string): string {
  return name === ''
    ? `/users/${encodeURIComponent(user)}/server`
    : `/users/${encodeURIComponent(user)}/servers/${encodeURIComponent(name)}`
}

async function failure(method: string, path: string, response: Response): Promise<HubApiError> {
  let message = ''
  try {
    const text = await response.text()
    try {
      message = String((JSON.parse(text) as {message?: unknown}).message ?? '')
    } catch {
      message = text.slice(0, 200)
    }
  } catch {
    // no body
  }
  const detail = message ? `: ${message.replace(/\s+/g, ' ').trim()}` : ''
  if (response.status === 403) {
    return new HubApiError(`the hub refused ${method} ${path} to hubctl's service (403${detail})`, 403, {
      fix: 'the hubctl service lacks a scope: run `hubctl init` again to rewrite its role, then `hubctl restart`',
    })
  }
  if (response.status === 401) {
    return new HubApiError(`the hub did not accept hubctl's API token for ${method} ${path} (401)`, 401, {
      fix: 'restart the hub so that it loads the current token (`hubctl restart`), or run `hubctl secrets check`',
    })
  }
  return new HubApiError(`the hub answered ${response.status} to ${method} ${path}${detail}`, response.status)
}
