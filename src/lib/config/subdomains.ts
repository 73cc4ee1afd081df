import {randomBytes} from 'node:crypto'

import {usageError} from '../errors.js'
import type {Settings} from './settings.js'

/*
 * Per-user subdomains (`hubctl init --subdomains`, issue 27): each user's server at
 * https://NAME.DOMAIN/, the hub at https://DOMAIN/ (DOMAIN: the first --domain). On one origin,
 * a page a student serves from his own server runs with the hub's origin in a classmate's browser:
 * it reads her _xsrf token from the hub's page and calls the hub's API as her
 * (test/e2e/subdomains.test.ts). On a host of its own it is another origin, and with `__Host-`
 * cookies (JupyterHub 4.1) the hub's cookies are never sent to, nor set by, a user's host.
 *
 * The wildcard travels in the one list of names (settings.domains): `*.DOMAIN` right after DOMAIN,
 * so that the certificate (self-signed, manual, or ACME through DNS-01) and nginx's server_name
 * cover every user's host.
 */

/** The names of a hub with subdomains: the primary, `*.primary`, then the other names. */
export function subdomainNames(domains: readonly string[]): string[] {
  const [primary, ...rest] = domains.filter((name) => !isWildcard(name))
  return [...new Set([primary, `*.${primary}`, ...rest])]
}

export function isWildcard(name: string): boolean {
  return name.startsWith('*.')
}

/** c.JupyterHub.subdomain_host: the hub's https origin, the port when it is not 443. */
export function subdomainHost(settings: Pick<Settings, 'domains' | 'ports'>): string {
  return `https://${settings.domains[0]}${settings.ports.https === 443 ? '' : `:${settings.ports.https}`}`
}

/**
 * A JupyterHub that cannot keep users' pages apart on their own hosts: `__Host-` cookies
 * (cookie_host_prefix_enabled) and the fix of CVE-2024-28233 came in 4.1; without them a user's
 * server could still set cookies for the hub's domain (cookie tossing).
 */
export function assertSubdomainsSupported(install: {major: number; minor: number; version: string}): void {
  if (install.major > 4 || (install.major === 4 && install.minor >= 1)) return
  throw usageError(
    `--subdomains needs JupyterHub 4.1 or later, and this one is ${install.version}: before 4.1 JupyterHub has no __Host- cookies (cookie_host_prefix_enabled) and not the fix of CVE-2024-28233, so a user's server could still set cookies for the hub`,
    "run init without --jupyterhub (hubctl's own JupyterHub), or drop --subdomains",
  )
}

/** A name under `*.DOMAIN` nobody made on purpose (doctor asks DNS for it: the wildcard record answers). */
export function wildcardProbeName(
  wildcard: string,
  random: () => string = () => randomBytes(4).toString('hex'),
): string {
  return `hubctl-check-${random()}.${wildcard.slice(2)}`
}
