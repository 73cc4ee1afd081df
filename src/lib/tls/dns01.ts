import {constants as fsConstants} from 'node:fs'
import fs from 'node:fs/promises'
import path from 'node:path'

import {ExitCode, HubctlError, acmeError, errnoCode, messageOf, usageError} from '../errors.js'
import type {DnsSettings} from '../config/settings.js'
import type {Runner} from '../runner.js'

/**
 * The ACME dns-01 challenge (RFC 8555 §8.4): a TXT record `_acme-challenge.<name>` holding the
 * digest acme-client computes. Two ways to publish it:
 * - rfc2136: `nsupdate -k KEYFILE`, the update commands on its standard input, sent to
 *   --dns-server (BIND, Knot, PowerDNS and many providers speak it). The TSIG key is only ever a
 *   file name in argv; the file must belong to root (or the user running hubctl) and be 0600.
 * - hook: an executable of the operator's, run with an environment of its own (HUBCTL_DNS_ACTION
 *   add|remove, HUBCTL_DNS_NAME, HUBCTL_DNS_VALUE, HUBCTL_DNS_DOMAIN), as certbot's manual hooks.
 * Before the CA is asked, the record is looked up until it appears (bounded): at --dns-resolver
 * when given, else at --dns-server (rfc2136), else at the zone's authoritative servers (hook).
 * Each record is removed afterwards, on failure too.
 */

export const DNS_PROVIDERS = ['rfc2136', 'hook', 'none'] as const
export const DEFAULT_DNS_WAIT_SECONDS = 120
const MAX_DNS_WAIT_SECONDS = 3600

export interface DnsFlags {
  dns?: string
  'dns-server'?: string
  'dns-tsig-key-file'?: string
  'dns-hook'?: string
  'dns-resolver'?: string
  'dns-wait'?: string | number
}

const DNS_HELP = 'give --dns rfc2136 --dns-server HOST[:PORT] --dns-tsig-key-file FILE, or --dns-hook PATH'

// ---------------------------------------------------------------------------------------------
// Flags and settings

/**
 * The DNS-01 settings to keep (hubctl.json, beside the ACME ones) from flags over the kept ones;
 * undefined: http-01. The key file and the hook are checked here, so a bad one is refused before
 * anything is written, and again at every use (a renewal from the timer).
 */
