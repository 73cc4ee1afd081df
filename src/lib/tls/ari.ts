import {X509Certificate} from 'node:crypto'

import {acmeAgent, fetchDirectory, getJson} from './acme-http.js'
import {messageOf} from '../errors.js'
import {Layout} from '../config/layout.js'
import {AcmeSettings} from '../config/settings.js'
import {AriWindow} from './policy.js'
import {RenewalState, writeRenewalState} from './renewal-state.js'

// ---------------------------------------------------------------------------------------------
// ARI (RFC 9773): the certificate's id and the CA's suggested window

/** base64url(AKI keyIdentifier) + '.' + base64url(serial DER content), RFC 9773 §4.1. */
export function ariCertId(pem: string): string {
  const der = new X509Certificate(pem).raw
  const cert = readTlv(der, 0)
  const tbs = readTlv(der, cert.start)
  let offset = tbs.start
  let node = readTlv(der, offset)
  if (node.tag === 0xa0) {
    offset = node.end
    node = readTlv(der, offset)
  }
  if (node.tag !== 0x02) throw new Error('certificate has no serial number')
  const serial = der.subarray(node.start, node.end)
  offset = node.end
  let keyId: Buffer | undefined
  while (offset < tbs.end) {
    node = readTlv(der, offset)
    offset = node.end
    if (node.tag !== 0xa3) continue
    const extensions = readTlv(der, node.start)
    for (let at = extensions.start; at < extensions.end;) {
      const extension = readTlv(der, at)
      at = extension.end
      const oid = readTlv(der, extension.start)
      if (!der.subarray(oid.start, oid.end).equals(Buffer.from([0x55, 0x1d, 0x23]))) continue
      let value = readTlv(der, oid.end)
      if (value.tag === 0x01) value = readTlv(der, value.end) // critical
      const aki = readTlv(der, value.start)
      for (let inner = aki.start; inner < aki.end;) {
        const field = readTlv(der, inner)
        inner = field.end
        if (field.tag === 0x80) keyId = der.subarray(field.start, field.end)
      }
    }
  }
  if (!keyId) throw new Error('certificate has no authority key identifier')
  return `${keyId.toString('base64url')}.${serial.toString('base64url')}`
}

export function readTlv(buf: Buffer, offset: number): {tag: number; start: number; end: number} {
  const tag = buf[offset]
  let length = buf[offset + 1]
  let start = offset + 2
  if (length & 0x80) {
    const bytes = length & 0x7f
    length = 0
    for (let i = 0; i < bytes; i++) length = length * 256 + buf[start + i]
    start += bytes
  }
  if (tag === undefined || start + length > buf.length) throw new Error('malformed DER')
  return {tag, start, end: start + length}
}

/** The CA's suggested renewal window, or undefined when it has no ARI (or does not answer). */
export async function fetchAriWindow(
  acme: AcmeSettings,
  pem: string,
  timeoutMs = 10_000,
): Promise<{window?: AriWindow; certId?: string; note?: string; hasAri: boolean; retryAfterSeconds?: number}> {
  let renewalInfo: string | undefined
  let agent
  try {
    agent = await acmeAgent(acme.caCert)
    renewalInfo = (await fetchDirectory(acme.directory, agent, timeoutMs)).renewalInfo
  } catch (error) {
    return {hasAri: false, note: `renewal information (ARI) not checked: ${messageOf(error)}`}
  }
  if (!renewalInfo) return {hasAri: false}
  let certId: string
  try {
    certId = ariCertId(pem)
  } catch (error) {
    return {hasAri: false, note: `no renewal information (ARI) for this certificate: ${messageOf(error)}`}
  }
  try {
    const response = await getJson(`${renewalInfo.replace(/\/$/, '')}/${certId}`, agent, timeoutMs)
    const body = response.body as
      {suggestedWindow?: {start?: string; end?: string}; explanationURL?: string} | undefined
    const start = new Date(body?.suggestedWindow?.start ?? '')
    const end = new Date(body?.suggestedWindow?.end ?? '')
    if (response.status !== 200 || Number.isNaN(start.getTime()) || Number.isNaN(end.getTime())) {
      return {
        hasAri: true,
        certId,
        note: `the CA has no renewal information (ARI) for this certificate (HTTP ${response.status})`,
      }
    }
    return {
      hasAri: true,
      certId,
      window: {start, end, explanationURL: body?.explanationURL},
      retryAfterSeconds: retryAfterSeconds(response.headers['retry-after']),
    }
  } catch (error) {
    return {hasAri: true, certId, note: `renewal information (ARI) not checked: ${messageOf(error)}`}
  }
}

/** RFC 9773 §4.3: ask again after the CA's Retry-After; 6 h when it gives none; between 1 h and 1 day. */
export const ARI_DEFAULT_RECHECK_S = 6 * 3600
export function retryAfterSeconds(header: string | string[] | undefined): number {
  const value = Array.isArray(header) ? header[0] : header
  let seconds = ARI_DEFAULT_RECHECK_S
  if (value && /^\d+$/.test(value.trim())) seconds = Number(value.trim())
  else if (value && !Number.isNaN(Date.parse(value))) seconds = (Date.parse(value) - Date.now()) / 1000
  return Math.min(86_400, Math.max(3600, Math.round(seconds)))
}

/**
 * The CA's window for this certificate: the one kept in renewal.json while the CA's Retry-After
 * has not passed (a twice-daily run does not ask the CA each time), else asked anew and kept.
 */
export async function ariWindowFor(
  layout: Layout,
  acme: AcmeSettings,
  live: {pem: string; serial: string},
  state: RenewalState,
  now: Date,
): Promise<{window?: AriWindow; certId?: string; hasAri: boolean; note?: string; cached: boolean}> {
  const kept = state.ari
  if (
    kept?.nextCheck &&
    kept.serial === live.serial &&
    kept.directory === acme.directory &&
    now < new Date(kept.nextCheck)
  ) {
    if (kept.none) return {hasAri: false, cached: true}
    return {
      window: {start: new Date(kept.start), end: new Date(kept.end), explanationURL: kept.explanationURL},
      certId: kept.certId,
      hasAri: true,
      cached: true,
    }
  }
  const found = await fetchAriWindow(acme, live.pem)
  const nextCheck = new Date(now.getTime() + (found.retryAfterSeconds ?? ARI_DEFAULT_RECHECK_S) * 1000).toISOString()
  const keep = {checkedAt: now.toISOString(), nextCheck, serial: live.serial, directory: acme.directory}
  if (found.window) {
    await writeRenewalState(layout, {
      ...state,
      ari: {
        ...keep,
        start: found.window.start.toISOString(),
        end: found.window.end.toISOString(),
        certId: found.certId,
        explanationURL: found.window.explanationURL,
      },
    })
  } else if (!found.hasAri && !found.note) {
    // The CA's directory has no renewalInfo: ask again later, not on every run.
    await writeRenewalState(layout, {...state, ari: {...keep, none: true, start: '', end: ''}})
  }
  return {...found, cached: false}
}
