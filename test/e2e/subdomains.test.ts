import {expect} from 'chai'
import {execa} from 'execa'
import fs from 'node:fs/promises'
import path from 'node:path'

import {Layout} from '../../src/lib/config/layout.js'
import {HubApi} from '../../src/lib/stack/hubapi.js'
import {type AttackEntry, attackLog, plantAttack} from '../helpers/attacker.js'
import {BrowserSession, logIn} from '../helpers/browser.js'
import {VENV_JUPYTERHUB, hubctl, initTestHub, tempPrefix, type TestHubPorts} from '../helpers/cli.js'
import {waitUntil} from '../helpers/processes.js'
import {addUser, removeUser, testUserName} from '../helpers/users.js'

/*
 * Issue 27: one student's page against another in the browser. Bob (a local user) replaces his own
 * server by a listener of his (test/helpers/attacker.ts: his jupyter_server_config.py execs it, so
 * it is the very process the spawner started); alice, logged in, opens bob's page; the page tries
 * to read her cookies and to use the hub's API as her (her identity, a new API token).
 * Real JupyterHub 6.1.1 from .venv, nginx, configurable-http-proxy, Chromium.
 */

type Report = Extract<AttackEntry, {report: unknown}>['report']

const reportOf = (entries: AttackEntry[]): Report | undefined =>
  entries.flatMap((entry) => ('report' in entry ? [entry.report] : [])).at(-1)

const cookiesBobGot = (entries: AttackEntry[]): string[] =>
  entries.flatMap((entry) => ('cookie' in entry && entry.cookie ? entry.cookie.split('; ') : []))

