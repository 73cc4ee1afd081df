import {X509Certificate} from 'node:crypto'
import fs from 'node:fs/promises'
import http from 'node:http'
import https from 'node:https'
import {createRequire} from 'node:module'
import path from 'node:path'
import tls from 'node:tls'

import {ensureDir, readIfExists, writeFileAtomic} from '../files/atomic.js'
import {CertStore, CertificateInfo} from './certstore.js'
import {ExitCode, HubctlError, acmeError, errnoCode, messageOf, preflightError, usageError} from '../errors.js'
import {Layout} from '../config/layout.js'
import {AcmeSettings, KEY_TYPES, KeyType, Settings} from '../config/settings.js'

/**
 * Certificates from an ACME certificate authority (Let's Encrypt by default), http-01 challenge.
 *
 * Who answers the challenge: when the HTTP port is free, hubctl itself (a tiny HTTP server on that
 * port, for the order's duration, e.g. during `hubctl init` before nginx is configured); when it is
 * taken (nginx runs the hub's site), a token file in the webroot nginx serves
 * /.well-known/acme-challenge/ from. Either way hubctl fetches the token over HTTP itself before
 * telling the CA, so a DNS, firewall or wrong-server problem is named here, not by the CA.
 *
 * The new key and chain go to CertStore.install, which swaps both at once; a failure on the way
 * never touches the live files. acme-client is imported only when an order is placed.
 */

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
}

export interface ObtainResult {
  info: CertificateInfo
  /** Who answered http-01 ('none' when the CA still had every domain validated). */
  responder: 'hubctl' | 'webroot' | 'none'
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

export interface AcmeFlags {
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
  const settings: AcmeSettings = {directory, keyType, deployHooks}
  if (caCert) settings.caCert = caCert
  if (eabKid) settings.eabKid = eabKid
  if (httpPort !== undefined && httpPort !== hubHttpPort) settings.httpPort = httpPort
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
  }
}

