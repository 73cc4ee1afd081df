import fs from 'node:fs/promises'
import http from 'node:http'

import {ensureDir, writeFileAtomic} from '../files/atomic.js'
import {acmeError, errnoCode, messageOf, preflightError} from '../errors.js'
import {Layout} from '../config/layout.js'
import type {Nginx} from '../config/nginx.js'

// ---------------------------------------------------------------------------------------------
// The http-01 responders

export interface Responder {
  kind: 'hubctl' | 'webroot'
  add(token: string, keyAuthorization: string): Promise<void>
  remove(token: string): Promise<void>
  close(): Promise<void>
}

/** hubctl's own listener on the HTTP port; undefined when the port is taken (nginx answers then). */
export async function listen(port: number): Promise<Responder | undefined> {
  const answers = new Map<string, string>()
  const server = http.createServer((request, response) => {
    const match = /^\/\.well-known\/acme-challenge\/([A-Za-z0-9_-]+)$/.exec((request.url ?? '').split('?')[0])
    const answer = match ? answers.get(match[1]) : undefined
    if ((request.method === 'GET' || request.method === 'HEAD') && answer !== undefined) {
      response.writeHead(200, {'content-type': 'text/plain', 'content-length': Buffer.byteLength(answer)})
      response.end(request.method === 'HEAD' ? undefined : answer)
    } else {
      response.writeHead(404, {'content-type': 'text/plain'})
      response.end('not found\n')
    }
  })
  const tryListen = (host: string) =>
    new Promise<string | undefined>((resolve) => {
      const onError = (error: Error) => resolve(errnoCode(error) ?? 'ERROR')
      server.once('error', onError)
      server.listen({port, host, exclusive: true}, () => {
        server.off('error', onError)
        resolve(undefined)
      })
    })
  // '::' takes IPv4 as well (dual stack); without IPv6, 0.0.0.0.
  let failure = await tryListen('::')
  if (failure === 'EAFNOSUPPORT' || failure === 'EADDRNOTAVAIL') failure = await tryListen('0.0.0.0')
  if (failure === 'EADDRINUSE' || failure === 'EACCES') return undefined
  if (failure)
    throw preflightError(
      `cannot listen on port ${port} to answer the ACME challenge (${failure})`,
      "free the port, or start nginx with the hub's site so it answers from the webroot",
    )
  return {
    kind: 'hubctl',
    async add(token, keyAuthorization) {
      answers.set(token, keyAuthorization)
    },
    async remove(token) {
      answers.delete(token)
    },
    close: () =>
      new Promise<void>((resolve) => {
        server.close(() => resolve())
        server.closeAllConnections()
      }),
  }
}

export function webroot(layout: Layout): Responder {
  // The token comes from the CA: checked to be one base64url word before it becomes a file name.
  const file = (token: string) => layout.acmeChallengeFile(token)
  return {
    kind: 'webroot',
    async add(token, keyAuthorization) {
      await ensureDir(layout.acmeChallengeDir, 0o755)
      await writeFileAtomic(file(token), keyAuthorization, {mode: 0o644})
    },
    async remove(token) {
      await fs.rm(file(token), {force: true})
    },
    async close() {},
  }
}

/**
 * When the HTTP port is taken: who holds it decides. The nginx hubctl configures (the system's at
 * prefix `/`, found by its pid file) answers from the webroot, with a challenge site of the order's
 * duration for the names its hub site does not answer yet (the first issuance, while Debian's default
 * site holds port 80). Any other program is named and refused before the CA is asked: its answer
 * would never be the token.
 */
export async function takenPortResponder(
  layout: Layout,
  port: number,
  domains: string[],
  nginx: Nginx | undefined,
  log: (line: string) => void = () => {},
): Promise<Responder> {
  const {portHolder} = await import('../stack/listeners.js')
  const holder = await portHolder(port)
  const master = await nginx?.runningPid()
  if (holder?.pid === undefined) return webroot(layout)
  const ours = master !== undefined && (holder.pid === master || holder.ppid === master)
  if (!ours) {
    const who = `${holder.name ?? 'a program'} (pid ${holder.pid}, uid ${holder.uid})`
    if (holder.name === 'nginx')
      throw acmeError(
        `port ${port} is held by ${who}, an nginx that is not the one hubctl configures (${layout.nginxPid} ${master === undefined ? 'names no running nginx' : `names pid ${master}`}), so the CA's http-01 request would not reach hubctl's token`,
        `stop that nginx or run it from ${layout.nginxPid}'s configuration, then run again`,
      )
    throw acmeError(
      `port ${port} is held by ${who}, not by nginx, so the CA's http-01 request would reach it instead of hubctl's token`,
      `stop it and keep it from starting again (systemctl disable --now <its service>), or free port ${port}; then run again (or use --tls manual or --tls self-signed)`,
    )
  }
  if (!nginx) return webroot(layout)
  const site = await nginx.openChallengeSite(domains, port)
  if (site.names.length > 0)
    log(`nginx holds port ${port}: a challenge site for ${site.names.join(', ')} serves the webroot during the order`)
  return {...webroot(layout), close: () => site.close()}
}

/** Fetch the token the way the CA will, before telling the CA; a wrong answer is named here. */
export async function selfCheck(
  url: string,
  expected: string,
  responder: 'hubctl' | 'webroot',
  timeoutMs = 10_000,
): Promise<void> {
  const causes =
    responder === 'hubctl'
      ? 'hubctl answers on this port itself right now: the name may resolve to another machine (DNS elsewhere), or a firewall or NAT may block the port'
      : "nginx should serve it from the webroot: another server may hold the port, the nginx site may not be the hub's (hubctl init installs it), the name may resolve to another machine, or a firewall may block the port"
  let result: {status: number; body: string}
  try {
    result = await new Promise((resolve, reject) => {
      const request = http.get(url, {timeout: timeoutMs}, (response) => {
        const chunks: Buffer[] = []
        response.on('data', (chunk: Buffer) => chunks.push(chunk))
        response.on('end', () =>
          resolve({status: response.statusCode ?? 0, body: Buffer.concat(chunks).toString('utf8')}),
        )
        response.on('error', reject)
      })
      request.on('timeout', () => request.destroy(Object.assign(new Error('timed out'), {code: 'ETIMEDOUT'})))
      request.on('error', reject)
    })
  } catch (error) {
    const code = errnoCode(error)
    if (code === 'ENOTFOUND' || code === 'EAI_AGAIN' || code === 'ENODATA') {
      const host = new URL(url).hostname
      throw acmeError(
        `the ACME challenge at ${url} cannot be fetched (${code}): ${host} does not resolve to any address from this machine, so the CA cannot reach it either`,
        `create the DNS A (and AAAA) record of ${host} pointing at this machine, wait until it resolves, then run again`,
      )
    }
    throw acmeError(
      `the ACME challenge at ${url} cannot be fetched (${code ?? messageOf(error)}); ${causes}`,
      'make the domain resolve to this machine and the HTTP port reachable, then run again',
    )
  }
  if (result.status !== 200 || result.body.trim() !== expected) {
    const got = result.status === 200 ? 'a different answer' : `HTTP ${result.status}`
    throw acmeError(
      `the ACME challenge at ${url} gave ${got} instead of the token; ${causes}`,
      "make the domain resolve to this machine and the HTTP port reach the hub's nginx (or nothing, so hubctl answers), then run again",
    )
  }
}