export async function dnsSettingsFrom(
  flags: DnsFlags,
  previous?: DnsSettings,
  uid = process.getuid?.() ?? 0,
): Promise<DnsSettings | undefined> {
  const given = (['dns-server', 'dns-tsig-key-file', 'dns-hook', 'dns-resolver', 'dns-wait'] as const).filter(
    (flag) => flags[flag] !== undefined,
  )
  if (flags.dns !== undefined && !DNS_PROVIDERS.includes(flags.dns as (typeof DNS_PROVIDERS)[number]))
    throw usageError(
      `--dns ${JSON.stringify(flags.dns)} is not a DNS-01 method`,
      `give one of ${DNS_PROVIDERS.join(', ')}`,
    )
  if (flags.dns === 'none') {
    if (given.length > 0)
      throw usageError(
        `--dns none turns DNS-01 off, but ${given.map((f) => `--${f}`).join(', ')} was given too`,
        'give one or the other',
      )
    return undefined
  }
  const provider =
    (flags.dns as 'rfc2136' | 'hook' | undefined) ??
    (flags['dns-hook'] !== undefined
      ? 'hook'
      : flags['dns-server'] !== undefined || flags['dns-tsig-key-file'] !== undefined
        ? 'rfc2136'
        : previous?.provider)
  if (provider === undefined) {
    if (given.length > 0) throw usageError(`${given.map((f) => `--${f}`).join(', ')} needs DNS-01`, DNS_HELP)
    return undefined
  }
  const kept = previous?.provider === provider ? previous : undefined
  const resolver =
    flags['dns-resolver'] !== undefined ? parseDnsServer(flags['dns-resolver'], '--dns-resolver') : kept?.resolver
  const waitSeconds =
    flags['dns-wait'] !== undefined ? parseDnsWait(flags['dns-wait']) : (kept?.waitSeconds ?? DEFAULT_DNS_WAIT_SECONDS)
  if (provider === 'rfc2136') {
    if (flags['dns-hook'] !== undefined)
      throw usageError('--dns rfc2136 and --dns-hook are two ways to publish the record', 'give one of them')
    const serverInput = flags['dns-server'] ?? (kept?.provider === 'rfc2136' ? kept.server : undefined)
    const keyInput = flags['dns-tsig-key-file'] ?? (kept?.provider === 'rfc2136' ? kept.tsigKeyFile : undefined)
    if (serverInput === undefined || keyInput === undefined)
      throw usageError(
        `--dns rfc2136 needs ${serverInput === undefined ? '--dns-server' : '--dns-tsig-key-file'}`,
        'give --dns-server HOST[:PORT] (the primary server of the zone) and --dns-tsig-key-file FILE (a TSIG key file as nsupdate -k reads it, root-owned, mode 0600)',
      )
    const server = parseDnsServer(serverInput, '--dns-server')
    const tsigKeyFile = path.resolve(keyInput)
    await checkTsigKeyFile(tsigKeyFile, uid)
    return {provider, server, tsigKeyFile, waitSeconds, ...(resolver ? {resolver} : {})}
  }
  if (flags['dns-server'] !== undefined || flags['dns-tsig-key-file'] !== undefined)
    throw usageError(
      '--dns-server and --dns-tsig-key-file are for --dns rfc2136, not the hook',
      'give --dns-resolver to choose where hubctl looks the record up',
    )
  const hookInput = flags['dns-hook'] ?? (kept?.provider === 'hook' ? kept.hook : undefined)
  if (hookInput === undefined)
    throw usageError(
      '--dns hook needs --dns-hook PATH',
      'give the path of the executable that adds and removes the TXT record',
    )
  const hook = path.resolve(hookInput)
  await checkDnsHook(hook, uid)
  return {provider: 'hook', hook, waitSeconds, ...(resolver ? {resolver} : {})}
}

/** HOST[:PORT], [IPv6]:PORT or IPv6: what node's resolver and nsupdate's `server` take. */
export function parseDnsServer(input: string, flag: string): string {
  const value = input.trim()
  const bad = () =>
    usageError(
      `${flag} ${JSON.stringify(input)} is not a DNS server`,
      'give HOST or HOST:PORT, e.g. 192.0.2.53 or ns1.example.org:53 or [2001:db8::53]:53',
    )
  let host: string
  let port: string | undefined
  const bracketed = /^\[([0-9a-fA-F:.]+)\](?::(\d+))?$/.exec(value)
  if (bracketed) [, host, port] = bracketed
  else if ((value.match(/:/g) ?? []).length > 1) host = value
  else [host, port] = value.split(':') as [string, string | undefined]
  if (!host || !/^[A-Za-z0-9.:-]+$/.test(host) || host.startsWith('-')) throw bad()
  if (port !== undefined && !(/^\d+$/.test(port) && Number(port) >= 1 && Number(port) <= 65_535)) throw bad()
  return host.includes(':') ? `[${host}]${port ? `:${port}` : ''}` : `${host}${port ? `:${port}` : ''}`
}

/** The host and port of a parsed server (53 when none). */
export function serverHostPort(server: string): {host: string; port: number} {
  const bracketed = /^\[(.+)\](?::(\d+))?$/.exec(server)
  if (bracketed) return {host: bracketed[1], port: Number(bracketed[2] ?? 53)}
  const [host, port] = server.split(':')
  return {host, port: Number(port ?? 53)}
}

export function parseDnsWait(value: string | number): number {
  const seconds = Number(value)
  if (String(value).trim() === '' || !Number.isInteger(seconds) || seconds < 1 || seconds > MAX_DNS_WAIT_SECONDS)
    throw usageError(
      `--dns-wait ${JSON.stringify(String(value))} is not a number of seconds`,
      `give a whole number from 1 to ${MAX_DNS_WAIT_SECONDS} (how long hubctl waits for the TXT record to appear)`,
    )
  return seconds
}

