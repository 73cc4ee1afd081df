// e2e-lane: parallel
import {expect} from 'chai'
import {execa} from 'execa'
import {randomBytes} from 'node:crypto'
import fs from 'node:fs/promises'
import net from 'node:net'
import path from 'node:path'

import {HubApi} from '../../src/lib/stack/hubapi.js'
import {Layout} from '../../src/lib/config/layout.js'
import {systemdRuns} from '../../src/lib/config/units.js'
import {
  VENV_JUPYTERHUB,
  freePort,
  hubctl,
  jsonOf,
  modeOf,
  portFlags,
  snapshotTree,
  tempPrefix,
  testHubInitArgs,
  treeChanges,
} from '../helpers/cli.js'
import {HubBrowser, logIn} from '../helpers/hub.js'
import {httpsJson, openChannel} from '../helpers/kernel.js'
import {waitUntil} from '../helpers/processes.js'
import {killEveryProcessOf} from '../helpers/users.js'

/*
 * `hubctl backup`, `restore` and `uninstall` on a real hub (issue 23): the virtualenv's JupyterHub,
 * PAM, a system account made by hubctl (`hcbk…`, this test's own prefix), its password, a login
 * cookie, an API token and a running server whose kernel keeps writing while the backup is taken
 * with the homes. Then: a changed byte and a truncated archive are refused with nothing changed;
 * the prefix is wiped and the account deleted with its home, and the restore brings back the
 * account (same uid, same password), the token, the cookie and the notebook; uninstall keeps another
 * nginx site serving, and init afterwards gives a working hub.
 */