function parseDirectoryUrl(value: string): string {
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

async function readCaCert(file: string): Promise<string> {
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

// ---------------------------------------------------------------------------------------------
// Talking HTTPS to the CA (without acme-client: the renewal check uses this too)

/** An https.Agent trusting the system roots plus --acme-ca-cert. TLS verification stays on. */
export async function acmeAgent(caCertFile?: string): Promise<https.Agent> {
  if (!caCertFile) return new https.Agent({keepAlive: false})
  const extra = await readCaCert(caCertFile)
  return new https.Agent({keepAlive: false, ca: [...tls.rootCertificates, extra]})
}

export interface JsonResponse {
  status: number
  headers: http.IncomingHttpHeaders
  body: unknown
}

/** GET a JSON document; connection and TLS failures become HubctlErrors (exit code ACME). */
export async function getJson(url: string, agent: https.Agent, timeoutMs = 15_000): Promise<JsonResponse> {
  const target = new URL(url)
  const get = target.protocol === 'http:' ? http.get : https.get
  return new Promise((resolve, reject) => {
    const request = get(
      target,
      {
        agent: target.protocol === 'https:' ? agent : undefined,
        timeout: timeoutMs,
        headers: {accept: 'application/json'},
      },
      (response) => {
        const chunks: Buffer[] = []
        response.on('data', (chunk: Buffer) => chunks.push(chunk))
        response.on('error', (error) => reject(connectionError(url, error)))
        response.on('end', () => {
          const text = Buffer.concat(chunks).toString('utf8')
          let body: unknown
          try {
            body = text ? JSON.parse(text) : undefined
          } catch {
            body = text
          }
          resolve({status: response.statusCode ?? 0, headers: response.headers, body})
        })
      },
    )
    request.on('timeout', () =>
      request.destroy(Object.assign(new Error(`no answer within ${timeoutMs / 1000}s`), {code: 'ETIMEDOUT'})),
    )
    request.on('error', (error) => reject(connectionError(url, error)))
  })
}

/** The directory, checked: a CA that does not answer is named before any key is made. */
export async function fetchDirectory(url: string, agent: https.Agent, timeoutMs?: number): Promise<AcmeDirectory> {
  const response = await getJson(url, agent, timeoutMs)
  if (response.status === 429) throw rateLimitError(url, response.headers['retry-after'], problemDetail(response.body))
  const dir = response.body as Partial<AcmeDirectory> | undefined
  if (
    response.status !== 200 ||
    !dir ||
    typeof dir !== 'object' ||
    typeof dir.newOrder !== 'string' ||
    typeof dir.newNonce !== 'string'
  ) {
    throw acmeError(
      `${url} is not an ACME directory (HTTP ${response.status})`,
      "check --acme-directory (Let's Encrypt: https://acme-v02.api.letsencrypt.org/directory)",
    )
  }
  return dir as AcmeDirectory
}

const TLS_TRUST_CODES = new Set([
  'UNABLE_TO_VERIFY_LEAF_SIGNATURE',
  'SELF_SIGNED_CERT_IN_CHAIN',
  'DEPTH_ZERO_SELF_SIGNED_CERT',
  'UNABLE_TO_GET_ISSUER_CERT_LOCALLY',
  'UNABLE_TO_GET_ISSUER_CERT',
  'CERT_UNTRUSTED',
  'ERR_TLS_CERT_ALTNAME_INVALID',
  'CERT_HAS_EXPIRED',
  'CERT_NOT_YET_VALID',
])

export function connectionError(url: string, error: unknown): HubctlError {
  const code = errnoCode(error) ?? ''
  if (TLS_TRUST_CODES.has(code)) {
    return acmeError(
      `the ACME server ${originOf(url)} presented an HTTPS certificate hubctl does not trust (${code})`,
      'for a private or test CA give --acme-ca-cert with the CA certificate that signs its HTTPS; check the clock for an expired one',
      error,
    )
  }
  const what = code ? `${code}` : (messageOf(error) ?? String(error))
  return acmeError(
    `cannot reach the ACME server ${originOf(url)} (${what})`,
    'check the network, a firewall or proxy, and --acme-directory; the live certificate is untouched, run again later',
    error,
  )
}

export function rateLimitError(url: string, retryAfter: string | string[] | undefined, detail?: string): HubctlError {
  const header = Array.isArray(retryAfter) ? retryAfter[0] : retryAfter
  let when: string | undefined
  if (header) {
    const seconds = Number(header)
    const date = Number.isFinite(seconds) ? new Date(Date.now() + seconds * 1000) : new Date(header)
    if (!Number.isNaN(date.getTime())) when = date.toISOString()
  }
  return acmeError(
    `the ACME server ${originOf(url)} is rate limiting this account or domain (HTTP 429${detail ? `: ${detail}` : ''})${when ? `; it asks to retry after ${when}` : ''}`,
    `wait${when ? ` until ${when}` : ''} and run again (the live certificate is untouched); test with --staging, whose limits are higher`,
  )
}

function problemDetail(body: unknown): string | undefined {
  if (typeof body === 'string') {
    try {
      body = JSON.parse(body)
    } catch {
      return undefined
    }
  }
  if (body && typeof body === 'object' && 'detail' in body) return String((body as {detail: unknown}).detail)
  return undefined
}

function originOf(url: string): string {
  try {
    return new URL(url).origin
  } catch {
    return url
  }
}

// ---------------------------------------------------------------------------------------------
// Keys

/** The ACME account key: made once (ECDSA P-256, 0600), then reused. Never the certificate's key. */
export async function accountKey(
  layout: Layout,
  create: () => Promise<Buffer>,
): Promise<{pem: string; created: boolean}> {
  const existing = await readIfExists(layout.acmeAccountKey)
  if (existing !== undefined) return {pem: existing, created: false}
  await ensureDir(layout.sslDir, 0o700)
  const pem = (await create()).toString()
  await writeFileAtomic(layout.acmeAccountKey, pem, {mode: 0o600})
  return {pem, created: true}
}

type AcmeModule = typeof import('acme-client')

async function certificateKey(acme: AcmeModule, keyType: KeyType): Promise<Buffer> {
  switch (keyType) {
    case 'ecdsa-p256':
      return acme.crypto.createPrivateEcdsaKey('P-256')
    case 'ecdsa-p384':
      return acme.crypto.createPrivateEcdsaKey('P-384')
    case 'rsa2048':
      return acme.crypto.createPrivateRsaKey(2048)
    case 'rsa4096':
      return acme.crypto.createPrivateRsaKey(4096)
  }
}

// ---------------------------------------------------------------------------------------------
// The http-01 responders

interface Responder {
  kind: 'hubctl' | 'webroot'
  add(token: string, keyAuthorization: string): Promise<void>
  remove(token: string): Promise<void>
  close(): Promise<void>
}

/** hubctl's own listener on the HTTP port; undefined when the port is taken (nginx answers then). */
async function listen(port: number): Promise<Responder | undefined> {
  const answers = new Map<string, string>()
  const server = http.createServer((request, response) => {
    const match = /^\/\.well-known\/acme-challenge\/([A-Za-z0-9_-]+)$/.exec((request.url ?? '').split('?')[0])
    const answer = match ? answers.get(match[1]) : undefined
    if ((request.method === 'GET' || request.method === 'HEAD') && answer !== undefined) {
      response.writeHead(200, {'content-type': 'text/plain', 'content-length': Buffer.byteLength(answer)})
      response.end(request.method === 'HEAD' ? undefined : answer)
    } else {
      response.writeHead(404, {'content-type': 'text/plain'})
      response.end('not found\n')
    }
  })
  const tryListen = (host: string) =>
    new Promise<string | undefined>((resolve) => {
      const onError = (error: Error) => resolve(errnoCode(error) ?? 'ERROR')
      server.once('error', onError)
      server.listen({port, host, exclusive: true}, () => {
        server.off('error', onError)
        resolve(undefined)
      })
    })
  // '::' takes IPv4 as well (dual stack); without IPv6, 0.0.0.0.
  let failure = await tryListen('::')
  if (failure === 'EAFNOSUPPORT' || failure === 'EADDRNOTAVAIL') failure = await tryListen('0.0.0.0')
  if (failure === 'EADDRINUSE' || failure === 'EACCES') return undefined
  if (failure)
    throw preflightError(
      `cannot listen on port ${port} to answer the ACME challenge (${failure})`,
      "free the port, or start nginx with the hub's site so it answers from the webroot",
    )
  return {
    kind: 'hubctl',
    async add(token, keyAuthorization) {
      answers.set(token, keyAuthorization)
    },
    async remove(token) {
      answers.delete(token)
    },
    close: () =>
      new Promise<void>((resolve) => {
        server.close(() => resolve())
        server.closeAllConnections()
      }),
  }
}

function webroot(layout: Layout): Responder {
  // The token comes from the CA: checked to be one base64url word before it becomes a file name.
  const file = (token: string) => layout.acmeChallengeFile(token)
  return {
    kind: 'webroot',
    async add(token, keyAuthorization) {
      await ensureDir(layout.acmeChallengeDir, 0o755)
      await writeFileAtomic(file(token), keyAuthorization, {mode: 0o644})
    },
    async remove(token) {
      await fs.rm(file(token), {force: true})
    },
    async close() {},
  }
}

/** Fetch the token the way the CA will, before telling the CA; a wrong answer is named here. */
export async function selfCheck(
  url: string,
  expected: string,
  responder: 'hubctl' | 'webroot',
  timeoutMs = 10_000,
): Promise<void> {
  const causes =
    responder === 'hubctl'
      ? 'hubctl answers on this port itself right now: the name may resolve to another machine (DNS elsewhere), or a firewall or NAT may block the port'
      : "nginx should serve it from the webroot: another server may hold the port, the nginx site may not be the hub's (hubctl init installs it), the name may resolve to another machine, or a firewall may block the port"
  let result: {status: number; body: string}
  try {
    result = await new Promise((resolve, reject) => {
      const request = http.get(url, {timeout: timeoutMs}, (response) => {
        const chunks: Buffer[] = []
        response.on('data', (chunk: Buffer) => chunks.push(chunk))
        response.on('end', () =>
          resolve({status: response.statusCode ?? 0, body: Buffer.concat(chunks).toString('utf8')}),
        )
        response.on('error', reject)
      })
      request.on('timeout', () => request.destroy(Object.assign(new Error('timed out'), {code: 'ETIMEDOUT'})))
      request.on('error', reject)
    })
  } catch (error) {
    const code = errnoCode(error)
    if (code === 'ENOTFOUND' || code === 'EAI_AGAIN' || code === 'ENODATA') {
      const host = new URL(url).hostname
      throw acmeError(
        `the ACME challenge at ${url} cannot be fetched (${code}): ${host} does not resolve to any address from this machine, so the CA cannot reach it either`,
        `create the DNS A (and AAAA) record of ${host} pointing at this machine, wait until it resolves, then run again`,
      )
    }
    throw acmeError(
      `the ACME challenge at ${url} cannot be fetched (${code ?? messageOf(error)}); ${causes}`,
      'make the domain resolve to this machine and the HTTP port reachable, then run again',
    )
  }
  if (result.status !== 200 || result.body.trim() !== expected) {
    const got = result.status === 200 ? 'a different answer' : `HTTP ${result.status}`
    throw acmeError(
      `the ACME challenge at ${url} gave ${got} instead of the token; ${causes}`,
      "make the domain resolve to this machine and the HTTP port reach the hub's nginx (or nothing, so hubctl answers), then run again",
    )
  }
}

// ---------------------------------------------------------------------------------------------
// Bounding acme-client's retries

interface Recorder {
  rateLimit?: {url: string; retryAfter?: string; detail?: string}
  network?: {url: string; error: unknown}
}

let recorder: Recorder = {}
let configured = false

/**
 * acme-client retries through a module-wide axios instance: up to 5 times on a connection error
 * or 5xx with growing delays, and on 429 it sleeps whatever Retry-After says, which can be hours.
 * Here: one retry after 2 s for connection errors and 5xx, none on 429 (reported with Retry-After),
 * a timeout on every request, and our https.Agent (with --acme-ca-cert) for TLS.
 */
function configureAxios(acme: AcmeModule, agent: https.Agent, timeoutMs: number): void {
  const instance = acme.axios as unknown as {
    defaults: {
      acmeSettings: {retryMaxAttempts: number; retryDefaultDelay: number}
      httpsAgent?: https.Agent
      timeout?: number
      adapter?: unknown
    }
  }
  instance.defaults.acmeSettings.retryMaxAttempts = 1
  instance.defaults.acmeSettings.retryDefaultDelay = 2
  instance.defaults.httpsAgent = agent
  instance.defaults.timeout = timeoutMs
  if (configured) return
  configured = true
  // The adapter acme-client's axios would use, wrapped: we see every failure before its retry logic.
  const requireFromAcme = createRequire(createRequire(import.meta.url).resolve('acme-client'))
  const axios = requireFromAcme('axios') as {getAdapter?: (name: string) => (config: unknown) => Promise<unknown>}
  if (typeof axios.getAdapter !== 'function') return // an axios before 1.6: its own retries stay, bounded above
  const httpAdapter = axios.getAdapter('http')
  instance.defaults.adapter = async (config: {url?: string}) => {
    try {
      return await httpAdapter(config)
    } catch (error) {
      const response = (error as {response?: {status: number; headers: Record<string, string>; data?: unknown}})
        .response
      if (response?.status === 429) {
        recorder.rateLimit = {
          url: config.url ?? '',
          retryAfter: response.headers['retry-after'],
          detail: problemDetail(response.data),
        }
        // Not retryable for acme-client: it hands the 429 back and fails with the CA's problem text.
        ;(error as {code?: string}).code = 'ECONNABORTED'
      } else if (!response) {
        recorder.network = {url: config.url ?? '', error}
      }
      throw error
    }
  }
}

function mapAcmeError(error: unknown, directoryUrl: string): HubctlError {
  if (error instanceof HubctlError) return error
  if (recorder.rateLimit)
    return rateLimitError(
      recorder.rateLimit.url || directoryUrl,
      recorder.rateLimit.retryAfter,
      recorder.rateLimit.detail,
    )
  if (recorder.network) return connectionError(recorder.network.url || directoryUrl, recorder.network.error)
  const message = messageOf(error) ?? String(error)
  if (/anti-replay nonce|badNonce/i.test(message)) {
    // acme-client resends a request with a fresh nonce a few times (bounded); the CA refused each.
    return acmeError(
      `the ACME server ${originOf(directoryUrl)} refused every fresh nonce hubctl sent (badNonce: ${message})`,
      "the live certificate is untouched. This is the CA's side (or a proxy between hubctl and the CA replaying requests): run again later, and check --acme-directory",
      error,
    )
  }
  return acmeError(
    `the ACME server ${originOf(directoryUrl)} refused: ${message}`,
    "read the reason above; the live certificate is untouched. Check the domains, the contact e-mail and the server's policy, then run again",
    error,
  )
}

const DEFAULT_BACKOFF = {attempts: 8, min: 1000, max: 8000}

/**
 * Wait until the CA has validated one authorization: bounded checks with growing delays. Not
 * acme-client's waitForValidStatus, which retries every failure with the same delays, so a CA that
 * went away mid-order kept hubctl waiting for about a minute: here a CA that stops answering (after
 * the single transport retry configured above) ends the wait at once.
 */
async function waitForAuthorization(
  client: Connected['client'],
  order: Awaited<ReturnType<Connected['client']['createOrder']>>,
  authzUrl: string,
  backoff: {attempts: number; min: number; max: number},
): Promise<void> {
  let delay = backoff.min
  for (let check = 1; ; check++) {
    const [authz] = await client.getAuthorizations({...order, authorizations: [authzUrl]})
    if (authz?.status === 'valid') return
    if (authz?.status !== 'pending') {
      const detail = authz?.challenges
        .map((challenge) => (challenge as {error?: {detail?: string}}).error?.detail)
        .find(Boolean)
      throw new Error(detail ?? `the authorization is ${authz?.status ?? 'missing'}`)
    }
    if (check >= backoff.attempts)
      throw new Error(`the CA had not validated it after ${check} checks; it may be slow: run again later`)
    await new Promise((resolve) => setTimeout(resolve, delay))
    delay = Math.min(delay * 2, backoff.max)
  }
}

/**
 * The CA could not fetch the token that hubctl's own check fetched a moment before: name the URL
 * the CA tried (from its error) and the likely cause, a port other than hubctl's first.
 */
export function validationError(domain: string, answeredAt: string, httpPort: number, detail: string): HubctlError {
  const triedUrl = /https?:\/\/[^\s"'<>]+\/\.well-known\/acme-challenge\/[A-Za-z0-9_-]+/.exec(detail)?.[0]
  let triedPort: number | undefined
  if (triedUrl) {
    try {
      const parsed = new URL(triedUrl)
      triedPort = Number(parsed.port || (parsed.protocol === 'https:' ? 443 : 80))
    } catch {
      // not a URL after all: no port to compare
    }
  }
  const tried = triedUrl ? triedUrl.replace(/[A-Za-z0-9_-]+$/, '<token>') : undefined
  let cause: string
  let fix: string
  if (triedPort !== undefined && triedPort !== httpPort) {
    cause = `the CA connects to port ${triedPort}, but hubctl answered on port ${httpPort} (${answeredAt})`
    fix = `give --http-port ${triedPort} (Let's Encrypt always uses 80), or forward port ${triedPort} to ${httpPort}, then run again`
  } else if (/connection refused|ECONNREFUSED|no route to host|network is unreachable/i.test(detail)) {
    cause = `nothing answered the CA there although hubctl answers ${answeredAt}: the name resolves, for the CA, to another address than this machine's, or a firewall or NAT rejects port ${httpPort}`
    fix = `point the domain's DNS (A and AAAA records) at this machine and open port ${httpPort} to the internet, then run again`
  } else if (/timeout|timed out|deadline exceeded/i.test(detail)) {
    cause = `the CA's connection timed out: a firewall probably drops port ${httpPort}, or the DNS points at a machine that does not answer`
    fix = `open port ${httpPort} to the internet and check the domain's DNS, then run again`
  } else {
    cause = `the CA got something other than the token hubctl serves at ${answeredAt}: the name may resolve, for the CA, to another machine (check AAAA records too), or a proxy or CDN in front answers instead`
    fix = 'make the domain resolve to this machine with nothing in front of its HTTP port, then run again'
  }
  return new HubctlError(
    `the ACME server could not validate ${domain} over http-01${tried ? ` at ${tried}` : ''} (${detail}); likely cause: ${cause}`,
    {exitCode: ExitCode.ACME, fix},
  )
}

// ---------------------------------------------------------------------------------------------
// The order

/**
 * Account (key reused), order (with `replaces` for ARI), the http-01 challenge of every domain,
 * a fresh certificate key and CSR, finalize, download, install.
 */
interface Connected {
  acme: AcmeModule
  client: InstanceType<AcmeModule['Client']>
  directory: AcmeDirectory
}

/** The directory (a CA that does not answer is named before anything is made), then acme-client with bounded retries. */
async function connect(
  request: Pick<ObtainRequest, 'directoryUrl' | 'caCertFile' | 'eab'>,
  deps: AcmeDeps,
  accountPem: (acme: AcmeModule) => Promise<string>,
): Promise<Connected> {
  const timeoutMs = deps.requestTimeoutMs ?? 30_000
  const agent = await acmeAgent(request.caCertFile)
  const directory = await fetchDirectory(request.directoryUrl, agent, timeoutMs)
  const acme = (await import('acme-client')).default
  configureAxios(acme, agent, timeoutMs)
  acme.setLogger((line: string) => deps.debug?.(line))
  recorder = {}
  const backoff = deps.backoff ?? DEFAULT_BACKOFF
  const client = new acme.Client({
    directoryUrl: request.directoryUrl,
    accountKey: await accountPem(acme),
    externalAccountBinding: request.eab,
    backoffAttempts: backoff.attempts,
    backoffMin: backoff.min,
    backoffMax: backoff.max,
  })
  return {acme, client, directory}
}

/**
 * The account of this key if the CA knows it (acme-client would otherwise send an empty account
 * update, which some CAs refuse). Undefined when the CA does not know the key.
 */
async function existingAccount(client: Connected['client']): Promise<{contact?: unknown} | undefined> {
  try {
    return (await client.createAccount({onlyReturnExisting: true})) as {contact?: unknown}
  } catch (error) {
    if (recorder.rateLimit || recorder.network) throw error
    return undefined
  }
}

export type ContactChange =
  | {status: 'unchanged' | 'updated'; contact: string; previous: string[]}
  | {status: 'no-account'}
  | {status: 'failed'; contact: string; previous: string[]; reason: string}

/** Make the account's contact `mailto:<email>` when it is anything else (the operator changed --email). */
async function reconcileContact(
  client: Connected['client'],
  account: {contact?: unknown},
  email: string,
): Promise<ContactChange> {
  const contact = `mailto:${email}`
  const previous = Array.isArray(account.contact) ? account.contact.map(String) : []
  if (previous.length === 1 && previous[0] === contact) return {status: 'unchanged', contact, previous}
  try {
    await client.updateAccount({contact: [contact]})
    return {status: 'updated', contact, previous}
  } catch (error) {
    if (recorder.rateLimit || recorder.network) throw error
    return {status: 'failed', contact, previous, reason: messageOf(error) ?? String(error)}
  }
}

export function describeContactChange(change: ContactChange): string | undefined {
  const was = (previous: string[]) => (previous.length > 0 ? previous.join(', ') : 'no contact')
  switch (change.status) {
    case 'updated':
      return `the ACME account's contact is now ${change.contact} (was ${was(change.previous)})`
    case 'failed':
      return `the CA refused to change the ACME account's contact to ${change.contact} (${change.reason}); it still has ${was(change.previous)}. The next renewal tries again`
    default:
      return undefined
  }
}

/**
 * For a changed --email when no certificate is ordered (init keeping a valid certificate): the
 * existing account's contact updated now. Never creates an account or an account key: without
 * one ('no-account') the next order registers the new address.
 */
export async function updateAccountContact(
  request: Pick<ObtainRequest, 'directoryUrl' | 'caCertFile'> & {email: string},
  deps: AcmeDeps,
): Promise<ContactChange> {
  const pem = await readIfExists(deps.layout.acmeAccountKey)
  if (pem === undefined) return {status: 'no-account'}
  try {
    const {client} = await connect(request, deps, async () => pem)
    const account = await existingAccount(client)
    if (!account) return {status: 'no-account'}
    return await reconcileContact(client, account, request.email)
  } catch (error) {
    throw mapAcmeError(error, request.directoryUrl)
  }
}

export async function obtainCertificate(request: ObtainRequest, deps: AcmeDeps): Promise<ObtainResult> {
  const log = deps.log ?? (() => {})
  const notes: string[] = []
  let accountCreated = false
  // The CA first: a server that does not answer is named before anything is made.
  const {acme, client, directory} = await connect(request, deps, async (module) => {
    const account = await accountKey(deps.layout, () => module.crypto.createPrivateEcdsaKey('P-256'))
    accountCreated = account.created
    return account.pem
  })
  if (accountCreated) log(`created the ACME account key ${deps.layout.acmeAccountKey}`)

  let responder: Responder | undefined
  try {
    try {
      // The account of this key if the CA knows it, with the contact brought up to date; else a
      // new one: terms agreed, contact if given.
      const account = await existingAccount(client)
      if (!account) {
        await client.createAccount({
          termsOfServiceAgreed: true,
          ...(request.email ? {contact: [`mailto:${request.email}`]} : {}),
        })
      } else if (request.email) {
        const note = describeContactChange(await reconcileContact(client, account, request.email))
        if (note) {
          log(note)
          notes.push(note)
        }
      }
    } catch (error) {
      if (!request.eab && /externalAccountBinding|external account/i.test(messageOf(error) ?? '')) {
        throw usageError(
          `the ACME server ${originOf(request.directoryUrl)} requires an external account binding`,
          `give --eab-kid and the HMAC key (--eab-hmac-key FILE or ${EAB_HMAC_ENV}) from the CA's account page`,
        )
      }
      throw error
    }
    const identifiers = request.domains.map((value) => ({type: 'dns' as const, value}))
    let order
    const replaces = request.replaces && directory.renewalInfo ? request.replaces : undefined
    try {
      order = await client.createOrder({identifiers, ...(replaces ? {replaces} : {})} as Parameters<
        typeof client.createOrder
      >[0])
    } catch (error) {
      // A CA may refuse `replaces` (already replaced, unknown): a plain order is still right.
      if (!replaces || recorder.rateLimit || recorder.network) throw error
      log(`the CA refused to mark the order as replacing ${replaces} (${messageOf(error)}); ordering without it`)
      order = await client.createOrder({identifiers})
    }
    const authorizations = await client.getAuthorizations(order)
    for (const authz of authorizations) {
      if (authz.status === 'valid') continue
      const challenge = authz.challenges.find((c) => c.type === 'http-01')
      if (!challenge)
        throw acmeError(
          `the ACME server offers no http-01 challenge for ${authz.identifier.value}`,
          'use a CA that supports http-01, or --tls manual with a certificate obtained elsewhere',
        )
      if (!/^[A-Za-z0-9_-]+$/.test(challenge.token))
        throw acmeError(
          `the ACME server sent a challenge token that is not base64url (${JSON.stringify(challenge.token).slice(0, 60)})`,
          'check --acme-directory points at a real ACME server',
        )
      const keyAuthorization = await client.getChallengeKeyAuthorization(challenge)
      responder ??= (await listen(request.httpPort)) ?? webroot(deps.layout)
      await responder.add(challenge.token, keyAuthorization)
      try {
        const url = `http://${authz.identifier.value}${request.httpPort === 80 ? '' : `:${request.httpPort}`}/.well-known/acme-challenge/${challenge.token}`
        await selfCheck(url, keyAuthorization, responder.kind)
        log(
          `${authz.identifier.value}: ${url} answers (${responder.kind === 'hubctl' ? "hubctl's own listener" : 'nginx, from the webroot'}); asking the CA to validate`,
        )
        await client.completeChallenge(challenge)
        try {
          await waitForAuthorization(client, order, authz.url, deps.backoff ?? DEFAULT_BACKOFF)
        } catch (error) {
          // The CA itself gone or limiting: reported as such by mapAcmeError, not as a validation failure.
          if (recorder.rateLimit || recorder.network) throw error
          throw validationError(
            authz.identifier.value,
            url.replace(challenge.token, '<token>'),
            request.httpPort,
            messageOf(error) ?? String(error),
          )
        }
      } finally {
        await responder.remove(challenge.token)
      }
    }
    const [key, csr] = await acme.crypto.createCsr(
      {commonName: request.domains[0], altNames: request.domains},
      await certificateKey(acme, request.keyType),
    )
    const finalized = await client.finalizeOrder(order, csr)
    const fullchain = await client.getCertificate(finalized)
    log('certificate issued; installing it')
    const info = await new CertStore(deps.layout, deps.clock).install({fullchain, privkey: key.toString()})
    return {info, responder: responder?.kind ?? 'none', directoryUrl: request.directoryUrl, notes}
  } catch (error) {
    throw mapAcmeError(error, request.directoryUrl)
  } finally {
    await responder?.close()
  }
}
