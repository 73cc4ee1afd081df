import {readIfExists, writeFileAtomic, ensureDir} from '../files/atomic.js'
import {certificateInfo} from './certstore.js'
import {Layout} from '../config/layout.js'
import {CertTimes} from './policy.js'

// ---------------------------------------------------------------------------------------------
// Renewal state: srv/jupyterhub/ssl/renewal.json

export interface RenewalState {
  lastAttempt?: string
  lastSuccess?: string
  /** The last attempt's error, cleared by a success. */
  lastError?: string
  lastSerial?: string
  /** The CA's last answer, kept until `nextCheck` (its Retry-After) for this certificate and CA. */
  ari?: {
    start: string
    end: string
    checkedAt: string
    nextCheck?: string
    serial?: string
    directory?: string
    certId?: string
    explanationURL?: string
    none?: boolean
  }
}

export async function readRenewalState(layout: Layout): Promise<RenewalState> {
  const text = await readIfExists(layout.renewalState)
  if (text === undefined) return {}
  try {
    const parsed = JSON.parse(text) as unknown
    return parsed && typeof parsed === 'object' && !Array.isArray(parsed) ? (parsed as RenewalState) : {}
  } catch {
    return {}
  }
}

export async function writeRenewalState(layout: Layout, state: RenewalState): Promise<void> {
  await ensureDir(layout.sslDir, 0o700)
  await writeFileAtomic(layout.renewalState, `${JSON.stringify(state, null, 2)}\n`, {mode: 0o600})
}

// ---------------------------------------------------------------------------------------------
// Reading the live certificate (node:crypto only)

export interface LiveCertificate extends CertTimes {
  pem: string
  serial: string
  issuer: string
  domains: string[]
  selfSigned: boolean
}

export async function readLiveCertificate(layout: Layout): Promise<LiveCertificate | undefined> {
  const pem = await readIfExists(layout.fullchain)
  if (pem === undefined) return undefined
  const info = certificateInfo(pem)
  return {
    pem,
    serial: info.serial,
    issuer: info.issuer,
    domains: info.domains,
    notBefore: new Date(info.notBefore),
    notAfter: new Date(info.notAfter),
    selfSigned: info.selfSigned,
  }
}