/** The TSIG key file: a regular file, the owner's only (0600), owned by root (or the user running hubctl). */
export async function checkTsigKeyFile(file: string, uid = process.getuid?.() ?? 0): Promise<void> {
  let stat
  try {
    stat = await fs.stat(file)
  } catch (error) {
    throw usageError(
      `--dns-tsig-key-file ${file} cannot be read (${errnoCode(error)})`,
      'give the TSIG key file nsupdate -k reads (e.g. from tsig-keygen or keymgr), root-owned with mode 0600',
    )
  }
  if (!stat.isFile())
    throw usageError(`--dns-tsig-key-file ${file} is not a file`, 'give the TSIG key file nsupdate -k reads')
  if (stat.uid !== 0 && stat.uid !== uid)
    throw usageError(
      `--dns-tsig-key-file ${file} belongs to uid ${stat.uid}: that user could read or replace the key that changes your DNS`,
      `chown root:root ${file} && chmod 600 ${file}`,
    )
  if ((stat.mode & 0o077) !== 0)
    throw usageError(
      `--dns-tsig-key-file ${file} has mode ${(stat.mode & 0o777).toString(8).padStart(4, '0')}: other users can read the key that changes your DNS`,
      `chmod 600 ${file}, then run the command again (and make a new key if others may have read it)`,
    )
  try {
    await fs.access(file, fsConstants.R_OK)
  } catch (error) {
    throw usageError(
      `--dns-tsig-key-file ${file} cannot be read (${errnoCode(error)})`,
      `run hubctl as the owner of ${file} (root)`,
    )
  }
}

/** The hook: an executable regular file, root-owned and not writable by its group or others (as root). */
export async function checkDnsHook(hook: string, uid = process.getuid?.() ?? 0): Promise<void> {
  let stat
  try {
    stat = await fs.stat(hook)
  } catch (error) {
    throw usageError(
      `--dns-hook ${hook} does not exist (${errnoCode(error)})`,
      'give the path of the executable that adds and removes the TXT record (see README, DNS-01)',
    )
  }
  let executable = stat.isFile()
  try {
    await fs.access(hook, fsConstants.X_OK)
  } catch {
    executable = false
  }
  if (!executable || (stat.mode & 0o111) === 0)
    throw usageError(`--dns-hook ${hook} is not an executable file`, `chmod 755 ${hook} (and give it a #! line)`)
  // It runs as root, from hubctl.json on every renewal: nobody else may be able to change it.
  const {assertTrustedFile} = await import('../setup/trust.js')
  await assertTrustedFile(hook, 'the DNS hook was not run', uid)
}

// ---------------------------------------------------------------------------------------------
// Names

/** Public suffixes (https://publicsuffix.org) most often mistaken for a domain of one's own. Every single label (a TLD) is one too. */
const PUBLIC_SUFFIXES = new Set([
  'co.uk',
  'org.uk',
  'ac.uk',
  'gov.uk',
  'ltd.uk',
  'me.uk',
  'net.uk',
  'sch.uk',
  'com.au',
  'net.au',
  'org.au',
  'edu.au',
  'gov.au',
  'co.nz',
  'org.nz',
  'ac.nz',
  'co.jp',
  'ne.jp',
  'or.jp',
  'ac.jp',
  'ad.jp',
  'go.jp',
  'co.za',
  'org.za',
  'ac.za',
  'co.in',
  'ac.in',
  'edu.in',
  'com.br',
  'edu.br',
  'gov.br',
  'com.cn',
  'edu.cn',
  'com.mx',
  'edu.mx',
  'com.tr',
  'edu.tr',
  'ac.kr',
  'co.kr',
  'com.ar',
  'edu.ar',
  'com.sg',
  'edu.sg',
  'ac.at',
  'co.at',
  'or.at',
  'ac.il',
  'co.il',
  'ac.be',
  'com.es',
  'edu.es',
  'com.pl',
  'edu.pl',
  'gv.at',
  'github.io',
  'gitlab.io',
  'netlify.app',
  'vercel.app',
  'pages.dev',
  'workers.dev',
  'herokuapp.com',
  'appspot.com',
  'blogspot.com',
  'cloudfront.net',
  'azurewebsites.net',
  'web.app',
  'firebaseapp.com',
  'duckdns.org',
  'dyndns.org',
  'no-ip.org',
  'ddns.net',
  'ngrok.io',
  'ngrok.app',
  'fly.dev',
  'onrender.com',
  'eu.org',
  'nip.io',
  'sslip.io',
])

