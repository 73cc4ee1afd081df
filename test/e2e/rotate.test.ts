// e2e-lane: parallel
import {expect} from 'chai'
import {execa} from 'execa'
import {randomBytes} from 'node:crypto'
import fs from 'node:fs/promises'
import https from 'node:https'
import path from 'node:path'

import {HubApi} from '../../src/lib/stack/hubapi.js'
import {Layout} from '../../src/lib/config/layout.js'
import type {Ports} from '../../src/lib/config/settings.js'
import {SecretStore} from '../../src/lib/files/secrets.js'
import {
  BIN,
  DEBIAN_JUPYTERHUB,
  hubctl,
  initTestHub,
  modeOf,
  portFlags,
  tempPrefix,
  VENV_JUPYTERHUB,
  testHubInitArgs,
} from '../helpers/cli.js'
import {HubBrowser, logIn} from '../helpers/hub.js'
import {childPids, killInsideWrite, liveProcesses, serverPids, waitUntil} from '../helpers/processes.js'
import {addUser, removeUser} from '../helpers/users.js'

/*
 * `hubctl secrets rotate` on a real stack: nginx, configurable-http-proxy, JupyterHub (Debian's
 * 3.0 and the virtualenv's current one) and a real user server (LocalProcessSpawner, a system user
 * made for the test, logging in with a password through PAM).
 */

interface Status {
  running: boolean
  nginx?: {pid: number | null; running: boolean}
  proxy: {pid: number | null; running: boolean}
  hub: {pid: number | null; running: boolean; healthy: boolean}
}

/** GET over https through nginx, trusting only the hub's own (self-signed) certificate. */
function httpsGet(
  url: string,
  ca: string,
  headers: Record<string, string> = {},
): Promise<{status: number; body: string; cookies: string[]; location?: string}> {
  return new Promise((resolve, reject) => {
    const request = https.get(url, {ca, headers, agent: false, timeout: 10_000}, (response) => {
      let body = ''
      response.setEncoding('utf8')
      response.on('data', (chunk) => {
        body += chunk
      })
      response.on('end', () =>
        resolve({
          status: response.statusCode ?? 0,
          body,
          cookies: response.headers['set-cookie'] ?? [],
          location: response.headers.location,
        }),
      )
    })
    request.on('timeout', () => request.destroy(new Error('timeout')))
    request.on('error', reject)
  })
}

/** Whether the hub takes this cookie for a logged-in user: /hub/home answers 200, or redirects to the login page. */
async function loggedIn(hubPort: number, cookie: string): Promise<boolean> {
  const response = await fetch(`http://127.0.0.1:${hubPort}/hub/home`, {headers: {Cookie: cookie}, redirect: 'manual'})
  await response.arrayBuffer()
  if (response.status === 200) return true
  expect(response.status).to.equal(302)
  expect(response.headers.get('location')).to.include('/hub/login')
  return false
}

async function proxyApiStatus(port: number, token: string): Promise<number> {
  const response = await fetch(`http://127.0.0.1:${port}/api/routes`, {headers: {Authorization: `token ${token}`}})
  await response.arrayBuffer()
  return response.status
}

const read = (file: string) => fs.readFile(file, 'utf8').then((text) => text.trim())

/** The port flags of the hub already set up under this layout (init again with the same ports). */
async function portFlagsOf(layout: Layout): Promise<string[]> {
  const {ports} = JSON.parse(await fs.readFile(layout.settings, 'utf8')) as {ports: Record<string, number>}
  return [
    '--http-port',
    ports.http,
    '--https-port',
    ports.https,
    '--proxy-port',
    ports.proxy,
    '--proxy-api-port',
    ports.proxyApi,
    '--hub-port',
    ports.hub,
    '--proxy-standby-port',
    ports.proxyStandby,
    '--proxy-standby-api-port',
    ports.proxyStandbyApi,
  ].map(String)
}

