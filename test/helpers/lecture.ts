import {randomBytes} from 'node:crypto'
import http from 'node:http'
import https from 'node:https'

import {HubBrowser, loginForm, submitLogin} from './hub.js'
import {execute, stdoutOf} from './kernel.js'

/*
 * A class logging in, without a browser per student: each one does what Chromium does from the
 * "Sign in" click to a cell's output, over plain HTTP and a websocket. The login form as a
 * navigation (its _xsrf cookie and field), the POST and its redirects, the spawn page and its
 * progress event stream (EventSource: cookies, Accept text/event-stream), the page the hub sends
 * the user to when ready and the single-user server's OAuth round trip, then what JupyterLab's
 * script does: POST api/kernels (Origin, cookies, X-XSRFToken from the server's _xsrf cookie) and
 * the kernel's websocket (Origin and cookies), print(6*7), 42 read back.
 */

/** Where a student's way stopped, and why. */
export class LectureError extends Error {
  constructor(
    readonly step: string,
    message: string,
  ) {
    super(`${step}: ${message}`)
  }
}

export interface LectureOptions {
  /** https://localhost:PORT (through nginx) or http://127.0.0.1:PORT (a proxy). */
  origin: string
  password: string
  /** The certificate to trust for https (the hub's own). */
  ca?: string
  /** Cap for the whole way of one student (default 15 min). */
  capMs?: number
}

export interface StudentResult {
  user: string
  /** ms from the login POST to 42, when it came. */
  ms?: number
  /** Where it failed and why. */
  failure?: {step: string; message: string}
  /** How often nginx (login) or the hub (too many spawns) said 429 and the student tried again. */
  retries: number
  /** Of those, the hub's (too many spawns). */
  spawnRetries: number
  /** Whether the spawn page said the student waited for a turn (hubctl's queue). */
  waitedInLine: boolean
}

/** What a page says went wrong: JupyterHub's login or error message, else the start of its text. */
const brief = (html: string) =>
  (
    /class="[^"]*(?:login_error|error)[^"]*"[^>]*>\s*([^<]{3,300})/.exec(html)?.[1] ??
    /<h1>\s*([^<]{3,200})/.exec(html)?.[1] ??
    html.replace(/<[^>]*>/g, ' ').replace(/\s+/g, ' ')
  )
    .trim()
    .slice(0, 200)

/** Read a server-sent event stream (GET, the browser's cookies) until `done` says so; rejects if it ends first. */
function readEvents(
  browser: HubBrowser,
  path: string,
  ca: string | undefined,
  done: (data: Record<string, unknown>) => boolean,
): Promise<Record<string, unknown>> {
  const url = new URL(path, browser.origin)
  const send = url.protocol === 'https:' ? https.request : http.request
  return new Promise((resolve, reject) => {
    const request = send(
      url,
      {
        ...(url.protocol === 'https:' ? {ca} : {}),
        headers: {
          Accept: 'text/event-stream',
          'Cache-Control': 'no-cache',
          'Sec-Fetch-Mode': 'cors',
          'Sec-Fetch-Site': 'same-origin',
          'Sec-Fetch-Dest': 'empty',
          'User-Agent': 'hubctl-e2e',
          Cookie: browser.cookieHeader,
        },
        // JupyterHub sends a keepalive comment every 8 s.
        timeout: 60_000,
      },
      (response) => {
        if (response.statusCode !== 200) {
          reject(new LectureError('progress', `the event stream answered ${response.statusCode}`))
          response.resume()
          return
        }
        let buffer = ''
        let finished = false
        response.setEncoding('utf8')
        response.on('data', (chunk: string) => {
          buffer += chunk
          let end: number
          while ((end = buffer.indexOf('\n\n')) >= 0) {
            const event = buffer.slice(0, end)
            buffer = buffer.slice(end + 2)
            const data = event
              .split('\n')
              .filter((line) => line.startsWith('data:'))
              .map((line) => line.slice(5).trim())
              .join('\n')
            if (!data || finished) continue
            const parsed = JSON.parse(data) as Record<string, unknown>
            if (done(parsed)) {
              finished = true
              resolve(parsed)
              request.destroy()
            }
          }
        })
        response.on('end', () => {
          if (!finished) reject(new LectureError('progress', 'the event stream ended before the server was ready'))
        })
      },
    )
    request.on('timeout', () => request.destroy(new LectureError('progress', 'the event stream went silent')))
    request.on('error', (error) =>
      reject(error instanceof LectureError ? error : new LectureError('progress', error.message)),
    )
    request.end()
  })
}

/**
 * One student, from the "Sign in" click to 42: the ms it took and the 429 retries, or a LectureError
 * naming the step. The form is loaded first (not timed), as a person opens the page before typing.
 */
