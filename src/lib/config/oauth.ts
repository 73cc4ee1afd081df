import {usageError} from '../errors.js'
import {hasControlChar, parseDomain} from '../validate.js'

/*
 * Logins through an institution's accounts (oauthenticator, PyPI, pinned in hubctl's JupyterHub
 * environment): what each provider needs, the flags' checks, and the callback URL the operator
 * registers with the provider. Pure: no file, no network.
 */

export const OAUTH_PROVIDERS = ['github', 'google', 'oauth'] as const
export type OAuthProvider = (typeof OAUTH_PROVIDERS)[number]

export function isOAuthProvider(authenticator: string | undefined): authenticator is OAuthProvider {
  return (OAUTH_PROVIDERS as readonly string[]).includes(authenticator ?? '')
}

/** What hubctl.json keeps of an OAuth login (never the client secret: it is 0600 in srv/jupyterhub). */
export interface OAuthSettings {
  clientId: string
  /** --authenticator oauth (GenericOAuthenticator): the provider's endpoints and the user name's claim. */
  authorizeUrl?: string
  tokenUrl?: string
  userdataUrl?: string
  usernameClaim?: string
  /** The scopes asked of the provider (empty: the authenticator's default). */
  scopes: string[]
  /** github: members of these organizations (or org:team) may log in. */
  allowedOrgs: string[]
  /** google: accounts of these Google Workspace domains (hosted_domain) may log in; nobody else. */
  allowedDomains: string[]
}

/** Each provider's authenticator class, its login button's name and its endpoints (for doctor). */
export const OAUTH_PROVIDER_INFO: Record<
  OAuthProvider,
  {className: string; label: string; endpoints?: {authorize: string; token: string; userdata: string}}
> = {
  github: {
    className: 'oauthenticator.github.GitHubOAuthenticator',
    label: 'GitHub',
    endpoints: {
      authorize: 'https://github.com/login/oauth/authorize',
      token: 'https://github.com/login/oauth/access_token',
      userdata: 'https://api.github.com/user',
    },
  },
  google: {
    className: 'oauthenticator.google.GoogleOAuthenticator',
    label: 'Google',
    endpoints: {
      authorize: 'https://accounts.google.com/o/oauth2/v2/auth',
      token: 'https://oauth2.googleapis.com/token',
      userdata: 'https://www.googleapis.com/oauth2/v1/userinfo',
    },
  },
  oauth: {className: 'oauthenticator.generic.GenericOAuthenticator', label: 'OAuth 2.0'},
}

/** The lowest oauthenticator whose allow rules hubctl renders (allow_all and allow_existing_users came in 16.0). */
export const MIN_OAUTHENTICATOR_MAJOR = 16

/** --authenticator oauth's defaults: OpenID Connect's standard claim for a login name, and the scopes that carry it. */
export const GENERIC_DEFAULTS = {usernameClaim: 'preferred_username', scopes: ['openid', 'profile']} as const

/** The provider's endpoints: fixed for github and google, the flags' for oauth. */
export function oauthEndpoints(
  provider: OAuthProvider,
  oauth: Pick<OAuthSettings, 'authorizeUrl' | 'tokenUrl' | 'userdataUrl'>,
): {authorize: string; token: string; userdata: string} {
  const fixed = OAUTH_PROVIDER_INFO[provider].endpoints
  if (fixed) return fixed
  return {authorize: oauth.authorizeUrl ?? '', token: oauth.tokenUrl ?? '', userdata: oauth.userdataUrl ?? ''}
}

/** Where the provider sends users back: the primary domain's /hub/oauth_callback, with the HTTPS port when not 443. */
export function oauthCallbackUrl(settings: {domains: string[]; ports: {https: number}}): string {
  const port = settings.ports.https === 443 ? '' : `:${settings.ports.https}`
  return `https://${settings.domains[0]}${port}/hub/oauth_callback`
}

/**
 * allow_all is never True by default. It is True only for google with --oauth-allowed-domain:
 * there hosted_domain refuses every account outside the domains (before any allow rule), so
 * "everyone of the institution's domain" is what the operator asked. A GitHub or generic provider
 * has no such gate: only admins, allowed users and (github) the allowed organizations get in.
 */
