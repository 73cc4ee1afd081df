import {expect} from 'chai'
import fs from 'node:fs/promises'

import {certificate} from '../../../../src/lib/setup/init/certificate.js'
import {HubctlError} from '../../../../src/lib/errors.js'
import {tempPrefix} from '../../../helpers/cli.js'
import {initContext} from './context.js'

describe('init: the certificate step', () => {
  let prefix: string
  beforeEach(async () => {
    prefix = await tempPrefix('hubctl-initcert')
  })
  afterEach(async () => {
    await fs.rm(prefix, {recursive: true, force: true})
  })

  it("keeps the certificate it made while the renewal rule does not call it due by the context's clock, and replaces it once it does", async () => {
    const first = await initContext(prefix)
    await certificate.run(first)
    expect(first.result.certificate).to.include({mode: 'self-signed', reused: false})
    const {serial, notAfter} = first.result.certificate!
    expect(first.reporter.lines[1]).to.match(/^done certificate: installed self-signed certificate for hub.localhost/)

    const again = await initContext(prefix)
    await certificate.run(again)
    expect(again.result.certificate).to.include({serial, reused: true})
    expect(again.reporter.lines[1]).to.match(/^done certificate: kept /)

    // A day before it expires: due (a third of its lifetime remains long before).
    const late = await initContext(prefix, {deps: {clock: () => new Date(Date.parse(notAfter) - 86_400_000)}})
    await certificate.run(late)
    expect(late.result.certificate?.reused).to.equal(false)
    expect(late.result.certificate?.serial).to.not.equal(serial)
  })

  it("with Let's Encrypt and no way to order, refuses with the fix", async () => {
    const ctx = await initContext(prefix, {flags: {tls: 'letsencrypt', email: 'a@example.org'}})
    const error = await certificate.run(ctx).then(
      () => undefined,
      (error: unknown) => error,
    )
    expect(error).to.be.instanceOf(HubctlError)
    expect((error as HubctlError).message).to.match(/not available in this build/)
  })

  it('--dry-run: lists the pair', async () => {
    const ctx = await initContext(prefix, {deps: {dryRun: true}})
    await certificate.plan?.(ctx)
    expect(ctx.result.files.map((f) => f.file)).to.deep.equal([ctx.layout.fullchain, ctx.layout.privkey])
    expect(await fs.readdir(prefix)).to.deep.equal([])
  })
})
