import {expect} from 'chai'
import fs from 'node:fs/promises'

import {secrets} from '../../../../src/lib/setup/init/secrets.js'
import {FFDHE2048_PEM} from '../../../../src/lib/tls/dhparam.js'
import {snapshotTree, tempPrefix, treeChanges} from '../../../helpers/cli.js'
import {initContext} from './context.js'

describe('init: the secrets step', () => {
  let prefix: string
  beforeEach(async () => {
    prefix = await tempPrefix('hubctl-initsecrets')
  })
  afterEach(async () => {
    await fs.rm(prefix, {recursive: true, force: true})
  })

  it('creates the tokens and hands the DH parameters to the render step; a second run changes nothing', async () => {
    const ctx = await initContext(prefix)
    await secrets.run(ctx)
    expect(ctx.result.secrets.created).to.deep.equal(['cookieSecret', 'proxyAuthToken', 'apiToken', 'dhparam'])
    expect(ctx.handoff.dhWrite, 'the DH parameters are written while the next steps run').to.not.equal(undefined)
    await ctx.handoff.dhWrite
    expect(await fs.readFile(ctx.layout.dhparam, 'utf8')).to.equal(FFDHE2048_PEM)
    expect(ctx.reporter.lines).to.deep.equal([
      'start secrets',
      'done secrets: created cookieSecret, proxyAuthToken, apiToken; DH parameters under way',
    ])

    const before = await snapshotTree(prefix)
    const again = await initContext(prefix)
    await secrets.run(again)
    expect(again.result.secrets).to.deep.equal({
      created: [],
      kept: ['cookieSecret', 'proxyAuthToken', 'apiToken', 'dhparam'],
    })
    expect(again.handoff.dhWrite).to.equal(undefined)
    expect(treeChanges(before, await snapshotTree(prefix))).to.deep.equal([])
    expect(again.reporter.lines).to.include('done secrets: tokens present, none changed')
  })

  it("local mode's login is made once and shown only on the run that made it", async () => {
    const ctx = await initContext(prefix, {flags: {authenticator: 'dummy'}})
    await secrets.run(ctx)
    expect(ctx.result.login).to.include({url: 'https://hub.localhost/', user: 'initstep-admin'})
    expect(await fs.readFile(ctx.layout.loginPassword, 'utf8')).to.include(ctx.result.login?.password)
    const again = await initContext(prefix, {flags: {authenticator: 'dummy'}})
    await secrets.run(again)
    expect(again.result.login).to.equal(undefined)
  })

  it('--dry-run: lists the secret files, and the OAuth client secret only when one was given', async () => {
    const ctx = await initContext(prefix, {deps: {dryRun: true}})
    await secrets.plan?.(ctx)
    expect(ctx.result.files.map((f) => f.file)).to.deep.equal(Object.values(ctx.layout.secretFiles))
    ctx.result.files = []
    ctx.result.oauth = {provider: 'github', clientId: 'x', callbackUrl: 'https://x/', clientSecret: 'would write'}
    await secrets.plan?.(ctx)
    expect(ctx.result.files.map((f) => f.file)).to.deep.equal([
      ...Object.values(ctx.layout.secretFiles),
      ctx.layout.oauthClientSecret,
    ])
    expect(await fs.readdir(prefix)).to.deep.equal([])
  })
})
