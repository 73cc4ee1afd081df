// e2e-lane: parallel
import {expect} from 'chai'
import {execa} from 'execa'
import {randomBytes} from 'node:crypto'
import fs from 'node:fs/promises'
import os from 'node:os'
import path from 'node:path'

import {Layout} from '../../src/lib/config/layout.js'
import {
  CliResult,
  DEBIAN_JUPYTERHUB,
  VENV_JUPYTERHUB,
  hubctl,
  portFlags,
  snapshotTree,
  tempPrefix,
  testHubInitArgs,
} from '../helpers/cli.js'
import {httpsJson, runInNewKernel} from '../helpers/kernel.js'
import {waitUntil} from '../helpers/processes.js'
import {addUser, removeUser} from '../helpers/users.js'

/*
 * Local mode's server home, attacked by a real local user (made here with useradd). The quick
 * start's server runs as root with SimpleLocalProcessSpawner, whose own default home is
 * /tmp/NAME: the user makes that directory first, with a jupyter_server_config.py and an IPython
 * startup file that write a marker into a directory only root can write. hubctl now gives the
 * server a 0700 home of its own under the prefix: the planted code never runs; a home there that
 * is not hubctl's (another owner, a link, writable by others, without hubctl's mark) is refused by
 * init (exit 3, nothing changed) and by the spawn (the hub's answer names the fix).
 */

/** Python that, when executed, writes who ran it into `marker`. */
function planted(marker: string, what: string): string {
  return `import os\nwith open(${JSON.stringify(`${marker}/${what}`)}, "w") as f:\n    f.write(str(os.getuid()))\n`
}

/** The refusal: one last stderr line `hubctl: ... . Fix: ...` matching `message`, and the exit code. */
function expectRefused(result: CliResult, exitCode: number, message: RegExp): void {
  const line = result.stderr.trim().split('\n').pop() ?? ''
  expect(result.exitCode, `exit code; stdout: ${result.stdout}; stderr: ${result.stderr}`).to.equal(exitCode)
  expect(line).to.match(/^hubctl: .+\. Fix: .+/)
  expect(line).to.match(message)
}

