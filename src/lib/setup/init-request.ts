import {existsSync} from 'node:fs'
import fs from 'node:fs/promises'
import os from 'node:os'

import {CULL_DEFAULTS, parseCullDuration} from '../config/culler.js'
import {DHPARAM_BITS, DHPARAM_MODES, DhparamMode} from '../tls/dhparam.js'
import {messageOf, usageError} from '../errors.js'
import {
  BACKUP_EVERY,
  BACKUP_KEEP,
  BackupEvery,
  BackupSchedule,
  PORT_FLAGS,
  PORT_NAMES,
  PortRange,
  Ports,
  SERVER_PORTS,
  SPAWN_LIMITS,
  LOGIN_BURST,
  SpawnSettings,
  TLS_MODES,
  TlsMode,
} from '../config/settings.js'
import {
  GENERIC_DEFAULTS,
  OAUTH_PROVIDERS,
  OAuthSettings,
  isOAuthProvider,
  oauthSecretProblem,
  parseAllowedDomain,
  parseClientId,
  parseEndpointUrl,
  parseGitHubOrg,
  parseScope,
  parseUsernameClaim,
} from '../config/oauth.js'
import {subdomainNames} from '../config/subdomains.js'
import {parseCount, parseExtra, parseMemory, parsePartition, parseRuntime} from '../config/slurm.js'
import {LimitSettings, assertLimitsPossible, parseLimits} from '../config/limits.js'
import {certificateInfo} from '../tls/certstore.js'
import {assertDistinctPorts, parseDomain, parseEmail, parsePort, parseUserName, unique} from '../validate.js'

/** What `hubctl init` was asked, exactly as the flags gave it (strings, possibly missing). */
export interface RawInitFlags {
  /** Local mode: a hub on this machine, no root, no domain (localhost, self-signed, high ports). */
  local?: boolean
  /** Per-user subdomains: NAME.DOMAIN for each user's server, the hub at DOMAIN. */
  subdomains?: boolean
  domain?: string[]
  email?: string
  admin?: string[]
  'allow-user'?: string[]
  authenticator?: string
  spawner?: string
  tls?: string
  cert?: string
  key?: string
  'http-port'?: string | number
  'https-port'?: string | number
  'proxy-port'?: string | number
  'proxy-api-port'?: string | number
  'proxy-standby-port'?: string | number
  'proxy-standby-api-port'?: string | number
  'hub-port'?: string | number
  dhparam?: string
  'dhparam-bits'?: string | number
  jupyterhub?: string
  'users-env'?: boolean
  nginx?: string
  'max-concurrent-spawns'?: string | number
  'login-burst'?: string | number
  'schedule-backup'?: string
  'backup-keep'?: string | number
  'spawn-timeout'?: string | number
  'cull-idle'?: string
  'cull-max-age'?: string
  'server-ports'?: string
  'mem-limit'?: string
  'cpu-limit'?: string
  'tasks-limit'?: string
  'oauth-client-id'?: string
  'oauth-client-secret-file'?: string
  'oauth-client-secret-stdin'?: boolean
  'oauth-authorize-url'?: string
  'oauth-token-url'?: string
  'oauth-userdata-url'?: string
  'oauth-username-claim'?: string
  'oauth-scope'?: string[]
  'oauth-allowed-org'?: string[]
  'oauth-allowed-domain'?: string[]
  'slurm-partition'?: string
  'slurm-memory'?: string
  'slurm-cpus'?: string | number
  'slurm-runtime'?: string
  'slurm-gpus'?: string | number
  'slurm-extra'?: string[]
  'hub-connect-ip'?: string
  'check-submit'?: string
  'check-submit-timeout'?: string | number
}

/** The flags of --spawner slurm. */
const SLURM_FLAGS = [
  'slurm-partition',
  'slurm-memory',
  'slurm-cpus',
  'slurm-runtime',
  'slurm-gpus',
  'slurm-extra',
  'hub-connect-ip',
  'check-submit',
  'check-submit-timeout',
] as const

