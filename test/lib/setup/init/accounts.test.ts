import {expect} from 'chai'
import fs from 'node:fs/promises'

import {SettingsStore} from '../../../../src/lib/config/settings.js'
import type {Runner} from '../../../../src/lib/runner.js'
import {accounts} from '../../../../src/lib/setup/init/accounts.js'
import {tempPrefix} from '../../../helpers/cli.js'
import {initContext} from './context.js'

describe('init: the accounts step', () => {
  let prefix: string
  beforeEach(async () => {
    prefix = await tempPrefix('hubctl-initaccounts')
  })
  afterEach(async () => {
    await fs.rm(prefix, {recursive: true, force: true})
  })

  it('looks for no system account unless users log in with PAM', async () => {
    const ctx = await initContext(prefix, {flags: {authenticator: 'dummy'}})
    await accounts.run(ctx)
    expect(ctx.runner.calls).to.deep.equal([])
    expect(ctx.result.warnings).to.deep.equal([])
  })
  it('with PAM, names an admin without a system account and the command that makes it, asking nothing without a terminal', async () => {
    const calls: string[][] = []
    // getent knows nobody (exit 2: not found); anything else would be a change to the machine.
    const runner: Runner = {
      run: async (command, args) => (
        calls.push([command, ...args]),
        {exitCode: command === 'getent' ? 2 : 1, stdout: '', stderr: '', notFound: false}
      ),
    }
    const ctx = {
      ...(await initContext(prefix, {flags: {authenticator: 'pam', admin: ['initstep-nobody']}})),
      runner,
    }
    // After the render step, which saved hubctl.json (the users service reads it).
    await new SettingsStore(ctx.layout).save(ctx.plan.rendered.settings)
    await accounts.run(ctx)
    expect(ctx.result.warnings).to.deep.equal([
      `initstep-nobody has no system account: with PAM nobody can log in as initstep-nobody; create it with \`hubctl users add initstep-nobody --prefix ${prefix}\` (or init --create-users --yes)`,
    ])
    expect(ctx.result.usersCreated).to.equal(undefined)
    expect(calls.map((call) => call[0])).to.deep.equal(calls.map(() => 'getent'))
  })
})
