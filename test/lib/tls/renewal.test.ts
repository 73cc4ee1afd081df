import {expect} from 'chai'
import {execFileSync} from 'node:child_process'
import fs from 'node:fs/promises'
import http from 'node:http'
import type {AddressInfo} from 'node:net'
import path from 'node:path'

import {Layout} from '../../../src/lib/config/layout.js'
import {makeSelfSigned} from '../../../src/lib/tls/selfsigned.js'
import {CertStore} from '../../../src/lib/tls/certstore.js'
import {ariCertId, fetchAriWindow} from '../../../src/lib/tls/ari.js'
import {certificateStatus} from '../../../src/lib/tls/cert-status.js'
import {changedAcmeSettings, decideRenewal, renewNotDueQuickly} from '../../../src/lib/tls/renewal.js'
import {renewalTime, shouldRenew} from '../../../src/lib/tls/policy.js'
import {readRenewalState, writeRenewalState} from '../../../src/lib/tls/renewal-state.js'
import {SettingsStore, type AcmeSettings, type Settings} from '../../../src/lib/config/settings.js'
import {testSettings} from '../../helpers/settings.js'
import {tempPrefix} from '../../helpers/cli.js'
import {chainFor} from '../../helpers/pki.js'

const DAY = 86_400_000
const T0 = Date.UTC(2026, 0, 1)

/** A certificate issued at T0 for `days`, and a fake clock `at(d)` d days after T0. */
function cert(days: number) {
  return {notBefore: new Date(T0), notAfter: new Date(T0 + days * DAY)}
}
const at = (days: number) => new Date(T0 + days * DAY)