/** The OAuth flags, each with the providers it goes with. */
const OAUTH_FLAGS: Array<[keyof RawInitFlags, readonly string[]]> = [
  ['oauth-client-id', OAUTH_PROVIDERS],
  ['oauth-client-secret-file', OAUTH_PROVIDERS],
  ['oauth-client-secret-stdin', OAUTH_PROVIDERS],
  ['oauth-scope', OAUTH_PROVIDERS],
  ['oauth-authorize-url', ['oauth']],
  ['oauth-token-url', ['oauth']],
  ['oauth-userdata-url', ['oauth']],
  ['oauth-username-claim', ['oauth']],
  ['oauth-allowed-org', ['github']],
  ['oauth-allowed-domain', ['google']],
]

/** Asks the operator for what is missing (injected: @inquirer/prompts on a terminal, a fake in tests). */
export interface Prompter {
  input(message: string, validate: (value: string) => string | true): Promise<string>
}

export interface InitRequest {
  local: boolean
  /** The certificate's and nginx's names: with --subdomains, `*.` the first one follows it (subdomainNames). */
  domains: string[]
  subdomains: boolean
  email?: string
  admins: string[]
  allowedUsers: string[]
  /** undefined: chosen by init (pam; in local mode a generated shared password). */
  authenticator?: string
  spawner?: 'local' | 'simple' | 'slurm'
  /** --spawner slurm: what each job asks for (checked against the cluster by preflight, setup/slurm.ts). */
  slurm?: SlurmRequest
  tls: TlsMode
  cert?: {fullchain: string; privkey: string; certFile: string; keyFile: string}
  ports: Ports
  dhparam: DhparamMode
  dhparamBits: number
  /** undefined: hubctl's own environment of the pinned JupyterHub and JupyterLab. */
  jupyterhub?: string
  /** With --jupyterhub: copy its environment into hubctl's users' environment, which servers then run (`hubctl env`). */
  usersEnv?: boolean
  /** undefined: nginx on PATH, installed with apt-get when missing. */
  nginx?: string
  /** Servers starting at once and how long one may take: from the flags, else from the machine's cores. */
  spawn?: SpawnSettings
  /** --login-burst, when given (else the default, or what hubctl.json holds). */
  loginBurst?: number
  /** --schedule-backup (with --backup-keep), when given; absent: what hubctl.json holds. */
  backupSchedule?: BackupSchedule | 'off'
  /** Idle servers: stop after this many idle seconds, or this many seconds of running (null: never). */
  cull: {idleSeconds: number | null; maxAgeSeconds: number | null}
  serverPorts?: PortRange
  /** --mem-limit, --cpu-limit, --tasks-limit: each user's server a systemd unit with them (systemd as PID 1 only). */
  limits?: LimitSettings
  /** --authenticator github|google|oauth: the app's settings, and its client secret when one was given (never argv). */
  oauth?: OAuthSettings & {clientSecret?: string}
}

/**
 * CPU seconds one JupyterLab 4.6 server takes from its spawn until it answers (hubctl's config,
 * JupyterHub 6.1.1): 2.98 CPU-s, the median of 6 runs of `npm run bench -- spawn` on 2 cores, 3.3
 * over 14 on a busier machine (README, "A class at 9:00"); Debian's classic notebook takes 1.2.
 */
export const SERVER_START_CPU_SECONDS = 3

/**
 * --max-concurrent-spawns' default: one start per core, at least 2. A start is CPU-bound (about
 * SERVER_START_CPU_SECONDS of CPU in about as many seconds on an idle core), so more starts at once
 * than cores finish no sooner in total; each only takes longer, and the hub's own event loop (the
 * login pages, the proxy's routes) gets less of the machine.
 */
export function defaultMaxConcurrentSpawns(cores: number): number {
  return Math.max(2, cores)
}

/**
 * --spawn-timeout's default: time for `maxConcurrent` starts sharing `cores` with four times as
 * much other work (students' kernels), and never under 120 s. JupyterHub's own 30 s to answer
 * kills a server a busy machine would have started a little later.
 */
export function defaultSpawnTimeout(maxConcurrent: number, cores: number): number {
  return Math.max(120, Math.ceil((4 * maxConcurrent * SERVER_START_CPU_SECONDS) / Math.max(1, cores)))
}

function parseWhole(input: string | number, flag: string, limits: {min: number; max: number}, fix: string): number {
  const text = String(input).trim()
  const value = Number(text)
  if (!/^[0-9]{1,7}$/.test(text) || value < limits.min || value > limits.max) {
    throw usageError(
      `${flag} ${JSON.stringify(String(input))} is not a whole number from ${limits.min} to ${limits.max}`,
      fix,
    )
  }
  return value
}

