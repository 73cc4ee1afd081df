/**
 * When to renew, in one place (after certbot's renewal.py):
 *
 *   - --force: now.
 *   - --days N: when fewer than N days remain.
 *   - otherwise when a third of the lifetime remains (day 60 of a 90-day certificate, day 30 of
 *     45), or half of it for a short-lived certificate (under 10 days: day 3 of 6);
 *   - earlier when the CA publishes ACME Renewal Information (RFC 9773) and its suggested window
 *     has started (a CA asks for early renewal before it revokes, for instance).
 *
 * The check that finds nothing due reads the certificate with node:crypto only: no acme-client,
 * execa or node-forge is loaded, so the twice-daily timer costs next to nothing.
 */

export const DAY_MS = 86_400_000
export const SHORT_LIVED_MS = 10 * DAY_MS

export interface CertTimes {
  notBefore: Date
  notAfter: Date
}

export interface AriWindow {
  start: Date
  end: Date
  explanationURL?: string
}

export interface RenewalInput extends CertTimes {
  now: Date
  days?: number
  force?: boolean
  ari?: AriWindow
}

export interface RenewalDecision {
  due: boolean
  reason: string
  /** When the certificate becomes due (the earlier of the local rule and the ARI window's start). */
  renewAfter: Date
  byAri: boolean
}

/** The local rule: a third of the lifetime left (half for short-lived certificates), or --days. */
export function renewalTime(cert: CertTimes, days?: number): Date {
  if (days !== undefined) return new Date(cert.notAfter.getTime() - days * DAY_MS)
  const lifetime = cert.notAfter.getTime() - cert.notBefore.getTime()
  const left = lifetime < SHORT_LIVED_MS ? lifetime / 2 : lifetime / 3
  return new Date(cert.notAfter.getTime() - left)
}

export function shouldRenew(input: RenewalInput): RenewalDecision {
  const local = renewalTime(input, input.days)
  const ariStart = input.ari?.start
  const renewAfter = ariStart && ariStart < local ? ariStart : local
  const left = `${formatDays(input.notAfter.getTime() - input.now.getTime())} left`
  if (input.force) return {due: true, reason: 'forced (--force)', renewAfter, byAri: false}
  if (input.now >= input.notAfter)
    return {due: true, reason: `expired on ${input.notAfter.toISOString()}`, renewAfter, byAri: false}
  if (input.now >= local) {
    const rule =
      input.days === undefined
        ? input.notAfter.getTime() - input.notBefore.getTime() < SHORT_LIVED_MS
          ? 'half of its lifetime'
          : 'a third of its lifetime'
        : `fewer than ${input.days} days (--days)`
    return {due: true, reason: `${left}: ${rule} remains`, renewAfter, byAri: false}
  }
  if (ariStart && input.now >= ariStart) {
    return {
      due: true,
      reason: `the CA's renewal window (ARI) opened at ${ariStart.toISOString()}${input.ari?.explanationURL ? ` (${input.ari.explanationURL})` : ''}`,
      renewAfter,
      byAri: true,
    }
  }
  return {due: false, reason: `${left}; due on ${renewAfter.toISOString()}`, renewAfter, byAri: false}
}

export function formatDays(ms: number): string {
  const days = ms / DAY_MS
  if (Math.abs(days) >= 1) return `${Math.floor(days)} days`
  const hours = ms / 3_600_000
  if (Math.abs(hours) >= 1) return `${Math.floor(hours)} hours`
  return `${Math.max(0, Math.floor(ms / 1000))} seconds`
}
