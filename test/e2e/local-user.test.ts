// e2e-lane: parallel
import {expect} from 'chai'
import {execa} from 'execa'
import fs from 'node:fs/promises'
import path from 'node:path'

import {Layout} from '../../src/lib/config/layout.js'
import {
  BIN,
  CliResult,
  DEBIAN_JUPYTERHUB,
  hubctl,
  portFlags,
  snapshot,
  tempPrefix,
  testHubFlags,
  testHubInitArgs,
} from '../helpers/cli.js'
import {needTool} from '../helpers/tools.js'

/*
 * What a local user (a real account made here with useradd, owning real files) can do to the
 * hubctl that root runs, each tried as an attack, end to end through the built CLI as root:
 * a Python module planted in the working directory, code or config root loads owned by the user
 * (or writable by others), a server as root through --spawner simple, the operator's own
 * environment overriding the secret files, logs others can read, and --dry-run writing anyway.
 */

const BASE = testHubFlags({admin: 'alice', jupyterhub: DEBIAN_JUPYTERHUB})

/** The refusal: one last stderr line `hubctl: ... . Fix: ...` matching `message`, and the exit code. */
function expectRefused(result: CliResult, exitCode: number, message: RegExp): void {
  const line = result.stderr.trim().split('\n').pop() ?? ''
  expect(result.exitCode, `exit code; stdout: ${result.stdout}; stderr: ${result.stderr}`).to.equal(exitCode)
  expect(line).to.match(/^hubctl: .+\. Fix: .+/)
  expect(line).to.match(message)
}

function escaped(text: string): string {
  return text.replaceAll(/[.*+?^${}()|[\]\\]/g, '\\$&')
}

/** Python that, when imported or executed, leaves `marker` behind (written as whoever runs it). */
function planted(marker: string): string {
  return `import os\nwith open(${JSON.stringify(marker)}, "w") as f:\n    f.write(str(os.getuid()))\n`
}

async function exists(file: string): Promise<boolean> {
  return fs.lstat(file).then(
    () => true,
    () => false,
  )
}