/** --schedule-backup daily|weekly|off and --backup-keep N (which needs daily or weekly beside it). */
export function parseBackupSchedule(
  every: string | undefined,
  keep: string | number | undefined,
): BackupSchedule | 'off' | undefined {
  if (every === undefined) {
    if (keep !== undefined)
      throw usageError(
        '--backup-keep is given without --schedule-backup',
        'give --schedule-backup daily or weekly with it (the schedule kept in hubctl.json is written again whole)',
      )
    return undefined
  }
  if (every === 'off') {
    if (keep !== undefined)
      throw usageError('--backup-keep is given with --schedule-backup off', 'leave --backup-keep out')
    return 'off'
  }
  if (!BACKUP_EVERY.includes(every as BackupEvery))
    throw usageError(
      `--schedule-backup ${JSON.stringify(every)} is not daily, weekly or off`,
      'give daily, weekly or off',
    )
  return {
    every: every as BackupEvery,
    keep:
      keep === undefined
        ? BACKUP_KEEP.default
        : parseWhole(keep, '--backup-keep', BACKUP_KEEP, `give how many archives to keep, e.g. ${BACKUP_KEEP.default}`),
  }
}

/** --server-ports FIRST-LAST: ports from 1024 to 65535, FIRST not above LAST. */
export function parseServerPorts(input: string): PortRange {
  const match = /^\s*(\d{1,5})\s*-\s*(\d{1,5})\s*$/.exec(input)
  const [first, last] = match ? [Number(match[1]), Number(match[2])] : [0, 0]
  if (!match || first < 1024 || last > 65535 || first > last)
    throw usageError(
      `--server-ports ${JSON.stringify(input)} is not a range of ports FIRST-LAST from 1024 to 65535`,
      `give a range outside the kernels' ephemeral ports (/proc/sys/net/ipv4/ip_local_port_range), e.g. ${SERVER_PORTS.first}-${SERVER_PORTS.last}, or leave the flag out`,
    )
  return {first, last}
}

/**
 * Validate every flag (and ask for missing required ones when a prompter is given) before
 * anything is written. Each failure names the flag and the fix.
 */