export function oauthAllowAll(provider: OAuthProvider, oauth: Pick<OAuthSettings, 'allowedDomains'>): boolean {
  return provider === 'google' && oauth.allowedDomains.length > 0
}

const CLIENT_ID = /^[\x21-\x7e]{1,256}$/
const SCOPE = /^[\x21\x23-\x5b\x5d-\x7e]{1,128}$/
const CLAIM = /^[A-Za-z0-9_.:-]{1,128}$/
const GITHUB_ORG = /^[A-Za-z0-9](?:[A-Za-z0-9-]{0,38})(?::[A-Za-z0-9_.-]{1,100})?$/
const LOOPBACK = new Set(['localhost', '127.0.0.1', '[::1]'])

export function parseClientId(input: string): string {
  const value = input.trim()
  if (!CLIENT_ID.test(value))
    throw usageError(
      `--oauth-client-id ${JSON.stringify(input)} is not a client ID (1 to 256 printable ASCII characters, no spaces)`,
      'copy the client ID from the OAuth app you registered with the provider',
    )
  return value
}

/**
 * A provider's endpoint: an absolute https URL without credentials or fragment; http only for a
 * provider on this machine (loopback), where nothing crosses a network.
 */
export function parseEndpointUrl(input: string, flag: string): string {
  const fix = `give the provider's full URL, such as https://login.example.org/oauth2/${flag.replace('--oauth-', '').replace('-url', '')}`
  if (hasControlChar(input) || /\s/.test(input)) throw usageError(`${flag} holds spaces or control characters`, fix)
  let url: URL
  try {
    url = new URL(input)
  } catch {
    throw usageError(`${flag} ${JSON.stringify(input)} is not a URL`, fix)
  }
  if (url.protocol !== 'https:' && !(url.protocol === 'http:' && LOOPBACK.has(url.hostname)))
    throw usageError(
      `${flag} ${JSON.stringify(input)} is not https (the client secret and users' tokens travel to it)`,
      `${fix} (http only for a provider on this machine: localhost, 127.0.0.1)`,
    )
  if (url.username || url.password)
    throw usageError(`${flag} holds a user name or password`, `${fix}, without credentials`)
  if (url.hash) throw usageError(`${flag} ${JSON.stringify(input)} has a #fragment`, `${fix}, without the #fragment`)
  return url.href
}

export function parseScope(input: string): string {
  if (!SCOPE.test(input))
    throw usageError(
      `--oauth-scope ${JSON.stringify(input)} is not one OAuth scope (printable ASCII, no spaces, quotes or backslashes)`,
      'give each scope with its own --oauth-scope, such as --oauth-scope openid --oauth-scope profile',
    )
  return input
}

export function parseUsernameClaim(input: string): string {
  if (!CLAIM.test(input))
    throw usageError(
      `--oauth-username-claim ${JSON.stringify(input)} is not a claim name`,
      "give the key of the provider's user data that holds the login name, such as preferred_username",
    )
  return input
}

export function parseGitHubOrg(input: string): string {
  if (!GITHUB_ORG.test(input.trim()))
    throw usageError(
      `--oauth-allowed-org ${JSON.stringify(input)} is not a GitHub organization (or organization:team)`,
      'give the name as in its URL, such as my-lab or my-lab:teaching-assistants',
    )
  return input.trim()
}

export function parseAllowedDomain(input: string): string {
  return parseDomain(input, '--oauth-allowed-domain')
}

/** What the client secret may be: one line of printable ASCII (the config reads it as ASCII), at most 4096 characters. */
export function oauthSecretProblem(text: string): string | undefined {
  const value = text.replace(/\r?\n$/, '')
  if (value.trim().length === 0) return 'is empty'
  if (value.length > 4096) return 'is longer than 4096 characters'
  if (!/^[\x20-\x7e]+$/.test(value)) return 'holds a line break, a control or a non-ASCII character'
  if (value !== value.trim()) return 'has spaces around it'
  return undefined
}
