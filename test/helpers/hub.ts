import {expect} from 'chai'
import http from 'node:http'
import https from 'node:https'

/*
 * The hub as a browser sees it, without a browser: requests as a browser's navigation sends them,
 * a cookie jar, and the login form. For a real browser (Chromium), see browser.ts.
 */

export interface Reply {
  status: number
  location?: string
  body: string
  /** The cookies this reply set, as name=value. */
  cookies: string[]
}

/**
 * A minimal browser on one origin (http, or https trusting the hub's own certificate `ca` only). Each
 * request is sent as a browser's navigation sends it (Sec-Fetch-Mode: navigate; fetch() always says
 * cors, and JupyterHub 4.1+ sets its _xsrf cookie only for a navigation). The jar keeps cookies as a
 * browser does: a later one of the same name replaces the earlier, an expired or emptied one is
 * dropped. `cookie`: what the browser already holds (a Cookie header), say cookies signed with a
 * secret a rotation replaced. `localAddress`: the IPv4 source address of every connection (any
 * 127.x on Linux), to be another client address as nginx sees it. `timeoutMs`: how long a request
 * may go unanswered (30 s).
 */
export class HubBrowser {
  readonly cookies = new Map<string, string>()
  /** Every Set-Cookie header received, whole (with its flags), in order. */
  readonly setCookieHeaders: string[] = []

  constructor(
    readonly origin: string,
    private readonly options: {
      ca?: string
      cookie?: string
      localAddress?: string
      timeoutMs?: number
      /** Connect here whatever the origin's name (a name DNS does not know, as Chromium's --host-resolver-rules). */
      resolveTo?: string
    } = {},
  ) {
    for (const pair of options.cookie ? options.cookie.split('; ') : []) this.keep(pair, false)
  }

  /** The Cookie header this browser sends. */
  get cookieHeader(): string {
    return [...this.cookies].map(([name, value]) => `${name}=${value}`).join('; ')
  }

  request(
    pathOrUrl: string,
    options: {
      method?: string
      form?: Record<string, string> | URLSearchParams
      /** A JSON body, sent as a page's script sends it (fetch: Sec-Fetch-Mode cors, with Origin). */
      json?: unknown
      headers?: Record<string, string>
    } = {},
  ): Promise<Reply> {
    const url = new URL(pathOrUrl, this.origin)
    if (url.origin !== this.origin) throw new Error(`a redirect left the hub's origin: ${url.href}`)
    const body = options.form
      ? new URLSearchParams(options.form).toString()
      : options.json === undefined
        ? undefined
        : JSON.stringify(options.json)
    const byScript = options.json !== undefined
    const send = url.protocol === 'https:' ? https.request : http.request
    return new Promise((resolve, reject) => {
      const request = send(
        url,
        {
          method: options.method ?? 'GET',
          ...(url.protocol === 'https:' ? {ca: this.options.ca} : {}),
          ...(this.options.localAddress ? {localAddress: this.options.localAddress, family: 4} : {}),
          ...(this.options.resolveTo ? {lookup: fixedLookup(this.options.resolveTo)} : {}),
          headers: {
            Accept: byScript ? 'application/json' : 'text/html,application/json',
            'Sec-Fetch-Mode': byScript ? 'cors' : 'navigate',
            'Sec-Fetch-Site': 'same-origin',
            'Sec-Fetch-Dest': byScript ? 'empty' : 'document',
            'User-Agent': 'hubctl-e2e',
            ...(this.cookies.size > 0 ? {Cookie: this.cookieHeader} : {}),
            ...(body
              ? {
                  'Content-Type': byScript ? 'application/json' : 'application/x-www-form-urlencoded',
                  'Content-Length': Buffer.byteLength(body),
                  Origin: this.origin,
                }
              : {}),
            ...options.headers,
          },
          timeout: this.options.timeoutMs ?? 30_000,
        },
        (response) => {
          const cookies: string[] = []
          for (const header of response.headers['set-cookie'] ?? []) this.setCookieHeaders.push(header)
          for (const header of response.headers['set-cookie'] ?? [])
            cookies.push(this.keep(header.split(';')[0], /expires=Thu, 01 Jan 1970/i.test(header)))
          const chunks: Buffer[] = []
          response.on('data', (chunk: Buffer) => chunks.push(chunk))
          response.on('end', () =>
            resolve({
              status: response.statusCode ?? 0,
              location: response.headers.location,
              body: Buffer.concat(chunks).toString('utf8'),
              cookies,
            }),
          )
        },
      )
      request.on('timeout', () => request.destroy(new Error(`${url.href}: no answer`)))
      request.on('error', reject)
      request.end(body)
    })
  }

