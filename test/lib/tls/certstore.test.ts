import {expect} from 'chai'
import fs from 'node:fs/promises'

import {CertStore, chainProblem, inspectPair} from '../../../src/lib/tls/certstore.js'
import {HubctlError} from '../../../src/lib/errors.js'
import {Layout} from '../../../src/lib/config/layout.js'
import {makeSelfSigned} from '../../../src/lib/tls/selfsigned.js'
import {modeOf, tempPrefix} from '../../helpers/cli.js'
import {chainFor, issue} from '../../helpers/pki.js'

describe('certstore and self-signed certificates', () => {
  let layout: Layout
  beforeEach(async () => {
    layout = new Layout(await tempPrefix('hubctl-certs'))
  })
  afterEach(async () => {
    await fs.rm(layout.prefix, {recursive: true, force: true})
  })

  it('makes a self-signed certificate for every domain, whose key matches', async () => {
    const pair = await makeSelfSigned(['localhost', 'hub.example.org'])
    const info = inspectPair(pair)
    expect(info.domains).to.deep.equal(['localhost', 'hub.example.org'])
    expect(info.selfSigned).to.equal(true)
  })

  it('swaps key and chain together and keeps the previous pair', async () => {
    let tick = 0
    const store = new CertStore(layout, () => new Date(Date.UTC(2026, 0, 1, 0, 0, tick++)))
    const first = await store.install(await makeSelfSigned(['localhost']))
    const second = await store.install(await makeSelfSigned(['localhost']))
    expect(first.serial).not.to.equal(second.serial)
    const live = await store.currentInfo()
    expect(live?.serial).to.equal(second.serial)
    const current = await store.current()
    expect(inspectPair(current!).serial).to.equal(second.serial)
    expect(await modeOf(layout.privkey)).to.equal(0o600)
    const previousTarget = await fs.readlink(layout.sslPreviousLink)
    const previousChain = await fs.readFile(`${layout.sslDir}/${previousTarget}/fullchain.pem`, 'utf8')
    expect(
      inspectPair({
        fullchain: previousChain,
        privkey: await fs.readFile(`${layout.sslDir}/${previousTarget}/privkey.pem`, 'utf8'),
      }).serial,
    ).to.equal(first.serial)
  })

  it('prunes old pairs, keeping three', async () => {
    let tick = 0
    const store = new CertStore(layout, () => new Date(Date.UTC(2026, 0, 1, 0, 0, tick++)))
    for (let i = 0; i < 5; i++) await store.install(await makeSelfSigned(['localhost']))
    expect(await fs.readdir(layout.sslArchiveDir)).to.have.length(3)
  })

  it('refuses a certificate and key that do not match, and garbage', async () => {
    const a = await makeSelfSigned(['localhost'])
    const b = await makeSelfSigned(['localhost'])
    expect(() => inspectPair({fullchain: a.fullchain, privkey: b.privkey})).to.throw(HubctlError, /do not match/)
    expect(() => inspectPair({fullchain: 'junk', privkey: a.privkey})).to.throw(HubctlError, /not a PEM certificate/)
    expect(() => inspectPair({fullchain: a.fullchain, privkey: 'junk'})).to.throw(
      HubctlError,
      /not an unencrypted PEM private key/,
    )
  })

  describe('an issued chain, before it is installed', () => {
    const domains = ['hub.example.org', 'www.hub.example.org']
    const {root, intermediate, leaf} = chainFor(domains)
    const fullchain = leaf.cert + intermediate.cert

    it('passes the leaf for every domain, matching its key, followed by its issuer (and the root, if sent)', () => {
      expect(chainProblem({fullchain, privkey: leaf.key}, domains)).to.equal(undefined)
      expect(chainProblem({fullchain: fullchain + root.cert, privkey: leaf.key}, domains)).to.equal(undefined)
    })

    it('refuses the leaf alone, without its chain', () => {
      expect(chainProblem({fullchain: leaf.cert, privkey: leaf.key}, domains)).to.equal(
        'the chain holds the certificate only, without its issuer (CN=hubctl test intermediate)',
      )
    })

    it('refuses a chain whose next certificate did not sign the one before', () => {
      const other = issue({name: 'hubctl test intermediate'})
      expect(chainProblem({fullchain: leaf.cert + other.cert, privkey: leaf.key}, domains)).to.equal(
        'certificate 1 of the chain (CN=hub.example.org) is not signed by the next (CN=hubctl test intermediate)',
      )
      expect(chainProblem({fullchain: leaf.cert + root.cert, privkey: leaf.key}, domains)).to.match(
        /^certificate 1 of the chain .* is not signed by the next \(CN=hubctl test root\)$/,
      )
      expect(chainProblem({fullchain: fullchain + other.cert, privkey: leaf.key}, domains)).to.match(
        /^certificate 2 of the chain \(CN=hubctl test intermediate\) is not signed by the next/,
      )
    })

    it('refuses a leaf that does not match the key, or does not cover a requested domain', () => {
      expect(chainProblem({fullchain, privkey: intermediate.key}, domains)).to.equal(
        'the certificate does not match the key hubctl made for it',
      )
      expect(chainProblem({fullchain, privkey: 'junk'}, domains)).to.equal(
        'the certificate does not match the key hubctl made for it',
      )
      expect(chainProblem({fullchain, privkey: leaf.key}, [...domains, 'jupyter.example.org'])).to.equal(
        'the certificate does not cover jupyter.example.org',
      )
      expect(chainProblem({fullchain: 'junk', privkey: leaf.key}, domains)).to.equal('it holds no PEM certificate')
    })
  })
})
