import {expect} from 'chai'
import fs from 'node:fs/promises'
import http from 'node:http'
import https from 'node:https'
import type {AddressInfo} from 'node:net'
import path from 'node:path'

import {
  LETSENCRYPT_PRODUCTION,
  LETSENCRYPT_STAGING,
  acmeSettingsFrom,
  readEabHmacKey,
} from '../../../src/lib/tls/acme-settings.js'
import {acmeAgent, fetchDirectory} from '../../../src/lib/tls/acme-http.js'
import {obtainCertificate, validationError} from '../../../src/lib/tls/acme.js'
import {selfCheck} from '../../../src/lib/tls/http01.js'
import {ExitCode} from '../../../src/lib/errors.js'
import {Layout} from '../../../src/lib/config/layout.js'
import {makeSelfSigned} from '../../../src/lib/tls/selfsigned.js'
import {freePort, modeOf, tempPrefix} from '../../helpers/cli.js'
import {rejection} from '../../helpers/errors.js'

async function serve(handler: http.RequestListener): Promise<{server: http.Server; base: string}> {
  const server = http.createServer(handler)
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  return {server, base: `http://127.0.0.1:${(server.address() as AddressInfo).port}`}
}

describe('acme', () => {
  let dir: string
  beforeEach(async () => {
    dir = await tempPrefix('hubctl-acme')
  })
  afterEach(async () => {
    await fs.rm(dir, {recursive: true, force: true})
  })

  describe('settings from flags', () => {
    it("defaults to Let's Encrypt production and ECDSA P-256; --staging picks staging", async () => {
      expect(await acmeSettingsFrom({})).to.deep.equal({
        directory: LETSENCRYPT_PRODUCTION,
        keyType: 'ecdsa-p256',
        deployHooks: [],
      })
      expect((await acmeSettingsFrom({staging: true})).directory).to.equal(LETSENCRYPT_STAGING)
    })

    it('keeps earlier settings unless a flag changes them', async () => {
      const previous = {
        directory: 'https://ca.example/dir',
        keyType: 'rsa2048' as const,
        eabKid: 'kid-1',
        deployHooks: ['true'],
      }
      expect(await acmeSettingsFrom({}, previous)).to.deep.equal(previous)
      expect((await acmeSettingsFrom({'key-type': 'ecdsa-p384'}, previous)).keyType).to.equal('ecdsa-p384')
    })

    it('refuses a bad URL, a bad key type, both --staging and --acme-directory, an unreadable CA file', async () => {
      expect((await rejection(acmeSettingsFrom({'acme-directory': 'not a url'}))).exitCode).to.equal(ExitCode.USAGE)
      expect((await rejection(acmeSettingsFrom({'acme-directory': 'ftp://ca.example/dir'}))).message).to.match(
        /not an https URL/,
      )
      expect((await rejection(acmeSettingsFrom({'key-type': 'dsa'}))).message).to.match(/--key-type "dsa"/)
      expect(
        (await rejection(acmeSettingsFrom({staging: true, 'acme-directory': 'https://ca.example/dir'}))).exitCode,
      ).to.equal(ExitCode.USAGE)
      expect((await rejection(acmeSettingsFrom({'acme-ca-cert': path.join(dir, 'missing.pem')}))).message).to.match(
        /cannot be read \(ENOENT\)/,
      )
      await fs.writeFile(path.join(dir, 'junk.pem'), 'junk')
      expect((await rejection(acmeSettingsFrom({'acme-ca-cert': path.join(dir, 'junk.pem')}))).message).to.match(
        /not a PEM certificate/,
      )
    })

    it('adds deploy hooks to the kept ones (once each) and refuses an empty one', async () => {
      const previous = {directory: 'https://ca.example/dir', keyType: 'ecdsa-p256' as const, deployHooks: ['a']}
      expect((await acmeSettingsFrom({'deploy-hook': ['b', 'a', 'b']}, previous)).deployHooks).to.deep.equal(['a', 'b'])
      expect((await acmeSettingsFrom({'deploy-hook': ['b']})).deployHooks).to.deep.equal(['b'])
      const empty = await rejection(acmeSettingsFrom({'deploy-hook': ['  ']}, previous))
      expect(empty.exitCode).to.equal(ExitCode.USAGE)
      expect(empty.message).to.match(/--deploy-hook is empty/)
    })

    it("keeps --http-port only when it differs from the hub's HTTP port, and refuses a bad one", async () => {
      expect((await acmeSettingsFrom({'http-port': '5002'}, undefined, 80)).httpPort).to.equal(5002)
      expect(await acmeSettingsFrom({'http-port': '80'}, undefined, 80)).not.to.have.property('httpPort')
      const kept = {
        directory: 'https://ca.example/dir',
        keyType: 'ecdsa-p256' as const,
        deployHooks: [],
        httpPort: 5002,
      }
      expect((await acmeSettingsFrom({}, kept, 80)).httpPort).to.equal(5002)
      // Back to the hub's own port: the kept one is dropped.
      expect(await acmeSettingsFrom({'http-port': '80'}, kept, 80)).not.to.have.property('httpPort')
      for (const bad of ['0', '65536', 'http', '', '80.5']) {
        const error = await rejection(acmeSettingsFrom({'http-port': bad}, undefined, 80))
        expect(error.exitCode, bad).to.equal(ExitCode.USAGE)
        expect(error.message, bad).to.match(/--http-port .* is not a port/)
      }
    })

    it('refuses an --eab-kid with spaces or control characters', async () => {
      expect((await rejection(acmeSettingsFrom({'eab-kid': 'a kid'}))).message).to.match(
        /--eab-kid "a kid" is not a key id/,
      )
      expect((await rejection(acmeSettingsFrom({'eab-kid': 'kid\n'}))).exitCode).to.equal(ExitCode.USAGE)
      expect((await acmeSettingsFrom({'eab-kid': 'kid-1_x.Y'})).eabKid).to.equal('kid-1_x.Y')
    })

    it('reads the EAB HMAC key from a file or HUBCTL_EAB_HMAC_KEY, never echoing it', async () => {
      await fs.writeFile(path.join(dir, 'hmac'), 'c2VjcmV0LWhtYWMta2V5\n')
      expect(await readEabHmacKey(path.join(dir, 'hmac'), {})).to.equal('c2VjcmV0LWhtYWMta2V5')
      expect(await readEabHmacKey(undefined, {HUBCTL_EAB_HMAC_KEY: 'abc_-'})).to.equal('abc_-')
      expect(await readEabHmacKey(undefined, {})).to.equal(undefined)
      const bad = await rejection(readEabHmacKey(undefined, {HUBCTL_EAB_HMAC_KEY: 'not base64 at all!'}))
      expect(bad.message).not.to.include('not base64 at all!')
    })
  })

  describe('a failed validation by the CA', () => {
    const answered = 'http://hub.example.org:8080/.well-known/acme-challenge/<token>'
    it("names the URL the CA tried and, when its port is not hubctl's, says so with the flag to give", () => {
      const error = validationError(
        'hub.example.org',
        answered,
        8080,
        'Get "http://hub.example.org:80/.well-known/acme-challenge/abc_-1": dial tcp 1.2.3.4:80: connect: connection refused',
      )
      expect(error.exitCode).to.equal(ExitCode.ACME)
      expect(error.message).to.include('at http://hub.example.org:80/.well-known/acme-challenge/<token>')
      expect(error.message).to.match(/likely cause: the CA connects to port 80, but hubctl answered on port 8080/)
      expect(error.fix).to.match(/--http-port 80/)
    })

    it('tells a refused connection, a timeout and a wrong answer apart', () => {
      const url = 'http://hub.example.org/.well-known/acme-challenge/tok'
      expect(
        validationError('hub.example.org', answered, 80, `Get "${url}": connect: connection refused`).message,
      ).to.match(/nothing answered the CA there.*firewall or NAT rejects port 80/)
      expect(
        validationError('hub.example.org', answered, 80, `Get "${url}": context deadline exceeded`).message,
      ).to.match(/timed out: a firewall probably drops port 80/)
      const wrong = validationError(
        'hub.example.org',
        answered,
        80,
        'The key authorization file from the server did not match this challenge',
      )
      expect(wrong.message).to.match(/something other than the token/)
      expect(wrong.message).not.to.include('over http-01 at ')
    })
  })

  describe('the http-01 self-check', () => {
    it('names the URL and the likely causes when the answer is wrong or missing', async () => {
      const {server, base} = await serve((_request, response) => {
        response.end('someone else')
      })
      try {
        const wrong = await rejection(selfCheck(`${base}/.well-known/acme-challenge/tok`, 'tok.thumb', 'webroot'))
        expect(wrong.exitCode).to.equal(ExitCode.ACME)
        expect(wrong.message).to.include(`${base}/.well-known/acme-challenge/tok`)
        expect(wrong.message).to.match(/another server may hold the port/)
        await selfCheck(`${base}/x`, 'someone else', 'webroot')
      } finally {
        server.close()
      }
      const port = await freePort()
      const refused = await rejection(
        selfCheck(`http://127.0.0.1:${port}/.well-known/acme-challenge/tok`, 'x', 'hubctl'),
      )
      expect(refused.message).to.match(/cannot be fetched \(ECONNREFUSED\).*DNS elsewhere.*firewall/)
    })
  })

  describe('talking to the CA', () => {
    it("trusts the ACME server's HTTPS only with --acme-ca-cert (TLS stays verified)", async () => {
      const pair = await makeSelfSigned(['localhost'])
      await fs.writeFile(path.join(dir, 'ca.pem'), pair.fullchain)
      const server = https.createServer({cert: pair.fullchain, key: pair.privkey}, (_request, response) => {
        response.end(JSON.stringify({newNonce: 'https://x/n', newAccount: 'https://x/a', newOrder: 'https://x/o'}))
      })
      await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
      const url = `https://localhost:${(server.address() as AddressInfo).port}/dir`
      try {
        const untrusted = await rejection(fetchDirectory(url, await acmeAgent()))
        expect(untrusted.exitCode).to.equal(ExitCode.ACME)
        expect(untrusted.message).to.match(/HTTPS certificate hubctl does not trust/)
        expect(untrusted.fix).to.match(/--acme-ca-cert/)
        const directory = await fetchDirectory(url, await acmeAgent(path.join(dir, 'ca.pem')))
        expect(directory.newOrder).to.equal('https://x/o')
      } finally {
        server.close()
      }
    })

    it('a CA that is down fails at once with exit code ACME, before any key is made', async () => {
      const layout = new Layout(dir)
      const port = await freePort()
      const error = await rejection(
        obtainCertificate(
          {
            domains: ['localhost'],
            directoryUrl: `http://127.0.0.1:${port}/dir`,
            keyType: 'ecdsa-p256',
            httpPort: await freePort(),
          },
          {layout},
        ),
      )
      expect(error.exitCode).to.equal(ExitCode.ACME)
      expect(error.message).to.match(/cannot reach the ACME server http:\/\/127\.0\.0\.1:\d+ \(ECONNREFUSED\)/)
      expect(await fs.readdir(dir)).to.deep.equal([])
    })

    it('maps HTTP 429 with Retry-After to a clear error without sleeping, and keeps the account key 0600', async () => {
      const layout = new Layout(dir)
      const {server, base} = await serve((request, response) => {
        if (request.url === '/dir') {
          response.end(
            JSON.stringify({newNonce: `${base}/nonce`, newAccount: `${base}/acct`, newOrder: `${base}/order`}),
          )
          return
        }
        if (request.url === '/nonce') {
          response.writeHead(200, {'replay-nonce': `nonce-${Date.now()}`})
          response.end()
          return
        }
        response.writeHead(429, {'retry-after': '3600', 'content-type': 'application/problem+json'})
        response.end(
          JSON.stringify({type: 'urn:ietf:params:acme:error:rateLimited', detail: 'too many new orders recently'}),
        )
      })
      try {
        const error = await rejection(
          obtainCertificate(
            {domains: ['localhost'], directoryUrl: `${base}/dir`, keyType: 'ecdsa-p256', httpPort: await freePort()},
            {layout},
          ),
        )
        expect(error.exitCode).to.equal(ExitCode.ACME)
        expect(error.message).to.match(/rate limiting .*HTTP 429: too many new orders recently.*retry after \d{4}-/)
        expect(await modeOf(layout.acmeAccountKey)).to.equal(0o600)
        const key = await fs.readFile(layout.acmeAccountKey, 'utf8')
        await rejection(
          obtainCertificate(
            {domains: ['localhost'], directoryUrl: `${base}/dir`, keyType: 'ecdsa-p256', httpPort: await freePort()},
            {layout},
          ),
        )
        expect(await fs.readFile(layout.acmeAccountKey, 'utf8')).to.equal(key)
        expect(await fs.readdir(layout.sslDir)).to.deep.equal(['acme_account_key.pem'])
      } finally {
        server.close()
      }
    })
  })
})