describe('hubctl backup, restore and uninstall', function () {
  this.timeout(900_000)

  const user = `hcbk${randomBytes(3).toString('hex')}`
  const password = `pw-${randomBytes(9).toString('hex')}`
  let uid = -1
  let prefix = ''
  let layout: Layout
  let ports: Awaited<ReturnType<typeof portFlags>>['ports']
  let initArgs: string[] = []
  let ca = ''
  let origin = ''
  let cookie = ''
  let userToken = ''
  let archive = ''
  /** The archive, outside the prefix (which the restore test wipes): restored again on "a new VM". */
  let kept = ''
  /** The new VM's prefix. */
  let second = ''
  const notebook = `{"cells": [], "metadata": {}, "nbformat": 4, "nbformat_minor": 5, "note": "${randomBytes(8).toString('hex')}"}`
  let otherNginx: string[] | undefined

  before(async function () {
    prefix = await tempPrefix('hubctl-backup')
    layout = new Layout(prefix)
    const portInfo = await portFlags()
    ports = portInfo.ports
    initArgs = testHubInitArgs(
      prefix,
      {admin: user, jupyterhub: VENV_JUPYTERHUB, extra: ['--create-users', '--schedule-backup', 'daily']},
      portInfo.flags,
    )
    const init = await hubctl(initArgs)
    expect(init.exitCode, init.stderr).to.equal(0)
    uid = Number((await execa('id', ['-u', user])).stdout)
    const passwd = await hubctl(['users', 'passwd', user, '--password-stdin', '--prefix', prefix], {input: password})
    expect(passwd.exitCode, passwd.stderr).to.equal(0)
    // The test's own grant: hubctl's service may issue this user a token for their server.
    await fs.writeFile(
      path.join(layout.hubConfigD, '90-backup-test.py'),
      [
        'c.JupyterHub.load_roles.append({',
        `    "name": "backup-test-tokens",`,
        `    "scopes": ["tokens!user=${user}", "access:servers!user=${user}"],`,
        '    "services": ["hubctl"],',
        '})',
        '',
      ].join('\n'),
      {mode: 0o644},
    )
    const started = await hubctl(['start', '--detach', '--prefix', prefix, '--json'])
    expect(started.exitCode, started.stderr + started.stdout).to.equal(0)
    ca = await fs.readFile(layout.fullchain, 'utf8')
    origin = `https://localhost:${ports.https}`
    cookie = await logIn(new HubBrowser(origin, {ca}), user, password)
    const api = HubApi.forLayout(layout, {ports}, {timeoutMs: 60_000})
    expect(['started', 'pending']).to.include(await api.startServer(user))
    await waitUntil('the server to be ready', async () => (await api.userServers(user)).find((s) => s.ready), {
      tries: 600,
      intervalMs: 200,
    })
    const apiToken = (await fs.readFile(layout.apiToken, 'utf8')).trim()
    const response = await fetch(`http://127.0.0.1:${ports.hub}/hub/api/users/${user}/tokens`, {
      method: 'POST',
      headers: {Authorization: `token ${apiToken}`, 'Content-Type': 'application/json'},
      body: JSON.stringify({note: 'hubctl backup e2e', expires_in: 3600, scopes: [`access:servers!user=${user}`]}),
    })
    const body = (await response.json()) as {token?: string}
    expect(response.status).to.equal(201)
    userToken = body.token!
    // The notebook, through the server's contents API.
    const put = await httpsJson(`${origin}/user/${user}/api/contents/kept.ipynb`, {
      method: 'PUT',
      ca,
      token: userToken,
      body: {type: 'notebook', format: 'json', content: JSON.parse(notebook)},
    })
    expect(put.status, JSON.stringify(put.body)).to.be.oneOf([200, 201])
  })

  after(async function () {
    this.timeout(120_000)
    if (otherNginx) await execa('nginx', [...otherNginx, '-s', 'quit'], {reject: false})
    if (second) await hubctl(['stop', '--prefix', second, '--json'])
    if (prefix) await hubctl(['stop', '--prefix', prefix, '--json'])
    if (uid >= 1000) await killEveryProcessOf(uid)
    await execa('userdel', ['--remove', user], {reject: false})
    if (prefix) await fs.rm(prefix, {recursive: true, force: true})
    if (second) await fs.rm(second, {recursive: true, force: true})
    if (kept) await fs.rm(kept, {force: true})
  })

  it('backs up the running hub with its homes while a kernel writes: one 0600 archive with a manifest', async function () {
    const kernel = await httpsJson(`${origin}/user/${user}/api/kernels`, {
      method: 'POST',
      ca,
      token: userToken,
      body: {name: 'python3'},
    })
    expect(kernel.status, JSON.stringify(kernel.body)).to.equal(201)
    const channel = await openChannel(
      `${origin.replace(/^https:/, 'wss:')}/user/${user}/api/kernels/${(kernel.body as {id: string}).id}/channels`,
      {ca, headers: {Authorization: `token ${userToken}`}},
    )
    try {
      // A thread of the kernel appends to a file in the home, for the whole backup.
      await channel.execute(
        [
          'import threading, time',
          'def write():',
          '    with open("stream.log", "a") as f:',
          '        for i in range(200000):',
          '            f.write("%d\\n" % i); f.flush(); time.sleep(0.0005)',
          'threading.Thread(target=write, daemon=True).start()',
        ].join('\n'),
      )
      const result = await hubctl(['backup', '--include-homes', '--prefix', prefix, '--json'])
      expect(result.exitCode, result.stderr + result.stdout).to.equal(0)
      const json = jsonOf(result)
      archive = json.archive
      expect(path.dirname(archive)).to.equal(layout.backupDir)
      expect(await modeOf(archive)).to.equal(0o600)
      expect(await modeOf(layout.backupDir)).to.equal(0o700)
      expect(json.homes).to.deep.equal([user])
      expect(json.accounts).to.deep.equal([user])
      expect(json.jupyterhub).to.match(/^\d+\.\d+\.\d+/)
      const listing = (await execa('tar', ['-tf', archive])).stdout.split('\n')
      expect(listing[0]).to.equal('manifest.json')
      const manifest = JSON.parse((await execa('tar', ['-xOf', archive, 'manifest.json'])).stdout)
      const paths = manifest.files.map((f: {path: string}) => f.path)
      for (const file of [
        layout.cookieSecret,
        layout.apiToken,
        layout.database,
        layout.settings,
        layout.usersRecord,
        layout.hubConfig,
        layout.nginxSite,
        layout.fullchain,
      ])
        expect(paths, file).to.include(layout.relativeToPrefix(file))
      for (const entry of manifest.files.filter((f: {type: string}) => f.type === 'file'))
        expect(entry.sha256, entry.path).to.match(/^[0-9a-f]{64}$/)
      // status: the schedule init installed, and this archive the newest.
      const status = await hubctl(['status', '--prefix', prefix, '--json'])
      expect(jsonOf(status).backups).to.deep.include({schedule: {every: 'daily', keep: 7}, count: 1})
      expect(jsonOf(status).backups.newest.archive).to.equal(archive)
      // No secret in the archive's name or the command's output.
      const secret = (await fs.readFile(layout.cookieSecret, 'utf8')).trim()
      expect(result.stdout + result.stderr).not.to.include(secret)
    } finally {
      channel.close()
    }
  })

  /** What a refused restore must leave as it was: the hub's files (not its live database or logs) and the home. */
  const hubState = async () => {
    const home = (await execa('getent', ['passwd', user])).stdout.split(':')[5]
    const trees = {
      etc: await snapshotTree(layout.etcDir),
      ssl: await snapshotTree(layout.sslDir),
      secrets: Object.fromEntries(
        await Promise.all(
          Object.values(layout.secretFiles).map(async (f) => [f, await fs.readFile(f, 'utf8')] as const),
        ),
      ),
      notebook: await fs.readFile(path.join(home, 'kept.ipynb'), 'utf8'),
      supervisor: (await fs.readFile(layout.pidFile, 'utf8')).trim(),
    }
    return trees
  }

  const expectRefused = async (file: string, why: RegExp) => {
    const before = await hubState()
    const result = await hubctl(['restore', file, '--yes', '--prefix', prefix, '--json'])
    expect(result.exitCode, result.stdout + result.stderr).to.equal(2)
    expect(jsonOf(result).error.message).to.match(why)
    const after = await hubState()
    expect(treeChanges(before.etc, after.etc)).to.deep.equal([])
    expect(treeChanges(before.ssl, after.ssl)).to.deep.equal([])
    expect(after.secrets).to.deep.equal(before.secrets)
    expect(after.notebook).to.equal(before.notebook)
    expect(after.supervisor, 'the hub was not stopped').to.equal(before.supervisor)
    expect((await fs.readdir(path.dirname(layout.srvDir))).filter((n) => n.includes('restore'))).to.deep.equal([])
    expect(await fs.stat(layout.restoreJournal).catch(() => undefined)).to.equal(undefined)
  }

  it('refuses an archive with one byte changed, before anything changes', async function () {
    expect(archive, 'the backup test ran').to.not.equal('')
    const bytes = await fs.readFile(archive)
    // Inside hubctl.json's content (a member's data, which tar's header checksums do not cover).
    const at = bytes.indexOf(Buffer.from('"jupyterhubVersion"'))
    expect(at).to.be.greaterThan(0)
    bytes[at + 3] ^= 0x20
    const tampered = path.join(path.dirname(prefix), `${path.basename(prefix)}-tampered.tar`)
    await fs.writeFile(tampered, bytes, {mode: 0o600})
    try {
      await expectRefused(tampered, /SHA-256/)
    } finally {
      await fs.rm(tampered, {force: true})
    }
  })

  it('refuses a truncated archive, before anything changes', async function () {
    expect(archive, 'the backup test ran').to.not.equal('')
    const bytes = await fs.readFile(archive)
    const truncated = path.join(path.dirname(prefix), `${path.basename(prefix)}-truncated.tar`)
    await fs.writeFile(truncated, bytes.subarray(0, Math.floor(bytes.length / 2)), {mode: 0o600})
    try {
      await expectRefused(truncated, /truncated|missing/)
    } finally {
      await fs.rm(truncated, {force: true})
    }
  })

  it('restores into a wiped prefix: the account, its password, the old token and cookie, the notebook', async function () {
    expect(archive, 'the backup test ran').to.not.equal('')
    kept = path.join(path.dirname(prefix), `${path.basename(prefix)}.tar`)
    await fs.copyFile(archive, kept)
    const stop = await hubctl(['stop', '--prefix', prefix, '--json'])
    expect(stop.exitCode, stop.stderr).to.equal(0)
    await killEveryProcessOf(uid)
    const home = (await execa('getent', ['passwd', user])).stdout.split(':')[5]
    await execa('userdel', ['--remove', user])
    await fs.rm(prefix, {recursive: true, force: true})
    await fs.mkdir(prefix, {mode: 0o755})
    // Not a terminal, no --yes: refused, nothing made.
    const unasked = await hubctl(['restore', kept, '--prefix', prefix])
    expect(unasked.exitCode, unasked.stderr).to.equal(2)
    expect(await fs.readdir(prefix)).to.deep.equal(['srv'])
    const result = await hubctl(['restore', kept, '--yes', '--prefix', prefix, '--json'])
    expect(result.exitCode, result.stdout + result.stderr).to.equal(0)
    const json = jsonOf(result)
    expect(json.healthy).to.equal(true)
    // The uid is kept where it is free. Other test files make accounts meanwhile (useradd takes the
    // highest uid + 1, which was this user's): then another uid, and only then.
    const [account] = json.accounts as Array<{name: string; uid: number; created: boolean; uidKept: boolean}>
    if (!account.uidKept) {
      const holder = await execa('getent', ['passwd', String(uid)], {reject: false})
      expect(holder.stdout, `uid ${uid} was free, yet not kept`).to.match(/^[^:]+:/)
      expect(holder.stdout.split(':')[0]).to.not.equal(user)
      uid = account.uid
    }
    expect(json.accounts).to.deep.equal([{name: user, uid, created: true, uidKept: account.uidKept}])
    expect(Number((await execa('id', ['-u', user])).stdout)).to.equal(uid)
    expect(await fs.readFile(path.join(home, 'kept.ipynb'), 'utf8')).to.include(JSON.parse(notebook).note)
    expect((await fs.stat(path.join(home, 'kept.ipynb'))).uid).to.equal(uid)
    // The old cookie: the hub's home page, not the login page.
    const browser = new HubBrowser(origin, {ca, cookie})
    const page = await browser.request('/hub/home')
    expect(page.status, page.location).to.equal(200)
    // The old token: the hub says whose it is.
    const whoami = await httpsJson(`${origin}/hub/api/user`, {method: 'GET', ca, token: userToken})
    expect(whoami.status).to.equal(200)
    expect((whoami.body as {name: string}).name).to.equal(user)
    // The password (the shadow entry came back).
    await logIn(new HubBrowser(origin, {ca}), user, password)
    // The notebook through the restarted server, with the old token.
    const api = HubApi.forLayout(layout, {ports}, {timeoutMs: 60_000})
    expect(['started', 'pending']).to.include(await api.startServer(user))
    await waitUntil('the server to be ready', async () => (await api.userServers(user)).find((s) => s.ready), {
      tries: 600,
      intervalMs: 200,
    })
    const got = await httpsJson(`${origin}/user/${user}/api/contents/kept.ipynb`, {
      method: 'GET',
      ca,
      token: userToken,
    })
    expect(got.status, JSON.stringify(got.body)).to.equal(200)
    expect(JSON.stringify((got.body as {content: unknown}).content)).to.include(JSON.parse(notebook).note)
  })

  it('restores the same archive on "a new VM": a second, clean prefix on other ports, the same users, token, cookie and notebook', async function () {
    expect(kept, 'the restore test ran').to.not.equal('')
    second = await tempPrefix('hubctl-backup-vm')
    const layout2 = new Layout(second)
    const {ports: ports2, flags} = await portFlags()
    // The archive's ports are the first hub's, which still runs: refused before anything changes.
    const busy = await hubctl(['restore', kept, '--yes', '--prefix', second, '--json'])
    expect(busy.exitCode, busy.stdout + busy.stderr).to.equal(3)
    expect(jsonOf(busy).error.message).to.match(/port \d+ \(--[a-z-]+\) of the restored hub is already in use/)
    expect(await fs.readdir(second)).to.deep.equal(['srv'])
    expect(await fs.readdir(path.join(second, 'srv'))).to.deep.equal([])
    // The first hub stopped (its user's server too: the account and home are this machine's, shared).
    const stop = await hubctl(['stop', '--prefix', prefix, '--json'])
    expect(stop.exitCode, stop.stderr).to.equal(0)
    await killEveryProcessOf(uid)
    const result = await hubctl(['restore', kept, '--yes', '--prefix', second, ...flags, '--json'])
    expect(result.exitCode, result.stdout + result.stderr).to.equal(0)
    const json = jsonOf(result)
    expect(json).to.deep.include({healthy: true, relocated: true, from: prefix, ports: ports2})
    expect(json.accounts).to.deep.equal([{name: user, uid, created: false, uidKept: true}])
    // Nothing of the new hub names the old prefix (its config, site, link, hubctl.json), nor its ports.
    const named = await execa('grep', ['-rlF', `${prefix}/`, layout2.etcDir, layout2.srvDir], {reject: false})
    expect(named.stdout, 'files naming the old prefix').to.equal('')
    expect(await fs.readlink(layout2.nginxSiteLink)).to.equal(layout2.nginxSite)
    expect(await fs.readFile(layout2.hubConfig, 'utf8')).to.include(`c.JupyterHub.hub_port = ${ports2.hub}`)
    const origin2 = `https://localhost:${ports2.https}`
    // The old cookie (the cookie secret came along) and the old token.
    const page = await new HubBrowser(origin2, {ca, cookie}).request('/hub/home')
    expect(page.status, page.location).to.equal(200)
    const whoami = await httpsJson(`${origin2}/hub/api/user`, {method: 'GET', ca, token: userToken})
    expect(whoami.status).to.equal(200)
    expect((whoami.body as {name: string}).name).to.equal(user)
    // The notebook, through a server the new hub starts.
    const api = HubApi.forLayout(layout2, {ports: ports2}, {timeoutMs: 60_000})
    expect(['started', 'pending']).to.include(await api.startServer(user))
    await waitUntil('the server to be ready', async () => (await api.userServers(user)).find((s) => s.ready), {
      tries: 600,
      intervalMs: 200,
    })
    const got = await httpsJson(`${origin2}/user/${user}/api/contents/kept.ipynb`, {
      method: 'GET',
      ca,
      token: userToken,
    })
    expect(got.status, JSON.stringify(got.body)).to.equal(200)
    expect(JSON.stringify((got.body as {content: unknown}).content)).to.include(JSON.parse(notebook).note)
    const stopped = await hubctl(['stop', '--prefix', second, '--json'])
    expect(stopped.exitCode, stopped.stderr).to.equal(0)
  })

  it('uninstall removes the site and keeps another nginx site serving; init afterwards gives a working hub', async function () {
    const stop = await hubctl(['stop', '--prefix', prefix, '--json'])
    expect(stop.exitCode, stop.stderr).to.equal(0)
    // Another site in the prefix's nginx, served by an nginx the test runs itself.
    const otherPort = await freePort()
    await fs.writeFile(
      layout.nginxEnabledSite('other.conf'),
      `server {\n  listen 127.0.0.1:${otherPort};\n  location / { return 200 "other site\\n"; }\n}\n`,
    )
    otherNginx = ['-p', `${prefix}/`, '-c', layout.nginxMainConf, '-e', layout.nginxErrorLog]
    await execa('nginx', otherNginx)
    await waitUntil('the other site', async () => (await fetch(`http://127.0.0.1:${otherPort}/`)).ok, {
      tries: 50,
      intervalMs: 100,
    })
    expect(await portOpen(ports.https), "the hub's site is served before").to.equal(true)
    const result = await hubctl(['uninstall', '--yes', '--prefix', prefix, '--json'])
    expect(result.exitCode, result.stdout + result.stderr).to.equal(0)
    const json = jsonOf(result)
    expect(json.nginxReloaded).to.equal(true)
    expect(json.removed).to.include.members([layout.nginxSite, layout.nginxSiteLink, layout.logrotateConf])
    // The backup schedule (init --schedule-backup daily): the cron line, or the timer under systemd.
    expect(json.removed).to.include((await systemdRuns()) ? layout.backupTimer : layout.backupCronFile)
    await waitUntil("nginx to drop the hub's site", async () => !(await portOpen(ports.https)), {
      tries: 100,
      intervalMs: 100,
    })
    expect(await (await fetch(`http://127.0.0.1:${otherPort}/`)).text()).to.equal('other site\n')
    for (const kept of [layout.settings, layout.cookieSecret, layout.database, layout.usersRecord])
      expect(await fs.stat(kept).then(() => true), kept).to.equal(true)
    await execa('nginx', [...otherNginx, '-s', 'quit'])
    otherNginx = undefined
    await fs.rm(layout.nginxEnabledSite('other.conf'))
    await waitUntil('the test nginx to leave', async () => !(await portOpen(otherPort)), {tries: 100, intervalMs: 100})
    // init again, as at first: the same hub.
    const init = await hubctl(initArgs)
    expect(init.exitCode, init.stderr).to.equal(0)
    const started = await hubctl(['start', '--detach', '--prefix', prefix, '--json'])
    expect(started.exitCode, started.stderr + started.stdout).to.equal(0)
    const page = await new HubBrowser(origin, {ca, cookie}).request('/hub/home')
    expect(page.status, page.location).to.equal(200)
  })
})

function portOpen(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = net.connect({host: '127.0.0.1', port})
    socket.once('connect', () => {
      socket.destroy()
      resolve(true)
    })
    socket.once('error', () => resolve(false))
  })
}