  /** GET, following redirects (at most `hops`); the last reply and the URL it came from. */
  async follow(start: string, hops = 15): Promise<Reply & {url: string}> {
    let url = new URL(start, this.origin).href
    for (let i = 0; i < hops; i++) {
      const reply = await this.request(url)
      if (reply.status < 300 || reply.status >= 400 || !reply.location) return {...reply, url}
      url = new URL(reply.location, url).href
    }
    throw new Error(`more than ${hops} redirects from ${start}`)
  }

  /** Keep (or, expired or emptied, drop) one name=value; returns it. */
  private keep(pair: string, expired: boolean): string {
    const eq = pair.indexOf('=')
    const name = pair.slice(0, eq).trim()
    const value = pair.slice(eq + 1).trim()
    if (expired || value === '') this.cookies.delete(name)
    else this.cookies.set(name, value)
    return `${name}=${value}`
  }
}

/** A dns.lookup that answers every name with one IPv4 address (both of its calling conventions). */
function fixedLookup(address: string): NonNullable<http.RequestOptions['lookup']> {
  return ((_name: string, options: {all?: boolean}, callback: (...args: unknown[]) => void) => {
    if (options?.all) callback(null, [{address, family: 4}])
    else callback(null, address, 4)
  }) as unknown as NonNullable<http.RequestOptions['lookup']>
}

/** The _xsrf token a page's form carries (JupyterHub 4.1+; none before). */
export function xsrfOf(html: string): string | undefined {
  return /name="_xsrf"\s+value="([^"]+)"/.exec(html)?.[1]
}

/** The hub's login form, loaded once as a navigation (no redirect followed): its reply and its _xsrf token. */
export async function loginForm(browser: HubBrowser, path = '/hub/login'): Promise<{page: Reply; xsrf?: string}> {
  const page = await browser.request(path)
  return {page, xsrf: xsrfOf(page.body)}
}

/** The login form's POST, once, with the form's _xsrf token when it had one; the hub's reply. */
export function submitLogin(
  browser: HubBrowser,
  form: {user: string; password: string; xsrf?: string},
  path = '/hub/login',
): Promise<Reply> {
  return browser.request(path, {
    method: 'POST',
    form: {...(form.xsrf ? {_xsrf: form.xsrf} : {}), username: form.user, password: form.password},
  })
}

/**
 * Log in through the hub's login form as a browser does, once (no retry: a refused login fails
 * the test). The form is loaded as a navigation, so JupyterHub 4.1+ sets the _xsrf cookie the POST
 * then carries. The POST is sent in a later second than the form on purpose: without the cookie
 * (a client that says Sec-Fetch-Mode: cors, as fetch() does, gets none) JupyterHub compares the
 * form's token with one it signs anew, which holds the current second, so a login that crossed a
 * second boundary, as often right after the hub restarted, was refused with 403 "XSRF cookie does
 * not match POST argument". Returns the browser's Cookie header after the login.
 */
export async function logIn(browser: HubBrowser, user: string, password: string): Promise<string> {
  const {page, xsrf} = await loginForm(browser)
  expect(page.status, 'the login form').to.equal(200)
  if (xsrf)
    expect(
      page.cookies.some((c) => c.startsWith('_xsrf=')),
      'the login form sets the _xsrf cookie',
    ).to.equal(true)
  await new Promise((resolve) => setTimeout(resolve, 1000 - (Date.now() % 1000) + 50))
  const response = await submitLogin(browser, {user, password, xsrf})
  const refusal =
    /XSRF[^<]*|'_xsrf'[^<]*|Invalid username or password/.exec(response.body)?.[0] ?? response.body.slice(0, 300)
  expect(response.status, `login answers a redirect (the hub said: ${refusal})`).to.equal(302)
  expect(
    response.cookies.some((c) => /^(__Host-)?jupyterhub-hub-login="?[^";]{16,}/.test(c)),
    `the login sets a login cookie (${response.cookies.map((c) => c.slice(0, 30)).join(', ')})`,
  ).to.equal(true)
  return browser.cookieHeader
}