describe("local mode's server home, against a local user who makes /tmp/NAME first", function () {
  this.timeout(300_000)
  const attacker = `hclocal${process.pid % 100_000}`
  // The hub user (local mode's one login): its own name, so that /tmp/NAME is this test's alone.
  const admin = `hcladm${randomBytes(3).toString('hex')}`
  const oldHome = `/tmp/${admin}`
  let attackerUid = -1
  let markerDir = ''
  const prefixes: string[] = []
  let layout: Layout
  let hubPort = 0
  let httpsPort = 0
  let apiToken = ''

  /** Run a shell command as the attacker (in /tmp, a plain environment). */
  const asAttacker = async (script: string, input?: string) => {
    const result = await execa('runuser', ['-u', attacker, '--', 'sh', '-c', script], {
      cwd: '/tmp',
      env: {PATH: '/usr/sbin:/usr/bin:/sbin:/bin'},
      extendEnv: false,
      reject: false,
      input,
    })
    expect(result.exitCode, `${script}: ${result.stderr}`).to.equal(0)
  }

  /** Plant the two startup files in `dir` as the attacker (who owns it). */
  const plantIn = async (dir: string, tag: string) => {
    await asAttacker(`umask 000; mkdir -p ${dir}/.jupyter ${dir}/.ipython/profile_default/startup`)
    await asAttacker(`cat > ${dir}/.jupyter/jupyter_server_config.py`, planted(markerDir, `${tag}-server-config`))
    await asAttacker(`cat > ${dir}/.ipython/profile_default/startup/x.py`, planted(markerDir, `${tag}-ipython`))
  }

  const markers = async () => (await fs.readdir(markerDir)).sort()

  /** POST /hub/api/users/ADMIN/server with hubctl's own token: the status and the hub's message. */
  const spawn = async () => {
    const response = await fetch(`http://127.0.0.1:${hubPort}/hub/api/users/${admin}/server`, {
      method: 'POST',
      headers: {Authorization: `token ${apiToken}`},
      signal: AbortSignal.timeout(120_000),
    })
    const text = await response.text()
    return {status: response.status, message: (JSON.parse(text || '{}') as {message?: string}).message ?? text}
  }

  before(async function () {
    this.timeout(600_000)
    attackerUid = await addUser(attacker)
    // Only root can write here: a file in it was written by code run as root.
    markerDir = await fs.mkdtemp(path.join(os.tmpdir(), 'hclocal-marker-'))
    await fs.chmod(markerDir, 0o755)
    await plantIn(oldHome, 'tmp')
    const prefix = await tempPrefix('hclocal')
    prefixes.push(prefix)
    layout = new Layout(prefix)
    const ports = await portFlags()
    hubPort = ports.ports.hub
    httpsPort = ports.ports.https
    const init = await hubctl(testHubInitArgs(prefix, {local: true, admin, jupyterhub: VENV_JUPYTERHUB}, ports.flags))
    expect(init.exitCode, init.stderr + init.stdout).to.equal(0)
    // The test's own grant: a token for the admin, to run a kernel in its server.
    await fs.writeFile(
      path.join(layout.hubConfigD, '90-local-home-test.py'),
      [
        'c.JupyterHub.load_roles.append({',
        '    "name": "local-home-test",',
        `    "scopes": ["tokens!user=${admin}", "access:servers!user=${admin}"],`,
        '    "services": ["hubctl"],',
        '})',
        '',
      ].join('\n'),
      {mode: 0o644},
    )
    apiToken = (await fs.readFile(layout.apiToken, 'utf8')).trim()
    const started = await hubctl(['start', '--detach', '--prefix', prefix, '--json'])
    expect(started.exitCode, started.stderr + started.stdout).to.equal(0)
  })

  after(async function () {
    this.timeout(120_000)
    for (const prefix of prefixes) {
      await hubctl(['stop', '--prefix', prefix, '--json'])
      await fs.rm(prefix, {recursive: true, force: true})
    }
    await fs.rm(oldHome, {recursive: true, force: true})
    if (markerDir) await fs.rm(markerDir, {recursive: true, force: true})
    if (attackerUid >= 0) await removeUser(attacker, attackerUid)
  })

  it("init --local makes the home under the prefix: 0700, root's, marked; the config points the spawner there", async () => {
    const home = layout.serverHome(admin)
    expect(home).to.equal(path.join(layout.prefix, 'srv/jupyterhub/home', admin))
    const stat = await fs.lstat(home)
    expect(stat.isDirectory()).to.equal(true)
    expect(stat.mode & 0o7777).to.equal(0o700)
    expect(stat.uid).to.equal(0)
    expect((await fs.lstat(layout.serverHomeMarker(admin))).isFile()).to.equal(true)
    expect(await fs.readFile(layout.hubConfig, 'utf8')).to.include(
      `c.SimpleLocalProcessSpawner.home_dir_template = ${JSON.stringify(`${layout.serverHomesDir}/{username}`)}`,
    )
  })

  it("a home that is not hubctl's at spawn time: the spawn fails naming the fix, and nothing in it runs", async () => {
    const home = layout.serverHome(admin)
    await fs.rename(home, `${home}.aside`)
    try {
      // What a user who could reach the directory would leave: their own directory, their startup files
      // (srv/jupyterhub is root's alone, so root puts them there for the test).
      await fs.mkdir(path.join(home, '.jupyter'), {recursive: true})
      await fs.writeFile(
        path.join(home, '.jupyter/jupyter_server_config.py'),
        planted(markerDir, 'prefix-server-config'),
      )
      await fs.chmod(home, 0o777)
      await execa('chown', ['-R', `${attackerUid}:${attackerUid}`, home])
      const refused = await spawn()
      expect(refused.status, refused.message).to.be.greaterThanOrEqual(400)
      expect(refused.message).to.match(
        new RegExp(`the server home ${home} belongs to uid ${attackerUid}.*Fix: .*mv ${home} ${home}\\.not-hubctl`),
      )
      expect(await markers()).to.deep.equal([])
    } finally {
      await fs.rm(home, {recursive: true, force: true})
      await fs.rename(`${home}.aside`, home)
    }
  })

  it('the server runs in the home under the prefix; the code planted in /tmp/NAME never runs (was: run as root)', async () => {
    const home = layout.serverHome(admin)
    const outcome = await spawn()
    expect([201, 202], outcome.message).to.include(outcome.status)
    await waitUntil(
      'the server to be ready',
      async () => {
        const response = await fetch(`http://127.0.0.1:${hubPort}/hub/api/users/${admin}`, {
          headers: {Authorization: `token ${apiToken}`},
        })
        const user = (await response.json()) as {servers?: Record<string, {ready: boolean}>}
        return user.servers?.['']?.ready ? true : undefined
      },
      {tries: 600, intervalMs: 200},
    )
    // The server has started: nothing planted in /tmp/NAME ran (its jupyter_server_config.py was loaded at start).
    expect(await markers(), 'code planted in /tmp/NAME ran as root').to.deep.equal([])
    const made = await fetch(`http://127.0.0.1:${hubPort}/hub/api/users/${admin}/tokens`, {
      method: 'POST',
      headers: {Authorization: `token ${apiToken}`, 'Content-Type': 'application/json'},
      body: JSON.stringify({note: 'hubctl local-home e2e', expires_in: 3600, scopes: [`access:servers!user=${admin}`]}),
    })
    const token = ((await made.json()) as {token?: string}).token ?? ''
    expect(made.status).to.equal(201)
    const ca = await fs.readFile(layout.fullchain, 'utf8')
    const origin = `https://localhost:${httpsPort}`
    // A kernel (IPython reads its startup files at start) runs in the home, with it as HOME.
    const printed = await runInNewKernel(origin, {
      user: admin,
      ca,
      token,
      code: 'import os\nprint(os.getcwd())\nprint(os.environ["HOME"])',
    })
    expect(printed.trim().split('\n')).to.deep.equal([home, home])
    // The server's files are the home's: its contents API lists the home's root.
    await fs.writeFile(path.join(home, 'hello.txt'), 'hi\n')
    const contents = await httpsJson(`${origin}/user/${admin}/api/contents`, {ca, token})
    expect(contents.status).to.equal(200)
    expect((contents.body as {content: Array<{name: string}>}).content.map((e) => e.name)).to.include('hello.txt')
    expect(await markers(), 'code planted in /tmp/NAME ran as root').to.deep.equal([])
    // The planted directory is as the user left it: nothing of the server was written there.
    expect((await fs.readdir(oldHome)).sort()).to.deep.equal(['.ipython', '.jupyter'])
  })

  it("init refuses a home that is not hubctl's (another owner, a link, writable by others, unmarked): exit 3 naming the fix, nothing changed", async () => {
    const prefix = await tempPrefix('hclocal-init')
    prefixes.push(prefix)
    const other = new Layout(prefix)
    const args = testHubInitArgs(prefix, {local: true, admin, jupyterhub: DEBIAN_JUPYTERHUB}, (await portFlags()).flags)
    const first = await hubctl(args)
    expect(first.exitCode, first.stderr).to.equal(0)
    const home = other.serverHome(admin)
    const cases: Array<{name: string; make(): Promise<void>; undo(): Promise<void>; message: RegExp}> = [
      {
        name: 'another owner',
        make: () => fs.chown(home, attackerUid, attackerUid),
        undo: () => fs.chown(home, 0, 0),
        message: new RegExp(`${home} belongs to uid ${attackerUid}.*Fix: .*mv ${home} ${home}\\.not-hubctl`),
      },
      {
        name: 'a link',
        make: async () => {
          await fs.rename(home, `${home}.aside`)
          await fs.symlink(oldHome, home)
        },
        undo: async () => {
          await fs.rm(home)
          await fs.rename(`${home}.aside`, home)
        },
        message: new RegExp(`${home} is a symbolic link.*Fix: .*mv ${home}`),
      },
      {
        name: 'writable by others',
        make: () => fs.chmod(home, 0o777),
        undo: () => fs.chmod(home, 0o700),
        message: new RegExp(`${home} is writable by its group.*Fix: .*chmod go-w ${home}`),
      },
      {
        name: 'without the mark',
        make: () => fs.rename(other.serverHomeMarker(admin), `${home}.mark`),
        undo: () => fs.rename(`${home}.mark`, other.serverHomeMarker(admin)),
        message: new RegExp(`${home} was not made by hubctl.*Fix: .*touch ${other.serverHomeMarker(admin)}`),
      },
    ]
    for (const each of cases) {
      await each.make()
      try {
        const before = await snapshotTree(prefix)
        const refused = await hubctl(args)
        expectRefused(refused, 3, each.message)
        expect(await snapshotTree(prefix), `${each.name}: nothing changed`).to.deep.equal(before)
        if (each.name === 'another owner') {
          const doctor = await hubctl(['doctor', '--prefix', prefix, '--json'])
          const checks = (
            JSON.parse(doctor.stdout) as {checks: Array<{check: string; status: string; message: string}>}
          ).checks
          expect(doctor.exitCode).to.equal(1)
          expect(checks.find((c) => c.check === 'server homes')).to.deep.include({status: 'fail'})
          expect(checks.find((c) => c.check === 'server homes')?.message).to.include(
            `${home} belongs to uid ${attackerUid}`,
          )
        }
      } finally {
        await each.undo()
      }
    }
    const again = await hubctl(args)
    expect(again.exitCode, again.stderr).to.equal(0)
    // The user's /tmp/NAME is not offered as the notebooks of before; one root's server made there is.
    expect(again.stderr).to.not.include(oldHome)
    await fs.rename(oldHome, `${oldHome}.aside`)
    try {
      await fs.mkdir(oldHome, {mode: 0o755})
      const upgraded = await hubctl(args)
      expect(upgraded.exitCode, upgraded.stderr).to.equal(0)
      expect(upgraded.stderr).to.include(
        `warning: ${oldHome} (JupyterHub's default home, which any local user could make first) is no longer used: the server's home is now ${home}`,
      )
    } finally {
      await fs.rm(oldHome, {recursive: true, force: true})
      await fs.rename(`${oldHome}.aside`, oldHome)
    }
    expect(await markers()).to.deep.equal([])
  })
})