export async function resolveInitRequest(
  flags: RawInitFlags,
  prompter?: Prompter,
  machine: {cores: number; memoryBytes?: number; systemdBooted?: boolean} = {cores: os.availableParallelism()},
  input: {stdin?: () => Promise<string>} = {},
): Promise<InitRequest> {
  const ask = async (flag: string, message: string, parse: (value: string) => unknown): Promise<string> => {
    if (!prompter) throw usageError(`--${flag} is required`, `give --${flag} (or run init on a terminal to be asked)`)
    return prompter.input(message, (value) => {
      try {
        parse(value)
        return true
      } catch (error) {
        return messageOf(error)
      }
    })
  }

  if (flags.local)
    flags = {...LOCAL_DEFAULTS, ...Object.fromEntries(Object.entries(flags).filter(([, v]) => v !== undefined))}
  const tls = (flags.tls ?? 'letsencrypt') as TlsMode
  if (!TLS_MODES.includes(tls))
    throw usageError(`--tls ${JSON.stringify(flags.tls)} is not a TLS mode`, `give one of ${TLS_MODES.join(', ')}`)

  let domainInputs = flags.domain ?? []
  if (domainInputs.length === 0)
    domainInputs = [await ask('domain', 'Domain name of the hub (e.g. hub.example.org):', (v) => parseDomain(v))]
  const subdomains = Boolean(flags.subdomains)
  const domains = subdomains
    ? subdomainNames(unique(domainInputs.map((d) => parseDomain(d))))
    : unique(domainInputs.map((d) => parseDomain(d)))
  if (subdomains) assertSubdomainsRequest(flags, tls, domains)

  let email: string | undefined
  if (flags.email !== undefined) email = parseEmail(flags.email)
  else if (tls === 'letsencrypt')
    email = parseEmail(await ask('email', "E-mail for Let's Encrypt expiry notices:", parseEmail))

  let adminInputs = flags.admin ?? []
  if (adminInputs.length === 0)
    adminInputs = [await ask('admin', 'Admin user name:', (v) => parseUserName(v, '--admin'))]
  const admins = unique(adminInputs.map((u) => parseUserName(u, '--admin')))
  const allowedUsers = unique((flags['allow-user'] ?? []).map((u) => parseUserName(u, '--allow-user')))

  const ports = Object.fromEntries(
    PORT_NAMES.map((name) => {
      const {flag, default: fallback} = PORT_FLAGS[name]
      return [
        name,
        parsePort((flags[flag.slice(2) as keyof RawInitFlags] as string | number | undefined) ?? fallback, flag),
      ]
    }),
  ) as unknown as Ports
  assertDistinctPorts(Object.fromEntries(PORT_NAMES.map((name) => [PORT_FLAGS[name].flag, ports[name]])))

  const dhparam = (flags.dhparam ?? 'generate') as DhparamMode
  if (!DHPARAM_MODES.includes(dhparam))
    throw usageError(`--dhparam ${JSON.stringify(flags.dhparam)} is not a choice`, `give ${DHPARAM_MODES.join(' or ')}`)
  const dhparamBits = Number(flags['dhparam-bits'] ?? 2048)
  if (!(DHPARAM_BITS as readonly number[]).includes(dhparamBits))
    throw usageError(
      `--dhparam-bits ${JSON.stringify(String(flags['dhparam-bits']))} is not supported`,
      `give ${DHPARAM_BITS.join(', ')}`,
    )
  if (dhparam === 'ffdhe2048' && flags['dhparam-bits'] !== undefined && dhparamBits !== 2048)
    throw usageError(
      '--dhparam ffdhe2048 is a 2048-bit group, but --dhparam-bits asks for another size',
      'drop --dhparam-bits, or use --dhparam generate',
    )

  let cert: InitRequest['cert']
  if (tls === 'manual') {
    if (!flags.cert || !flags.key)
      throw usageError('--tls manual needs --cert and --key', 'give --cert FULLCHAIN.pem and --key PRIVKEY.pem')
    cert = {
      fullchain: await readInput(flags.cert, '--cert'),
      privkey: await readInput(flags.key, '--key'),
      certFile: flags.cert,
      keyFile: flags.key,
    }
    if (subdomains) assertCoversWildcard(cert.fullchain, flags.cert, domains)
  } else if (flags.cert || flags.key) {
    throw usageError('--cert and --key go with --tls manual', 'add --tls manual, or drop --cert and --key')
  }

  const spawner = flags.spawner
  if (spawner !== undefined && spawner !== 'local' && spawner !== 'simple' && spawner !== 'slurm')
    throw usageError(
      `--spawner ${JSON.stringify(spawner)} is not a choice`,
      "give local (one system user per hub user, needs root), simple (every server runs as the hub's user) or slurm (each server a job on a Slurm cluster)",
    )
  const slurm = slurmRequest(flags, spawner)

  const maxConcurrent =
    flags['max-concurrent-spawns'] === undefined
      ? defaultMaxConcurrentSpawns(machine.cores)
      : parseWhole(
          flags['max-concurrent-spawns'],
          '--max-concurrent-spawns',
          SPAWN_LIMITS.maxConcurrent,
          `give how many servers may start at once, e.g. ${defaultMaxConcurrentSpawns(machine.cores)} (one per core), or leave the flag out`,
        )
  const timeoutSeconds =
    flags['spawn-timeout'] === undefined
      ? defaultSpawnTimeout(maxConcurrent, machine.cores)
      : parseWhole(
          flags['spawn-timeout'],
          '--spawn-timeout',
          SPAWN_LIMITS.timeoutSeconds,
          `give the seconds a server may take to start, e.g. ${defaultSpawnTimeout(maxConcurrent, machine.cores)}, or leave the flag out`,
        )

  const loginBurst =
    flags['login-burst'] === undefined
      ? undefined
      : parseWhole(
          flags['login-burst'],
          '--login-burst',
          LOGIN_BURST,
          `give how many logins from one address nginx lets through at once, e.g. ${LOGIN_BURST.default} (a class behind one address), or leave the flag out`,
        )

  const backupSchedule = parseBackupSchedule(flags['schedule-backup'], flags['backup-keep'])

  const cull = {
    idleSeconds: parseCullDuration(flags['cull-idle'] ?? CULL_DEFAULTS.idle, '--cull-idle'),
    maxAgeSeconds: parseCullDuration(flags['cull-max-age'] ?? CULL_DEFAULTS.maxAge, '--cull-max-age'),
  }
  const limits = parseLimits(flags, {cores: machine.cores, memoryBytes: machine.memoryBytes ?? os.totalmem()})
  assertLimitsPossible(limits, {
    systemdBooted: machine.systemdBooted ?? systemdBooted(),
    spawner,
    local: Boolean(flags.local),
  })
  const oauth = await resolveOAuth(flags, input.stdin)

  return {
    oauth,
    domains,
    email,
    admins,
    allowedUsers,
    tls,
    cert,
    ports,
    dhparam,
    dhparamBits,
    spawn: {maxConcurrent, timeoutSeconds},
    loginBurst,
    backupSchedule,
    cull,
    serverPorts: flags['server-ports'] === undefined ? SERVER_PORTS : parseServerPorts(flags['server-ports']),
    limits,
    local: Boolean(flags.local),
    subdomains,
    authenticator: flags.authenticator ?? (flags.local ? undefined : 'pam'),
    spawner: spawner ?? (flags.local ? 'simple' : undefined),
    slurm,
    jupyterhub: flags.jupyterhub,
    ...(flags['users-env'] ? {usersEnv: true} : {}),
    nginx: flags.nginx,
  }
}