describe('renewal policy (fake clock)', () => {
  describe('90-day certificate: due with 30 days (a third) left', () => {
    const c = cert(90)
    it('renews after day 60', () => {
      expect(renewalTime(c).toISOString()).to.equal(at(60).toISOString())
      expect(shouldRenew({...c, now: at(59.9)}).due).to.equal(false)
      expect(shouldRenew({...c, now: at(60)}).due).to.equal(true)
      expect(shouldRenew({...c, now: at(75)}).reason).to.match(/a third of its lifetime/)
    })
    it('--days overrides the rule, --force always renews, an expired one is due', () => {
      expect(shouldRenew({...c, now: at(10), days: 85}).due).to.equal(true)
      expect(shouldRenew({...c, now: at(10), days: 30}).due).to.equal(false)
      expect(shouldRenew({...c, now: at(1), force: true})).to.include({due: true, reason: 'forced (--force)'})
      expect(shouldRenew({...c, now: at(91)}).reason).to.match(/^expired/)
    })
  })

  describe('45-day certificate: due with 15 days left', () => {
    const c = cert(45)
    it('renews after day 30', () => {
      expect(renewalTime(c).toISOString()).to.equal(at(30).toISOString())
      expect(shouldRenew({...c, now: at(29)}).due).to.equal(false)
      expect(shouldRenew({...c, now: at(30.5)}).due).to.equal(true)
    })
  })

  describe('6-day (short-lived) certificate: due at half its lifetime', () => {
    const c = cert(6)
    it('renews after day 3', () => {
      expect(renewalTime(c).toISOString()).to.equal(at(3).toISOString())
      expect(shouldRenew({...c, now: at(2.9)}).due).to.equal(false)
      const due = shouldRenew({...c, now: at(3)})
      expect(due.due).to.equal(true)
      expect(due.reason).to.match(/half of its lifetime/)
    })
  })

  describe('ACME Renewal Information (RFC 9773)', () => {
    const c = cert(90)
    it("renews early once the CA's suggested window has started, not before", () => {
      const ari = {start: at(20), end: at(22)}
      expect(shouldRenew({...c, now: at(19), ari})).to.include({due: false})
      expect(shouldRenew({...c, now: at(19), ari}).renewAfter.toISOString()).to.equal(at(20).toISOString())
      const early = shouldRenew({...c, now: at(20.5), ari})
      expect(early).to.include({due: true, byAri: true})
      expect(early.reason).to.match(/ARI/)
    })
    it('a window after the local rule does not delay renewal', () => {
      const late = shouldRenew({...c, now: at(61), ari: {start: at(70), end: at(71)}})
      expect(late).to.include({due: true, byAri: false})
    })

    it('computes the certificate id as base64url(AKI keyIdentifier).base64url(serial) (RFC 9773 example)', async () => {
      // The RFC's example: keyIdentifier 69:88:5B:..., serial 00:87:65:43:21 → aYhba4dGQEHhs3uEe6CuLN4ByNQ.AIdlQyE
      const dir = await tempPrefix('hubctl-ari')
      try {
        const ski = '69:88:5B:6B:87:46:40:41:E1:B3:7B:84:7B:A0:AE:2C:DE:01:C8:D4'
        const f = (name: string) => path.join(dir, name)
        const quiet = {stdio: 'ignore' as const}
        execFileSync(
          'openssl',
          [
            'req',
            '-x509',
            '-newkey',
            'ec',
            '-pkeyopt',
            'ec_paramgen_curve:P-256',
            '-nodes',
            '-keyout',
            f('ca.key'),
            '-out',
            f('ca.pem'),
            '-days',
            '2',
            '-subj',
            '/CN=ari-ca',
            '-addext',
            `subjectKeyIdentifier=${ski}`,
            '-addext',
            'basicConstraints=critical,CA:TRUE',
          ],
          quiet,
        )
        execFileSync(
          'openssl',
          [
            'req',
            '-newkey',
            'ec',
            '-pkeyopt',
            'ec_paramgen_curve:P-256',
            '-nodes',
            '-keyout',
            f('leaf.key'),
            '-out',
            f('leaf.csr'),
            '-subj',
            '/CN=localhost',
          ],
          quiet,
        )
        await fs.writeFile(f('ext'), 'authorityKeyIdentifier=keyid\nsubjectAltName=DNS:localhost\n')
        execFileSync(
          'openssl',
          [
            'x509',
            '-req',
            '-in',
            f('leaf.csr'),
            '-CA',
            f('ca.pem'),
            '-CAkey',
            f('ca.key'),
            '-set_serial',
            '0x0087654321',
            '-days',
            '2',
            '-extfile',
            f('ext'),
            '-out',
            f('leaf.pem'),
          ],
          quiet,
        )
        expect(ariCertId(await fs.readFile(f('leaf.pem'), 'utf8'))).to.equal('aYhba4dGQEHhs3uEe6CuLN4ByNQ.AIdlQyE')
      } finally {
        await fs.rm(dir, {recursive: true, force: true})
      }
    })

    it("fetches the suggested window from the directory's renewalInfo endpoint", async () => {
      const dir = await tempPrefix('hubctl-ari')
      const requests: string[] = []
      const server = http.createServer((request, response) => {
        requests.push(request.url ?? '')
        const base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`
        if (request.url === '/dir') {
          response.end(
            JSON.stringify({
              newNonce: `${base}/nonce`,
              newAccount: `${base}/acct`,
              newOrder: `${base}/order`,
              renewalInfo: `${base}/ari`,
            }),
          )
        } else if (request.url?.startsWith('/ari/')) {
          response.end(
            JSON.stringify({
              suggestedWindow: {start: '2026-01-20T00:00:00Z', end: '2026-01-22T00:00:00Z'},
              explanationURL: 'https://ca.example/why',
            }),
          )
        } else {
          response.statusCode = 404
          response.end()
        }
      })
      await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
      try {
        const f = (name: string) => path.join(dir, name)
        const quiet = {stdio: 'ignore' as const}
        execFileSync(
          'openssl',
          [
            'req',
            '-x509',
            '-newkey',
            'ec',
            '-pkeyopt',
            'ec_paramgen_curve:P-256',
            '-nodes',
            '-keyout',
            f('ca.key'),
            '-out',
            f('ca.pem'),
            '-days',
            '2',
            '-subj',
            '/CN=ari-ca',
            '-addext',
            'basicConstraints=critical,CA:TRUE',
          ],
          quiet,
        )
        execFileSync(
          'openssl',
          [
            'req',
            '-newkey',
            'ec',
            '-pkeyopt',
            'ec_paramgen_curve:P-256',
            '-nodes',
            '-keyout',
            f('leaf.key'),
            '-out',
            f('leaf.csr'),
            '-subj',
            '/CN=localhost',
          ],
          quiet,
        )
        await fs.writeFile(f('ext'), 'authorityKeyIdentifier=keyid\n')
        execFileSync(
          'openssl',
          [
            'x509',
            '-req',
            '-in',
            f('leaf.csr'),
            '-CA',
            f('ca.pem'),
            '-CAkey',
            f('ca.key'),
            '-set_serial',
            '0x1234',
            '-days',
            '2',
            '-extfile',
            f('ext'),
            '-out',
            f('leaf.pem'),
          ],
          quiet,
        )
        const pem = await fs.readFile(f('leaf.pem'), 'utf8')
        const port = (server.address() as AddressInfo).port
        const found = await fetchAriWindow(
          {directory: `http://127.0.0.1:${port}/dir`, keyType: 'ecdsa-p256', deployHooks: []},
          pem,
        )
        expect(found.hasAri).to.equal(true)
        expect(found.window?.start.toISOString()).to.equal('2026-01-20T00:00:00.000Z')
        expect(found.window?.explanationURL).to.equal('https://ca.example/why')
        expect(requests).to.deep.equal(['/dir', `/ari/${ariCertId(pem)}`])
      } finally {
        server.close()
        await fs.rm(dir, {recursive: true, force: true})
      }
    })

    it('a CA without renewalInfo, or one that does not answer, leaves the local rule alone', async () => {
      const pem = (await makeSelfSigned(['localhost'])).fullchain
      const found = await fetchAriWindow(
        {directory: 'http://127.0.0.1:1/dir', keyType: 'ecdsa-p256', deployHooks: []},
        pem,
      )
      expect(found.window).to.equal(undefined)
    })
  })
})

