import {expect} from 'chai'
import fs from 'node:fs/promises'

import {CertStore, inspectPair} from '../../../src/lib/tls/certstore.js'
import {HubctlError} from '../../../src/lib/errors.js'
import {Layout} from '../../../src/lib/config/layout.js'
import {makeSelfSigned} from '../../../src/lib/tls/selfsigned.js'
import {modeOf, tempPrefix} from '../../helpers/cli.js'

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
})
