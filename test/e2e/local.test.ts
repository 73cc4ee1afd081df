// e2e-lane: parallel
import {expect} from 'chai'
import {execa} from 'execa'
import {randomBytes} from 'node:crypto'
import fs from 'node:fs/promises'
import path from 'node:path'

import {BIN, VENV_JUPYTERHUB, portFlags} from '../helpers/cli.js'
import {HubBrowser, submitLogin, xsrfOf} from '../helpers/hub.js'
import {isLive, procInfo, userPids, waitUntil} from '../helpers/processes.js'
import {addUser, removeUser} from '../helpers/users.js'

/*
 * The local mode as a person without root uses it: a system user made by the test runs
 * `hubctl init --local` and `hubctl start --local --detach` in its home (runuser), with nginx on
 * high ports from the prefix and the virtualenv's JupyterHub; the test then logs in through
 * https as a browser would (the _xsrf cookie and form field, the login cookie, the single-user
 * server's OAuth round trip), starts a server and gets 200 from /user/NAME/api/status; then stops.
 * The generated password is read from what init printed, sent only in the login form's body.
 */

const PATH = '/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin'

/** The uid of a live process (not a zombie). */
async function uidOf(pid: number): Promise<number | undefined> {
  const info = await procInfo(pid)
  return isLive(info) ? info.uid : undefined
}

interface LocalStatus {
  running: boolean
  supervisor: {pid: number | null; running: boolean}
  proxy: {pid: number | null; running: boolean}
  hub: {pid: number | null; running: boolean; healthy: boolean}
  nginx?: {pid: number | null; running: boolean}
  servers: Array<{user: string; name: string; ready: boolean}>
}

