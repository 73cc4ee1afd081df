import {domainToASCII} from 'node:url'

import {usageError} from './errors.js'

/** Whether the text holds a control character (C0, or DEL): a line break, a NUL, an escape. */
export function hasControlChar(text: string): boolean {
  return [...text].some((c) => c.charCodeAt(0) < 0x20 || c.charCodeAt(0) === 0x7f)
}

/** Whether every character is ASCII. */
export function isAscii(text: string): boolean {
  return [...text].every((c) => c.charCodeAt(0) < 0x80)
}

const LABEL = /^(?!-)[a-z0-9-]{1,63}(?<!-)$/
const USER = /^[a-z0-9_][a-z0-9_.@+-]{0,63}$/

/**
 * A DNS name for a certificate and nginx's server_name. Internationalized names are converted to
 * punycode (bücher.example → xn--bcher-kva.example); anything else that is not a plain host name
 * is refused.
 */
export function parseDomain(input: string, flag = '--domain', options: {wildcard?: boolean} = {}): string {
  // `*.name` (a certificate's wildcard, only through DNS-01) where the caller accepts one.
  if (options.wildcard && input.trim().startsWith('*.')) return `*.${parseDomain(input.trim().slice(2), flag)}`
  const raw = input.trim().replace(/\.$/, '')
  if (raw.length === 0) throw usageError(`${flag} is empty`, `give a host name such as hub.example.org`)
  if (/[\s/:@*]/.test(raw) || hasControlChar(raw)) {
    throw usageError(
      `${flag} ${JSON.stringify(input)} is not a host name (no scheme, port, path, wildcard or spaces)`,
      'give just the name, such as hub.example.org',
    )
  }
  // Every name goes through IDNA (UTS #46), plain ASCII too, as browsers and CAs do: it lower-cases,
  // converts Unicode to punycode, rejects malformed xn-- labels, and reads 0x7f.1 or 2130706433 as IPv4.
  const ascii = domainToASCII(raw)
  if (!ascii) {
    if (/^(?:0x[0-9a-f]*|[0-9]+)$/i.test(raw.split('.').pop() ?? '')) {
      throw usageError(
        `${flag} ${JSON.stringify(input)} ends in a number, so browsers and certificate authorities read it as an IP address`,
        'give a DNS name whose last label has a letter, such as hub.example.org',
      )
    }
    if (/(^|\.)xn--/i.test(raw))
      throw usageError(
        `${flag} ${JSON.stringify(input)} is not a valid host name (an xn-- label must be valid punycode)`,
        'check the spelling, or give the name in Unicode and let hubctl convert it',
      )
    if (isAscii(raw))
      throw usageError(
        `${flag} ${JSON.stringify(input)} is not a valid host name`,
        'use letters, digits and hyphens in dot-separated labels of at most 63 characters, such as hub.example.org',
      )
    throw usageError(
      `${flag} ${JSON.stringify(input)} is not a valid internationalized domain name`,
      'check the spelling, or give its punycode form (xn--...)',
    )
  }
  if (/^[0-9.]+$/.test(ascii) || ascii.includes(':')) {
    throw usageError(
      `${flag} ${JSON.stringify(input)} is an IP address`,
      'give a DNS name that points at this machine; certificates are issued for names',
    )
  }
  const labels = ascii.split('.')
  if (ascii.length > 253 || !labels.every((label) => LABEL.test(label))) {
    throw usageError(
      `${flag} ${JSON.stringify(input)} is not a valid host name`,
      'use letters, digits and hyphens in dot-separated labels of at most 63 characters, such as hub.example.org',
    )
  }
  return ascii
}

export function parseEmail(input: string): string {
  const value = input.trim()
  const at = value.lastIndexOf('@')
  const local = value.slice(0, at)
  if (at < 1 || !/^[A-Za-z0-9.!#%&*+/=?^_`{|}~-]{1,64}$/.test(local)) {
    throw usageError(
      `--email ${JSON.stringify(input)} is not an e-mail address`,
      "give an address such as admin@example.org; Let's Encrypt writes to it before a certificate expires",
    )
  }
  const domain = parseDomain(value.slice(at + 1), '--email domain')
  if (!domain.includes('.'))
    throw usageError(
      `--email ${JSON.stringify(input)} has no dotted domain`,
      'give an address such as admin@example.org',
    )
  return `${local}@${domain}`
}

/**
 * A JupyterHub user name. JupyterHub lower-cases names and the default PAM authenticator maps
 * them to system users, so hubctl accepts the portable set and refuses quotes, backslashes,
 * spaces, newlines and shell or nginx metacharacters outright.
 */
export function parseUserName(input: string, flag: string): string {
  if (input !== input.trim() || !USER.test(input)) {
    const lower = input.toLowerCase()
    const hint = lower !== input && USER.test(lower) ? ` (JupyterHub user names are lower case: use ${lower})` : ''
    throw usageError(
      `${flag} ${JSON.stringify(input)} is not a valid user name${hint}`,
      'use 1 to 64 characters from a-z, 0-9, and _ . @ + - (starting with a letter, digit or _)',
    )
  }
  return input
}

export function parsePort(input: string | number, flag: string): number {
  const text = String(input).trim()
  const port = Number(text)
  if (!/^[0-9]{1,5}$/.test(text) || !Number.isInteger(port) || port < 1 || port > 65_535) {
    throw usageError(
      `${flag} ${JSON.stringify(String(input))} is not a TCP port`,
      'give a whole number from 1 to 65535',
    )
  }
  return port
}

/** Ports must all differ; names the two flags that clash. */
export function assertDistinctPorts(ports: Record<string, number>): void {
  const seen = new Map<number, string>()
  for (const [flag, port] of Object.entries(ports)) {
    const other = seen.get(port)
    if (other) throw usageError(`${other} and ${flag} are both ${port}`, 'give each port a different number')
    seen.set(port, flag)
  }
}

export function unique<T>(values: T[]): T[] {
  return [...new Set(values)]
}
