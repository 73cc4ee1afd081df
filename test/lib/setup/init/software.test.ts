import {expect} from 'chai'
import fs from 'node:fs/promises'

import {HubctlError} from '../../../../src/lib/errors.js'
import {consentToPackages, software} from '../../../../src/lib/setup/init/software.js'
import type {PackagePlan} from '../../../../src/lib/setup/syspkgs.js'
import {tempPrefix} from '../../../helpers/cli.js'
import {initContext} from './context.js'

const PLAN: PackagePlan = {
  missing: [{name: 'nginx', why: 'the web server in front of the hub'}],
  command: 'apt-get install --yes nginx',
  canInstall: true,
}

async function refusal(promise: Promise<unknown>): Promise<string> {
  const error = await promise.then(
    () => undefined,
    (error: unknown) => error,
  )
  expect(error).to.be.instanceOf(HubctlError)
  return (error as HubctlError).message
}

describe('init: the software step', () => {
  let prefix: string
  beforeEach(async () => {
    prefix = await tempPrefix('hubctl-initsoftware')
  })
  afterEach(async () => {
    await fs.rm(prefix, {recursive: true, force: true})
  })

  it('installs missing packages only with --yes or a yes on a terminal', async () => {
    await consentToPackages({yes: true}, PLAN)
    const asked: string[] = []
    await consentToPackages({confirm: async (q) => (asked.push(q), true)}, PLAN)
    expect(asked).to.deep.equal(['Install nginx with `apt-get install --yes nginx`?'])
    expect(await refusal(consentToPackages({confirm: async () => false}, PLAN))).to.match(/declined/)
    expect(await refusal(consentToPackages({}, PLAN))).to.match(/no terminal to ask on, and no --yes/)
    expect(await refusal(consentToPackages({yes: true}, {...PLAN, canInstall: false}))).to.match(/nginx/)
  })

  it('with everything found, installs nothing and shows no step; a JupyterHub without an interface is named', async () => {
    const ctx = await initContext(prefix)
    ctx.plan.rendered = {...ctx.plan.rendered, ui: 'none'}
    await software.run(ctx)
    expect(ctx.reporter.lines).to.deep.equal([])
    expect(ctx.runner.calls).to.deep.equal([])
    expect(ctx.result.warnings).to.have.length(1)
    expect(ctx.result.warnings[0]).to.match(/has neither JupyterLab nor the classic notebook/)
  })

  it("--dry-run: names apt-get's commands and the environment it would build", async () => {
    const ctx = await initContext(prefix, {deps: {dryRun: true}})
    ctx.plan.software = {
      ...ctx.plan.software,
      packages: PLAN,
      hubEnv: {
        action: 'build',
        python: '/usr/bin/python3',
        dir: ctx.layout.hubEnv('abc'),
        id: 'abc',
        jupyterhub: ctx.layout.hubEnvJupyterhub('abc'),
        versions: {jupyterhub: '5.4.3', jupyterlab: '4.6.0'},
      } as NonNullable<typeof ctx.plan.software.hubEnv>,
    }
    await software.plan?.(ctx)
    expect(ctx.result.commands[0]).to.equal('apt-get update')
    expect(ctx.result.commands[1]).to.equal(PLAN.command)
    expect(ctx.result.commands[2]).to.equal(`/usr/bin/python3 -m venv ${ctx.layout.hubEnv('abc')}`)
    expect(ctx.result.commands.slice(3).join('\n')).to.match(/pip install .*jupyterhub==5\.4\.3 jupyterlab==4\.6\.0/)
    expect(ctx.result.files.map((f) => f.file)).to.deep.equal([ctx.layout.hubEnv('abc'), ctx.layout.hubEnvCurrent])
    expect(await fs.readdir(prefix)).to.deep.equal([])
  })
})
