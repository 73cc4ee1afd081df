// e2e-lane: parallel
import {expect} from 'chai'
import {execa} from 'execa'
import {randomBytes} from 'node:crypto'
import fs from 'node:fs/promises'
import path from 'node:path'

import {Layout} from '../../src/lib/config/layout.js'
import {Settings} from '../../src/lib/config/settings.js'
import {HubApi} from '../../src/lib/stack/hubapi.js'
import {
  DEBIAN_JUPYTERHUB,
  VENV_JUPYTERHUB,
  hubctl,
  jsonOf,
  modeOf,
  portFlags,
  tempPrefix,
  testHubInitArgs,
} from '../helpers/cli.js'
import {HubBrowser, logIn, loginForm, submitLogin} from '../helpers/hub.js'
import {runInNewKernel} from '../helpers/kernel.js'
import {serverPids, userPids, waitUntil} from '../helpers/processes.js'
import {removeUser} from '../helpers/users.js'

/*
 * `hubctl users` on a running hub with PAM, through nginx, on both JupyterHubs (Debian's 3.0 and
 * the virtualenv's current one): accounts made by hubctl, passwords set with `users passwd
 * --password-stdin`, real logins through the login form, a kernel run; a removed user locked out,
 * their server gone and the hub's database without them; a 30-user roster synced twice; a TA made
 * admin. Every system user is named hcu… and removed afterwards.
 */

/** The uid of a system user, or undefined. */
async function uidOf(name: string): Promise<number | undefined> {
  const result = await execa('id', ['-u', name], {reject: false})
  return result.exitCode === 0 ? Number(result.stdout) : undefined
}