/** Whether a name (without `*.`) is a public suffix: one label (but localhost), or a listed one. */
export function isPublicSuffix(name: string): boolean {
  const bare = name.toLowerCase().replace(/\.$/, '')
  if (bare === 'localhost') return false
  return !bare.includes('.') || PUBLIC_SUFFIXES.has(bare)
}

/**
 * The names of an order, before anything is made: a wildcard only with DNS-01 (a CA validates
 * `*.name` through DNS only), and no public suffix (nobody owns `co.uk`, or every name under it).
 */
export function checkOrderNames(domains: readonly string[], dns: DnsSettings | undefined): void {
  for (const domain of domains) {
    const wildcard = domain.startsWith('*.')
    const base = wildcard ? domain.slice(2) : domain
    if (isPublicSuffix(base))
      throw usageError(
        `${domain} ${wildcard ? 'covers every name under' : 'is'} the public suffix ${base}: no CA issues a certificate for it, and no one hub owns it`,
        `give a domain registered under it, such as hub.example.${base}`,
      )
    if (wildcard && !dns)
      throw usageError(
        `${domain} is a wildcard name, which a CA validates only through DNS-01 (http-01 cannot prove every name under ${base})`,
        `${DNS_HELP}, so hubctl publishes the _acme-challenge.${base} TXT record`,
      )
  }
}

/** The TXT record of a dns-01 challenge for an authorization's identifier (the wildcard's too: `*.` is not part of it). */
export function challengeRecordName(identifier: string): string {
  return `_acme-challenge.${identifier.replace(/^\*\./, '').replace(/\.$/, '')}`
}

// ---------------------------------------------------------------------------------------------
// Publishing the record

export interface DnsPublisher {
  /** What publishes, for messages: `nsupdate to 192.0.2.53` or `the hook /root/dns-hook`. */
  readonly label: string
  add(name: string, value: string): Promise<void>
  remove(name: string, value: string): Promise<void>
}

/** The RFC 2136 update script nsupdate reads on stdin: the server, one change, send. Nothing of the key. */
export function nsupdateScript(server: string, action: 'add' | 'remove', name: string, value: string): string {
  assertRecord(name, value)
  const {host, port} = serverHostPort(server)
  const change =
    action === 'add' ? `update add ${name}. 60 IN TXT "${value}"` : `update delete ${name}. IN TXT "${value}"`
  return `server ${host} ${port}\n${change}\nsend\nquit\n`
}

/** nsupdate's argv: the key only as a file name, never its contents. */
export function nsupdateArgs(tsigKeyFile: string): string[] {
  return ['-k', tsigKeyFile, '-t', '20']
}

function assertRecord(name: string, value: string): void {
  // The value is base64url (a SHA-256 digest) and the name a checked host name: nothing that could
  // end a line of the update script or a quoted string.
  if (!/^[A-Za-z0-9_-]{1,100}$/.test(value) || !/^[A-Za-z0-9_.-]{1,253}$/.test(name))
    throw acmeError(
      `the dns-01 record ${JSON.stringify(name).slice(0, 80)} / ${JSON.stringify(value).slice(0, 80)} is not a name and base64url value`,
      'check --acme-directory points at a real ACME server',
    )
}

/** The secrets a TSIG key file holds (`secret "..."`, or `Key: ...` of a dnssec-keygen .private), to strip from any output. */
export function tsigSecrets(keyText: string): string[] {
  const found = [...keyText.matchAll(/secret\s+"?([A-Za-z0-9+/=]+)"?/gi), ...keyText.matchAll(/^Key:\s*(\S+)/gim)]
  return found.map((match) => match[1]).filter((secret) => secret.length >= 8)
}

