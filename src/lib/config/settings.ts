import fs from 'node:fs/promises'
import net from 'node:net'

import {readIfExists, writeFileAtomicIfChanged} from '../files/atomic.js'
import {HubctlError, messageOf, usageError} from '../errors.js'
import {Layout} from './layout.js'
import {
  OAuthSettings,
  isOAuthProvider,
  parseAllowedDomain,
  parseClientId,
  parseEndpointUrl,
  parseGitHubOrg,
  parseScope,
  parseUsernameClaim,
} from './oauth.js'
import {type SlurmSettings, parseExtra, parseMemory, parsePartition, parseRuntime} from './slurm.js'
import {LimitSettings, limitsShapeProblem} from './limits.js'
import {hasControlChar, parseDomain, parsePort, parseUserName} from '../validate.js'

export const SETTINGS_VERSION = 1

export const TLS_MODES = ['letsencrypt', 'self-signed', 'manual'] as const
export type TlsMode = (typeof TLS_MODES)[number]

export const KEY_TYPES = ['ecdsa-p256', 'ecdsa-p384', 'rsa2048', 'rsa4096'] as const
export type KeyType = (typeof KEY_TYPES)[number]

export interface AcmeSettings {
  directory: string
  caCert?: string
  eabKid?: string
  /** Not a secret of the hub's, but a credential: kept out of hubctl.json, see acme.ts. */
  keyType: KeyType
  deployHooks: string[]
  /** The port hubctl answers http-01 on when `cert obtain --http-port` chose one (else the hub's HTTP port). */
  httpPort?: number
  /** DNS-01 instead of http-01 (`--dns`, `--dns-hook`): how the TXT records are published; needed for a wildcard name. */
  dns?: DnsSettings
}

/** The TSIG key and the hook are paths (the key stays in its 0600 file). */
export type DnsSettings =
  | {provider: 'rfc2136'; server: string; tsigKeyFile: string; resolver?: string; waitSeconds: number}
  | {provider: 'hook'; hook: string; resolver?: string; waitSeconds: number}

export interface Settings {
  version: number
  /** The hub's names, the first primary; with `subdomains`, `*.` the primary second (config/subdomains.ts). */
  domains: string[]
  /** Each user's server at NAME.domains[0] (init --subdomains); absent: one origin, /user/NAME/. */
  subdomains?: boolean
  email?: string
  admins: string[]
  allowedUsers: string[]
  /** pam, dummy, shared-password, github, google, oauth, or a Python class name. */
  authenticator: string
  /** With --authenticator github|google|oauth: the OAuth app (its secret is 0600 in srv/jupyterhub). */
  oauth?: OAuthSettings
  /** local (LocalProcessSpawner, root), simple (SimpleLocalProcessSpawner, one user) or slurm (batchspawner's SlurmSpawner). */
  spawner: 'local' | 'simple' | 'slurm'
  /** With spawner slurm: the jobs' partition, resources and the hub's address for them (init --slurm-*). */
  slurm?: SlurmSettings
  tls: {mode: TlsMode; acme?: AcmeSettings}
  ports: Ports
  dhparam: {mode: 'generate' | 'ffdhe2048'; bits: number}
  /** idleCuller: the Python that runs jupyterhub-idle-culler (one that imports it), when one was found. */
  executables: {
    jupyterhub: string
    singleuser: string
    nginx?: string
    node: string
    proxy: string
    idleCuller?: string
  }
  jupyterhubVersion: string
  /** User servers run from hubctl's users' environment (opt/jupyterhub/users/current), not beside the hub's JupyterHub. */
  usersEnv?: boolean
  /** Whether hubctl start runs nginx itself (prefix other than /), or the system's nginx serves. */
  nginxSupervised: boolean
  /** The hub's own HTTPS when no nginx serves (local mode without nginx). */
  proxyTls: boolean
  /** Local mode: one user, a generated login, servers as the hub's user. */
  local?: boolean
  /** Servers starting at once, and how long one may take (init's --max-concurrent-spawns, --spawn-timeout); absent in files of older hubctl. */
  spawn?: SpawnSettings
  /** Idle servers (init's --cull-idle, --cull-max-age); absent in files of older hubctl: no culling. */
  cull?: CullSettings
  /** The ports hubctl hands to user servers (init's --server-ports); absent in files of older hubctl: SERVER_PORTS. */
  serverPorts?: PortRange
  /** Login POSTs per address nginx answers at once before it limits them (init's --login-burst); absent: LOGIN_BURST.default. */
  loginBurst?: number
  /** init --schedule-backup: `hubctl backup --include-homes` by a timer or cron line; absent: none. */
  backupSchedule?: BackupSchedule
  /** Each user's server's limits (init --mem-limit, --cpu-limit, --tasks-limit; systemd as PID 1); absent: none. */
  limits?: LimitSettings
  /**
   * Seconds between two checks of the user servers by `hubctl start`'s supervisor (set by hand in
   * hubctl.json; init keeps it); absent: SERVER_WATCH_SECONDS.default.
   */
  serverWatchSeconds?: number
}

