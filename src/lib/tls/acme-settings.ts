import {X509Certificate} from 'node:crypto'
import fs from 'node:fs/promises'
import path from 'node:path'

import {CertificateInfo} from './certstore.js'
import {errnoCode, usageError} from '../errors.js'
import {Layout} from '../config/layout.js'
import type {Nginx} from '../config/nginx.js'
import {AcmeSettings, DnsSettings, KEY_TYPES, KeyType, Settings} from '../config/settings.js'
import type {Runner} from '../runner.js'
import {DnsFlags, dnsSettingsFrom} from './dns01.js'

export const LETSENCRYPT_PRODUCTION = 'https://acme-v02.api.letsencrypt.org/directory'
export const LETSENCRYPT_STAGING = 'https://acme-staging-v02.api.letsencrypt.org/directory'

/** The environment variable the EAB HMAC key may come from (it is never stored, never printed). */
export const EAB_HMAC_ENV = 'HUBCTL_EAB_HMAC_KEY'

export interface ObtainRequest {
  domains: string[]
  email?: string
  directoryUrl: string
  /** A PEM file with the CA certificate(s) that sign the ACME server's HTTPS certificate. */
  caCertFile?: string
  eab?: {kid: string; hmacKey: string}
  keyType: KeyType
  /** The port the CA connects to for http-01 (80, except in tests). */
  httpPort: number
  /** ARI (RFC 9773): the id of the certificate this order replaces. */
  replaces?: string
  /** DNS-01 for every name of the order (needed for a wildcard); http-01 without it. */
  dns?: DnsSettings
}

export interface AcmeDeps {
  layout: Layout
  clock?: () => Date
  /** Progress lines for the operator. */
  log?: (line: string) => void
  /** acme-client's own chatter (DEBUG=hubctl*). */
  debug?: (line: string) => void
  /** Polling: attempts and delays (ms) while the CA validates and issues. Bounded so nothing loops. */
  backoff?: {attempts: number; min: number; max: number}
  /** Timeout of one HTTP request (ms). */
  requestTimeoutMs?: number
  /** The nginx hubctl configures, which answers http-01 from the webroot when it holds the HTTP port. */
  nginx?: () => Promise<Nginx | undefined>
  /** Runs nsupdate or the DNS hook (DNS-01). */
  runner?: Runner
  /** DNS-01's propagation check: the lookup, and the pause between rounds (tests pass fakes). */
  txtQuery?: import('./dns01.js').TxtQuery
  dnsIntervalMs?: number
}

export interface ObtainResult {
  info: CertificateInfo
  /** Who answered the challenges ('none' when the CA still had every domain validated; 'dns' for DNS-01). */
  responder: 'hubctl' | 'webroot' | 'dns' | 'none'
  directoryUrl: string
  /** What the operator should know that did not stop the order (the account's contact changed, or could not be). */
  notes: string[]
}

/** The ACME directory (RFC 8555 §7.1.1), with the ARI endpoint when the CA has one. */
export interface AcmeDirectory {
  newNonce: string
  newAccount: string
  newOrder: string
  renewalInfo?: string
  meta?: {termsOfService?: string; [key: string]: unknown}
}

// ---------------------------------------------------------------------------------------------
// Requests from settings and flags

export interface AcmeFlags extends DnsFlags {
  staging?: boolean
  'acme-directory'?: string
  'acme-ca-cert'?: string
  'eab-kid'?: string
  'eab-hmac-key'?: string
  'key-type'?: string
  'http-port'?: string | number
  'deploy-hook'?: string[]
}

/**
 * The ACME settings to keep (hubctl.json) from flags over what was kept before. The HMAC key is
 * not among them: it is a credential, read by `readEabHmacKey` and used only for this run.
 * Deploy hooks add to the kept ones. `--http-port` is kept only when it differs from the hub's
 * HTTP port (`hubHttpPort`): otherwise the challenge follows the hub's port.
 */
