import http from 'node:http'
import https from 'node:https'
import tls from 'node:tls'

import {HubctlError, acmeError, errnoCode, messageOf} from '../errors.js'
import {AcmeDirectory, readCaCert} from './acme-settings.js'

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

export const TLS_TRUST_CODES = new Set([
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

export function problemDetail(body: unknown): string | undefined {
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

export function originOf(url: string): string {
  try {
    return new URL(url).origin
  } catch {
    return url
  }
}