/** hubctl.json's serverWatchSeconds: how often the supervisor lists and checks the user servers. */
export const SERVER_WATCH_SECONDS = {default: 30, min: 1, max: 3600} as const

/** How often the scheduled backup runs, and how many archives it keeps in srv/jupyterhub/backup. */
export interface BackupSchedule {
  every: BackupEvery
  keep: number
}

export const BACKUP_EVERY = ['daily', 'weekly'] as const
export type BackupEvery = (typeof BACKUP_EVERY)[number]

/** --backup-keep: the archives a scheduled backup keeps (as `hubctl backup --keep`). */
export const BACKUP_KEEP = {default: 7, min: 1, max: 1000} as const

/** --login-burst: a class behind one address (a school's NAT) logs in together; a guesser does not get far. */
export const LOGIN_BURST = {default: 100, min: 1, max: 10_000} as const

/** Who stops idle servers, and after how long. */
export interface CullSettings {
  /** Stop a server idle longer than this many seconds; null: never. */
  idleSeconds: number | null
  /** Stop a server running longer than this many seconds, however active; null: never. */
  maxAgeSeconds: number | null
  /**
   * jupyterhub-idle-culler, a service of the hub run with `executables.idleCuller`; or hubctl's
   * supervisor itself, when no Python with the culler was found beside the JupyterHub used.
   */
  by: CullBy
}

export const CULL_BY = ['jupyterhub-idle-culler', 'hubctl'] as const
export type CullBy = (typeof CULL_BY)[number]

/** The longest idle time or age hubctl.json may hold (a year, as --cull-idle takes), in seconds. */
export const MAX_CULL_SECONDS = 365 * 86_400

/** A range of TCP ports, both ends included. */
export interface PortRange {
  first: number
  last: number
}

/**
 * The ports hubctl hands to user servers by default (Spawner.pre_spawn_hook in the rendered
 * config): below Linux's ephemeral range (32768-60999), where JupyterHub's random_port() and every
 * kernel's ZMQ ports are picked, so that a kernel never takes the port of a server still starting.
 */
export const SERVER_PORTS: PortRange = {first: 20000, last: 32767}

/** How many servers start at once (hubctl's spawn queue), and c.Spawner.start_timeout and http_timeout (both the same). */
export interface SpawnSettings {
  maxConcurrent: number
  timeoutSeconds: number
}

/** What --max-concurrent-spawns and --spawn-timeout accept (and hubctl.json may hold). */
export const SPAWN_LIMITS = {maxConcurrent: {min: 1, max: 1000}, timeoutSeconds: {min: 10, max: 3600}} as const

/**
 * Where everything listens. The standby proxy runs as long as the stack does: nginx sends requests
 * there when the proxy's own port refuses them (the proxy replaced, or crashed).
 */
export interface Ports {
  http: number
  https: number
  proxy: number
  proxyApi: number
  hub: number
  proxyStandby: number
  proxyStandbyApi: number
}

/** Each port's `hubctl init` flag and default, in the order flags are checked and reported. */
export const PORT_FLAGS: Record<keyof Ports, {flag: string; default: number; listener: string}> = {
  http: {flag: '--http-port', default: 80, listener: 'nginx (http)'},
  https: {flag: '--https-port', default: 443, listener: 'nginx (https)'},
  proxy: {flag: '--proxy-port', default: 8000, listener: 'configurable-http-proxy'},
  proxyApi: {flag: '--proxy-api-port', default: 8001, listener: 'the proxy API'},
  hub: {flag: '--hub-port', default: 8081, listener: 'jupyterhub'},
  // nginx sends requests to the standby port whenever the proxy's refuses: nobody else may be there.
  proxyStandby: {flag: '--proxy-standby-port', default: 8002, listener: 'the standby proxy'},
  proxyStandbyApi: {flag: '--proxy-standby-api-port', default: 8003, listener: 'the standby proxy API'},
}

export const PORT_NAMES = Object.keys(PORT_FLAGS) as Array<keyof Ports>