export interface SlurmRequest {
  partition: string
  memory: string
  memoryMb: number
  cpus: number
  runtime: string
  gpus?: number
  extra: string[]
  /** --hub-connect-ip as given; undefined: 127.0.0.1 (a cluster of this machine alone). */
  hubConnectIp?: string
  /** --check-submit: the user preflight submits a test job as (setup/slurmcheck.ts); undefined: none. */
  checkSubmit?: string
  /** --check-submit-timeout: the seconds that job may take to end before it is cancelled (default CHECK_SUBMIT_TIMEOUT). */
  checkSubmitTimeout?: number
}

/** The --slurm-* flags and --hub-connect-ip: only with --spawner slurm, which needs --slurm-partition. */
function slurmRequest(flags: RawInitFlags, spawner: string | undefined): SlurmRequest | undefined {
  const given = SLURM_FLAGS.filter((key) => {
    const value = flags[key]
    return value !== undefined && !(Array.isArray(value) && value.length === 0)
  })
  if (spawner !== 'slurm') {
    if (given.length > 0)
      throw usageError(
        `--${given[0]} goes with --spawner slurm`,
        `add --spawner slurm --slurm-partition NAME, or drop --${given[0]}`,
      )
    return undefined
  }
  if (flags.local)
    throw usageError(
      '--spawner slurm does not go with --local',
      'drop --local: a Slurm hub runs as root, with a domain',
    )
  if (!flags['slurm-partition'])
    throw usageError(
      '--spawner slurm needs --slurm-partition',
      'give the partition the servers run in, one that `sinfo -s` lists',
    )
  const {memory, megabytes} = parseMemory(flags['slurm-memory'] ?? SLURM_DEFAULTS.memory)
  return {
    partition: parsePartition(flags['slurm-partition']),
    memory,
    memoryMb: megabytes,
    cpus: parseCount(flags['slurm-cpus'] ?? SLURM_DEFAULTS.cpus, '--slurm-cpus', 1, 4096, '2'),
    runtime: parseRuntime(flags['slurm-runtime'] ?? SLURM_DEFAULTS.runtime).runtime,
    gpus: flags['slurm-gpus'] === undefined ? undefined : parseCount(flags['slurm-gpus'], '--slurm-gpus', 1, 64, '1'),
    extra: parseExtra(flags['slurm-extra'] ?? []),
    hubConnectIp: flags['hub-connect-ip'],
    ...checkSubmitRequest(flags),
  }
}