describe("bob's page against alice in the browser (issue 27)", function () {
  this.timeout(600_000)

  const alice = testUserName()
  const bob = testUserName()
  const password = `pw-${Math.random().toString(36).slice(2)}-A1`
  let aliceUid = -1
  let bobUid = -1
  let bobHome = ''
  let prefix = ''
  let layout: Layout
  let ports: TestHubPorts
  let session: BrowserSession | undefined

  before(async function () {
    aliceUid = await addUser(alice)
    bobUid = await addUser(bob)
    await execa('chpasswd', {input: `${alice}:${password}\n${bob}:${password}\n`})
    bobHome = (await execa('getent', ['passwd', bob])).stdout.split(':')[5]
    prefix = await tempPrefix('hubctl-sd')
    layout = new Layout(prefix)
    ports = await initTestHub(prefix, {admin: alice, allowUsers: [bob], jupyterhub: VENV_JUPYTERHUB})
    const started = await hubctl(['start', '--detach', '--prefix', prefix])
    expect(started.exitCode, started.stderr).to.equal(0)
    await plantAttack(bobHome, bobUid)
    const api = HubApi.forLayout(layout, {ports}, {timeoutMs: 60_000})
    expect(['started', 'pending']).to.include(await api.startServer(bob))
    await waitUntil(
      "bob's server (his listener) to be ready",
      async () => (await api.userServers(bob)).find((s) => s.name === '' && s.ready),
      {tries: 600, intervalMs: 200},
    )
  })

  afterEach(async function () {
    if (this.currentTest?.state === 'failed' && session) await session.keep(this.currentTest.fullTitle())
    await session?.close()
    session = undefined
  })

  after(async function () {
    this.timeout(120_000)
    if (prefix) await hubctl(['stop', '--prefix', prefix])
    if (aliceUid >= 0) await removeUser(alice, aliceUid)
    if (bobUid >= 0) await removeUser(bob, bobUid)
    if (prefix) await fs.rm(prefix, {recursive: true, force: true})
  })

  /** Alice logs in at `hubOrigin`, then opens bob's page at `bobOrigin`; what bob's listener logged meanwhile. */
  const aliceOpensBobsPage = async (hubOrigin: string, bobOrigin: string, hubParam: string): Promise<AttackEntry[]> => {
    await fs.writeFile(path.join(bobHome, 'attack.log'), '')
    session = await BrowserSession.start({acceptSelfSigned: true})
    const {page} = session
    await logIn(page, hubOrigin, alice, password)
    await page.waitForURL((url) => !url.pathname.endsWith('/hub/login'), {timeout: 60_000})
    const cookies = await page.context().cookies()
    expect(
      cookies.some((c) => c.name.endsWith('jupyterhub-hub-login')),
      `alice is logged in (${cookies.map((c) => c.name).join(', ')})`,
    ).to.equal(true)
    await page.goto(`${bobOrigin}/user/${bob}/attack?victim=${alice}&hub=${encodeURIComponent(hubParam)}`)
    await page.waitForFunction(() => document.title === 'done', undefined, {timeout: 60_000})
    return attackLog(bobHome)
  }

  /** Who the hub says a token belongs to (asked on the hub's own port). */
  const ownerOf = async (token: string): Promise<{name: string; admin: boolean}> => {
    const response = await fetch(`http://127.0.0.1:${ports.hub}/hub/api/user`, {
      headers: {Authorization: `token ${token}`},
    })
    expect(response.status, 'the token works').to.equal(200)
    return (await response.json()) as {name: string; admin: boolean}
  }

  it("on a single origin (today's default): bob's page reads alice's identity from the hub's API and makes an API token as her", async () => {
    const origin = `https://localhost:${ports.https}`
    const entries = await aliceOpensBobsPage(origin, origin, '')
    const report = reportOf(entries)
    expect(report, 'the page reported').to.not.equal(undefined)
    // The hub's own page, fetched by bob's page as alice, gives away her _xsrf token...
    expect(report!.hubHome).to.equal(200)
    expect(report!.xsrfFound, 'the page found the _xsrf token in the hub page').to.equal(true)
    // ...with which her identity and a token in her name are the page's.
    expect(report!.apiUserWithXsrf?.status, JSON.stringify(report!.apiUserWithXsrf)).to.equal(200)
    expect(JSON.parse(report!.apiUserWithXsrf!.body!).name).to.equal(alice)
    expect(report!.token.status, JSON.stringify(report!.token)).to.equal(201)
    const made = JSON.parse(report!.token.body!) as {token: string}
    expect(await ownerOf(made.token), "the token bob's page made is alice's, an admin's").to.deep.include({
      name: alice,
      admin: true,
    })
    // Her login cookie itself (path /hub/, HttpOnly) is neither readable by the page nor sent to bob's server.
    expect(report!.documentCookie).to.not.match(/jupyterhub-hub-login/)
    expect(cookiesBobGot(entries).filter((c) => c.includes('jupyterhub-hub-login'))).to.deep.equal([])
  })

  it("with __Host- cookies on a single origin, bob's server receives alice's login cookie (why hubctl enables them only with --subdomains)", async () => {
    const extra = layout.hubConfigDFile('50-host-prefix.py')
    await fs.writeFile(extra, 'c.JupyterHub.cookie_host_prefix_enabled = True\n')
    try {
      const restarted = await hubctl(['restart', '--prefix', prefix])
      expect(restarted.exitCode, restarted.stderr).to.equal(0)
      const origin = `https://localhost:${ports.https}`
      const entries = await aliceOpensBobsPage(origin, origin, '')
      const leaked = cookiesBobGot(entries).filter((c) => c.startsWith('__Host-jupyterhub-hub-login='))
      expect(leaked, "bob's server got alice's __Host- login cookie").to.have.length.greaterThan(0)
      // Replayed by bob, it is alice's session: the hub's home page answers as her.
      const home = await fetch(`http://127.0.0.1:${ports.hub}/hub/home`, {
        headers: {Cookie: leaked[0], 'Sec-Fetch-Mode': 'navigate'},
        redirect: 'manual',
      })
      expect(home.status).to.equal(200)
      expect(await home.text()).to.include(alice)
    } finally {
      await fs.rm(extra, {force: true})
      const back = await hubctl(['restart', '--prefix', prefix])
      expect(back.exitCode, back.stderr).to.equal(0)
    }
  })
})