/** Settings written before the standby proxy existed get its default ports. */
export const DEFAULT_STANDBY_PORTS = {
  proxyStandby: PORT_FLAGS.proxyStandby.default,
  proxyStandbyApi: PORT_FLAGS.proxyStandbyApi.default,
}

/** hubctl.json: hubctl's settings, no secrets, 0644. */
export class SettingsStore {
  constructor(readonly layout: Layout) {}

  async exists(): Promise<boolean> {
    return (await readIfExists(this.layout.settings)) !== undefined
  }

  async load(): Promise<Settings> {
    const text = await readIfExists(this.layout.settings)
    if (text === undefined) {
      throw usageError(
        `${this.layout.settings} does not exist: hubctl has not set up a hub under ${this.layout.prefix}`,
        'run `hubctl init` first (or give the --prefix you used)',
      )
    }
    return parseSettings(text, this.layout.settings)
  }

  async loadIfExists(): Promise<Settings | undefined> {
    return (await this.exists()) ? this.load() : undefined
  }

  /** Returns whether the file was written (false: it held these settings already). */
  async save(settings: Settings): Promise<boolean> {
    await fs.mkdir(this.layout.etcDir, {recursive: true, mode: 0o755})
    const {text, mode} = SettingsStore.file(settings)
    return writeFileAtomicIfChanged(this.layout.settings, text, {mode})
  }

  /** hubctl.json's content and mode as save writes them (0640: it holds the deploy hooks root runs; nobody else needs to read it). */
  static file(settings: Settings): {text: string; mode: number} {
    return {text: `${JSON.stringify(settings, null, 2)}\n`, mode: 0o640}
  }
}

export function parseSettings(text: string, file: string): Settings {
  let raw: unknown
  try {
    raw = JSON.parse(text)
  } catch (error) {
    throw usageError(
      `${file} is not valid JSON (${messageOf(error)})`,
      `repair it by hand, or move it away and run \`hubctl init\` again`,
    )
  }
  if (typeof raw !== 'object' || raw === null || Array.isArray(raw)) {
    throw usageError(`${file} does not hold a JSON object`, 'move it away and run `hubctl init` again')
  }
  const settings = migrate(raw as Record<string, unknown>, file)
  const missing = [
    'domains',
    'admins',
    'allowedUsers',
    'authenticator',
    'tls',
    'ports',
    'dhparam',
    'executables',
  ].filter((key) => !(key in settings))
  if (missing.length > 0) {
    // init refuses to run over a settings file it cannot read, so the fix is to move it away first.
    throw usageError(
      `${file} lacks ${missing.join(', ')}`,
      'move it away, then run `hubctl init` again with the same flags to rewrite it',
    )
  }
  checkShape(settings, file)
  return settings as unknown as Settings
}

/**
 * The values hubctl acts on (ports it binds, names it serves, programs it runs as root) have the
 * types and ranges init gave them: a hand edit gone wrong is named here, not met as a crash later.
 */