/** --check-submit USER and its --check-submit-timeout SECONDS (setup/slurmcheck.ts runs it). */
function checkSubmitRequest(flags: RawInitFlags): Pick<SlurmRequest, 'checkSubmit' | 'checkSubmitTimeout'> {
  if (flags['check-submit-timeout'] !== undefined && flags['check-submit'] === undefined)
    throw usageError(
      '--check-submit-timeout goes with --check-submit',
      'add --check-submit USER, or drop --check-submit-timeout',
    )
  return {
    ...(flags['check-submit'] === undefined
      ? {}
      : {checkSubmit: parseUserName(flags['check-submit'], '--check-submit')}),
    ...(flags['check-submit-timeout'] === undefined
      ? {}
      : {checkSubmitTimeout: parseCount(flags['check-submit-timeout'], '--check-submit-timeout', 5, 3600, '120')}),
  }
}

/** What a Slurm server asks for when its flag is left out. */
export const SLURM_DEFAULTS = {memory: '2G', cpus: 1, runtime: '8:00:00'} as const

/**
 * --authenticator github|google|oauth: the client ID, the secret (from a file or standard input,
 * never argv), the generic provider's endpoints, and the allow rules each provider has. A flag
 * that does not go with the authenticator is refused, never ignored.
 */
async function resolveOAuth(flags: RawInitFlags, stdin?: () => Promise<string>): Promise<InitRequest['oauth']> {
  const provider = flags.authenticator
  const given = (key: keyof RawInitFlags) => {
    const value = flags[key]
    return value !== undefined && value !== false && !(Array.isArray(value) && value.length === 0)
  }
  for (const [key, providers] of OAUTH_FLAGS) {
    if (given(key) && !providers.includes(provider ?? ''))
      throw usageError(
        `--${key} goes with --authenticator ${providers.join(' or ')}${provider ? `, not ${provider}` : ''}`,
        `add --authenticator ${providers[0]}, or drop --${key}`,
      )
  }
  if (!isOAuthProvider(provider)) return undefined
  if (!flags['oauth-client-id'])
    throw usageError(
      `--authenticator ${provider} needs --oauth-client-id`,
      `register an OAuth app with the provider (its callback URL is https://DOMAIN/hub/oauth_callback) and give its client ID`,
    )
  const clientId = parseClientId(flags['oauth-client-id'])
  if (flags['oauth-client-secret-file'] && flags['oauth-client-secret-stdin'])
    throw usageError(
      '--oauth-client-secret-file and --oauth-client-secret-stdin both give the client secret',
      'give one of them',
    )
  let clientSecret: string | undefined
  if (flags['oauth-client-secret-file'])
    clientSecret = await readInput(flags['oauth-client-secret-file'], '--oauth-client-secret-file')
  else if (flags['oauth-client-secret-stdin']) {
    if (!stdin)
      throw usageError('--oauth-client-secret-stdin: no standard input to read', 'pipe the secret into hubctl')
    clientSecret = await stdin()
  }
  if (clientSecret !== undefined) {
    const problem = oauthSecretProblem(clientSecret)
    if (problem)
      throw usageError(
        `the OAuth client secret from ${flags['oauth-client-secret-file'] ? `--oauth-client-secret-file ${flags['oauth-client-secret-file']}` : 'standard input'} ${problem}`,
        'give the client secret exactly as the provider shows it, on one line',
      )
    clientSecret = clientSecret.replace(/\r?\n$/, '')
  }
  let endpoints: Pick<OAuthSettings, 'authorizeUrl' | 'tokenUrl' | 'userdataUrl' | 'usernameClaim'> = {}
  if (provider === 'oauth') {
    const missing = (['oauth-authorize-url', 'oauth-token-url', 'oauth-userdata-url'] as const).filter(
      (key) => !flags[key],
    )
    if (missing.length > 0)
      throw usageError(
        `--authenticator oauth needs ${missing.map((key) => `--${key}`).join(', ')}`,
        "give the provider's endpoints (its documentation, or its /.well-known/openid-configuration, lists them)",
      )
    endpoints = {
      authorizeUrl: parseEndpointUrl(flags['oauth-authorize-url']!, '--oauth-authorize-url'),
      tokenUrl: parseEndpointUrl(flags['oauth-token-url']!, '--oauth-token-url'),
      userdataUrl: parseEndpointUrl(flags['oauth-userdata-url']!, '--oauth-userdata-url'),
      usernameClaim: parseUsernameClaim(flags['oauth-username-claim'] ?? GENERIC_DEFAULTS.usernameClaim),
    }
  }
  const allowedOrgs = unique((flags['oauth-allowed-org'] ?? []).map(parseGitHubOrg))
  const scopesGiven = unique((flags['oauth-scope'] ?? []).map(parseScope))
  // GitHub shows private organization membership only with read:org; the generic provider asks for OIDC's name claim.
  const scopes =
    scopesGiven.length > 0
      ? scopesGiven
      : provider === 'oauth'
        ? [...GENERIC_DEFAULTS.scopes]
        : provider === 'github' && allowedOrgs.length > 0
          ? ['read:org']
          : []
  return {
    clientId,
    clientSecret,
    ...endpoints,
    scopes,
    allowedOrgs,
    allowedDomains: unique((flags['oauth-allowed-domain'] ?? []).map(parseAllowedDomain)),
  }
}