for (const jupyterhub of [DEBIAN_JUPYTERHUB, VENV_JUPYTERHUB]) {
  describe(`secrets rotate on a running stack with ${jupyterhub}`, function () {
    this.timeout(300_000)

    const user = `hubctl-rot-${randomBytes(3).toString('hex')}`
    const password = randomBytes(12).toString('hex')
    let uid = -1
    let prefix = ''
    let layout: Layout
    let ports: Awaited<ReturnType<typeof portFlags>>['ports']
    let ca = ''
    let serverPid = 0

    const status = async (): Promise<Status> => {
      const result = await hubctl(['status', '--prefix', prefix, '--json'])
      expect(result.exitCode, result.stderr).to.equal(0)
      return JSON.parse(result.stdout) as Status
    }

    /** The user's own server answers through nginx (its /api, not a hub redirect). */
    const routeAnswers = async (): Promise<boolean> => {
      const response = await httpsGet(`https://localhost:${ports.https}/user/${user}/api`, ca)
      return response.status === 200 && typeof (JSON.parse(response.body) as {version?: string}).version === 'string'
    }

    /** The supervisor's log and the proxy's, their last lines: what a failed request loop is read with. */
    const stackLogs = async () => {
      const tail = async (file: string, lines: number) =>
        (await fs.readFile(file, 'utf8').catch((error: Error) => error.message))
          .trim()
          .split('\n')
          .slice(-lines)
          .join('\n')
      return `the supervisor's log:\n${await tail(layout.supervisorLog, 40)}\nthe proxy's log:\n${await tail(layout.proxyLog, 30)}\nthe hub's log:\n${await tail(layout.hubLog, 30)}`
    }

    const auditLines = async () => (await fs.readFile(layout.auditLog, 'utf8')).trim().split('\n')

    /**
     * A request loop through nginx to the user's server while `action` runs, and 20 more requests
     * after it (once a standby proxy is gone): how many were answered by the server, and each failure.
     */
    async function underRequestLoop<T>(action: () => Promise<T>): Promise<{result: T; ok: number; failures: string[]}> {
      let stop = false
      let ok = 0
      const failures: string[] = []
      const loop = (async () => {
        while (!stop) {
          try {
            const response = await httpsGet(`https://localhost:${ports.https}/user/${user}/api`, ca)
            if (response.status === 200 && /"version"/.test(response.body)) ok++
            else
              failures.push(
                `not the user server at ${new Date().toISOString()}: HTTP ${response.status} ${response.location ?? ''} ${response.body.slice(0, 80).replace(/\s+/g, ' ')}`,
              )
          } catch (error) {
            failures.push(`${new Date().toISOString()}: ${(error as Error).message}`)
          }
        }
      })()
      try {
        const result = await action()
        const afterAction = ok
        await waitUntil('requests after the action', async () => ok >= afterAction + 20 || failures.length > 0)
        return {result, ok, failures}
      } finally {
        stop = true
        await loop
        console.log(`      request loop: ${ok} answered, ${failures.length} failed`)
      }
    }

    before(async function () {
      uid = await addUser(user)
      // The password reaches chpasswd on its standard input, never in argv.
      await execa('chpasswd', [], {input: `${user}:${password}\n`})
      prefix = await tempPrefix('hubctl-rot')
      layout = new Layout(prefix)
      ports = await initTestHub(prefix, {admin: user, jupyterhub})
      ca = await fs.readFile(layout.fullchain, 'utf8')
      const started = await hubctl(['start', '--detach', '--prefix', prefix])
      expect(started.exitCode, started.stderr).to.equal(0)
      const api = HubApi.forLayout(layout, {ports})
      await api.startServer(user)
      await waitUntil('the user server', async () => (await api.userServers(user)).find((s) => s.ready))
      await waitUntil('the user route through nginx', routeAnswers)
      serverPid = (await serverPids({uid}))[0]
      expect(serverPid, 'the user server runs').to.be.a('number')
    })

    after(async function () {
      this.timeout(120_000)
      if (prefix) await hubctl(['stop', '--prefix', prefix])
      if (uid >= 0) {
        await removeUser(user, uid)
      }
      if (prefix) await fs.rm(prefix, {recursive: true, force: true})
    })

    it("--proxy-token: a request loop through nginx to the user's server sees no failure; the old token gets 403", async () => {
      const oldToken = await read(layout.proxyAuthToken)
      const before = await status()
      const {rotated, ok, failures} = await underRequestLoop(() =>
        hubctl(['secrets', 'rotate', '--proxy-token', '--prefix', prefix, '--json']),
      ).then(({result, ...rest}) => ({rotated: result, ...rest}))
      expect(rotated.exitCode, rotated.stderr + rotated.stdout).to.equal(0)
      expect(failures, `failed requests during the rotation; ${await stackLogs()}`).to.deep.equal([])
      expect(ok).to.be.greaterThan(20)
      const newToken = await read(layout.proxyAuthToken)
      expect(newToken)
        .to.match(/^[0-9a-f]{64}$/)
        .and.not.equal(oldToken)
      expect(await modeOf(layout.proxyAuthToken)).to.equal(0o600)
      expect(await proxyApiStatus(ports.proxyApi, oldToken)).to.equal(403)
      expect(await proxyApiStatus(ports.proxyApi, newToken)).to.equal(200)
      const after = await status()
      expect(after.proxy.pid).to.not.equal(before.proxy.pid)
      expect(after.hub.pid, 'the hub was not restarted').to.equal(before.hub.pid)
      expect(await serverPids({uid})).to.deep.equal([serverPid])
      // The hub talks to the new proxy with the new token: a route it re-checks is still there.
      const api = HubApi.forLayout(layout, {ports})
      await api.syncProxy()
      expect(await routeAnswers()).to.equal(true)
      const result = JSON.parse(rotated.stdout) as {
        rotated: Array<{secret: string; sha256: string; backup: string; outcome: string}>
      }
      expect(result.rotated).to.have.length(1)
      expect(result.rotated[0]).to.include({secret: 'proxyAuthToken', outcome: 'applied'})
      expect(await read(result.rotated[0].backup)).to.equal(oldToken)
      expect(await modeOf(result.rotated[0].backup)).to.equal(0o600)
      const audit = (await auditLines()).at(-1)!
      expect(audit).to.match(/secret=proxyAuthToken sha256=[0-9a-f]{8} outcome=applied/)
      expect(audit).to.include(result.rotated[0].sha256)
      expect(audit).to.not.include(newToken.slice(0, 16))
    })

    it("hubctl restart: a request loop through nginx to the user's server sees no failure; the server keeps its pid", async () => {
      const before = await status()
      const {
        result: restarted,
        ok,
        failures,
      } = await underRequestLoop(() => hubctl(['restart', '--prefix', prefix, '--json']))
      expect(restarted.exitCode, restarted.stderr + restarted.stdout).to.equal(0)
      expect(failures, `failed requests during hubctl restart; ${await stackLogs()}`).to.deep.equal([])
      expect(ok).to.be.greaterThan(20)
      const after = await status()
      expect(after.proxy.pid, 'the proxy was restarted').to.not.equal(before.proxy.pid)
      expect(after.hub.pid, 'the hub was restarted').to.not.equal(before.hub.pid)
      expect(await serverPids({uid})).to.deep.equal([serverPid])
    })

    it('--cookie-secret: the hub restarts, the login cookie is refused, the server keeps its pid and route', async () => {
      const hub = `http://127.0.0.1:${ports.hub}`
      const cookie = await logIn(new HubBrowser(hub), user, password)
      expect(await loggedIn(ports.hub, cookie)).to.equal(true)
      const oldSecret = await read(layout.cookieSecret)
      const before = await status()
      const rotated = await hubctl(['secrets', 'rotate', '--cookie-secret', '--yes', '--prefix', prefix])
      expect(rotated.exitCode, rotated.stderr + rotated.stdout).to.equal(0)
      expect(rotated.stderr).to.include('log in again')
      expect(await read(layout.cookieSecret))
        .to.match(/^[0-9a-f]{64}$/)
        .and.not.equal(oldSecret)
      expect(await modeOf(layout.cookieSecret)).to.equal(0o600)
      const after = await status()
      expect(after.hub.pid).to.not.equal(before.hub.pid)
      expect(after.hub.healthy).to.equal(true)
      expect(after.proxy.pid, 'the proxy was not restarted').to.equal(before.proxy.pid)
      expect(await loggedIn(ports.hub, cookie), 'the old login cookie is refused').to.equal(false)
      expect(await serverPids({uid})).to.deep.equal([serverPid])
      await waitUntil('the user route', routeAnswers)
      // The first login after the rotation, from a browser that still holds the cookies of before
      // (its _xsrf cookie signed with the old secret), and from one that holds none.
      expect(await logIn(new HubBrowser(hub, {cookie}), user, password)).to.include('jupyterhub-hub-login=')
      expect(await logIn(new HubBrowser(hub), user, password)).to.include('jupyterhub-hub-login=')
      expect((await auditLines()).at(-1)).to.match(/secret=cookieSecret sha256=[0-9a-f]{8} outcome=applied/)
    })

    it('--api-token: the hub accepts the new token and refuses the old one', async () => {
      const oldToken = await read(layout.apiToken)
      const rotated = await hubctl(['secrets', 'rotate', '--api-token', '--prefix', prefix])
      expect(rotated.exitCode, rotated.stderr + rotated.stdout).to.equal(0)
      const newToken = await read(layout.apiToken)
      expect(newToken)
        .to.match(/^[0-9a-f]{64}$/)
        .and.not.equal(oldToken)
      expect(await modeOf(layout.apiToken)).to.equal(0o600)
      const users = (token: string) =>
        fetch(`http://127.0.0.1:${ports.hub}/hub/api/users`, {headers: {Authorization: `token ${token}`}}).then(
          async (response) => {
            await response.arrayBuffer()
            return response.status
          },
        )
      expect(await users(newToken)).to.equal(200)
      expect(await users(oldToken)).to.equal(403)
      expect(await serverPids({uid})).to.deep.equal([serverPid])
      await waitUntil('the user route', routeAnswers)
    })

    it('a login through nginx over https: every cookie the hub and the user server set is Secure and HttpOnly (nginx tells them the scheme)', async () => {
      const browser = new HubBrowser(`https://localhost:${ports.https}`, {ca})
      await logIn(browser, user, password)
      // The user's server: the hub's OAuth handshake ends with the server's own cookie.
      const page = await browser.follow(`/user/${user}/`)
      expect(page.status, page.body.slice(0, 300)).to.equal(200)
      // Every cookie set (a deletion, expiring in the past, carries nothing).
      const cookies = browser.setCookieHeaders.filter((c) => {
        const expires = /;\s*expires=([^;]+)/i.exec(c)?.[1]
        return !(expires && Date.parse(expires) <= Date.now())
      })
      const names = cookies.map((c) => c.split('=')[0])
      for (const name of ['jupyterhub-hub-login', 'jupyterhub-session-id', `jupyterhub-user-${user}`])
        expect(names, `${name} is set`).to.include(name)
      for (const cookie of cookies) {
        const name = cookie.split('=')[0]
        // _xsrf is not a credential, and JupyterHub and the servers set it without Secure or HttpOnly.
        if (name === '_xsrf') continue
        const flags = cookie
          .split(';')
          .slice(1)
          .map((flag) => flag.trim().toLowerCase())
        expect(flags, `${name}: Secure`).to.include('secure')
        expect(flags, `${name}: HttpOnly`).to.include('httponly')
        const sameSite = flags.find((flag) => flag.startsWith('samesite='))
        if (sameSite) expect(['samesite=lax', 'samesite=strict'], `${name}: ${sameSite}`).to.include(sameSite)
      }
    })

    it("--api-token with a module planted on PYTHONPATH and in root's user site: no Python hubctl runs imports it (each runs with -I)", async () => {
      const python = /^#!(\S+)/.exec(await fs.readFile(jupyterhub, 'utf8'))![1]
      const [site, userSiteOn] = (
        await execa(python, ['-c', 'import site; print(site.getusersitepackages()); print(site.ENABLE_USER_SITE)'])
      ).stdout.split('\n')
      // Only hubctl's commands carry this id: other Pythons root runs on this machine meanwhile write nothing.
      const plantId = randomBytes(8).toString('hex')
      const marker = path.join(prefix, 'planted-imported')
      const plant = [
        'import os, sys',
        `if os.environ.get("HUBCTL_PLANT_ID") == ${JSON.stringify(plantId)}:`,
        `    with open(${JSON.stringify(marker)}, "a") as f:`,
        '        f.write(" ".join(sys.orig_argv) + "\\n")',
        '',
      ].join('\n')
      const plantDir = path.join(prefix, 'plant')
      await fs.mkdir(plantDir)
      await fs.writeFile(path.join(plantDir, 'sitecustomize.py'), plant)
      const userModule = path.join(site, 'usercustomize.py')
      await fs.access(userModule).then(
        () => expect.fail(`${userModule} exists already: not replaced by the test`),
        () => {},
      )
      const made = await fs.mkdir(site, {recursive: true})
      await fs.writeFile(userModule, plant)
      try {
        const env = {PYTHONPATH: plantDir, HUBCTL_PLANT_ID: plantId}
        // The plant works: a Python without -I imports it from both places (the user site unless a virtualenv's).
        await execa(python, ['-c', 'pass'], {env})
        expect(await fs.readFile(marker, 'utf8')).to.equal(`${python} -c pass\n`.repeat(userSiteOn === 'True' ? 2 : 1))
        await fs.rm(marker)
        const rotated = await hubctl(['secrets', 'rotate', '--api-token', '--prefix', prefix], {env})
        expect(rotated.exitCode, rotated.stderr + rotated.stdout).to.equal(0)
        expect(rotated.stdout + rotated.stderr).to.match(/revoked \d+ old hubctl API token/)
        expect(await fs.readFile(marker, 'utf8').catch(() => ''), 'a Python hubctl ran imported the plant').to.equal('')
      } finally {
        await fs.rm(userModule, {force: true})
        // The directories the test made for root's user site, if empty (something else may have used them since).
        for (let dir = site; made && dir.startsWith(made); dir = path.dirname(dir))
          await fs.rmdir(dir).catch(() => undefined)
        await fs.rm(plantDir, {recursive: true, force: true})
      }
    })

    it('--dhparam: new parameters (other bytes each time, from RFC 7919 ones and from generated ones), nginx reloaded (new workers) and still serving', async () => {
      const nginxPid = (await status()).nginx?.pid
      expect(nginxPid, 'nginx runs under the supervisor').to.be.a('number')
      // Twice: ffdhe2048 (the init's) to generated parameters, then generated to generated.
      for (const round of ['from ffdhe2048', 'from generated parameters']) {
        const before = await fs.stat(layout.dhparam)
        const oldContent = await fs.readFile(layout.dhparam, 'utf8')
        const workersBefore = await childPids(nginxPid!)
        expect(workersBefore, `${round}: nginx's workers`).to.not.deep.equal([])
        const rotated = await hubctl([
          'secrets',
          'rotate',
          '--dhparam',
          '--dhparam-mode',
          'generate',
          '--dhparam-bits',
          '2048',
          '--prefix',
          prefix,
          '--json',
        ])
        expect(rotated.exitCode, rotated.stderr + rotated.stdout).to.equal(0)
        const result = JSON.parse(rotated.stdout) as {restarted: string[]}
        expect(result.restarted).to.include('nginx (reload)')
        expect(await modeOf(layout.dhparam)).to.equal(0o600)
        expect((await fs.stat(layout.dhparam)).ino, "a new file took the old one's place").to.not.equal(before.ino)
        const newContent = await fs.readFile(layout.dhparam, 'utf8')
        expect(newContent, `${round}: the parameters' bytes changed`).to.not.equal(oldContent)
        const check = await execa('openssl', ['dhparam', '-in', layout.dhparam, '-check', '-text', '-noout'])
        expect(check.stdout + check.stderr).to.match(/2048 bit/)
        expect(check.stdout).to.not.match(/GROUP: ffdhe/)
        // nginx reloaded, seen from nginx: the same master, none of its workers of before (the
        // old ones finish their connections and exit; new ones read the new parameters).
        expect((await status()).nginx?.pid, 'the same nginx master').to.equal(nginxPid)
        await waitUntil(`${round}: nginx's workers replaced`, async () => {
          const now = await childPids(nginxPid!)
          return now.length > 0 && now.every((pid) => !workersBefore.includes(pid))
        })
        expect(await routeAnswers()).to.equal(true)
      }
    })

    it('rolls back when the hub cannot start with the new value, and exits non-zero', async () => {
      const oldSecret = await read(layout.cookieSecret)
      const before = await status()
      // An operator's config that only accepts the current cookie secret: the new one makes the hub exit.
      const guard = `${layout.hubConfigD}/99-test-guard.py`
      await fs.writeFile(
        guard,
        `import hashlib, sys\nif hashlib.sha256(open(${JSON.stringify(layout.cookieSecret)}).read().strip().encode()).hexdigest() != ${JSON.stringify((await import('node:crypto')).createHash('sha256').update(oldSecret).digest('hex'))}:\n    sys.exit("test guard: unexpected cookie secret")\n`,
      )
      try {
        const rotated = await hubctl(['secrets', 'rotate', '--cookie-secret', '--yes', '--prefix', prefix])
        expect(rotated.exitCode, rotated.stdout).to.equal(7)
        expect(rotated.stderr).to.match(/did not come back healthy/)
        expect(await read(layout.cookieSecret), 'the old secret is back').to.equal(oldSecret)
        const after = await waitUntil('a healthy hub with the old secret', async () => {
          const s = await status()
          return s.hub.healthy ? s : undefined
        })
        expect(after.proxy.pid).to.equal(before.proxy.pid)
        expect(await serverPids({uid})).to.deep.equal([serverPid])
        expect((await auditLines()).at(-1)).to.match(/secret=cookieSecret sha256=[0-9a-f]{8} outcome=rolled-back/)
      } finally {
        await fs.rm(guard, {force: true})
      }
    })

    it('--cookie-secret --restart-servers: each user server is restarted (a new pid) and answers again', async () => {
      const rotated = await hubctl([
        'secrets',
        'rotate',
        '--cookie-secret',
        '--restart-servers',
        '--yes',
        '--prefix',
        prefix,
        '--json',
      ])
      expect(rotated.exitCode, rotated.stderr + rotated.stdout).to.equal(0)
      const result = JSON.parse(rotated.stdout) as {serversRestarted: string[]}
      expect(result.serversRestarted).to.deep.equal([user])
      const pids = await waitUntil('one server process', async () => {
        const now = await serverPids({uid})
        return now.length === 1 ? now : undefined
      })
      expect(pids[0]).to.not.equal(serverPid)
      await waitUntil('the restarted server through nginx', routeAnswers)
      serverPid = pids[0]
    })

    it('no secret value, old or new, is in any log, any argv or the audit log', async () => {
      const values = [
        ...(await Promise.all([layout.cookieSecret, layout.proxyAuthToken, layout.apiToken].map(read))),
        ...(await Promise.all(
          (await fs.readdir(layout.backupDir))
            .filter((name) => !name.startsWith('dhparam'))
            .map((name) => read(`${layout.backupDir}/${name}`)),
        )),
      ]
      expect(values.length).to.be.greaterThan(3)
      const logs = await fs.readdir(layout.logDir)
      const texts = await Promise.all(
        logs.map((name) => fs.readFile(`${layout.logDir}/${name}`, 'utf8').then((text) => [name, text] as const)),
      )
      const argvs: string[] = []
      for (const info of await liveProcesses()) argvs.push(info.cmdline.join(' '))
      for (const value of values) {
        for (const [name, text] of texts) expect(text.includes(value), `a secret in ${name}`).to.equal(false)
        expect(
          argvs.some((argv) => argv.includes(value)),
          "a secret in some process's argv",
        ).to.equal(false)
      }
    })

    it('refuses to guess: no secret named with --yes is an error that changes nothing', async () => {
      const before = await read(layout.cookieSecret)
      const result = await hubctl(['secrets', 'rotate', '--yes', '--prefix', prefix])
      expect(result.exitCode).to.equal(2)
      expect(result.stderr).to.match(/no secret to rotate was named.*Fix: give --cookie-secret/)
      expect(await read(layout.cookieSecret)).to.equal(before)
    })
  })
}

