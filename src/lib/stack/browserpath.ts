import {createHash, randomBytes} from 'node:crypto'
import http from 'node:http'
import type {AddressInfo} from 'node:net'
import tls from 'node:tls'

import {keepAlive} from './hubapi.js'
import type {Settings} from '../config/settings.js'

/**
 * The path a browser takes, tried as a browser takes it: through nginx on the public port, with
 * the Origin a browser sends, to a probe that hubctl puts behind the proxy for the moment (a route
 * of its own, `/hubctl-probe-<random>/`, to a listener of this process on loopback). The probe
 * sees what JupyterHub and the user servers would see: they refuse an API call or a websocket
 * when the Host they receive does not match the browser's Origin, so a Host without its port
 * (nginx's `$host` on any port but 443) broke every notebook while every health check passed.
 */
export interface BrowserPathResult {
  ok: boolean
  /** What failed, in the words an operator needs (empty when ok). */
  problems: string[]
  origin: string
  /** The Host the probe received for a page request and for the websocket upgrade. */
  seenHost?: string
  websocketStatus?: number
}

const WRONG_CERTIFICATE = 'wrong certificate'

export interface BrowserPathOptions {
  settings: Pick<Settings, 'domains' | 'ports' | 'subdomains'>
  /** The proxy's REST API and its token (read from its 0600 file by the caller). */
  proxyApi: string
  proxyToken: string
  /** Where nginx listens (loopback by default). */
  connectHost?: string
  /**
   * The SHA-256 fingerprint (as Node prints it) of the certificate nginx must present: hubctl's
   * live one. Anything else answering on the port (or nginx still serving an old certificate) is
   * named as the problem it is, and the probe goes no further on that connection.
   */
  fingerprint256?: string
  timeoutMs?: number
}

/** The Host header and Origin a browser sends for the hub's primary URL. */
export function browserOrigin(settings: Pick<Settings, 'domains' | 'ports'>): {host: string; origin: string} {
  const host = settings.ports.https === 443 ? settings.domains[0] : `${settings.domains[0]}:${settings.ports.https}`
  return {host, origin: `https://${host}`}
}

/**
 * The name the probe comes to: the hub's; with --subdomains a user's host under the wildcard
 * (NAME.DOMAIN, where every user's notebook runs: nginx's *.DOMAIN, the wildcard certificate, the
 * Host the proxy routes by), a name no user has.
 */
export function probeName(settings: Pick<Settings, 'domains' | 'subdomains'>, random: string): string {
  return settings.subdomains ? `hubctl-probe-${random}.${settings.domains[0]}` : settings.domains[0]
}

export async function checkBrowserPath(options: BrowserPathOptions): Promise<BrowserPathResult> {
  const timeoutMs = options.timeoutMs ?? 5000
  const random = randomBytes(8).toString('hex')
  const servername = probeName(options.settings, random)
  const {host, origin} = browserOrigin({...options.settings, domains: [servername]})
  const routePath = `/hubctl-probe-${random}`
  const seen: {page?: http.IncomingHttpHeaders; upgrade?: http.IncomingHttpHeaders} = {}
  const probe = http.createServer((request, response) => {
    seen.page = request.headers
    response.writeHead(200, {'Content-Type': 'text/plain'}).end('hubctl probe\n')
  })
  probe.on('upgrade', (request, socket) => {
    seen.upgrade = request.headers
    const key = String(request.headers['sec-websocket-key'] ?? '')
    const accept = createHash('sha1').update(`${key}258EAFA5-E914-47DA-95CA-C5AB0DC85B11`).digest('base64')
    socket.end(
      `HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: ${accept}\r\n\r\n`,
    )
  })
  await new Promise<void>((resolve, reject) => {
    probe.once('error', reject)
    probe.listen(0, '127.0.0.1', () => resolve())
  })
  const port = (probe.address() as AddressInfo).port
  const problems: string[] = []
  // With --subdomains the proxy routes by host first (--host-routing): the route names the user's host.
  const routeKey = options.settings.subdomains ? `/${servername}${routePath}` : routePath
  const route = `${options.proxyApi.replace(/\/+$/, '')}/api/routes${routeKey}`
  const auth = {Authorization: `token ${options.proxyToken}`}
  try {
    const added = await keepAlive(
      timeoutMs,
      fetch(route, {
        method: 'POST',
        headers: {...auth, 'Content-Type': 'application/json'},
        body: JSON.stringify({target: `http://127.0.0.1:${port}`}),
        signal: AbortSignal.timeout(timeoutMs),
      }),
    )
    await added.body?.cancel()
    if (!added.ok) return {ok: false, problems: [`the proxy's API refused a probe route (${added.status})`], origin}
    const page = await request(options, servername, host, origin, `${routePath}/api/status`, false, timeoutMs)
    if (page.error === WRONG_CERTIFICATE)
      return {
        ok: false,
        problems: [
          `the https port ${options.settings.ports.https} presents a certificate (SHA-256 ${page.detail}) other than hubctl's live one: nginx was not reloaded since the certificate changed, or another program answers there`,
        ],
        origin,
      }
    if (page.status !== 200)
      problems.push(
        `a request through nginx (https port ${options.settings.ports.https}) to a route of the proxy got ${page.status || page.error}, not 200`,
      )
    else if (seen.page?.host !== host)
      problems.push(
        `nginx forwards Host "${seen.page?.host ?? ''}" for a browser at ${origin}: JupyterHub and the user servers refuse its API calls and websockets as cross-origin`,
      )
    const upgrade = await request(
      options,
      servername,
      host,
      origin,
      `${routePath}/api/kernels/probe/channels`,
      true,
      timeoutMs,
    )
    if (upgrade.status !== 101)
      problems.push(
        `a websocket upgrade through nginx got ${upgrade.status || upgrade.error}, not 101: notebooks cannot reach their kernels`,
      )
    else if (seen.upgrade?.host !== host)
      problems.push(
        `nginx forwards Host "${seen.upgrade?.host ?? ''}" on a websocket from ${origin}: the servers refuse kernel websockets`,
      )
    return {ok: problems.length === 0, problems, origin, seenHost: seen.page?.host, websocketStatus: upgrade.status}
  } finally {
    await keepAlive(
      timeoutMs,
      fetch(route, {method: 'DELETE', headers: auth, signal: AbortSignal.timeout(timeoutMs)}),
    ).then(
      (r) => r.body?.cancel(),
      () => {},
    )
    probe.closeAllConnections()
    await new Promise((resolve) => probe.close(resolve))
  }
}