/**
 * --subdomains: users' servers at NAME.DOMAIN need a certificate for *.DOMAIN, which Let's Encrypt
 * issues only through DNS-01 (http-01 cannot prove a wildcard); `localhost` and local mode have no
 * DNS records to make. Refused before anything is written.
 */
function assertSubdomainsRequest(flags: RawInitFlags, tls: TlsMode, domains: string[]): void {
  if (flags.local)
    throw usageError(
      '--subdomains does not go with --local (a hub on this machine, at localhost)',
      'drop --subdomains, or give --domain hub.example.org without --local',
    )
  if (domains[0] === 'localhost')
    throw usageError(
      '--subdomains needs a domain of its own, and --domain is localhost',
      'give --domain hub.example.org, with DNS records for hub.example.org and *.hub.example.org pointing at this machine',
    )
  // The ACME flags (--dns, --dns-hook) are the certificate's, not in RawInitFlags: `--dns none` is http-01.
  const {dns, 'dns-hook': hook} = flags as {dns?: string; 'dns-hook'?: string}
  const dns01 = hook !== undefined || (dns !== undefined && dns !== 'none')
  if (tls === 'letsencrypt' && !dns01)
    throw usageError(
      `--subdomains needs a wildcard certificate for ${domains[1]}, which Let's Encrypt issues only through the DNS-01 challenge, not http-01`,
      `add --dns rfc2136 (with --dns-server and --dns-tsig-key-file) or --dns-hook PATH to answer DNS-01, or use --tls manual with a certificate for ${domains[0]} and ${domains[1]}, or --tls self-signed`,
    )
}

/** --tls manual with --subdomains: the given certificate must name *.DOMAIN (and DOMAIN) itself. */
function assertCoversWildcard(fullchain: string, file: string, domains: string[]): void {
  let covered: string[] = []
  try {
    covered = certificateInfo(fullchain).domains
  } catch {
    return // inspectPair names an unreadable certificate, with its fix
  }
  const missing = domains.slice(0, 2).filter((name) => !covered.includes(name))
  if (missing.length > 0)
    throw usageError(
      `--cert ${file} does not cover ${missing.join(' and ')} (it names ${covered.join(', ') || 'no DNS name'}), and --subdomains serves every user at NAME.${domains[0]}`,
      `give a certificate whose names include ${domains[0]} and ${domains[1]}, or drop --subdomains`,
    )
}

/** Whether systemd is PID 1 (sd_booted(3): /run/systemd/system exists). */
export function systemdBooted(): boolean {
  return existsSync('/run/systemd/system')
}

/** What --local means when a flag is not given. */
export const LOCAL_DEFAULTS: RawInitFlags = {
  domain: ['localhost'],
  admin: [localUserName()],
  tls: 'self-signed',
  dhparam: 'ffdhe2048',
  'http-port': 8080,
  'https-port': 8443,
  // The loopback ports keep their usual defaults (PORT_FLAGS).
}

/** The login name of local mode: yours when it is a valid hub user name, else "admin". */
function localUserName(): string {
  const name = os.userInfo().username.toLowerCase()
  return /^[a-z_][a-z0-9_.-]{0,31}$/.test(name) && name !== 'root' ? name : 'admin'
}

async function readInput(file: string, flag: string): Promise<string> {
  try {
    return await fs.readFile(file, 'utf8')
  } catch (error) {
    throw usageError(
      `${flag} ${file} cannot be read (${(error as NodeJS.ErrnoException).code})`,
      `check the path and its permissions`,
    )
  }
}
