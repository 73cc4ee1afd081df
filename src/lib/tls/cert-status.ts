import {Layout} from '../config/layout.js'
import {SettingsStore} from '../config/settings.js'
import {DAY_MS, shouldRenew} from './policy.js'
import {readLiveCertificate, readRenewalState} from './renewal-state.js'

// ---------------------------------------------------------------------------------------------
// `hubctl cert status`

export interface CertStatus {
  installed: boolean
  mode?: string
  domains?: string[]
  issuer?: string
  serial?: string
  notBefore?: string
  notAfter?: string
  daysLeft?: number
  renewAfter?: string
  expired?: boolean
  due?: boolean
  lastAttempt?: string
  lastSuccess?: string
  lastError?: string
  ok: boolean
  problem?: string
}

export async function certificateStatus(layout: Layout, now: Date): Promise<CertStatus> {
  const settings = await new SettingsStore(layout).loadIfExists()
  const state = await readRenewalState(layout)
  const live = await readLiveCertificate(layout)
  const common = {
    mode: settings?.tls.mode,
    lastAttempt: state.lastAttempt,
    lastSuccess: state.lastSuccess,
    lastError: state.lastError,
  }
  if (!live) return {installed: false, ...common, ok: false, problem: `no certificate at ${layout.fullchain}`}
  const ari =
    state.ari && !state.ari.none ? {start: new Date(state.ari.start), end: new Date(state.ari.end)} : undefined
  const decision = shouldRenew({...live, now, ari})
  const expired = now >= live.notAfter
  const lastFailed = Boolean(state.lastError) && Boolean(state.lastAttempt)
  let problem: string | undefined
  if (expired) problem = `the certificate expired on ${live.notAfter.toISOString()}`
  else if (decision.due && lastFailed)
    problem = `the certificate was due for renewal on ${decision.renewAfter.toISOString()} and the last attempt failed: ${state.lastError}`
  return {
    installed: true,
    ...common,
    domains: live.domains,
    issuer: live.issuer,
    serial: live.serial,
    notBefore: live.notBefore.toISOString(),
    notAfter: live.notAfter.toISOString(),
    daysLeft: Math.floor((live.notAfter.getTime() - now.getTime()) / DAY_MS),
    renewAfter: decision.renewAfter.toISOString(),
    expired,
    due: decision.due,
    ok: problem === undefined,
    problem,
  }
}
