import {expect} from 'chai'
import fs from 'node:fs/promises'

import {move, moveNotice, moves} from '../../../../src/lib/setup/init/move.js'
import {tempPrefix} from '../../../helpers/cli.js'
import {initContext} from './context.js'

describe('init: the move step (one origin ⇄ per-user subdomains)', () => {
  let prefix: string
  beforeEach(async () => {
    prefix = await tempPrefix('hubctl-initmove')
  })
  afterEach(async () => {
    await fs.rm(prefix, {recursive: true, force: true})
  })

  it('moves only when subdomains change between the kept settings and this init', async () => {
    const one = (await initContext(prefix)).plan.rendered.settings
    const sub = (await initContext(prefix, {flags: {subdomains: true}})).plan.rendered.settings
    expect(moves(undefined, sub), 'a first init').to.equal(false)
    expect(moves(one, one)).to.equal(false)
    expect(moves(sub, sub)).to.equal(false)
    expect(moves(one, sub)).to.equal(true)
    expect(moves(sub, one)).to.equal(true)
  })

  it('a stopped hub: nothing runs, nothing restarts; the next steps say where servers will be', async () => {
    const ctx = await initContext(prefix, {flags: {subdomains: true}, deps: {bin: '/x/run.js'}})
    ctx.plan.previous = (await initContext(prefix)).plan.rendered.settings
    await move.run(ctx)
    expect(ctx.runner.calls).to.deep.equal([])
    expect(ctx.result.moved).to.equal(undefined)
    expect(ctx.result.next[0]).to.include("each user's server at https://NAME.hub.localhost/")
  })

  it('the notice names the new address and every server restarted', () => {
    expect(moveNotice({domains: ['hub.example.org'], subdomains: true}, ['alice', 'bob'])).to.equal(
      "the hub moved to per-user subdomains (each user's server at https://NAME.hub.example.org/): the proxy and the hub were restarted and the running servers of alice, bob (their files stay; open notebooks must be opened again at the new address, their kernels restart)",
    )
    expect(moveNotice({domains: ['hub.example.org']}, [])).to.equal(
      "the hub moved to one origin (each user's server at https://hub.example.org/user/NAME/): the proxy and the hub were restarted",
    )
  })
})