export async function acmeSettingsFrom(
  flags: AcmeFlags,
  previous?: AcmeSettings,
  hubHttpPort?: number,
): Promise<AcmeSettings> {
  if (flags.staging && flags['acme-directory'] !== undefined)
    throw usageError('--staging and --acme-directory both choose the ACME server', 'give one of them')
  let directory = previous?.directory ?? LETSENCRYPT_PRODUCTION
  if (flags.staging) directory = LETSENCRYPT_STAGING
  if (flags['acme-directory'] !== undefined) directory = parseDirectoryUrl(flags['acme-directory'])
  let caCert = previous?.caCert
  if (flags['acme-ca-cert'] !== undefined) {
    caCert = path.resolve(flags['acme-ca-cert'])
    await readCaCert(caCert)
  }
  const keyType = (flags['key-type'] ?? previous?.keyType ?? 'ecdsa-p256') as KeyType
  if (!KEY_TYPES.includes(keyType))
    throw usageError(
      `--key-type ${JSON.stringify(flags['key-type'])} is not a key type`,
      `give one of ${KEY_TYPES.join(', ')}`,
    )
  const eabKid = flags['eab-kid'] ?? previous?.eabKid
  if (eabKid !== undefined && !/^[\x21-\x7e]{1,256}$/.test(eabKid))
    throw usageError(
      `--eab-kid ${JSON.stringify(eabKid)} is not a key id`,
      'copy the key id exactly as the certificate authority shows it (printable characters, no spaces)',
    )
  for (const hook of flags['deploy-hook'] ?? []) {
    if (hook.trim() === '')
      throw usageError(
        '--deploy-hook is empty',
        'give the shell command to run after each new certificate, e.g. --deploy-hook "systemctl reload myservice"',
      )
  }
  const deployHooks = [...new Set([...(previous?.deployHooks ?? []), ...(flags['deploy-hook'] ?? [])])]
  let httpPort = previous?.httpPort
  if (flags['http-port'] !== undefined) httpPort = parseHttpPort(flags['http-port'])
  const dns = await dnsSettingsFrom(flags, previous?.dns)
  const settings: AcmeSettings = {directory, keyType, deployHooks}
  if (caCert) settings.caCert = caCert
  if (eabKid) settings.eabKid = eabKid
  if (httpPort !== undefined && httpPort !== hubHttpPort) settings.httpPort = httpPort
  if (dns) settings.dns = dns
  return settings
}

export function parseHttpPort(value: string | number): number {
  const port = Number(value)
  if (String(value).trim() === '' || !Number.isInteger(port) || port < 1 || port > 65_535)
    throw usageError(`--http-port ${JSON.stringify(String(value))} is not a port`, 'give a number from 1 to 65535')
  return port
}

/** The EAB HMAC key: --eab-hmac-key names a file holding it, or HUBCTL_EAB_HMAC_KEY holds it. */
export async function readEabHmacKey(
  file: string | undefined,
  env: NodeJS.ProcessEnv = process.env,
): Promise<string | undefined> {
  let value: string | undefined
  if (file !== undefined) {
    try {
      value = await fs.readFile(file, 'utf8')
    } catch (error) {
      throw usageError(
        `--eab-hmac-key ${file} cannot be read (${errnoCode(error)})`,
        `give the path of a file holding the HMAC key, or set ${EAB_HMAC_ENV}`,
      )
    }
  } else {
    value = env[EAB_HMAC_ENV]
  }
  value = value?.trim()
  if (value === undefined || value === '') return undefined
  if (!/^[A-Za-z0-9_=+/-]+$/.test(value))
    throw usageError(
      'the EAB HMAC key is not base64url text',
      'copy the HMAC key exactly as the certificate authority shows it',
    )
  return value
}

export function obtainRequestFor(
  settings: Settings,
  acme: AcmeSettings,
  options: {hmacKey?: string; replaces?: string} = {},
): ObtainRequest {
  // Only a new account needs the binding: without the HMAC key an existing account key is used as is.
  return {
    domains: settings.domains,
    email: settings.email,
    directoryUrl: acme.directory,
    caCertFile: acme.caCert,
    eab: acme.eabKid && options.hmacKey ? {kid: acme.eabKid, hmacKey: options.hmacKey} : undefined,
    keyType: acme.keyType,
    httpPort: acme.httpPort ?? settings.ports.http,
    replaces: options.replaces,
    ...(acme.dns ? {dns: acme.dns} : {}),
  }
}

export function parseDirectoryUrl(value: string): string {
  let url: URL
  try {
    url = new URL(value)
  } catch {
    throw usageError(
      `--acme-directory ${JSON.stringify(value)} is not a URL`,
      'give the directory URL of the ACME server, e.g. https://acme-staging-v02.api.letsencrypt.org/directory',
    )
  }
  if (url.protocol !== 'https:' && url.protocol !== 'http:')
    throw usageError(
      `--acme-directory ${value} is not an https URL`,
      'give the https:// directory URL of the ACME server',
    )
  return url.toString()
}

export async function readCaCert(file: string): Promise<string> {
  let text: string
  try {
    text = await fs.readFile(file, 'utf8')
  } catch (error) {
    throw usageError(
      `--acme-ca-cert ${file} cannot be read (${errnoCode(error)})`,
      "give the PEM file of the CA that signs the ACME server's HTTPS certificate",
    )
  }
  try {
    new X509Certificate(text)
  } catch {
    throw usageError(
      `--acme-ca-cert ${file} is not a PEM certificate`,
      "give the PEM file of the CA that signs the ACME server's HTTPS certificate",
    )
  }
  return text
}