/** Program output fit for an error message: the tail, one line per line, control characters and the given secrets removed. */
export function sanitizeOutput(text: string, secrets: readonly string[] = []): string {
  let clean = text
  for (const secret of secrets) clean = clean.split(secret).join('<key>')
  clean = clean
    .split('\n')
    .map((line) =>
      [...line]
        .map((c) => (c.charCodeAt(0) < 0x20 || c.charCodeAt(0) === 0x7f ? ' ' : c))
        .join('')
        .trimEnd(),
    )
    .filter(Boolean)
    .join('; ')
  return clean.length > 600 ? `…${clean.slice(-600)}` : clean
}

export function rfc2136Publisher(dns: Extract<DnsSettings, {provider: 'rfc2136'}>, runner: Runner): DnsPublisher {
  const label = `nsupdate to ${dns.server}`
  const run = async (action: 'add' | 'remove', name: string, value: string) => {
    await checkTsigKeyFile(dns.tsigKeyFile)
    const result = await runner.run('nsupdate', nsupdateArgs(dns.tsigKeyFile), {
      input: nsupdateScript(dns.server, action, name, value),
      timeoutMs: 60_000,
      cwd: '/',
    })
    if (result.exitCode === 0) return
    const secrets = tsigSecrets(await fs.readFile(dns.tsigKeyFile, 'utf8').catch(() => ''))
    const output = sanitizeOutput(`${result.stdout}\n${result.stderr}`, secrets)
    throw new HubctlError(
      `${result.notFound ? 'nsupdate is not installed' : `nsupdate (to ${dns.server}) failed (exit ${result.exitCode})`} ${action === 'add' ? 'adding' : 'removing'} the TXT record ${name}${output ? `: ${output}` : ''}`,
      {
        exitCode: result.notFound ? ExitCode.PREFLIGHT : ExitCode.ACME,
        fix: result.notFound
          ? 'apt-get install bind9-dnsutils, then run the command again'
          : `check that ${dns.server} is the primary server of the zone and that the key in ${dns.tsigKeyFile} may update ${name} (the live certificate is untouched)`,
      },
    )
  }
  return {label, add: (name, value) => run('add', name, value), remove: (name, value) => run('remove', name, value)}
}

/** The hook's whole environment: a fixed PATH, the locale, and the documented variables. */
export function dnsHookEnv(
  action: 'add' | 'remove',
  name: string,
  value: string,
  base: NodeJS.ProcessEnv = process.env,
): Record<string, string> {
  const env: Record<string, string> = {PATH: '/usr/sbin:/usr/bin:/sbin:/bin'}
  for (const key of ['LANG', 'LC_ALL'] as const) if (base[key]) env[key] = base[key]!
  return {
    ...env,
    HUBCTL_DNS_ACTION: action,
    HUBCTL_DNS_NAME: name,
    HUBCTL_DNS_VALUE: value,
    HUBCTL_DNS_DOMAIN: name.replace(/^_acme-challenge\./, ''),
  }
}

export function hookPublisher(dns: Extract<DnsSettings, {provider: 'hook'}>, runner: Runner): DnsPublisher {
  const label = `the DNS hook ${dns.hook}`
  const run = async (action: 'add' | 'remove', name: string, value: string) => {
    assertRecord(name, value)
    await checkDnsHook(dns.hook)
    const result = await runner.run(dns.hook, [], {
      env: dnsHookEnv(action, name, value),
      extendEnv: false,
      timeoutMs: 300_000,
      cwd: '/',
    })
    if (result.exitCode === 0) return
    const output = sanitizeOutput(result.stderr || result.stdout)
    throw acmeError(
      `the DNS hook ${dns.hook} failed (exit ${result.exitCode}) on HUBCTL_DNS_ACTION=${action} for the TXT record ${name}${output ? `: ${output}` : ''}`,
      `fix the hook (run it by hand: HUBCTL_DNS_ACTION=${action} HUBCTL_DNS_NAME=${name} HUBCTL_DNS_VALUE=test ${dns.hook}), then run the command again; the live certificate is untouched`,
    )
  }
  return {label, add: (name, value) => run('add', name, value), remove: (name, value) => run('remove', name, value)}
}

