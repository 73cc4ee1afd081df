// e2e-lane: parallel
import {expect} from 'chai'
import {randomBytes} from 'node:crypto'
import fs from 'node:fs/promises'
import net from 'node:net'
import path from 'node:path'

import {Layout} from '../../src/lib/config/layout.js'
import {DEBIAN_JUPYTERHUB, hubctl, initTestHub, jsonOf, portFlags, tempPrefix, testHubInitArgs} from '../helpers/cli.js'
import {userPids} from '../helpers/processes.js'
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
    // A server's init, whole: its systemd unit, schedule and user's server too (doctor checks them).
    const result = await hubctl(
      testHubInitArgs(
        layout.prefix,
        {admin, jupyterhub: DEBIAN_JUPYTERHUB, systemd: true, schedule: true, serverCheck: true},
        flags,
      ),
    )
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
      'user server',
    ])
    // The admin has an account: the server was started as that user (and is gone again).
    expect(json.checks.find((c) => c.check === 'user server')).to.deep.include({status: 'pass'})
    expect(await userPids(adminUid)).to.deep.equal([])
  })

  // The tests that read other checks run doctor --no-server-check: the user server is started by the
  // test above and by the prefix test (0700, then 0755) below.
  it('fails with the exact fix when a secret is world-readable', async () => {
    await fs.chmod(layout.cookieSecret, 0o644)
    try {
      const result = await hubctl(['doctor', '--prefix', layout.prefix, '--no-server-check'])
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
      const result = await hubctl(['doctor', '--prefix', layout.prefix, '--no-server-check', '--json'])
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
      const result = await hubctl(['doctor', '--prefix', layout.prefix, '--no-server-check', '--json'])
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
    const result = await hubctl(['doctor', '--prefix', layout.prefix, '--no-server-check', '--json'])
    expect(result.exitCode, result.stdout).to.equal(0)
    const json = JSON.parse(result.stdout) as {checks: Array<{check: string; status: string; message: string}>}
    expect(json.checks.find((c) => c.check === 'processes')).to.include({status: 'pass'})
    expect(json.checks.find((c) => c.check === 'ports')).to.include({status: 'pass'})
    // The hub stopped behind hubctl's back: the check fails and names it.
    const state = JSON.parse(await fs.readFile(layout.stateFile, 'utf8')) as {hub: {pid: number}}
    process.kill(state.hub.pid, 'SIGSTOP')
    try {
      const broken = await hubctl(['doctor', '--prefix', layout.prefix, '--no-server-check', '--json'])
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

describe("hubctl doctor and init: a user's server starts (real user, real jupyterhub-singleuser)", () => {
  // The hub's JupyterHub lives in the prefix (as hubctl's own environment does, in opt/jupyterhub):
  // Debian's jupyterhub and jupyterhub-singleuser scripts, copied to PREFIX/venv/bin.
  const user = `hcdoc-${randomBytes(3).toString('hex')}`
  let uid = 0
  let layout: Layout
  let singleuser = ''

  before(async () => {
    uid = await addUser(user)
    layout = new Layout(await tempPrefix('hubctl-doctor-spawn'))
    const bin = path.join(layout.prefix, 'venv/bin')
    await fs.mkdir(bin, {recursive: true, mode: 0o755})
    for (const name of ['jupyterhub', 'jupyterhub-singleuser'])
      await fs.copyFile(path.join('/usr/bin', name), path.join(bin, name))
    await Promise.all(['jupyterhub', 'jupyterhub-singleuser'].map((name) => fs.chmod(path.join(bin, name), 0o755)))
    singleuser = path.join(bin, 'jupyterhub-singleuser')
    // mkdtemp made the prefix 0700: users could not reach the singleuser server. Init with it open.
    await fs.chmod(layout.prefix, 0o755)
    await initTestHub(layout.prefix, {admin: user, jupyterhub: path.join(bin, 'jupyterhub')})
  })
  after(async () => {
    await fs.rm(layout.prefix, {recursive: true, force: true})
    await removeUser(user, uid)
  })

  it('doctor fails when the user cannot pass through the prefix (0700), naming the directory and the fix; passes at 0755', async () => {
    await fs.chmod(layout.prefix, 0o700)
    try {
      const result = await hubctl(['doctor', '--prefix', layout.prefix, '--json'])
      expect(result.exitCode, result.stdout).to.equal(1)
      const check = (
        jsonOf(result).checks as Array<{check: string; status: string; message: string; fix?: string}>
      ).find((c) => c.check === 'user server')!
      expect(check.status).to.equal('fail')
      expect(check.message).to.equal(
        `${user} (uid ${uid}) cannot execute ${singleuser}: Permission denied at ${layout.prefix} (mode 0700, owner uid 0): no user's server can start`,
      )
      expect(check.fix).to.match(new RegExp(`^chmod o\\+x ${layout.prefix} .*or put the hub under a prefix`))
    } finally {
      await fs.chmod(layout.prefix, 0o755)
    }
    const fixed = await hubctl(['doctor', '--prefix', layout.prefix, '--json'])
    const check = (jsonOf(fixed).checks as Array<{check: string; status: string; message: string}>).find(
      (c) => c.check === 'user server',
    )!
    expect(check, fixed.stdout).to.include({status: 'pass'})
    expect(check.message).to.match(
      new RegExp(`^${singleuser} started as ${user} \\(uid ${uid}\\) and answered /user/${user}/api in`),
    )
    // Stopped again: nothing of the user's runs.
    expect(await userPids(uid)).to.deep.equal([])
  })

  it('init does not call the hub ready when no user can start a server: exit 7 with the fix', async () => {
    await fs.chmod(layout.prefix, 0o700)
    try {
      const {flags} = await portFlags()
      const init = await hubctl(
        testHubInitArgs(
          layout.prefix,
          {admin: user, jupyterhub: path.join(path.dirname(singleuser), 'jupyterhub'), serverCheck: true},
          flags,
        ),
      )
      expect(init.exitCode, init.stderr).to.equal(7)
      expect(init.stderr).to.include(
        `hubctl: hubctl init wrote the hub's files, but ${user} (uid ${uid}) cannot execute ${singleuser}: Permission denied at ${layout.prefix} (mode 0700, owner uid 0)`,
      )
      expect(init.stderr).to.include(`Fix: chmod o+x ${layout.prefix}`)
      expect(init.stdout).to.not.include('Next:')
    } finally {
      await fs.chmod(layout.prefix, 0o755)
    }
    expect(await userPids(uid)).to.deep.equal([])
  })
})
