import {expect} from 'chai'
import fs from 'node:fs/promises'

import {planPreflight} from '../../../../src/lib/setup/init/preflight.js'
import {tempPrefix} from '../../../helpers/cli.js'
import {initContext} from './context.js'

describe('init: preflight', () => {
  let prefix: string
  beforeEach(async () => {
    prefix = await tempPrefix('hubctl-initpreflight')
  })
  afterEach(async () => {
    await fs.rm(prefix, {recursive: true, force: true})
  })

  it('--dry-run: lists first the server homes it would make (not those there) and who answers unknown names', async () => {
    const ctx = await initContext(prefix, {deps: {dryRun: true}})
    ctx.plan.homeUsers = ['initstep-a', 'initstep-b']
    await fs.mkdir(ctx.layout.serverHome('initstep-a'), {recursive: true})
    const before = await fs.readdir(ctx.layout.serverHomesDir)
    ctx.plan.rendered.defaults = {
      ports: [8080],
      disable: {link: '/x/sites-enabled/default', file: '/x/sites-available/default'},
      others: [{port: 8443, file: '/x/other.conf'}],
    }
    await planPreflight(ctx)
    expect(ctx.result.files).to.deep.equal([{file: ctx.layout.serverHome('initstep-b'), action: 'would write'}])
    expect(ctx.result.commands).to.deep.equal(['rm /x/sites-enabled/default'])
    expect(ctx.result.unknownNames.closedOn).to.deep.equal([8080])
    expect(ctx.result.warnings).to.have.length(1)
    expect(ctx.result.warnings[0]).to.match(/^\/x\/other.conf answers requests .* on port 8443/)
    expect(await fs.readdir(ctx.layout.serverHomesDir)).to.deep.equal(before)
  })
})