export function dnsPublisher(dns: DnsSettings, runner: Runner): DnsPublisher {
  return dns.provider === 'rfc2136' ? rfc2136Publisher(dns, runner) : hookPublisher(dns, runner)
}

// ---------------------------------------------------------------------------------------------
// Propagation

/** Looks a TXT name up at one server: every record's strings joined (as the CA reads them). */
export type TxtQuery = (server: string, name: string) => Promise<string[]>

export interface PropagationOptions {
  name: string
  value: string
  /** Where to look, each as HOST[:PORT]; every one must answer the value. */
  servers: string[]
  query: TxtQuery
  timeoutMs: number
  intervalMs?: number
  now?: () => number
  sleep?: (ms: number) => Promise<void>
}

/**
 * Until every server answers the value, or the time is up (then a clear error naming the record,
 * the value, the servers that lack it and what they last answered). Returns the number of rounds.
 */
export async function waitForTxt(options: PropagationOptions): Promise<number> {
  const now = options.now ?? Date.now
  const sleep = options.sleep ?? ((ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms)))
  const interval = options.intervalMs ?? 2000
  const start = now()
  const pending = new Set(options.servers)
  const lastAnswer = new Map<string, string>()
  for (let round = 1; ; round++) {
    for (const server of [...pending]) {
      try {
        const records = await options.query(server, options.name)
        if (records.includes(options.value)) pending.delete(server)
        else lastAnswer.set(server, records.length > 0 ? `other values: ${records.join(', ')}` : 'no TXT record')
      } catch (error) {
        lastAnswer.set(server, dnsErrorText(error))
      }
    }
    if (pending.size === 0) return round
    if (now() - start + interval > options.timeoutMs) {
      const seconds = Math.round((now() - start) / 1000)
      const which = [...pending].map((server) => `${server} (${lastAnswer.get(server) ?? 'no answer'})`).join(', ')
      throw acmeError(
        `the TXT record ${options.name} with the value ${options.value} did not appear at ${which} after ${seconds}s (${round} lookups); the CA was not asked to validate`,
        'check that the record is made in the zone those servers answer for (the hook or the nsupdate key may update another zone), or give a longer --dns-wait; the live certificate is untouched',
      )
    }
    await sleep(interval)
  }
}

function dnsErrorText(error: unknown): string {
  const code = errnoCode(error)
  if (code === 'ENODATA' || code === 'ENOTFOUND') return 'no TXT record'
  return code ?? messageOf(error)
}

/** The real lookup: a resolver asking only `server`, one try of 3 s (the loop retries). */
export const txtQuery: TxtQuery = async (server, name) => {
  const {Resolver} = await import('node:dns/promises')
  const resolver = new Resolver({timeout: 3000, tries: 1})
  resolver.setServers([server])
  return (await resolver.resolveTxt(name)).map((chunks) => chunks.join(''))
}

/**
 * Where to check propagation: --dns-resolver, else --dns-server (rfc2136), else the zone's
 * authoritative servers (the NS records of the closest enclosing zone, by the system's resolver).
 */
export async function propagationServers(dns: DnsSettings, name: string): Promise<string[]> {
  if (dns.resolver) return [dns.resolver]
  if (dns.provider === 'rfc2136') return [dns.server]
  const dnsModule = await import('node:dns/promises')
  const labels = name.split('.')
  for (let i = 1; i < labels.length - 1; i++) {
    const zone = labels.slice(i).join('.')
    let hosts: string[]
    try {
      hosts = await dnsModule.resolveNs(zone)
    } catch {
      continue
    }
    const addresses = (
      await Promise.all(
        hosts.map((host) =>
          dnsModule
            .resolve4(host)
            .then((ips) => ips[0])
            .catch(() => undefined),
        ),
      )
    ).filter((ip): ip is string => Boolean(ip))
    if (addresses.length > 0) return addresses
  }
  throw acmeError(
    `no authoritative DNS server found for ${name} (no NS records above it resolve)`,
    'give --dns-resolver HOST[:PORT], the server to look the TXT record up at',
  )
}