describe('a local user against the hubctl root runs', function () {
  this.timeout(300_000)
  const user = `hsec${process.pid % 100_000}`
  let uid = -1
  let gid = -1
  let home: string
  let userCreated = false
  const cleanup: string[] = []

  before(async () => {
    const created = await execa('useradd', ['-m', '-s', '/bin/sh', user], {reject: false})
    expect(created.exitCode, `useradd ${user}: ${created.stderr}`).to.equal(0)
    userCreated = true
    uid = Number((await execa('id', ['-u', user])).stdout)
    gid = Number((await execa('id', ['-g', user])).stdout)
    home = (await execa('sh', ['-c', `getent passwd ${user} | cut -d: -f6`])).stdout.trim()
  })

  after(async function () {
    this.timeout(120_000)
    for (const dir of cleanup) {
      await hubctl(['stop', '--prefix', dir]).catch(() => undefined)
      await fs.rm(dir, {recursive: true, force: true})
    }
    if (userCreated) await execa('userdel', ['-r', user], {reject: false})
  })

  async function newPrefix(label: string): Promise<Layout> {
    const layout = new Layout(await tempPrefix(label))
    cleanup.push(layout.prefix)
    return layout
  }

  /** hubctl as root, in the working directory `cwd`. */
  async function hubctlIn(cwd: string, args: string[]): Promise<CliResult> {
    const result = await execa(process.execPath, [BIN, ...args], {
      cwd,
      reject: false,
      stdin: 'ignore',
      timeout: 300_000,
    })
    return {exitCode: result.exitCode ?? -1, stdout: String(result.stdout), stderr: String(result.stderr)}
  }

  describe('1. Python modules planted in the working directory', () => {
    it('traitlets.py and jupyterhub.py in the directory where root runs init and doctor are never imported (was: executed as root)', async () => {
      const marker = path.join(home, 'pwned-by-cwd')
      for (const name of ['traitlets.py', 'jupyterhub.py']) {
        await fs.writeFile(path.join(home, name), planted(marker))
        await fs.chown(path.join(home, name), uid, gid)
      }
      const layout = await newPrefix('hubctl-cwd')
      const {flags} = await portFlags()
      const init = await hubctlIn(home, ['init', '--prefix', layout.prefix, ...BASE, ...flags])
      expect(await exists(marker), `root imported ${home}/traitlets.py during init`).to.equal(false)
      expect(init.exitCode, init.stderr).to.equal(0)
      // c.JupyterHub... in the rendered config still loads, with the isolated Python.
      const doctor = await hubctlIn(home, ['doctor', '--prefix', layout.prefix, '--json'])
      expect(await exists(marker), `root imported ${home}/traitlets.py during doctor`).to.equal(false)
      const checks = JSON.parse(doctor.stdout).checks as Array<{check: string; status: string; message: string}>
      expect(
        checks.find((c) => c.check === 'jupyterhub config'),
        doctor.stdout,
      ).to.include({status: 'pass'})
    })
  })

  describe('2. code and config root loads, owned or writable by someone else', () => {
    let layout: Layout
    let flags: string[]
    const marker = () => path.join(home, 'pwned-by-config')

    before(async () => {
      layout = await newPrefix('hubctl-trust')
      flags = (await portFlags()).flags
      const init = await hubctl(['init', '--prefix', layout.prefix, ...BASE, ...flags])
      expect(init.exitCode, init.stderr).to.equal(0)
    })
    afterEach(async () => {
      await fs.rm(marker(), {force: true})
    })

    it('a jupyterhub_config.d/*.py owned by the user: init, start exit 3 and doctor fails, naming the file and the chown; it never runs (was: run as root, doctor ok)', async () => {
      const evil = path.join(layout.hubConfigD, '50-evil.py')
      await fs.writeFile(evil, planted(marker()), {mode: 0o644})
      await fs.chown(evil, uid, gid)
      try {
        const before = await snapshot(layout.prefix)
        const init = await hubctl(['init', '--prefix', layout.prefix, ...BASE, ...flags])
        expectRefused(
          init,
          3,
          new RegExp(`${escaped(evil)} belongs to uid ${uid}.*Fix: .*chown root:root ${escaped(evil)}`),
        )
        expect(await exists(marker()), 'the file ran during init').to.equal(false)
        expect(await snapshot(layout.prefix), 'init changed nothing').to.deep.equal(before)
        const start = await hubctl(['start', '--detach', '--prefix', layout.prefix], {timeoutMs: 120_000})
        expectRefused(start, 3, new RegExp(`${escaped(evil)} belongs to uid ${uid}`))
        expect(await exists(marker()), 'the file ran during start').to.equal(false)
        const doctor = await hubctl(['doctor', '--prefix', layout.prefix, '--json'])
        expect(doctor.exitCode).to.equal(1)
        const checks = JSON.parse(doctor.stdout).checks as Array<{
          check: string
          status: string
          message: string
          fix?: string
        }>
        const ownership = checks.find((c) => c.check === 'ownership' && c.message.includes(evil))
        expect(ownership, doctor.stdout).to.include({status: 'fail'})
        expect(ownership!.fix).to.equal(`chown root:root ${evil}`)
        expect(
          checks.find((c) => c.check === 'jupyterhub config'),
          'doctor loads no config it does not trust',
        ).to.include({status: 'fail'})
        expect(await exists(marker()), 'the file ran during doctor').to.equal(false)
      } finally {
        await fs.rm(evil, {force: true})
      }
    })

    it('jupyterhub_config.d writable by its group: init exits 3 with chmod go-w', async () => {
      await fs.chmod(layout.hubConfigD, 0o775)
      try {
        const init = await hubctl(['init', '--prefix', layout.prefix, ...BASE, ...flags])
        expectRefused(
          init,
          3,
          new RegExp(
            `${escaped(layout.hubConfigD)} is writable by its group.*Fix: chmod go-w ${escaped(layout.hubConfigD)}`,
          ),
        )
      } finally {
        await fs.chmod(layout.hubConfigD, 0o755)
      }
    })

    it('etc/jupyterhub owned by the user: init exits 3 naming it', async () => {
      await fs.chown(layout.etcDir, uid, gid)
      try {
        const init = await hubctl(['init', '--prefix', layout.prefix, ...BASE, ...flags])
        expectRefused(
          init,
          3,
          new RegExp(`${escaped(layout.etcDir)} belongs to uid ${uid}.*chown root:root ${escaped(layout.etcDir)}`),
        )
      } finally {
        await fs.chown(layout.etcDir, 0, 0)
      }
    })

    it('after each fix, init and doctor pass again', async () => {
      const init = await hubctl(['init', '--prefix', layout.prefix, ...BASE, ...flags])
      expect(init.exitCode, init.stderr).to.equal(0)
      // Only the ownership check is read: no user server is started.
      const doctor = await hubctl(['doctor', '--prefix', layout.prefix, '--no-server-check', '--json'])
      const checks = JSON.parse(doctor.stdout).checks as Array<{check: string; status: string}>
      expect(
        checks.find((c) => c.check === 'ownership'),
        doctor.stdout,
      ).to.include({status: 'pass'})
    })

    it('a prefix inside a directory the user owns: init exits 3 naming that directory, nothing written', async () => {
      const parent = await tempPrefix('hubctl-userdir')
      cleanup.push(parent)
      await fs.chown(parent, uid, gid)
      const prefix = path.join(parent, 'hub')
      const init = await hubctl(['init', '--prefix', prefix, ...BASE, ...(await portFlags()).flags])
      expectRefused(init, 3, new RegExp(`${escaped(parent)} belongs to uid ${uid}.*chown root:root ${escaped(parent)}`))
      expect(await exists(prefix), 'init wrote the prefix').to.equal(false)
    })

    it('a JupyterHub in a directory the user owns: init exits 3 before running it (was: run as root)', async () => {
      const venv = path.join(home, 'venv', 'bin')
      await fs.mkdir(venv, {recursive: true})
      const jupyterhub = path.join(venv, 'jupyterhub')
      await fs.writeFile(jupyterhub, `#!/bin/sh\necho "$(id -u)" > ${marker()}\necho 3.0.0\n`, {mode: 0o755})
      await fs.writeFile(path.join(venv, 'jupyterhub-singleuser'), '#!/bin/sh\nexit 0\n', {mode: 0o755})
      await execa('chown', ['-R', `${uid}:${gid}`, path.join(home, 'venv')])
      const prefix = await newPrefix('hubctl-uservenv')
      const init = await hubctl([
        'init',
        '--prefix',
        prefix.prefix,
        ...BASE.filter((f) => f !== DEBIAN_JUPYTERHUB && f !== '--jupyterhub'),
        '--jupyterhub',
        jupyterhub,
        ...(await portFlags()).flags,
      ])
      expect(await exists(marker()), "root ran the user's jupyterhub").to.equal(false)
      expectRefused(init, 3, new RegExp(`${escaped(home)}(/venv(/bin(/jupyterhub)?)?)? belongs to uid ${uid}`))
    })
  })

  describe('3. --spawner simple as root', () => {
    it("with PAM and another allowed user: exit 2 naming --spawner local, nothing written (was: bob's server and terminal as root)", async () => {
      const layout = await newPrefix('hubctl-simple')
      const init = await hubctl([
        'init',
        '--prefix',
        layout.prefix,
        ...BASE,
        '--spawner',
        'simple',
        '--authenticator',
        'pam',
        '--allow-user',
        'bob',
        ...(await portFlags()).flags,
      ])
      expectRefused(init, 2, /--spawner simple .*as root.*Fix: .*--spawner local/)
      expect(await snapshot(layout.prefix)).to.deep.equal({})
    })

    it('local mode with another allowed user: exit 2, nothing written', async () => {
      const layout = await newPrefix('hubctl-simple-local')
      const init = await hubctl(
        testHubInitArgs(
          layout.prefix,
          {local: true, jupyterhub: DEBIAN_JUPYTERHUB, allowUsers: ['bob']},
          (await portFlags()).flags,
        ),
      )
      expectRefused(init, 2, /--spawner local/)
      expect(await snapshot(layout.prefix)).to.deep.equal({})
    })

    it("the quick start run by root (init --local: one generated login, the admin's) still works", async () => {
      const layout = await newPrefix('hubctl-local-root')
      const init = await hubctl(
        testHubInitArgs(
          layout.prefix,
          {local: true, jupyterhub: DEBIAN_JUPYTERHUB, serverCheck: true},
          (await portFlags()).flags,
        ),
      )
      expect(init.exitCode, init.stderr).to.equal(0)
      expect(await fs.readFile(layout.hubConfig, 'utf8')).to.include('c.Spawner.args = ["--allow-root"]')
    })

    it('hubctl.json changed to --spawner simple with PAM: start exits 2', async () => {
      const layout = await newPrefix('hubctl-simple-start')
      const init = await hubctl([
        'init',
        '--prefix',
        layout.prefix,
        ...BASE,
        '--allow-user',
        'bob',
        ...(await portFlags()).flags,
      ])
      expect(init.exitCode, init.stderr).to.equal(0)
      const settings = JSON.parse(await fs.readFile(layout.settings, 'utf8'))
      settings.spawner = 'simple'
      await fs.writeFile(layout.settings, JSON.stringify(settings))
      const start = await hubctl(['start', '--detach', '--prefix', layout.prefix], {timeoutMs: 120_000})
      expectRefused(start, 2, /--spawner local/)
    })
  })

  describe("5 and 9. a running stack: the operator's environment, the logs", () => {
    let layout: Layout

    before(async () => {
      layout = await newPrefix('hubctl-envlogs')
      const init = await hubctl(['init', '--prefix', layout.prefix, ...BASE, ...(await portFlags()).flags])
      expect(init.exitCode, init.stderr).to.equal(0)
      const started = await hubctl(['start', '--detach', '--prefix', layout.prefix], {
        env: {JPY_COOKIE_SECRET: 'ab'.repeat(32), CONFIGPROXY_AUTH_TOKEN: 'cd'.repeat(32)},
      })
      expect(started.exitCode, started.stderr + started.stdout).to.equal(0)
    })

    it("JPY_COOKIE_SECRET and CONFIGPROXY_AUTH_TOKEN in hubctl's environment never reach the hub (was: they overrode the files)", async () => {
      const status = JSON.parse((await hubctl(['status', '--prefix', layout.prefix, '--json'])).stdout) as {
        hub: {pid: number}
      }
      const environ = (await fs.readFile(`/proc/${status.hub.pid}/environ`, 'utf8')).split('\0')
      expect(
        environ.filter((v) => v.startsWith('JPY_COOKIE_SECRET=') || v.startsWith('CONFIGPROXY_AUTH_TOKEN=')),
      ).to.deep.equal([])
    })

    it("every log under var/log/jupyterhub is 0640 or tighter (was: nginx's 0644)", async () => {
      const names = await fs.readdir(layout.logDir)
      for (const wanted of ['proxy.log', 'jupyterhub.log', 'nginx-access.log', 'nginx-error.log', 'hubctl.log'])
        expect(names).to.include(wanted)
      for (const name of names) {
        const mode = (await fs.stat(path.join(layout.logDir, name))).mode & 0o777
        expect(mode & 0o037, `${name} has mode ${mode.toString(8)}`).to.equal(0)
      }
    })

    it('init installs a logrotate configuration that logrotate accepts', async function () {
      const config = path.join(layout.prefix, 'etc/logrotate.d/hubctl')
      const text = await fs.readFile(config, 'utf8')
      expect(text).to.match(/create 0640 root adm/)
      expect(text).to.match(/postrotate/)
      const logrotate = await execa('logrotate', ['-d', '-s', path.join(layout.prefix, 'logrotate.state'), config], {
        reject: false,
      })
      needTool(
        this,
        !(logrotate.exitCode === undefined && /ENOENT/.test(String(logrotate.message))),
        'logrotate is not installed (.ci/run installs it)',
      )
      expect(logrotate.exitCode, logrotate.stderr).to.equal(0)
      expect(logrotate.stderr).to.not.match(/^error:/im)
    })

    after(async () => {
      await hubctl(['stop', '--prefix', layout.prefix])
    })
  })

  describe('7. --dry-run', () => {
    it('init --dry-run --prefix DIR/x/new writes nothing at all, not even the prefix (was: created it)', async () => {
      const parent = await tempPrefix('hubctl-dryrun')
      cleanup.push(parent)
      const prefix = path.join(parent, 'x', 'new')
      const result = await hubctl(['init', '--dry-run', '--prefix', prefix, ...BASE, ...(await portFlags()).flags])
      expect(result.exitCode, result.stderr).to.equal(0)
      expect(await fs.readdir(parent)).to.deep.equal([])
    })
  })
})
