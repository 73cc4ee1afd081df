import {expect} from 'chai'
import fs from 'node:fs/promises'

import {Layout} from '../../../src/lib/config/layout.js'
import {ariWindowFor} from '../../../src/lib/tls/ari.js'
import {readRenewalState, writeRenewalState} from '../../../src/lib/tls/renewal-state.js'
import type {AcmeSettings} from '../../../src/lib/config/settings.js'
import {tempPrefix} from '../../helpers/cli.js'

/** Nothing listens here: any attempt to ask the CA ends in a note instead of a window. */
const acme: AcmeSettings = {directory: 'https://127.0.0.1:1/dir', keyType: 'ecdsa-p256', deployHooks: []}
const live = {pem: '-----BEGIN CERTIFICATE-----\n-----END CERTIFICATE-----\n', serial: 'AB01'}

describe("renewal: the CA's window (ARI) is kept until its Retry-After", () => {
  let layout: Layout
  const now = new Date('2026-11-23T12:00:00Z')
  const kept = {
    start: '2026-12-20T00:00:00.000Z',
    end: '2026-12-22T00:00:00.000Z',
    checkedAt: '2026-11-23T09:00:00.000Z',
    serial: 'AB01',
    directory: acme.directory,
    certId: 'x.y',
  }

  beforeEach(async () => {
    layout = new Layout(await tempPrefix('hubctl-ari'))
  })
  afterEach(async () => {
    await fs.rm(layout.prefix, {recursive: true, force: true})
  })

  it('uses the kept window before nextCheck, without asking the CA', async () => {
    await writeRenewalState(layout, {ari: {...kept, nextCheck: '2026-11-23T15:00:00.000Z'}})
    const found = await ariWindowFor(layout, acme, live, await readRenewalState(layout), now)
    expect(found.cached).to.equal(true)
    expect(found.window?.start.toISOString()).to.equal(kept.start)
    expect(found.certId).to.equal('x.y')
  })

  it('asks the CA again once nextCheck passed, for another certificate or another CA', async () => {
    for (const ari of [
      {...kept, nextCheck: '2026-11-23T11:59:59.000Z'},
      {...kept, nextCheck: '2026-11-23T15:00:00.000Z', serial: 'CD02'},
      {...kept, nextCheck: '2026-11-23T15:00:00.000Z', directory: 'https://other/dir'},
    ]) {
      await writeRenewalState(layout, {ari})
      const found = await ariWindowFor(layout, acme, live, await readRenewalState(layout), now)
      expect(found.cached).to.equal(false)
      expect(found.window).to.equal(undefined)
      expect(found.note).to.match(/not checked/)
    }
  })
})