/**
 * The TLS connection to nginx, checked before a byte of the request is sent: with a pinned
 * fingerprint, a certificate other than hubctl's live one ends it here.
 */
function connect(
  options: BrowserPathOptions,
  servername: string,
  timeoutMs: number,
): Promise<{socket: tls.TLSSocket} | {status: 0; error: string; detail?: string}> {
  return new Promise((resolve) => {
    const socket = tls.connect({
      host: options.connectHost ?? '127.0.0.1',
      port: options.settings.ports.https,
      servername,
      // The chain and names are doctor's certificate check; here the certificate must be hubctl's
      // live one (the pin below), whatever signed it (self-signed included).
      rejectUnauthorized: false,
      ALPNProtocols: ['http/1.1'],
      timeout: timeoutMs,
    })
    socket.once('secureConnect', () => {
      socket.setTimeout(0)
      const seen = socket.getPeerCertificate().fingerprint256
      if (options.fingerprint256 !== undefined && seen !== options.fingerprint256) {
        socket.destroy()
        resolve({status: 0, error: WRONG_CERTIFICATE, detail: seen})
      } else resolve({socket})
    })
    socket.once('timeout', () => socket.destroy(new Error('no answer')))
    socket.once('error', (error) => resolve({status: 0, error: (error as NodeJS.ErrnoException).code ?? error.message}))
  })
}

/** One https request to nginx as a browser makes it (Host, Origin, the SNI of the name probed). */
async function request(
  options: BrowserPathOptions,
  servername: string,
  host: string,
  origin: string,
  path: string,
  upgrade: boolean,
  timeoutMs: number,
): Promise<{status: number; error?: string; detail?: string}> {
  const connected = await connect(options, servername, timeoutMs)
  if (!('socket' in connected)) return connected
  const {socket} = connected
  return new Promise((resolve) => {
    const req = http.request({
      createConnection: () => socket,
      path,
      method: 'GET',
      headers: {
        Host: host,
        Origin: origin,
        'User-Agent': 'hubctl-doctor (browser path probe)',
        ...(upgrade
          ? {
              Connection: 'Upgrade',
              Upgrade: 'websocket',
              'Sec-WebSocket-Version': '13',
              'Sec-WebSocket-Key': randomBytes(16).toString('base64'),
            }
          : {}),
      },
      timeout: timeoutMs,
    })
    req.on('upgrade', (response, socket) => {
      socket.destroy()
      resolve({status: response.statusCode ?? 0})
    })
    req.on('response', (response) => {
      response.resume()
      resolve({status: response.statusCode ?? 0})
    })
    req.on('timeout', () => req.destroy(new Error('no answer')))
    req.on('error', (error) => resolve({status: 0, error: (error as NodeJS.ErrnoException).code ?? error.message}))
    req.end()
  })
}
