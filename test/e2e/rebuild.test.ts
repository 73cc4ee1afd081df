// e2e-lane: parallel
import {expect} from 'chai'
import {execa} from 'execa'
import {randomBytes} from 'node:crypto'
import fs from 'node:fs/promises'
import os from 'node:os'
import path from 'node:path'

import {Layout} from '../../src/lib/config/layout.js'
import {SettingsStore} from '../../src/lib/config/settings.js'
import {ROOT, freePort, hubctl, jsonOf, portFlags, tempPrefix, testHubInitArgs} from '../helpers/cli.js'
import {httpsJson} from '../helpers/kernel.js'
import {killEveryProcessOf} from '../helpers/users.js'

/*
 * An OS upgrade that removes the Python a hub's environments were built from (issue 23: Debian's
 * python3.11 replaced by 3.12). The hub's environment is a virtualenv made by a copy of
 * /usr/bin/python3.11 (in a directory of its own, with lib/python3.11 linked to Debian's standard
 * library, which the copy finds through its sys.prefix); its packages are the prebuilt pinned
 * ones (.venv → /opt/hubctl-venv, through a .pth file), so that only one environment is built from
 * PyPI: the rebuild's. init copies it into the users' environment (--users-env), a course package
 * is added, a user gets a token; then the copy of Python is removed. doctor and start name the
 * missing interpreter and `hubctl upgrade --rebuild`; a rebuild whose package index is unreachable
 * exits 7 and changes nothing; the real one builds both environments again with /usr/bin/python3,
 * the hub runs, the token still works, the course package is still recorded, doctor passes.
 */

const VENV = path.join(ROOT, '.venv')
const VENV_SITE = path.join(VENV, 'lib/python3.11/site-packages')

interface Check {
  check: string
  status: string
  message: string
  fix?: string
}