function checkShape(settings: Record<string, unknown>, file: string): void {
  const bad = (where: string, problem: string): never => {
    throw usageError(
      `${file}: "${where}" ${problem}`,
      'repair it by hand, or move it away and run `hubctl init` again with the same flags',
    )
  }
  const isObject = (value: unknown): value is Record<string, unknown> =>
    typeof value === 'object' && value !== null && !Array.isArray(value)
  const valid = (where: string, check: () => unknown) => {
    try {
      check()
    } catch (error) {
      bad(where, `is invalid: ${(error as HubctlError).message}`)
    }
  }
  for (const key of ['domains', 'admins', 'allowedUsers'] as const) {
    const list = settings[key]
    if (!Array.isArray(list) || !list.every((item) => typeof item === 'string')) bad(key, 'is not a list of strings')
    if (key !== 'allowedUsers' && (list as string[]).length === 0) bad(key, 'is empty')
    for (const item of list as string[])
      valid(key, () =>
        key !== 'domains'
          ? parseUserName(item, key)
          : settings.subdomains === true && item === `*.${(list as string[])[0]}`
            ? parseDomain(item.slice(2))
            : parseDomain(item),
      )
  }
  if (settings.subdomains !== undefined && typeof settings.subdomains !== 'boolean')
    bad('subdomains', 'is neither true nor false')
  if (typeof settings.authenticator !== 'string' || settings.authenticator.length === 0)
    bad('authenticator', 'is not a name')
  if (isOAuthProvider(settings.authenticator as string))
    checkOAuthShape(settings.oauth, settings.authenticator as string, bad)
  else if (settings.oauth !== undefined)
    bad('oauth', `is set, but "authenticator" is ${settings.authenticator} (not github, google or oauth)`)
  if (settings.spawner !== 'local' && settings.spawner !== 'simple' && settings.spawner !== 'slurm')
    bad('spawner', 'is not "local", "simple" or "slurm"')
  if (settings.spawner === 'slurm') {
    const slurm = settings.slurm as Record<string, unknown> | undefined
    if (!isObject(slurm)) bad('slurm', 'is missing, and "spawner" is slurm')
    else {
      valid('slurm.partition', () => parsePartition(String(slurm.partition)))
      valid('slurm.memory', () => parseMemory(String(slurm.memory)))
      valid('slurm.runtime', () => parseRuntime(String(slurm.runtime)))
      if (typeof slurm.cpus !== 'number' || !Number.isInteger(slurm.cpus) || slurm.cpus < 1)
        bad('slurm.cpus', 'is not a whole number of at least 1')
      if (
        slurm.gpus !== undefined &&
        (typeof slurm.gpus !== 'number' || !Number.isInteger(slurm.gpus) || slurm.gpus < 1)
      )
        bad('slurm.gpus', 'is not a whole number of at least 1')
      if (!Array.isArray(slurm.extra) || !slurm.extra.every((line) => typeof line === 'string'))
        bad('slurm.extra', 'is not a list of strings')
      else valid('slurm.extra', () => parseExtra(slurm.extra as string[]))
      for (const key of ['hubConnectIp', 'connectAddress'] as const)
        if (typeof slurm[key] !== 'string' || !net.isIP(slurm[key] as string))
          bad(`slurm.${key}`, 'is not an IP address')
    }
  } else if (settings.slurm !== undefined) bad('slurm', `is set, but "spawner" is ${settings.spawner} (not slurm)`)
  if (!isObject(settings.tls) || !TLS_MODES.includes(settings.tls.mode as TlsMode))
    bad('tls.mode', `is not one of ${TLS_MODES.join(', ')}`)
  if (!isObject(settings.ports)) bad('ports', 'is not an object')
  for (const [name, port] of Object.entries(settings.ports as Record<string, unknown>)) {
    if (typeof port !== 'number') bad(`ports.${name}`, 'is not a number')
    valid(`ports.${name}`, () => parsePort(port as number, `ports.${name}`))
  }
  if (!isObject(settings.dhparam) || !['generate', 'ffdhe2048'].includes(settings.dhparam.mode as string))
    bad('dhparam.mode', 'is neither "generate" nor "ffdhe2048"')
  if (settings.spawn !== undefined) {
    if (!isObject(settings.spawn)) bad('spawn', 'is not an object')
    for (const key of ['maxConcurrent', 'timeoutSeconds'] as const) {
      const value = (settings.spawn as Record<string, unknown>)[key]
      const {min, max} = SPAWN_LIMITS[key]
      if (typeof value !== 'number' || !Number.isInteger(value) || value < min || value > max)
        bad(`spawn.${key}`, `is not a whole number from ${min} to ${max}`)
    }
  }
  if (settings.serverPorts !== undefined) {
    const range = settings.serverPorts as Record<string, unknown>
    if (
      !isObject(range) ||
      ![range.first, range.last].every(
        (p) => typeof p === 'number' && Number.isInteger(p) && p >= 1024 && p <= 65535,
      ) ||
      (range.first as number) > (range.last as number)
    )
      bad('serverPorts', 'is not a range {first, last} of ports from 1024 to 65535')
  }
  if (settings.loginBurst !== undefined) {
    const value = settings.loginBurst
    if (typeof value !== 'number' || !Number.isInteger(value) || value < LOGIN_BURST.min || value > LOGIN_BURST.max)
      bad('loginBurst', `is not a whole number from ${LOGIN_BURST.min} to ${LOGIN_BURST.max}`)
  }
  if (settings.serverWatchSeconds !== undefined) {
    const value = settings.serverWatchSeconds
    const {min, max} = SERVER_WATCH_SECONDS
    if (typeof value !== 'number' || !Number.isInteger(value) || value < min || value > max)
      bad('serverWatchSeconds', `is not a whole number of seconds from ${min} to ${max}`)
  }
  if (settings.backupSchedule !== undefined) {
    const schedule = settings.backupSchedule as Record<string, unknown>
    if (!isObject(schedule) || !BACKUP_EVERY.includes(schedule.every as BackupEvery))
      bad('backupSchedule.every', `is not one of ${BACKUP_EVERY.join(', ')}`)
    const keep = schedule.keep
    if (typeof keep !== 'number' || !Number.isInteger(keep) || keep < BACKUP_KEEP.min || keep > BACKUP_KEEP.max)
      bad('backupSchedule.keep', `is not a whole number from ${BACKUP_KEEP.min} to ${BACKUP_KEEP.max}`)
  }
  if (settings.limits !== undefined) {
    const problem = limitsShapeProblem(settings.limits)
    if (problem) bad('limits', problem)
  }
  if (!isObject(settings.executables)) bad('executables', 'is not an object')
  for (const [name, program] of Object.entries(settings.executables as Record<string, unknown>)) {
    if (program === undefined) continue
    if (typeof program !== 'string' || !program.startsWith('/') || hasControlChar(program))
      bad(`executables.${name}`, 'is not an absolute path')
  }
  if (settings.cull !== undefined) {
    if (!isObject(settings.cull)) bad('cull', 'is not an object')
    const cull = settings.cull as Record<string, unknown>
    for (const key of ['idleSeconds', 'maxAgeSeconds'] as const) {
      const value = cull[key]
      if (
        value !== null &&
        (typeof value !== 'number' || !Number.isInteger(value) || value < 1 || value > MAX_CULL_SECONDS)
      )
        bad(`cull.${key}`, `is neither null (off) nor a whole number of seconds from 1 to ${MAX_CULL_SECONDS}`)
    }
    if (!CULL_BY.includes(cull.by as CullBy)) bad('cull.by', `is not one of ${CULL_BY.join(', ')}`)
    if (
      cull.by === 'jupyterhub-idle-culler' &&
      typeof (settings.executables as Record<string, unknown>).idleCuller !== 'string'
    )
      bad('executables.idleCuller', 'is missing, and cull.by is jupyterhub-idle-culler')
  }
}

