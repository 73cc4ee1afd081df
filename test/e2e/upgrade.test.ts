// e2e-lane: parallel
import {expect} from 'chai'
import {execa} from 'execa'
import {randomBytes} from 'node:crypto'
import fs from 'node:fs/promises'
import path from 'node:path'

import {HubApi} from '../../src/lib/stack/hubapi.js'
import {Layout} from '../../src/lib/config/layout.js'
import {SettingsStore} from '../../src/lib/config/settings.js'
import {DEBIAN_JUPYTERHUB, ROOT, hubctl, jsonOf, portFlags, tempPrefix, testHubInitArgs} from '../helpers/cli.js'
import {loginAnswers, loginOutage} from '../helpers/downtime.js'
import {httpsJson} from '../helpers/kernel.js'
import {waitUntil} from '../helpers/processes.js'
import {killEveryProcessOf} from '../helpers/users.js'

/*
 * `hubctl upgrade` on a real hub (issue 23): Debian's JupyterHub 3.0 (/usr/bin/jupyterhub), PAM, a
 * system account hubctl made (`hcup…`), an API token of that user and their running server. The
 * "new environment" is the prebuilt pinned one (.venv → /opt/hubctl-venv), given with --env, so
 * that no test spends minutes building from PyPI (the build itself is init's HubEnvService, tested
 * by hubenv.test.ts). In order: an upgrade whose migration fails changes nothing; one whose new
 * hub does not start is rolled back to the running 3.0 hub; the real upgrade keeps the user, the
 * token and the server (its downtime measured); a second run has nothing to do; and `hubctl start`
 * on the 3.0 database with the new JupyterHub exits 7 naming `hubctl upgrade`.
 */

const VENV = path.join(ROOT, '.venv')