describe('hubctl upgrade --rebuild: the Python of the environments gone (an OS upgrade)', function () {
  this.timeout(1_500_000)

  const user = `hcrb${randomBytes(3).toString('hex')}`
  let uid = -1
  let prefix = ''
  let layout: Layout
  let pythonHome = ''
  let oldEnv = ''
  let origin = ''
  let ca = ''
  let userToken = ''

  const whoami = () => httpsJson(`${origin}/hub/api/user`, {ca, token: userToken})
  const settingsText = () => fs.readFile(layout.settings, 'utf8')
  const doctorPython = async () => {
    const doctor = await hubctl(['doctor', '--prefix', prefix, '--json'], {timeoutMs: 600_000})
    const checks = (jsonOf(doctor) as unknown as {checks: Check[]}).checks
    return {doctor, python: checks.filter((c) => c.check === 'python')}
  }

  before(async function () {
    prefix = await tempPrefix('hubctl-rebuild')
    layout = new Layout(prefix)
    await fs.chmod(prefix, 0o755) // doctor's user-server check: the user passes through it to the users' environment
    // The interpreter an OS upgrade will take away: a copy of Debian's, its stdlib found by prefix.
    pythonHome = await fs.mkdtemp(path.join(os.tmpdir(), 'hubctl-rebuild-python-'))
    await fs.mkdir(path.join(pythonHome, 'bin'))
    await fs.mkdir(path.join(pythonHome, 'lib'))
    await fs.copyFile('/usr/bin/python3.11', path.join(pythonHome, 'bin/python3.11'))
    await fs.chmod(path.join(pythonHome, 'bin/python3.11'), 0o755)
    await fs.symlink('/usr/lib/python3.11', path.join(pythonHome, 'lib/python3.11'))
    // The hub's environment, made by that copy: pyvenv.cfg's home is the copy's directory.
    oldEnv = path.join(prefix, 'old-env')
    await execa(path.join(pythonHome, 'bin/python3.11'), ['-I', '-m', 'venv', '--without-pip', oldEnv])
    expect(await fs.readFile(path.join(oldEnv, 'pyvenv.cfg'), 'utf8')).to.include(`home = ${pythonHome}/bin`)
    await fs.writeFile(path.join(oldEnv, 'lib/python3.11/site-packages/hubctl-test.pth'), `${VENV_SITE}\n`)
    for (const script of ['jupyterhub', 'jupyterhub-singleuser']) {
      const text = await fs.readFile(path.join(ROOT, '.venv/bin', script), 'utf8')
      await fs.writeFile(path.join(oldEnv, 'bin', script), text.replace(/^#!.*/, `#!${oldEnv}/bin/python3.11`), {
        mode: 0o755,
      })
    }
    const portInfo = await portFlags()
    const init = await hubctl(
      testHubInitArgs(
        prefix,
        {
          admin: user,
          jupyterhub: path.join(oldEnv, 'bin/jupyterhub'),
          extra: ['--create-users', '--cull-idle', 'off', '--users-env'],
        },
        portInfo.flags,
      ),
    )
    expect(init.exitCode, init.stderr).to.equal(0)
    uid = Number((await execa('id', ['-u', user])).stdout)
    // A course package (already in the environment: pip only records it).
    const added = await hubctl(['env', 'add', 'packaging', '--prefix', prefix, '--json'])
    expect(added.exitCode, added.stderr + added.stdout).to.equal(0)
    const started = await hubctl(['start', '--detach', '--prefix', prefix, '--json'])
    expect(started.exitCode, started.stderr + started.stdout).to.equal(0)
    ca = await fs.readFile(layout.fullchain, 'utf8')
    origin = `https://localhost:${portInfo.ports.https}`
    const made = await execa(path.join(ROOT, '.venv/bin/python3'), [
      '-I',
      '-c',
      'import sys\nfrom jupyterhub import orm\ndb = orm.new_session_factory("sqlite:///" + sys.argv[1])()\nprint(orm.User.find(db, sys.argv[2]).new_api_token(note="hubctl rebuild e2e", expires_in=3600))\ndb.commit()',
      layout.database,
      user,
    ])
    userToken = made.stdout.trim().split('\n').pop()!
    expect((await whoami()).body).to.include({name: user})
    const stopped = await hubctl(['stop', '--prefix', prefix, '--json'])
    expect(stopped.exitCode, stopped.stderr).to.equal(0)
    // The OS upgrade.
    await fs.rm(pythonHome, {recursive: true, force: true})
  })

  after(async function () {
    this.timeout(120_000)
    if (prefix) await hubctl(['stop', '--prefix', prefix, '--json'])
    if (uid >= 1000) await killEveryProcessOf(uid)
    await execa('userdel', ['--remove', user], {reject: false})
    if (pythonHome) await fs.rm(pythonHome, {recursive: true, force: true})
    if (prefix) await fs.rm(prefix, {recursive: true, force: true})
  })

  it('doctor fails naming the missing interpreter of both environments and `hubctl upgrade --rebuild`; start exits 7 saying the same', async () => {
    const {doctor, python} = await doctorPython()
    expect(doctor.exitCode, doctor.stdout).to.equal(1)
    expect(python.map((c) => c.status)).to.deep.equal(['fail', 'fail'])
    expect(python[0].message).to.match(
      /^the hub's environment: the Python of .*old-env is gone: .*python3\.11 does not exist/,
    )
    expect(python[0].message).to.include(`home = ${pythonHome}/bin`)
    expect(python[1].message).to.match(
      /^the users' environment: the Python of .*opt\/jupyterhub\/users\/envs\/.* is gone/,
    )
    for (const check of python) expect(check.fix).to.include(`hubctl upgrade --rebuild --prefix ${prefix}`)
    // What the unit runs: exit 7 (RestartPreventExitStatus), not a crash loop.
    const start = await hubctl(['start', '--prefix', prefix])
    expect(start.exitCode, start.stdout + start.stderr).to.equal(7)
    expect(start.stderr).to.match(/python3\.11 does not exist[^]*the hub was not started[^]*hubctl upgrade --rebuild/)
    expect(await fs.stat(layout.pidFile).catch(() => undefined), 'no supervisor').to.equal(undefined)
  })

  it('a rebuild whose package index is unreachable: exit 7 naming it, hubctl.json and the links as they were, nothing half-built left', async () => {
    const before = await settingsText()
    const links = async () =>
      Promise.all(
        [layout.hubEnvCurrent, layout.usersEnvCurrent, layout.usersEnvBase].map((l) =>
          fs.readlink(l).catch(() => undefined),
        ),
      )
    const linksBefore = await links()
    const usersEnvs = await fs.readdir(layout.usersEnvsDir)
    const failed = await hubctl(['upgrade', '--rebuild', '--yes', '--prefix', prefix], {
      timeoutMs: 600_000,
      env: {
        PIP_INDEX_URL: `http://127.0.0.1:${await freePort()}/simple`,
        PIP_FIND_LINKS: '',
        PIP_RETRIES: '0',
        PIP_TIMEOUT: '3',
        PIP_NO_CACHE_DIR: '1',
      },
    })
    expect(failed.exitCode, failed.stdout + failed.stderr).to.equal(7)
    expect(failed.stderr).to.match(/the build of the new environment failed \(PyPI could not be reached/)
    expect(await settingsText(), 'hubctl.json as it was').to.equal(before)
    expect(await links()).to.deep.equal(linksBefore)
    expect(await fs.readdir(layout.hubEnvsDir), 'no half-built environment').to.deep.equal([])
    expect(await fs.readdir(layout.usersEnvsDir)).to.deep.equal(usersEnvs)
  })

  it("rebuilds both environments with this machine's python3: the hub runs, the token still works, the course package kept, doctor passes", async () => {
    // The environment of the pins, prebuilt with /usr/bin/python3 (a build from PyPI took 14 min
    // here; the build itself is init's, the failed one above runs it).
    const result = await hubctl(['upgrade', '--rebuild', '--yes', '--env', VENV, '--prefix', prefix, '--json'], {
      timeoutMs: 1_200_000,
    })
    expect(result.exitCode, result.stderr + result.stdout).to.equal(0)
    const json = jsonOf(result) as unknown as {
      action: string
      why: string
      to: {executable: string}
      usersEnv: {current: string; packages: string[]}
      seconds: number
    }
    expect(json.action).to.equal('upgraded')
    expect(json.why).to.match(/is gone: JupyterHub .* built again with the current Python, and the users' environment/)
    console.log(`      upgrade --rebuild: ${json.seconds}s`)
    const settings = await new SettingsStore(layout).load()
    expect(settings.executables.jupyterhub).to.equal(await fs.realpath(path.join(VENV, 'bin/jupyterhub')))
    const cfg = await fs.readFile(path.join(path.dirname(path.dirname(json.to.executable)), 'pyvenv.cfg'), 'utf8')
    expect(cfg).to.match(/^home = \/usr\/bin$/m)
    expect(json.usersEnv.packages).to.deep.equal(['packaging'])
    expect(await fs.readlink(layout.usersEnvCurrent)).to.equal(`envs/${json.usersEnv.current}`)
    expect((await whoami()).body, 'the token still valid').to.include({name: user})
    const {doctor, python} = await doctorPython()
    expect(
      python.map((c) => c.status),
      JSON.stringify(python),
    ).to.deep.equal(['pass', 'pass'])
    expect(doctor.exitCode, doctor.stdout).to.equal(0)
    const again = await hubctl(['upgrade', '--rebuild', '--yes', '--env', VENV, '--prefix', prefix, '--json'])
    expect(again.exitCode, again.stderr).to.equal(0)
    expect(jsonOf(again)).to.include({action: 'nothing'})
    expect((jsonOf(again) as unknown as {why: string}).why).to.include('nothing to rebuild')
  })
})
