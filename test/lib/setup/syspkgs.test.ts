import {expect} from 'chai'

import {HubctlError} from '../../../src/lib/errors.js'
import type {RunOptions, Runner} from '../../../src/lib/runner.js'
import {installPackages, packagesError, planPackages} from '../../../src/lib/setup/syspkgs.js'

/** A runner that records what it was asked and answers from a script. */
function fakeRunner(
  answers: Record<string, number>,
): Runner & {calls: Array<{command: string; args: string[]; env?: RunOptions['env']}>} {
  const calls: Array<{command: string; args: string[]; env?: RunOptions['env']}> = []
  return {
    calls,
    async run(command, args, options = {}) {
      calls.push({command, args, env: options.env})
      const exitCode = answers[`${command} ${args[0]}`] ?? 0
      return {exitCode, stdout: '', stderr: exitCode === 0 ? '' : 'E: Unable to locate package nginx', notFound: false}
    },
  }
}

describe('syspkgs: what init installs with apt-get, and how it says what it may not', () => {
  const missing = [
    {name: 'nginx', why: 'the web server'},
    {name: 'python3-venv', why: 'the virtualenv'},
    {name: 'nginx', why: 'again'},
  ]

  it('plans one apt-get command for the missing packages, once each; only root may install', async () => {
    const asRoot = await planPackages(missing, 0)
    expect(asRoot.command).to.equal('apt-get install -y nginx python3-venv')
    expect(asRoot.canInstall).to.equal(true)
    expect((await planPackages(missing, 1000)).canInstall).to.equal(false)
    expect((await planPackages([], 0)).canInstall).to.equal(false)
  })

  it('refusing names each package, why, and the exact command as the fix (exit 3)', async () => {
    const error = packagesError(
      await planPackages(missing, 1000),
      'hubctl installs system packages only as root',
    ) as HubctlError
    expect(error.exitCode).to.equal(3)
    expect(error.line).to.equal(
      'this machine lacks nginx (the web server), python3-venv (the virtualenv), nginx (again); hubctl installs system packages only as root. Fix: run `apt-get install -y nginx python3-venv` as root, then run the command again (or run hubctl init as root with --yes to let it do so)',
    )
  })

  it('runs apt-get update, then apt-get install -y, non-interactively', async () => {
    const runner = fakeRunner({})
    const ran = await installPackages(runner, await planPackages(missing, 0))
    expect(runner.calls.map((c) => [c.command, ...c.args].join(' '))).to.deep.equal([
      'apt-get update -q',
      'apt-get install -y -q nginx python3-venv',
    ])
    expect(runner.calls.every((c) => c.env?.DEBIAN_FRONTEND === 'noninteractive')).to.equal(true)
    expect(ran).to.deep.equal(['apt-get update', 'apt-get install -y nginx python3-venv'])
  })

  it("a failing apt-get is exit 3 with apt's own words and the command to run", async () => {
    const runner = fakeRunner({'apt-get install': 100})
    const error = await installPackages(runner, await planPackages(missing, 0)).then(
      () => undefined,
      (e: HubctlError) => e,
    )
    expect(error?.exitCode).to.equal(3)
    expect(error?.message).to.include('apt-get install failed: E: Unable to locate package nginx')
  })
})
