import {expect} from 'chai'
import fs from 'node:fs/promises'

import {userServer} from '../../../../src/lib/setup/init/userserver.js'
import {tempPrefix} from '../../../helpers/cli.js'
import {initContext} from './context.js'

describe('init: the user server step', () => {
  let prefix: string
  beforeEach(async () => {
    prefix = await tempPrefix('hubctl-inituserserver')
  })
  afterEach(async () => {
    await fs.rm(prefix, {recursive: true, force: true})
  })

  it('is skipped with --no-server-check', async () => {
    const ctx = await initContext(prefix, {deps: {serverCheck: false}})
    await userServer.run(ctx)
    expect(ctx.reporter.lines).to.deep.equal([])
    expect(ctx.result.userServer).to.equal(undefined)
  })

  it('without the spawner the render step loaded, says it did not check, and why', async () => {
    const ctx = await initContext(prefix)
    ctx.handoff.spawnerError = 'ImportError: no module named x'
    await userServer.run(ctx)
    expect(ctx.result.userServer?.status).to.equal('warn')
    expect(ctx.result.warnings).to.have.length(1)
    expect(ctx.result.warnings[0]).to.match(/^not checked: .*ImportError: no module named x.*; start the hub/)
    expect(ctx.reporter.lines[0]).to.equal('start user server')
  })
})