describe('local mode as a non-root user', function () {
  this.timeout(300_000)

  const user = `hubctl-l-${randomBytes(3).toString('hex')}`
  let uid = -1
  let home = ''
  let prefix = ''
  let ports: Awaited<ReturnType<typeof portFlags>>['ports']
  let portArgs: string[] = []
  let login: {url: string; user: string; password: string} | undefined
  let browser: HubBrowser

  /** hubctl as the user, in its home, with a plain environment. */
  const asUser = async (args: string[]) => {
    const result = await execa('runuser', ['-u', user, '--', process.execPath, BIN, ...args], {
      cwd: home,
      env: {PATH, HOME: home, LANG: 'C.UTF-8'},
      extendEnv: false,
      reject: false,
      timeout: 300_000,
      stdin: 'ignore',
    })
    return {exitCode: result.exitCode ?? -1, stdout: String(result.stdout), stderr: String(result.stderr)}
  }

  before(async function () {
    uid = await addUser(user)
    expect(uid).to.be.greaterThan(0)
    home = (await execa('getent', ['passwd', user])).stdout.split(':')[5]
    prefix = path.join(home, 'hubctl-local')
    // What the user must be able to run: Node with hubctl, nginx, the virtualenv's JupyterHub.
    for (const [command, args] of [
      [process.execPath, [BIN, '--version']],
      ['nginx', ['-v']],
      [VENV_JUPYTERHUB, ['--version']],
    ] as Array<[string, string[]]>) {
      const ran = await execa('runuser', ['-u', user, '--', command, ...args], {
        cwd: home,
        env: {PATH},
        extendEnv: false,
        reject: false,
      })
      expect(ran.exitCode, `${user} cannot run ${command}: ${(ran.stderr || ran.stdout).trim()}`).to.equal(0)
    }
    const portInfo = await portFlags()
    ports = portInfo.ports
    portArgs = portInfo.flags
  })

  after(async function () {
    this.timeout(120_000)
    if (home) await asUser(['stop', '--local', '--json'])
    if (uid > 0) await removeUser(user, uid)
    // The user's server's home, JupyterHub's /tmp/NAME (its uid is free for the next account now).
    await fs.rm(path.join('/tmp', user), {recursive: true, force: true})
  })

  it('init --local as the user: its own prefix, a generated login printed once, kept 0600', async () => {
    const init = await asUser(['init', '--local', '--yes', '--jupyterhub', VENV_JUPYTERHUB, ...portArgs])
    expect(init.exitCode, init.stderr + init.stdout).to.equal(0)
    const line = /^Log in at (https:\/\/\S+) as (\S+) with the password (\S+)$/m.exec(init.stdout)
    expect(line, init.stdout).to.not.equal(null)
    login = {url: line![1], user: line![2], password: line![3]}
    expect(login.url).to.equal(`https://localhost:${ports.https}/`)
    expect(login.user).to.equal(user)
    const file = path.join(prefix, 'srv/jupyterhub/login_password')
    const stat = await fs.stat(file)
    expect(stat.mode & 0o777).to.equal(0o600)
    expect(stat.uid).to.equal(uid)
    expect((await fs.readFile(file, 'utf8')).trim()).to.equal(login.password)
    const settings = JSON.parse(await fs.readFile(path.join(prefix, 'etc/jupyterhub/hubctl.json'), 'utf8')) as {
      spawner: string
      nginxSupervised: boolean
    }
    expect(settings).to.include({spawner: 'simple', nginxSupervised: true})
    // Every file init wrote belongs to the user, and nothing outside the prefix was touched.
    const owners = await execa('find', [prefix, '!', '-user', user], {reject: false})
    expect(owners.stdout.trim()).to.equal('')
    // Run again: the same password, not shown again.
    const again = await asUser(['init', '--local', '--yes', '--jupyterhub', VENV_JUPYTERHUB, ...portArgs])
    expect(again.exitCode, again.stderr).to.equal(0)
    expect(again.stdout).to.not.include(login.password)
    expect(again.stdout).to.not.match(/^Log in at/m)
    expect((await fs.readFile(file, 'utf8')).trim()).to.equal(login.password)
  })

  it('start --local --detach as the user: proxy, hub and nginx run as the user', async () => {
    expect(login, 'init ran').to.not.equal(undefined)
    const started = await asUser(['start', '--local', '--detach', '--json'])
    expect(started.exitCode, started.stderr + started.stdout).to.equal(0)
    const status = await asUser(['status', '--local', '--json'])
    expect(status.exitCode, status.stderr).to.equal(0)
    const parsed = JSON.parse(status.stdout) as LocalStatus
    expect(parsed.supervisor.running).to.equal(true)
    expect(parsed.hub).to.include({running: true, healthy: true})
    expect(parsed.nginx?.running).to.equal(true)
    for (const pid of [parsed.supervisor.pid, parsed.proxy.pid, parsed.hub.pid, parsed.nginx?.pid]) {
      expect(await uidOf(pid!), `pid ${pid}`).to.equal(uid)
    }
    const ca = await fs.readFile(path.join(prefix, 'srv/jupyterhub/ssl/fullchain.pem'), 'utf8')
    browser = new HubBrowser(`https://localhost:${ports.https}`, {ca})
  })

  it('a person logs in through https, starts a server and gets 200 from /user/NAME/api/status', async () => {
    expect(browser, 'the stack started').to.not.equal(undefined)
    // The login page sets the _xsrf cookie and carries the same token in its form.
    const page = await browser.follow('/hub/login')
    expect(page.status).to.equal(200)
    const xsrf = xsrfOf(page.body)
    expect(xsrf, 'the login form has an _xsrf field').to.be.a('string')
    expect(browser.cookies.has('_xsrf')).to.equal(true)
    // A wrong password is refused.
    const wrong = await submitLogin(browser, {user: login!.user, password: 'not-the-password', xsrf: xsrf!})
    expect(wrong.status).to.equal(403)
    const posted = await submitLogin(browser, {user: login!.user, password: login!.password, xsrf: xsrf!})
    expect(posted.status, posted.body.slice(0, 300)).to.equal(302)
    expect(browser.cookies.has('jupyterhub-hub-login')).to.equal(true)
    // Start the server as the home page's button does; spawn-pending answers until it is ready.
    const spawned = await browser.follow('/hub/spawn')
    expect(spawned.status, spawned.url).to.equal(200)
    const landed = await waitUntil(
      'the server to be ready',
      async () => {
        const reply = await browser.follow(`/hub/spawn-pending/${user}`)
        return new URL(reply.url).pathname.startsWith(`/user/${user}/`) && reply.status === 200 ? reply : undefined
      },
      {tries: 300, intervalMs: 500},
    )
    expect(new URL(landed.url).pathname).to.match(new RegExp(`^/user/${user}/(lab|tree)`))
    // The single-user server's OAuth round trip left its own cookie: its API answers.
    const api = await browser.request(`/user/${user}/api/status`)
    expect(api.status, api.body.slice(0, 300)).to.equal(200)
    const body = JSON.parse(api.body) as {started?: string; kernels?: number}
    expect(body.started).to.be.a('string')
    expect(body.kernels).to.be.a('number')
    const status = JSON.parse((await asUser(['status', '--local', '--json'])).stdout) as LocalStatus
    expect(status.servers.map((s) => [s.user, s.ready])).to.deep.equal([[user, true]])
  })

  it('stop --local stops the server, the hub, the proxy and nginx: nothing of the user runs', async () => {
    const stopped = await asUser(['stop', '--local', '--json'])
    expect(stopped.exitCode, stopped.stderr + stopped.stdout).to.equal(0)
    const result = JSON.parse(stopped.stdout) as {
      servers: Array<{user: string; result: string}>
      supervisor: {result: string} | null
      leftovers: unknown[]
    }
    expect(result.servers).to.deep.equal([{user, name: '', result: 'stopped'}])
    expect(result.supervisor?.result).to.equal('exited')
    expect(result.leftovers).to.deep.equal([])
    await waitUntil(
      'every process of the user to be gone',
      async () => ((await userPids(uid)).length === 0 ? true : undefined),
      {tries: 100, intervalMs: 200},
    )
    const status = JSON.parse((await asUser(['status', '--local', '--json'])).stdout) as LocalStatus
    expect(status.running).to.equal(false)
  })
})
