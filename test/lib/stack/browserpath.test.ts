import {expect} from 'chai'
import http from 'node:http'
import https from 'node:https'
import type {AddressInfo} from 'node:net'

import {checkBrowserPath} from '../../../src/lib/stack/browserpath.js'
import {certificateInfo} from '../../../src/lib/tls/certstore.js'
import {makeSelfSigned} from '../../../src/lib/tls/selfsigned.js'

/*
 * doctor's browser-path probe talks only to nginx presenting hubctl's live certificate: a real TLS
 * listener on loopback with one certificate, the probe pinned to another, and a proxy API that
 * records the routes it is asked for.
 */
describe('browser path probe: the certificate pin', function () {
  this.timeout(30_000)
  let tlsServer: https.Server
  let proxyApi: http.Server
  const requestsSeen: string[] = []
  const routeCalls: string[] = []
  let served: string

  before(async () => {
    const pair = await makeSelfSigned(['hub.example.test'])
    served = certificateInfo(pair.fullchain).fingerprint256
    tlsServer = https.createServer({key: pair.privkey, cert: pair.fullchain}, (request, response) => {
      requestsSeen.push(`${request.method} ${request.url}`)
      response.writeHead(404).end()
    })
    proxyApi = http.createServer((request, response) => {
      routeCalls.push(`${request.method} ${request.url}`)
      request.resume()
      response.writeHead(request.method === 'POST' ? 201 : 204).end()
    })
    await new Promise<void>((resolve) => tlsServer.listen(0, '127.0.0.1', resolve))
    await new Promise<void>((resolve) => proxyApi.listen(0, '127.0.0.1', resolve))
  })

  after(async () => {
    tlsServer.closeAllConnections()
    await new Promise((resolve) => tlsServer.close(resolve))
    await new Promise((resolve) => proxyApi.close(resolve))
  })

  beforeEach(() => {
    requestsSeen.length = 0
    routeCalls.length = 0
  })

  function probe(fingerprint256: string) {
    const port = (tlsServer.address() as AddressInfo).port
    return checkBrowserPath({
      settings: {domains: ['hub.example.test'], ports: {https: port} as never},
      proxyApi: `http://127.0.0.1:${(proxyApi.address() as AddressInfo).port}`,
      proxyToken: 'not-a-real-token',
      fingerprint256,
    })
  }

  it('names a certificate other than the live one, and sends that listener no request', async () => {
    const other = certificateInfo((await makeSelfSigned(['hub.example.test'])).fullchain).fingerprint256
    const result = await probe(other)
    expect(result.ok).to.equal(false)
    expect(result.problems).to.have.length(1)
    expect(result.problems[0]).to.include(`SHA-256 ${served}`).and.include("other than hubctl's live one")
    expect(requestsSeen, 'requests that reached the wrong listener').to.deep.equal([])
    // The probe route was added and removed again.
    expect(routeCalls.map((call) => call.split(' ')[0])).to.deep.equal(['POST', 'DELETE'])
  })

  it('goes on to the request when the live certificate answers', async () => {
    const result = await probe(served)
    // The page request, then the websocket upgrade.
    expect(requestsSeen).to.have.length(2)
    expect(requestsSeen[0]).to.match(/^GET \/hubctl-probe-[0-9a-f]+\/api\/status$/)
    expect(requestsSeen[1]).to.match(/^GET \/hubctl-probe-[0-9a-f]+\/api\/kernels\/probe\/channels$/)
    // This listener is not the proxy: the probe says so rather than passing.
    expect(result.ok).to.equal(false)
    expect(result.problems.join(' ')).to.include('got 404, not 200')
  })
})

describe("browser path probe with --subdomains: a user's host", function () {
  this.timeout(30_000)

  it('comes to a name under the wildcard (SNI, Host, Origin) and routes it by that host at the proxy', async () => {
    const pair = await makeSelfSigned(['hub.example.test', '*.hub.example.test'])
    const seen: Array<{servername?: string; host?: string; origin?: string; url?: string}> = []
    const routeCalls: string[] = []
    const tlsServer = https.createServer({key: pair.privkey, cert: pair.fullchain}, (request, response) => {
      seen.push({
        servername: (request.socket as import('node:tls').TLSSocket).servername || undefined,
        host: request.headers.host,
        origin: request.headers.origin,
        url: request.url,
      })
      response.writeHead(404).end()
    })
    const proxyApi = http.createServer((request, response) => {
      routeCalls.push(`${request.method} ${request.url}`)
      request.resume()
      response.writeHead(request.method === 'POST' ? 201 : 204).end()
    })
    await new Promise<void>((resolve) => tlsServer.listen(0, '127.0.0.1', resolve))
    await new Promise<void>((resolve) => proxyApi.listen(0, '127.0.0.1', resolve))
    try {
      const port = (tlsServer.address() as AddressInfo).port
      await checkBrowserPath({
        settings: {
          domains: ['hub.example.test', '*.hub.example.test'],
          subdomains: true,
          ports: {https: port} as never,
        },
        proxyApi: `http://127.0.0.1:${(proxyApi.address() as AddressInfo).port}`,
        proxyToken: 'not-a-real-token',
        fingerprint256: certificateInfo(pair.fullchain).fingerprint256,
      })
      expect(seen).to.have.length(2)
      const name = /^(hubctl-probe-([0-9a-f]+)\.hub\.example\.test)$/.exec(seen[0].servername ?? '')
      expect(name, `SNI ${seen[0].servername}`).to.not.equal(null)
      expect(seen[0].host).to.equal(`${name![1]}:${port}`)
      expect(seen[0].origin).to.equal(`https://${name![1]}:${port}`)
      expect(routeCalls[0]).to.equal(`POST /api/routes/${name![1]}/hubctl-probe-${name![2]}`)
    } finally {
      tlsServer.closeAllConnections()
      await new Promise((resolve) => tlsServer.close(resolve))
      await new Promise((resolve) => proxyApi.close(resolve))
    }
  })
})