describe('secrets rotate on a stopped stack, and killed at random moments', function () {
  this.timeout(600_000)
  let prefix = ''
  let layout: Layout

  before(async () => {
    prefix = await tempPrefix('hubctl-rotk')
    layout = new Layout(prefix)
    await initTestHub(prefix, {admin: 'alice', jupyterhub: DEBIAN_JUPYTERHUB})
  })

  after(async () => {
    if (prefix) {
      await hubctl(['stop', '--prefix', prefix])
      await fs.rm(prefix, {recursive: true, force: true})
    }
  })

  it('--all on a stopped stack writes new files only, keeps 0600 backups, and the stack starts with them', async () => {
    const olds = await Promise.all([layout.cookieSecret, layout.proxyAuthToken, layout.apiToken].map(read))
    const rotated = await hubctl([
      'secrets',
      'rotate',
      '--all',
      '--yes',
      '--dhparam-mode',
      'ffdhe2048',
      '--prefix',
      prefix,
      '--json',
    ])
    expect(rotated.exitCode, rotated.stderr + rotated.stdout).to.equal(0)
    const result = JSON.parse(rotated.stdout) as {
      running: boolean
      rotated: Array<{secret: string; outcome: string; backup?: string}>
    }
    expect(result.running).to.equal(false)
    expect(result.rotated.map((r) => r.secret).sort()).to.deep.equal([
      'apiToken',
      'cookieSecret',
      'dhparam',
      'proxyAuthToken',
    ])
    const news = await Promise.all([layout.cookieSecret, layout.proxyAuthToken, layout.apiToken].map(read))
    for (const [i, value] of news.entries()) expect(value).to.not.equal(olds[i])
    for (const record of result.rotated) {
      expect(record.backup).to.be.a('string')
      expect(await modeOf(record.backup!)).to.equal(0o600)
    }
    expect((await fs.stat(layout.backupDir)).mode & 0o777).to.equal(0o700)
    const started = await hubctl(['start', '--detach', '--prefix', prefix])
    expect(started.exitCode, started.stderr).to.equal(0)
    const stopped = await hubctl(['stop', '--prefix', prefix])
    expect(stopped.exitCode, stopped.stderr).to.equal(0)
  })

  it('keeps only the last few backups of each secret', async () => {
    for (let i = 0; i < 7; i++) {
      const rotated = await hubctl(['secrets', 'rotate', '--api-token', '--prefix', prefix])
      expect(rotated.exitCode, rotated.stderr).to.equal(0)
    }
    const backups = (await fs.readdir(layout.backupDir)).filter((name) => name.startsWith('apiToken.'))
    expect(backups).to.have.length(5)
  })

  it('two writers at once (rotate and rotate, rotate and init): one waits for the other or refuses; nothing mixes', async () => {
    const initArgs = testHubInitArgs(prefix, {admin: 'alice', jupyterhub: DEBIAN_JUPYTERHUB}, await portFlagsOf(layout))
    const auditBefore = (await fs.readFile(layout.auditLog, 'utf8')).trim().split('\n').length
    const results = await Promise.all([
      hubctl(['secrets', 'rotate', '--api-token', '--cookie-secret', '--yes', '--prefix', prefix]),
      hubctl(['secrets', 'rotate', '--api-token', '--yes', '--prefix', prefix]),
      hubctl(initArgs),
    ])
    for (const result of results) {
      expect([0, 6], result.stderr).to.include(result.exitCode)
      if (result.exitCode === 6) expect(result.stderr).to.match(/another hubctl|lock/i)
    }
    const check = await hubctl(['secrets', 'check', '--prefix', prefix])
    expect(check.exitCode, check.stderr).to.equal(0)
    const audit = (await fs.readFile(layout.auditLog, 'utf8')).trim().split('\n').slice(auditBefore)
    const expected = (results[0].exitCode === 0 ? 2 : 0) + (results[1].exitCode === 0 ? 1 : 0)
    expect(audit, 'one audit line per secret of each rotation that ran').to.have.length(expected)
    // The API token in the file is the one of the last rotation that ran.
    expect(audit.filter((line) => line.includes('secret=apiToken')).at(-1)).to.include(
      `sha256=${(await import('node:crypto'))
        .createHash('sha256')
        .update(await read(layout.apiToken))
        .digest('hex')
        .slice(0, 8)}`,
    )
  })

  /** What the hub answers GET /hub/api/users with this token (200, or 403 for a token it does not know). */
  const usersStatus = async (token: string): Promise<number> => {
    const response = await fetch(`http://127.0.0.1:${settingsNow().ports.hub}/hub/api/users`, {
      headers: {Authorization: `token ${token}`},
    })
    await response.arrayBuffer()
    return response.status
  }
  let settingsCache: {ports: Ports} | undefined
  const settingsNow = () => settingsCache!
  const TOKENS = ['cookieSecret', 'proxyAuthToken', 'apiToken'] as const
  const tokensNow = async () =>
    Object.fromEntries(await Promise.all(TOKENS.map(async (name) => [name, await read(layout.secretFiles[name])])))

  /**
   * Every secret is the old value or a new one: unchanged, or a valid new value whose newest
   * backup is the old one (written before the new value, never after).
   */
  async function assertOldOrNew(olds: Record<string, string>, what: string): Promise<void> {
    const store = new SecretStore(layout)
    for (const name of TOKENS) {
      const now = await read(layout.secretFiles[name])
      if (now === olds[name]) continue
      expect(now, `${what}: ${name} is new and valid`).to.match(/^[0-9a-f]{64}$/)
      expect(await store.latestBackup(name), `${what}: the backup of ${name} is the old value`).to.equal(olds[name])
    }
  }

  /**
   * hubctl's own API calls work before any restart: through the current token, or through the
   * previous one when the hub still runs with it, and then never silently (onFallback is told).
   */
  async function assertApiWorksBeforeRestart(what: string): Promise<'current' | 'previous'> {
    return waitUntil(`${what}: hubctl's API calls before the restart`, async () => {
      const fallbacks: string[] = []
      const api = HubApi.forLayout(layout, settingsNow(), {onFallback: (request) => fallbacks.push(request)})
      const current = await read(layout.apiToken)
      const refused = await usersStatus(current)
      const users = await api.listUsers()
      // The hub restarted meanwhile (the killed rotation had asked the supervisor): ask again.
      if ((await usersStatus(current)) !== refused || ![200, 403].includes(refused)) return undefined
      expect(
        users.map((user) => user.name),
        what,
      ).to.include('alice')
      if (refused === 200) {
        expect(fallbacks, `${what}: no fallback while the hub takes the current token`).to.deep.equal([])
        return 'current'
      }
      expect(fallbacks, `${what}: the fallback to the previous token was used, and said so`).to.not.deep.equal([])
      return 'previous'
    })
  }

  it('a rotation killed with SIGKILL at random moments on a running stack leaves valid secrets and a stack that starts healthy', async () => {
    const started = await hubctl(['start', '--detach', '--prefix', prefix])
    expect(started.exitCode, started.stderr).to.equal(0)
    settingsCache = JSON.parse(await fs.readFile(layout.settings, 'utf8'))
    for (let round = 0; round < 6; round++) {
      const olds = await tokensNow()
      const child = execa(
        process.execPath,
        [BIN, 'secrets', 'rotate', '--all', '--yes', '--dhparam-mode', 'ffdhe2048', '--prefix', prefix],
        {reject: false, stdin: 'ignore'},
      )
      const delay = Math.floor(Math.random() * 4000)
      await new Promise((resolve) => setTimeout(resolve, delay))
      child.kill('SIGKILL')
      const outcome = await child
      const check = await hubctl(['secrets', 'check', '--prefix', prefix])
      expect(
        check.exitCode,
        `round ${round} (killed after ${delay} ms, ${outcome.signal ?? `exit ${outcome.exitCode}`}): ${check.stderr}`,
      ).to.equal(0)
      await assertOldOrNew(olds, `round ${round} (killed after ${delay} ms)`)
      await assertApiWorksBeforeRestart(`round ${round}`)
      const stop = await hubctl(['stop', '--prefix', prefix])
      expect(stop.exitCode, stop.stderr).to.equal(0)
      const start = await hubctl(['start', '--detach', '--prefix', prefix, '--json'])
      expect(start.exitCode, `round ${round}: ${start.stderr}`).to.equal(0)
      const health = await fetch(
        `http://127.0.0.1:${JSON.parse(await fs.readFile(layout.settings, 'utf8')).ports.proxy}/hub/health`,
      )
      expect(health.status).to.equal(200)
      // The proxy and the hub agree on the token: the hub can read the proxy's routes.
      const api = HubApi.forLayout(layout, JSON.parse(await fs.readFile(layout.settings, 'utf8')))
      await api.syncProxy()
      expect(await usersStatus(await read(layout.apiToken)), `round ${round}: after the restart`).to.equal(200)
    }
  })

  it("--api-token killed after the new token is written, before the hub is told: hubctl's API calls go through with the previous token and say so; a restart ends it", async () => {
    await hubctl(['stop', '--prefix', prefix])
    const started = await hubctl(['start', '--detach', '--prefix', prefix])
    expect(started.exitCode, started.stderr).to.equal(0)
    settingsCache = JSON.parse(await fs.readFile(layout.settings, 'utf8'))
    const olds = await tokensNow()
    const stash = await tempPrefix('hubctl-rotk-writes')
    try {
      // Its writes: the old token's backup, the new token, then the request to the supervisor.
      const held = await killInsideWrite(
        ['secrets', 'rotate', '--api-token', '--prefix', prefix],
        3,
        path.join(stash, 'writes.log'),
      )
      expect(held).to.include(path.basename(layout.controlFile))
    } finally {
      await fs.rm(stash, {recursive: true, force: true})
    }
    await assertOldOrNew(olds, 'killed before the supervisor was asked')
    const now = await read(layout.apiToken)
    expect(now).to.not.equal(olds.apiToken)
    expect(await usersStatus(now), 'the hub still runs with the old token').to.equal(403)
    expect(await usersStatus(olds.apiToken)).to.equal(200)
    expect(await assertApiWorksBeforeRestart('killed before the supervisor was asked')).to.equal('previous')
    // `hubctl stop` asks the hub for the servers to stop: it gets through, and warns.
    const stop = await hubctl(['stop', '--prefix', prefix])
    expect(stop.exitCode, stop.stderr).to.equal(0)
    expect(stop.stderr).to.match(
      /warning: the hub refused hubctl's current API token for GET \/users\S* and accepted the previous one.*Fix: run `hubctl restart`/,
    )
    expect(stop.stderr + stop.stdout)
      .to.not.include(now)
      .and.not.include(olds.apiToken)
    const start = await hubctl(['start', '--detach', '--prefix', prefix])
    expect(start.exitCode, start.stderr).to.equal(0)
    expect(await usersStatus(now), 'the restarted hub takes the token of the file').to.equal(200)
    expect(await assertApiWorksBeforeRestart('after the restart')).to.equal('current')
    const stopAgain = await hubctl(['stop', '--prefix', prefix])
    expect(stopAgain.exitCode, stopAgain.stderr).to.equal(0)
    expect(stopAgain.stderr).to.not.include('previous one')
  })
})
