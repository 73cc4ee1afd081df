import {expect} from 'chai'
import fs from 'node:fs/promises'
import net from 'node:net'

import {Layout} from '../../src/lib/config/layout.js'
import {DEBIAN_JUPYTERHUB, hubctl, portFlags, tempPrefix} from '../helpers/cli.js'
import {addUser, removeUser, testUserName} from '../helpers/users.js'

describe('hubctl doctor (real JupyterHub and nginx)', () => {
  let layout: Layout
  let ports: Awaited<ReturnType<typeof portFlags>>['ports']
  // With PAM, an admin needs a system account (doctor fails without one: see the last test).
  const admin = testUserName()
  let adminUid = 0

  before(async () => {
    adminUid = await addUser(admin)
    layout = new Layout(await tempPrefix('hubctl-doctor'))
    const {flags, ports: chosen} = await portFlags()
    ports = chosen
    const result = await hubctl([
      'init',
      '--prefix',
      layout.prefix,
      '--yes',
      '--domain',
      'localhost',
      '--admin',
      admin,
      '--tls',
      'self-signed',
      '--dhparam',
      'ffdhe2048',
      '--jupyterhub',
      DEBIAN_JUPYTERHUB,
      ...flags,
    ])
    expect(result.exitCode, result.stderr).to.equal(0)
  })
  after(async () => {
    await hubctl(['stop', '--prefix', layout.prefix])
    await fs.rm(layout.prefix, {recursive: true, force: true})
    await removeUser(admin, adminUid)
  })

  it('passes every check on a fresh init', async () => {
    const result = await hubctl(['doctor', '--prefix', layout.prefix, '--json'])
    expect(result.exitCode, result.stdout).to.equal(0)
    const json = JSON.parse(result.stdout) as {ok: boolean; checks: Array<{check: string; status: string}>}
    expect(json.ok).to.equal(true)
    expect(json.checks.map((c) => c.check)).to.include.members([
      'settings',
      'secrets',
      'certificate',
      'jupyterhub config',
      'nginx config',
      'dns',
      'ports',
      'node',
      'jupyterhub',
      'nginx',
      'configurable-http-proxy',
    ])
  })

  it('fails with the exact fix when a secret is world-readable', async () => {
    await fs.chmod(layout.cookieSecret, 0o644)
    try {
      const result = await hubctl(['doctor', '--prefix', layout.prefix])
      expect(result.exitCode).to.equal(1)
      expect(result.stdout).to.match(/FAIL secrets: the cookie secret .* has mode 0644, not 0600/)
      expect(result.stdout).to.include(`fix: chmod 600 ${layout.cookieSecret}`)
    } finally {
      await fs.chmod(layout.cookieSecret, 0o600)
    }
  })

  it('fails when hubctl.json is corrupt, naming the fix', async () => {
    const saved = await fs.readFile(layout.settings, 'utf8')
    await fs.writeFile(layout.settings, '{"version": 1,')
    try {
      const result = await hubctl(['doctor', '--prefix', layout.prefix])
      expect(result.exitCode).to.equal(1)
      expect(result.stdout).to.match(/FAIL settings: .*hubctl.json is not valid JSON/)
    } finally {
      await fs.writeFile(layout.settings, saved)
    }
  })

  it('fails when the stack is stopped and one of its ports is taken by another program, naming the flag', async () => {
    const squatter = net.createServer()
    await new Promise<void>((resolve) => squatter.listen(ports.hub, '127.0.0.1', resolve))
    try {
      const result = await hubctl(['doctor', '--prefix', layout.prefix, '--json'])
      expect(result.exitCode).to.equal(1)
      const json = JSON.parse(result.stdout) as {
        checks: Array<{check: string; status: string; message: string; fix?: string}>
      }
      const check = json.checks.find((c) => c.check === 'ports')!
      expect(check.status).to.equal('fail')
      expect(check.message).to.include(`hub port ${ports.hub}`)
      expect(check.fix).to.include('--hub-port')
      expect(json.checks.find((c) => c.check === 'processes')).to.include({
        status: 'warn',
        message: 'the hub is not running',
      })
    } finally {
      await new Promise((resolve) => squatter.close(resolve))
    }
  })

  it('fails when an admin has no system account (PAM), naming `hubctl users add`', async () => {
    const saved = await fs.readFile(layout.settings, 'utf8')
    const settings = JSON.parse(saved) as {admins: string[]}
    await fs.writeFile(layout.settings, JSON.stringify({...settings, admins: [...settings.admins, 'hcdoc-nobody']}))
    try {
      const result = await hubctl(['doctor', '--prefix', layout.prefix, '--json'])
      expect(result.exitCode, result.stdout).to.equal(1)
      const checks = (JSON.parse(result.stdout) as {checks: Array<{check: string; status: string; message: string}>})
        .checks
      const failed = checks.filter((c) => c.check === 'user accounts' && c.status === 'fail')
      expect(failed.map((c) => c.message).join('\n')).to.include('hcdoc-nobody')
      expect(failed.map((c) => c.message).join('\n')).to.not.include(admin)
      expect(result.stdout).to.include('hubctl users add hcdoc-nobody')
    } finally {
      await fs.writeFile(layout.settings, saved)
    }
  })

  it("checks the processes and the hub's health while the stack runs", async () => {
    const started = await hubctl(['start', '--detach', '--prefix', layout.prefix])
    expect(started.exitCode, started.stderr).to.equal(0)
    const result = await hubctl(['doctor', '--prefix', layout.prefix, '--json'])
    expect(result.exitCode, result.stdout).to.equal(0)
    const json = JSON.parse(result.stdout) as {checks: Array<{check: string; status: string; message: string}>}
    expect(json.checks.find((c) => c.check === 'processes')).to.include({status: 'pass'})
    expect(json.checks.find((c) => c.check === 'ports')).to.include({status: 'pass'})
    // The hub stopped behind hubctl's back: the check fails and names it.
    const state = JSON.parse(await fs.readFile(layout.stateFile, 'utf8')) as {hub: {pid: number}}
    process.kill(state.hub.pid, 'SIGSTOP')
    try {
      const broken = await hubctl(['doctor', '--prefix', layout.prefix, '--json'])
      expect(broken.exitCode).to.equal(1)
      const check = (
        JSON.parse(broken.stdout) as {checks: Array<{check: string; status: string; message: string}>}
      ).checks.find((c) => c.check === 'processes')!
      expect(check.status).to.equal('fail')
      expect(check.message).to.match(/does not answer/)
    } finally {
      process.kill(state.hub.pid, 'SIGCONT')
    }
  })
})