for (const jupyterhub of [DEBIAN_JUPYTERHUB, VENV_JUPYTERHUB]) {
  describe(`hubctl users with PAM on a running hub with ${jupyterhub}`, function () {
    this.timeout(600_000)

    const tag = randomBytes(2).toString('hex')
    const prof = `hcup${tag}`
    const student = `hcus${tag}`
    const ta = `hcut${tag}`
    const roster = Array.from({length: 30}, (_, i) => `hcur${tag}${i}`)
    const password = randomBytes(12).toString('hex')
    let prefix = ''
    let layout: Layout
    let ports: Awaited<ReturnType<typeof portFlags>>['ports']
    let origin = ''
    let ca = ''
    let api: HubApi

    const users = async (args: string[], input?: string) => {
      const result = await hubctl(['users', ...args, '--prefix', prefix], {input})
      expect(result.exitCode, `users ${args.join(' ')}: ${result.stderr}${result.stdout}`).to.equal(0)
      return result
    }
    const hubUserStatus = async (name: string) => {
      const token = (await fs.readFile(layout.apiToken, 'utf8')).trim()
      const response = await fetch(`http://127.0.0.1:${ports.hub}/hub/api/users/${name}`, {
        headers: {Authorization: `token ${token}`},
      })
      await response.body?.cancel()
      return response.status
    }

    before(async function () {
      prefix = await tempPrefix('hubctl-users')
      layout = new Layout(prefix)
      const portInfo = await portFlags()
      ports = portInfo.ports
      origin = `https://localhost:${ports.https}`
      // init --admin of a user without a system account: --create-users --yes makes it.
      const init = await hubctl(
        testHubInitArgs(
          prefix,
          {admin: prof, jupyterhub, serverCheck: true, extra: ['--create-users']},
          portInfo.flags,
        ),
      )
      expect(init.exitCode, init.stderr).to.equal(0)
      expect(await uidOf(prof), 'init --create-users made the admin account').to.be.a('number')
      // The test's own grant (as in kernel.test.ts): hubctl's service may issue a token for the
      // student, to run a kernel (JupyterHub 3.0 refuses the filtered `tokens!user=`).
      const tokensScope = jupyterhub === DEBIAN_JUPYTERHUB ? 'tokens' : `tokens!user=${student}`
      await fs.writeFile(
        path.join(layout.hubConfigD, '90-users-test.py'),
        `c.JupyterHub.load_roles.append({"name": "users-test", "scopes": ["${tokensScope}", "access:servers!user=${student}"], "services": ["hubctl"]})\n`,
        {mode: 0o644},
      )
      ca = await fs.readFile(layout.fullchain, 'utf8')
      const started = await hubctl(['start', '--detach', '--prefix', prefix])
      expect(started.exitCode, started.stderr).to.equal(0)
      // A loaded machine: JupyterHub answers a spawn request only after up to 10 s of the spawn.
      api = HubApi.forLayout(layout, {ports}, {timeoutMs: 60_000})
    })

    after(async function () {
      this.timeout(180_000)
      if (prefix) await hubctl(['stop', '--prefix', prefix])
      for (const name of [prof, student, ta, ...roster]) {
        const uid = await uidOf(name)
        if (uid !== undefined) await removeUser(name, uid)
      }
      if (prefix) await fs.rm(prefix, {recursive: true, force: true})
    })

    it('add makes the account (own group, 0700 home, bash, no password); passwd --password-stdin sets it; they log in through nginx and run a kernel', async () => {
      const added = await users(['add', student, '--json'])
      expect(jsonOf(added).accounts.created).to.deep.equal([student])
      expect(jsonOf(added).hub.restarted).to.equal(true)
      const [, , uid, gid, , home, shell] = (await execa('getent', ['passwd', student])).stdout.split(':')
      expect((await execa('getent', ['group', student])).stdout.split(':')[2]).to.equal(gid)
      expect(shell).to.equal('/bin/bash')
      expect(await modeOf(home)).to.equal(0o700)
      expect((await fs.stat(home)).uid).to.equal(Number(uid))
      expect((await execa('getent', ['shadow', student])).stdout.split(':')[1]).to.equal('!')
      // Before a password, no login.
      const browser = new HubBrowser(origin, {ca})
      const {xsrf} = await loginForm(browser)
      expect((await submitLogin(browser, {user: student, password, xsrf})).status).to.not.equal(302)
      const set = await hubctl(['users', 'passwd', student, '--password-stdin', '--prefix', prefix], {
        input: `${password}\n`,
      })
      expect(set.exitCode, set.stderr).to.equal(0)
      expect(set.stdout + set.stderr).to.not.include(password)
      await logIn(new HubBrowser(origin, {ca}), student, password)
      expect(await api.startServer(student)).to.be.oneOf(['started', 'pending'])
      await waitUntil('the server', async () => (await api.userServers(student)).find((s) => s.ready), {
        tries: 600,
        intervalMs: 200,
      })
      const token = (await fs.readFile(layout.apiToken, 'utf8')).trim()
      const made = await fetch(`http://127.0.0.1:${ports.hub}/hub/api/users/${student}/tokens`, {
        method: 'POST',
        headers: {Authorization: `token ${token}`, 'Content-Type': 'application/json'},
        body: JSON.stringify({note: 'hubctl users e2e', expires_in: 600, scopes: [`access:servers!user=${student}`]}),
      })
      const body = (await made.json()) as {token?: string; message?: string}
      expect(made.status, body.message).to.equal(201)
      expect(await runInNewKernel(origin, {user: student, ca, token: body.token!, code: 'print(6*7)'})).to.equal('42\n')
      const list = jsonOf(await users(['list', '--json']))
      const entry = (list.users as Array<Record<string, unknown>>).find((u) => u.name === student)
      expect(entry).to.include({admin: false, allowed: true, unixAccount: true, serverRunning: true})
      expect(entry?.lastActivity).to.be.a('string')
    })

    it('remove: server stopped, process gone, deleted from the hub database (API 404), account locked, home archived 0600; login refused', async () => {
      const uid = (await uidOf(student))!
      expect(await serverPids({uid}), 'the server runs before').to.have.length.greaterThan(0)
      const removed = jsonOf(await users(['remove', student, '--json']))
      expect(removed.hub.serversStopped).to.deep.equal([student])
      expect(removed.hub.deleted).to.deep.equal([student])
      expect(removed.accounts.locked).to.deep.equal([student])
      expect(await userPids(uid), 'no process of the removed user').to.deep.equal([])
      expect(await hubUserStatus(student), 'GET /hub/api/users/NAME after remove').to.equal(404)
      expect(removed.archives).to.have.length(1)
      expect(await modeOf(removed.archives[0])).to.equal(0o600)
      const shadow = (await execa('getent', ['shadow', student])).stdout.split(':')
      expect(shadow[1].startsWith('!')).to.equal(true)
      expect(shadow[7]).to.equal('1')
      // The correct password no longer logs in, and the hub did not bring the user back.
      const browser = new HubBrowser(origin, {ca})
      const {xsrf} = await loginForm(browser)
      await new Promise((resolve) => setTimeout(resolve, 1000))
      const refused = await submitLogin(browser, {user: student, password, xsrf})
      expect(refused.status, 'login of a removed user').to.not.equal(302)
      expect(await hubUserStatus(student)).to.equal(404)
      const settings = JSON.parse(await fs.readFile(layout.settings, 'utf8')) as Settings
      expect(settings.allowedUsers).to.not.include(student)
    })

    it('a 30-user roster is synced (accounts made, all allowed), then synced again with no change', async () => {
      const file = path.join(prefix, 'class.csv')
      await fs.writeFile(
        file,
        [
          'username,admin,email',
          `${prof},yes,`,
          ...roster.map((name, i) => `${name},${i === 0 ? 'yes' : 'no'},${name}@example.org`),
        ].join('\n') + '\n',
      )
      const dry = await users(['sync', file, '--dry-run', '--json'])
      expect(jsonOf(dry).plan.add).to.have.length(30)
      expect(await uidOf(roster[0]), '--dry-run made nothing').to.equal(undefined)
      const first = jsonOf(await users(['sync', file, '--yes', '--json']))
      expect(first.accounts.created).to.have.length(30)
      console.log(`      measured: users sync of 30 new users took ${first.seconds}s (loaded machine)`)
      for (const name of roster) expect(await uidOf(name), name).to.be.a('number')
      const hubPid = JSON.parse(await fs.readFile(layout.stateFile, 'utf8')).hub.pid
      const second = jsonOf(await users(['sync', file, '--yes', '--json']))
      expect(second.changed).to.equal(false)
      expect([second.plan.add, second.plan.change, second.plan.remove, second.plan.account]).to.deep.equal([
        [],
        [],
        [],
        [],
      ])
      expect(JSON.parse(await fs.readFile(layout.stateFile, 'utf8')).hub.pid, 'no restart').to.equal(hubPid)
      const list = jsonOf(await users(['list', '--json']))
      const listed = (list.users as Array<{name: string; admin: boolean; unixAccount: boolean}>).filter((u) =>
        roster.includes(u.name),
      )
      expect(listed).to.have.length(30)
      expect(listed.every((u) => u.unixAccount)).to.equal(true)
      expect(listed.filter((u) => u.admin).map((u) => u.name)).to.deep.equal([roster[0]])
    })

    it('a TA made admin opens /hub/admin (refused before), and not once revoked', async () => {
      await users(['add', ta])
      await users(['passwd', ta, '--password-stdin'], `${password}\n`)
      const before = new HubBrowser(origin, {ca})
      await logIn(before, ta, password)
      expect((await before.request('/hub/admin')).status).to.equal(403)
      const made = jsonOf(await users(['admin', ta, '--json']))
      expect(made.hub.adminSet).to.deep.equal([ta])
      const after = new HubBrowser(origin, {ca})
      await logIn(after, ta, password)
      const page = await after.request('/hub/admin')
      expect(page.status).to.equal(200)
      // Revoked: JupyterHub 5+ refuses a non-admin service this through its API; hubctl tells the database.
      const revoked = jsonOf(await users(['admin', ta, '--revoke', '--json']))
      expect(revoked.hub.adminSet).to.deep.equal([ta])
      const again = new HubBrowser(origin, {ca})
      await logIn(again, ta, password)
      expect((await again.request('/hub/admin')).status).to.equal(403)
    })
  })
}