describe('hubctl upgrade', function () {
  this.timeout(1_500_000)

  const user = `hcup${randomBytes(3).toString('hex')}`
  let uid = -1
  let prefix = ''
  let layout: Layout
  let ports: Awaited<ReturnType<typeof portFlags>>['ports']
  let ca = ''
  let origin = ''
  let userToken = ''
  let serverStarted: string | null = null

  const python = (code: string, ...args: string[]) => execa('python3', ['-I', '-c', code, ...args])
  const whoami = () => httpsJson(`${origin}/hub/api/user`, {ca, token: userToken})
  const serverStatus = () => httpsJson(`${origin}/user/${user}/api/status`, {ca, token: userToken})
  const settings = () => new SettingsStore(layout).load()
  const upgrade = (...extra: string[]) =>
    hubctl(['upgrade', '--yes', '--env', VENV, '--prefix', prefix, '--json', ...extra], {timeoutMs: 900_000})

  before(async function () {
    prefix = await tempPrefix('hubctl-upgrade')
    layout = new Layout(prefix)
    const portInfo = await portFlags()
    ports = portInfo.ports
    const init = await hubctl(
      testHubInitArgs(
        prefix,
        {admin: user, jupyterhub: DEBIAN_JUPYTERHUB, extra: ['--create-users', '--cull-idle', 'off']},
        portInfo.flags,
      ),
    )
    expect(init.exitCode, init.stderr).to.equal(0)
    uid = Number((await execa('id', ['-u', user])).stdout)
    const started = await hubctl(['start', '--detach', '--prefix', prefix, '--json'])
    expect(started.exitCode, started.stderr + started.stdout).to.equal(0)
    ca = await fs.readFile(layout.fullchain, 'utf8')
    origin = `https://localhost:${ports.https}`
    const api = HubApi.forLayout(layout, {ports}, {timeoutMs: 60_000})
    expect(['started', 'pending']).to.include(await api.startServer(user))
    const server = await waitUntil(
      'the server to be ready',
      async () => (await api.userServers(user)).find((s) => s.ready),
      {
        tries: 600,
        intervalMs: 200,
      },
    )
    serverStarted = server.started
    // The user's API token, made as JupyterHub 3.0 makes one (its ORM, in the hub's database).
    const made = await execa('/usr/bin/python3', [
      '-I',
      '-c',
      'import sys\nfrom jupyterhub import orm\ndb = orm.new_session_factory("sqlite:///" + sys.argv[1])()\nprint(orm.User.find(db, sys.argv[2]).new_api_token(note="hubctl upgrade e2e", expires_in=3600))\ndb.commit()',
      layout.database,
      user,
    ])
    userToken = made.stdout.trim().split('\n').pop()!
    expect((await whoami()).body).to.include({name: user})
    expect((await serverStatus()).status).to.equal(200)
  })

  after(async function () {
    this.timeout(120_000)
    if (prefix) await hubctl(['stop', '--prefix', prefix, '--json'])
    if (uid >= 1000) await killEveryProcessOf(uid)
    await execa('userdel', ['--remove', user], {reject: false})
    if (prefix) await fs.rm(prefix, {recursive: true, force: true})
  })

  it('a migration that fails changes nothing: exit 7 naming it, the hub still on 3.0 with the token working', async () => {
    const before = await fs.readFile(layout.settings, 'utf8')
    // What JupyterHub 3.1's migration adds, already there: `alembic upgrade head` fails on it.
    const alter = (sql: string) =>
      python(
        'import sqlite3, sys; c = sqlite3.connect(sys.argv[1]); c.execute(sys.argv[2]); c.commit()',
        layout.database,
        sql,
      )
    await alter('ALTER TABLE groups ADD COLUMN properties TEXT')
    try {
      const failed = await upgrade()
      expect(failed.exitCode, failed.stdout + failed.stderr).to.equal(7)
      expect(failed.stderr + failed.stdout).to.match(/migration of the database failed/)
    } finally {
      await alter('ALTER TABLE groups DROP COLUMN properties')
    }
    expect(await fs.readFile(layout.settings, 'utf8')).to.equal(before)
    expect(await fs.stat(layout.databaseUpgrade).catch(() => undefined), 'the migrated copy removed').to.equal(
      undefined,
    )
    expect((await whoami()).body).to.include({name: user})
  })

  it('a new hub whose login page fails is rolled back: exit 7 naming the check, the 3.0 hub running again with hubctl.json as it was', async () => {
    const before = await fs.readFile(layout.settings, 'utf8')
    // JupyterHub 6 only: a login page that does not render (500), while /hub/health answers.
    const templates = path.join(prefix, 'broken-templates')
    await fs.mkdir(templates, {recursive: true})
    await fs.writeFile(path.join(templates, 'login.html'), '{% if %}\n')
    const breaker = path.join(layout.hubConfigD, '95-upgrade-test-break.py')
    await fs.writeFile(
      breaker,
      `import jupyterhub\nif jupyterhub.version_info[0] >= 6:\n    c.JupyterHub.template_paths = [${JSON.stringify(templates)}]\n`,
      {mode: 0o644},
    )
    try {
      const failed = await upgrade()
      expect(failed.exitCode, failed.stdout + failed.stderr).to.equal(7)
      expect(failed.stderr + failed.stdout).to.match(
        /check of the new hub failed \(the login page answered 500[^]*rolled back/,
      )
    } finally {
      await fs.rm(breaker)
    }
    expect(await fs.readFile(layout.settings, 'utf8'), 'hubctl.json as it was').to.equal(before)
    expect(await HubApi.forLayout(layout, {ports}).version(), 'the old hub runs').to.match(/^3\.0\./)
    expect((await whoami()).body).to.include({name: user})
    expect((await serverStatus()).status, 'the server still answers').to.equal(200)
  })

  it("upgrades Debian's 3.0 to the pinned JupyterHub: the user, their token and their running server kept; again: nothing to do", async () => {
    // The login page through nginx, polled during the upgrade: the longest time it did not answer.
    expect(await loginAnswers(ports.https, ca), 'the login page answers before').to.equal(true)
    const {result, longestDownMs} = await loginOutage(ports.https, ca, () => upgrade())
    expect(result.exitCode, result.stderr + result.stdout).to.equal(0)
    const json = jsonOf(result) as unknown as {
      action: string
      from: {jupyterhub: string}
      to: {jupyterhub: string}
      migrations: string[]
      servers: string[]
      downtimeSeconds: number
    }
    expect(json.action).to.equal('upgraded')
    expect(json.from.jupyterhub).to.match(/^3\.0\./)
    expect(json.to.jupyterhub).to.equal((await settings()).jupyterhubVersion)
    expect(json.migrations.length).to.be.greaterThan(0)
    expect(json.servers.join(' ')).to.include(user)
    console.log(
      `      upgrade downtime: the login page did not answer for ${(longestDownMs / 1000).toFixed(1)}s (hubctl: hub down ${json.downtimeSeconds}s)`,
    )
    expect((await settings()).executables.jupyterhub).to.equal(await fs.realpath(path.join(VENV, 'bin/jupyterhub')))
    expect(await HubApi.forLayout(layout, {ports}).version()).to.equal(json.to.jupyterhub)
    expect((await whoami()).body, 'the token still valid').to.include({name: user})
    const servers = await HubApi.forLayout(layout, {ports}).userServers(user)
    expect(
      servers.map((s) => s.started),
      'the same server, not restarted',
    ).to.deep.equal([serverStarted])
    expect((await serverStatus()).status, 'the server still answers').to.equal(200)
    const again = await upgrade()
    expect(again.exitCode, again.stderr).to.equal(0)
    expect(jsonOf(again)).to.include({action: 'nothing'})
  })

  it("`hubctl start` on 3.0's database with the pinned JupyterHub: exit 7 naming `hubctl upgrade`, nothing started", async () => {
    const stopped = await hubctl(['stop', '--prefix', prefix, '--json'])
    expect(stopped.exitCode, stopped.stderr).to.equal(0)
    await fs.copyFile(layout.databasePreUpgrade, layout.database)
    // What the systemd unit runs (in the foreground): exit 7, which the unit does not restart.
    const start = await hubctl(['start', '--prefix', prefix])
    expect(start.exitCode, start.stdout + start.stderr).to.equal(7)
    expect(start.stderr).to.match(/older than JupyterHub 6[^]*hubctl upgrade --prefix/)
    expect(await fs.stat(layout.pidFile).catch(() => undefined), 'no supervisor').to.equal(undefined)
  })
})