describe('kept ACME settings', () => {
  it('names the flags whose kept value a run would change, none when nothing changes', () => {
    const kept = {directory: 'https://ca.example/dir', keyType: 'ecdsa-p256' as const, deployHooks: ['a']}
    expect(changedAcmeSettings(kept, {...kept, deployHooks: ['a']})).to.deep.equal([])
    expect(changedAcmeSettings(kept, {...kept, deployHooks: ['a', 'b'], keyType: 'rsa2048'})).to.deep.equal([
      '--key-type',
      '--deploy-hook',
    ])
    expect(
      changedAcmeSettings(kept, {
        ...kept,
        directory: 'https://other.example/dir',
        caCert: '/ca.pem',
        eabKid: 'k',
        httpPort: 5002,
      }),
    ).to.deep.equal(['--acme-directory', '--acme-ca-cert', '--eab-kid', '--http-port'])
    expect(changedAcmeSettings(undefined, kept)).to.include('--acme-directory')
  })
})

describe('cert status', () => {
  let layout: Layout
  beforeEach(async () => {
    layout = new Layout(await tempPrefix('hubctl-status'))
  })
  afterEach(async () => {
    await fs.rm(layout.prefix, {recursive: true, force: true})
  })

  it('reports no certificate as a problem', async () => {
    const status = await certificateStatus(layout, new Date())
    expect(status).to.include({installed: false, ok: false})
  })

  it('is ok before the renewal time, a problem once due with a failed attempt, and when expired', async () => {
    const now = new Date()
    await new CertStore(layout).install(await makeSelfSigned(['localhost'], {days: 90, now}))
    const fresh = await certificateStatus(layout, now)
    expect(fresh).to.include({installed: true, ok: true, due: false, daysLeft: 89})
    expect(fresh.domains).to.deep.equal(['localhost'])
    const dueLater = new Date(now.getTime() + 70 * DAY)
    expect((await certificateStatus(layout, dueLater)).ok).to.equal(true)
    await writeRenewalState(layout, {lastAttempt: dueLater.toISOString(), lastError: 'cannot reach the ACME server'})
    const failing = await certificateStatus(layout, dueLater)
    expect(failing.ok).to.equal(false)
    expect(failing.problem).to.match(/last attempt failed: cannot reach/)
    const expired = await certificateStatus(layout, new Date(now.getTime() + 100 * DAY))
    expect(expired).to.include({ok: false, expired: true})
  })
})

describe('renewal decision: a configured domain the live certificate lacks (fake clock)', () => {
  let layout: Layout
  /** Nothing listens there: the CA is never asked (its ARI answer is kept below). */
  const acme: AcmeSettings = {directory: 'https://127.0.0.1:1/dir', keyType: 'ecdsa-p256', deployHooks: []}
  const {intermediate, leaf} = chainFor(['hub.example.org'], {notBefore: at(0), days: 90})

  function settingsFor(domains: string[]): Settings {
    return testSettings({
      domains,
      admins: ['hrnadmin'],
      tls: {mode: 'letsencrypt', acme},
      executables: {singleuser: '/x', proxy: '/x'},
      nginxSupervised: true,
    })
  }

  beforeEach(async () => {
    layout = new Layout(await tempPrefix('hubctl-renew-domains'))
    const info = await new CertStore(layout).install({fullchain: leaf.cert + intermediate.cert, privkey: leaf.key})
    // The CA has no ARI, as it said at day 10; asked again only after day 11.
    await writeRenewalState(layout, {
      ari: {
        none: true,
        start: '',
        end: '',
        checkedAt: at(10).toISOString(),
        nextCheck: at(11).toISOString(),
        serial: info.serial,
        directory: acme.directory,
      },
    })
  })
  afterEach(async () => {
    await fs.rm(layout.prefix, {recursive: true, force: true})
  })

  async function decide(domains: string[], now: Date) {
    await new SettingsStore(layout).save(settingsFor(domains))
    const notes: string[] = []
    const decision = await decideRenewal(layout, settingsFor(domains), acme, await readRenewalState(layout), {
      now,
      notes,
      lookUpReplaces: false,
    })
    return {decision, notes, quick: await renewNotDueQuickly(layout, now)}
  }

  it('is not due on day 10 while the certificate covers every configured domain (the timer answers without the full command)', async () => {
    const {decision, notes, quick} = await decide(['hub.example.org'], at(10))
    expect(decision).to.include({due: false})
    expect(notes).to.deep.equal([])
    expect(quick).to.equal(`certificate for hub.example.org not due for renewal: ${decision.reason}`)
  })

  it('is due at once, naming the domain, when a configured domain is missing from it, and the timer runs the full renewal', async () => {
    const {decision, quick} = await decide(['hub.example.org', 'jupyter.example.org'], at(10))
    expect(decision).to.include({due: true, reason: 'the certificate does not cover jupyter.example.org'})
    expect(decision.renewAfter.toISOString()).to.equal(at(10).toISOString())
    expect(quick).to.equal(undefined)
  })
})