/** The OAuth app's settings: the values init's flags accept, or a clear "repair it" error. */
function checkOAuthShape(oauth: unknown, provider: string, bad: (where: string, problem: string) => never): void {
  if (typeof oauth !== 'object' || oauth === null || Array.isArray(oauth))
    bad('oauth', `is missing: --authenticator ${provider} needs the OAuth app's client ID and endpoints`)
  const o = oauth as Record<string, unknown>
  const valid = (where: string, value: unknown, parse: (v: string) => unknown) => {
    try {
      if (typeof value !== 'string') throw new Error('is not a string')
      parse(value)
    } catch (error) {
      bad(`oauth.${where}`, `is invalid: ${(error as Error).message}`)
    }
  }
  valid('clientId', o.clientId, parseClientId)
  const lists: Array<[string, (v: string) => unknown]> = [
    ['scopes', parseScope],
    ['allowedOrgs', parseGitHubOrg],
    ['allowedDomains', parseAllowedDomain],
  ]
  for (const [key, parse] of lists) {
    if (!Array.isArray(o[key])) bad(`oauth.${key}`, 'is not a list of strings')
    for (const item of o[key] as unknown[]) valid(key, item, parse)
  }
  if (provider !== 'github' && (o.allowedOrgs as unknown[]).length > 0) bad('oauth.allowedOrgs', 'is only for github')
  if (provider !== 'google' && (o.allowedDomains as unknown[]).length > 0)
    bad('oauth.allowedDomains', 'is only for google')
  for (const key of ['authorizeUrl', 'tokenUrl', 'userdataUrl'] as const) {
    if (provider === 'oauth') valid(key, o[key], (v) => parseEndpointUrl(v, key))
    else if (o[key] !== undefined) bad(`oauth.${key}`, 'is only for the generic provider (oauth)')
  }
  if (o.usernameClaim !== undefined) valid('usernameClaim', o.usernameClaim, parseUsernameClaim)
}

/** Bring settings written by an older hubctl to the current version; refuse a newer one. */
function migrate(raw: Record<string, unknown>, file: string): Record<string, unknown> {
  const version = raw.version
  if (typeof version !== 'number' || !Number.isInteger(version) || version < 1) {
    throw usageError(`${file} has no valid "version"`, 'move it away and run `hubctl init` again')
  }
  if (version > SETTINGS_VERSION) {
    throw usageError(
      `${file} was written by a newer hubctl (settings version ${version}, this hubctl knows ${SETTINGS_VERSION})`,
      'upgrade hubctl',
    )
  }
  const migrated: Record<string, unknown> = {
    spawner: 'local',
    nginxSupervised: false,
    proxyTls: false,
    ...raw,
    version: SETTINGS_VERSION,
  }
  if (typeof migrated.ports === 'object' && migrated.ports !== null)
    migrated.ports = {...DEFAULT_STANDBY_PORTS, ...migrated.ports}
  return migrated
}