export async function student(
  user: string,
  options: LectureOptions,
): Promise<{ms: number; retries: number; spawnRetries: number; waitedInLine: boolean}> {
  const browser = new HubBrowser(options.origin, {ca: options.ca})
  const step = async <T>(name: string, fn: () => Promise<T>): Promise<T> => {
    try {
      return await fn()
    } catch (error) {
      throw error instanceof LectureError ? error : new LectureError(name, (error as Error).message)
    }
  }
  const {page, xsrf} = await step('login form', () => loginForm(browser))
  if (page.status !== 200) throw new LectureError('login form', `answered ${page.status}`)
  const began = process.hrtime.bigint()
  let posted = await step('login', () => submitLogin(browser, {user, password: options.password, xsrf}))
  let retries = 0
  let spawnRetries = 0
  let waitedInLine = false
  // nginx's login limit (per address: a class behind one address shares it) answers 429 "Wait a
  // minute, then try again": a person does, here after 20-40 s, at most 10 times.
  while (posted.status === 429 && retries < 10) {
    retries++
    await new Promise((resolve) => setTimeout(resolve, 20_000 + Math.random() * 20_000))
    posted = await step('login', () => submitLogin(browser, {user, password: options.password, xsrf}))
  }
  if (posted.status !== 302 || !posted.location)
    throw new LectureError('login', `answered ${posted.status}: ${brief(posted.body)}`)
  let next = new URL(posted.location, options.origin).href
  const cap = Date.now() + (options.capMs ?? 900_000)
  // Redirects, the spawn page and its progress, the OAuth round trip, until the server's own page.
  // A 429 (too many servers starting) is a page a person reloads, here after 1-5 s.
  for (let hops = 0; ; hops++) {
    if (Date.now() > cap || hops > 200) throw new LectureError('spawn', 'no server page within the cap')
    const path = new URL(next).pathname
    const reply = await step('spawn', () => browser.request(next))
    if (reply.status >= 300 && reply.status < 400 && reply.location) {
      next = new URL(reply.location, next).href
      continue
    }
    if (reply.status === 429) {
      retries++
      spawnRetries++
      await new Promise((resolve) => setTimeout(resolve, 1000 + Math.random() * 4000))
      continue
    }
    if (reply.status !== 200) throw new LectureError('spawn', `${path} answered ${reply.status}: ${brief(reply.body)}`)
    if (path.startsWith(`/user/${user}/`)) break
    const progress = /new EventSource\("([^"]+)"\)/.exec(reply.body)?.[1]?.replaceAll('&amp;', '&')
    if (!progress) throw new LectureError('spawn', `${path}: neither the server's page nor the spawn's progress`)
    const last = await readEvents(browser, progress, options.ca, (data) => {
      if (typeof data.message === 'string' && data.message.startsWith('Waiting for a turn')) waitedInLine = true
      return Boolean(data.ready || data.failed)
    })
    if (last.failed) throw new LectureError('spawn failed', String(last.message ?? JSON.stringify(last)))
    next = new URL(String(last.url), options.origin).href
  }
  const base = `/user/${user}/`
  const xsrfToken = browser.cookies.get('_xsrf')
  const kernel = await step('kernel', () =>
    browser.request(`${base}api/kernels`, {
      method: 'POST',
      json: {name: 'python3'},
      headers: xsrfToken ? {'X-XSRFToken': xsrfToken} : {},
    }),
  )
  if (kernel.status !== 201)
    throw new LectureError('kernel', `POST api/kernels answered ${kernel.status}: ${brief(kernel.body)}`)
  const {id} = JSON.parse(kernel.body) as {id: string}
  const wsOrigin = options.origin.replace(/^http/, 'ws')
  const replies = await step('websocket', () =>
    execute(`${wsOrigin}${base}api/kernels/${id}/channels`, {
      ca: options.ca,
      headers: {Origin: options.origin, Cookie: browser.cookieHeader, 'User-Agent': 'hubctl-e2e'},
      code: 'print(6*7)',
    }),
  )
  const printed = stdoutOf(replies).trim()
  if (printed !== '42')
    throw new LectureError(
      'output',
      `the kernel printed ${JSON.stringify(printed)} (${replies.map((m) => m.header.msg_type).join(', ')})`,
    )
  return {ms: Number(process.hrtime.bigint() - began) / 1e6, retries, spawnRetries, waitedInLine}
}

/** Names for a class of n students (hub users only, no system users): hcl<random>-NN. */
export function classNames(n: number): string[] {
  const tag = randomBytes(2).toString('hex')
  return Array.from({length: n}, (_, i) => `hcl${tag}-${String(i + 1).padStart(2, '0')}`)
}

/** A class: each student clicks "Sign in" at a random moment within `windowMs`; every result, failed or not. */
export async function lecture(users: string[], windowMs: number, options: LectureOptions): Promise<StudentResult[]> {
  return Promise.all(
    users.map(async (user) => {
      await new Promise((resolve) => setTimeout(resolve, Math.random() * windowMs))
      try {
        return {user, ...(await student(user, options))}
      } catch (error) {
        const failure =
          error instanceof LectureError
            ? {step: error.step, message: error.message.slice(error.step.length + 2)}
            : {step: 'unknown', message: (error as Error).message}
        return {user, failure, retries: 0, spawnRetries: 0, waitedInLine: false}
      }
    }),
  )
}
