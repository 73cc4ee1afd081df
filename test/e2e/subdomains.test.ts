// e2e-lane: parallel
import {expect} from 'chai'
import {execa} from 'execa'
import fs from 'node:fs/promises'
import path from 'node:path'

import {Layout} from '../../src/lib/config/layout.js'
import {HubApi} from '../../src/lib/stack/hubapi.js'
import {type AttackEntry, attackLog, plantAttack} from '../helpers/attacker.js'
import {BrowserSession, logIn, runCellInLab, waitForServerPage} from '../helpers/browser.js'
import {VENV_JUPYTERHUB, hubctl, portFlags, tempPrefix, testHubInitArgs, type TestHubPorts} from '../helpers/cli.js'
import {HubBrowser, logIn as logInWithoutBrowser} from '../helpers/hub.js'
import {waitUntil} from '../helpers/processes.js'
import {addUser, removeUser, testUserName} from '../helpers/users.js'

/*
 * Issue 27: one student's page against another in the browser. Bob (a local user) replaces his own
 * server by a listener of his (test/helpers/attacker.ts: his jupyter_server_config.py execs it, so
 * it is the very process the spawner started); alice, logged in, opens bob's page; the page tries
 * to read her cookies and to use the hub's API as her (her identity, a new API token).
 * Real JupyterHub 6.1.1 from .venv, nginx, configurable-http-proxy, Chromium.
 *
 * On one origin (the default) the page gets an admin's token. With `init --subdomains` (hub.localhost
 * and *.hub.localhost: no DNS record needed, init's DNS check and Chromium both know .localhost as
 * loopback; Chromium is told so anyway, as --host-resolver-rules would map a real domain) the page
 * is another origin: it gets nothing.
 */

type Report = Extract<AttackEntry, {report: unknown}>['report']

const reportOf = (entries: AttackEntry[]): Report | undefined =>
  entries.flatMap((entry) => ('report' in entry ? [entry.report] : [])).at(-1)

const cookiesBobGot = (entries: AttackEntry[]): string[] =>
  entries.flatMap((entry) => ('cookie' in entry && entry.cookie ? entry.cookie.split('; ') : []))

const DOMAIN = 'hub.localhost'

describe("bob's page against alice in the browser (issue 27)", function () {
  this.timeout(600_000)

  const alice = testUserName()
  const bob = testUserName()
  const password = `pw-${Math.random().toString(36).slice(2)}-A1`
  let aliceUid = -1
  let bobUid = -1
  let bobHome = ''
  let session: BrowserSession | undefined

  before(async function () {
    aliceUid = await addUser(alice)
    bobUid = await addUser(bob)
    await execa('chpasswd', {input: `${alice}:${password}\n${bob}:${password}\n`})
    bobHome = (await execa('getent', ['passwd', bob])).stdout.split(':')[5]
    await plantAttack(bobHome, bobUid)
  })

  afterEach(async function () {
    if (this.currentTest?.state === 'failed' && session) await session.keep(this.currentTest.fullTitle())
    await session?.close()
    session = undefined
  })

  after(async function () {
    this.timeout(180_000)
    // The hub first (its servers run as alice and bob), then their accounts.
    await stopHub(hub)
    if (aliceUid >= 0) await removeUser(alice, aliceUid)
    if (bobUid >= 0) await removeUser(bob, bobUid)
  })

  interface TestHub {
    prefix: string
    layout: Layout
    ports: TestHubPorts
    /** init's arguments (the move runs init again with them, and --subdomains or --no-subdomains). */
    args: string[]
    /** The hub's origin, and bob's server's (his host with subdomains). */
    origin: string
    bobOrigin: string
  }

  /** A hub (JupyterHub 6.1.1) at hub.localhost for alice (admin) and bob, started, with bob's server (his listener) running. */
  const startHub = async (): Promise<TestHub> => {
    const prefix = await tempPrefix('hubctl-sd')
    const layout = new Layout(prefix)
    const {ports, flags} = await portFlags()
    const args = testHubInitArgs(prefix, {admin: alice, allowUsers: [bob], jupyterhub: VENV_JUPYTERHUB}, flags).map(
      (arg) => (arg === 'localhost' ? DOMAIN : arg),
    )
    const init = await hubctl(args)
    expect(init.exitCode, init.stderr).to.equal(0)
    const started = await hubctl(['start', '--detach', '--prefix', prefix])
    expect(started.exitCode, started.stderr).to.equal(0)
    await serverReady(layout, ports, bob)
    const origin = `https://${DOMAIN}:${ports.https}`
    return {prefix, layout, ports, args, origin, bobOrigin: origin}
  }

  /**
   * `user`'s server started (unless it runs or is on its way) and ready. A spawn that failed (on a
   * loaded machine, one the hub's restart cut short or its start timeout ended) is started again,
   * as a person clicks "Start My Server" again: at most 3 starts.
   */
  const serverReady = async (layout: Layout, ports: TestHubPorts, user: string) => {
    const api = HubApi.forLayout(layout, {ports}, {timeoutMs: 60_000})
    let starts = 0
    let seen = 'no server'
    await waitUntil(
      `${user}'s server to be ready`,
      async () => {
        const server = (await api.userServers(user)).find((s) => s.name === '')
        seen = server ? `ready ${server.ready}, pending ${server.pending}` : 'no server'
        if (server?.ready) return true
        if (server) return undefined
        expect(starts, `${user}'s server failed to start ${starts} times`).to.be.lessThan(3)
        starts++
        expect(['started', 'pending']).to.include(await api.startServer(user))
        return undefined
      },
      {tries: 900, intervalMs: 200},
    ).catch(async (error: Error) => {
      // The prefix goes in after(): the hub log's end goes with the error.
      const log = await fs.readFile(layout.hubLog, 'utf8').catch(() => '')
      error.message += `; last seen: ${seen}; starts: ${starts}; the hub log's end:\n${log.split('\n').slice(-40).join('\n')}`
      throw error
    })
  }

  const stopHub = async (hub: TestHub | undefined) => {
    if (!hub) return
    await hubctl(['stop', '--prefix', hub.prefix])
    await fs.rm(hub.prefix, {recursive: true, force: true})
  }

  /** `hubctl init` again on the running hub, with --subdomains or --no-subdomains: the move. */
  const move = async (hub: TestHub, subdomains: boolean) => {
    const moved = await hubctl([...hub.args, subdomains ? '--subdomains' : '--no-subdomains'])
    expect(moved.exitCode, moved.stderr).to.equal(0)
    hub.bobOrigin = subdomains ? `https://${bob}.${DOMAIN}:${hub.ports.https}` : hub.origin
    return moved.stdout
  }

  const browser = () =>
    BrowserSession.start({
      acceptSelfSigned: true,
      hostResolverRules: 'MAP *.hub.localhost 127.0.0.1, MAP hub.localhost 127.0.0.1',
    })

  /** Alice logs in at the hub, then opens bob's page; what bob's listener logged meanwhile. */
  const aliceOpensBobsPage = async (hub: TestHub): Promise<AttackEntry[]> => {
    await fs.writeFile(path.join(bobHome, 'attack.log'), '')
    session = await browser()
    const {page} = session
    await logIn(page, hub.origin, alice, password)
    await page.waitForURL((url) => !url.pathname.endsWith('/hub/login'), {timeout: 60_000})
    const cookies = await page.context().cookies()
    expect(
      cookies.some((c) => c.name.endsWith('jupyterhub-hub-login')),
      `alice is logged in (${cookies.map((c) => c.name).join(', ')})`,
    ).to.equal(true)
    const hubParam = hub.bobOrigin === hub.origin ? '' : hub.origin
    // In a tab of its own (a link opened from a chat): the login's tab may still be on its way to
    // alice's server (the spawn page navigates by itself once it is up), which would cut a goto short.
    const tab = await page.context().newPage()
    await tab.goto(`${hub.bobOrigin}/user/${bob}/attack?victim=${alice}&hub=${encodeURIComponent(hubParam)}`)
    await tab.waitForFunction(() => document.title === 'done', undefined, {timeout: 120_000})
    return attackLog(bobHome)
  }

  /** Who the hub says a token belongs to (asked on the hub's own port). */
  const ownerOf = async (hub: TestHub, token: string): Promise<{name: string; admin: boolean}> => {
    const response = await fetch(`http://127.0.0.1:${hub.ports.hub}/hub/api/user`, {
      headers: {Authorization: `token ${token}`},
    })
    expect(response.status, 'the token works').to.equal(200)
    return (await response.json()) as {name: string; admin: boolean}
  }

  /** The notes of alice's API tokens, read from the hub's database (hubctl's own token may not list them). */
  const aliceTokenNotes = async (hub: TestHub): Promise<string[]> => {
    const code =
      'import json, sqlite3, sys\n' +
      'db = sqlite3.connect("file:" + sys.argv[1] + "?mode=ro", uri=True)\n' +
      'rows = db.execute("select t.note from api_tokens t join users u on t.user_id = u.id where u.name = ?", (sys.argv[2],))\n' +
      'print(json.dumps([r[0] or "" for r in rows]))'
    const {stdout} = await execa('/usr/bin/python3', ['-I', '-c', code, hub.layout.database, alice])
    return JSON.parse(stdout) as string[]
  }

  /** The hub's login cookie as a login through nginx sets it: its name and flags. */
  const loginCookie = async (hub: TestHub): Promise<string> => {
    const client = new HubBrowser(hub.origin, {
      ca: await fs.readFile(hub.layout.fullchain, 'utf8'),
      resolveTo: '127.0.0.1',
    })
    await logInWithoutBrowser(client, alice, password)
    const header = client.setCookieHeaders.find((h) => /^(__Host-)?jupyterhub-hub-login=/.test(h))
    expect(header, client.setCookieHeaders.join('\n')).to.not.equal(undefined)
    return header!
  }

  // One hub for the file: on one origin, then moved to subdomains by init, then back.
  let hub: TestHub | undefined
  before(async () => {
    hub = await startHub()
  })

  const NOTEBOOK = 'before-the-move.ipynb'

  /** A notebook of alice's in her home (hers, as her server would save it). */
  const plantNotebook = async () => {
    const home = (await execa('getent', ['passwd', alice])).stdout.split(':')[5]
    const file = path.join(home, NOTEBOOK)
    const cell = {cell_type: 'code', execution_count: null, metadata: {}, outputs: [], source: ['print("kept")']}
    await fs.writeFile(file, JSON.stringify({cells: [cell], metadata: {}, nbformat: 4, nbformat_minor: 5}))
    await fs.chown(file, aliceUid, aliceUid)
  }

  /** alice logs in at the hub, lands at `host` in JupyterLab, her notebook is there, and she runs a cell. */
  const aliceRunsACell = async (host: string) => {
    session = await browser()
    const {page} = session
    await logIn(page, hub!.origin, alice, password)
    await waitForServerPage(page, alice, 'lab')
    const here = new URL(page.url())
    expect(here.host).to.equal(host)
    // Asked from her page (Chromium resolves the test's names; Node does not).
    const kept = await page.evaluate(
      // As JupyterLab asks it: the _xsrf cookie's value in X-XSRFToken (jupyter_server checks it on API GETs too).
      async (url) => {
        const xsrf = /(?:^|; )_xsrf=([^;]*)/.exec(document.cookie)?.[1] ?? ''
        return (await fetch(url, {headers: {'X-XSRFToken': decodeURIComponent(xsrf)}})).status
      },
      `/user/${alice}/api/contents/${NOTEBOOK}?content=0`,
    )
    expect(kept, 'her notebook, through her server at its new address').to.equal(200)
    expect(await runCellInLab(page, 'print(6*7)')).to.equal('42')
  }

  describe('on one origin (the default)', () => {
    it('the login cookie is jupyterhub-hub-login, path /hub/, Secure, HttpOnly (no __Host- prefix)', async () => {
      const header = await loginCookie(hub!)
      expect(header).to.match(/^jupyterhub-hub-login=/)
      expect(header).to.match(/;\s*Path=\/hub\/(;|$)/i)
      expect(header).to.match(/;\s*Secure(;|$)/i)
      expect(header).to.match(/;\s*HttpOnly(;|$)/i)
    })

    it("on a single origin (today's default): bob's page reads alice's identity from the hub's API and makes an API token as her", async () => {
      const entries = await aliceOpensBobsPage(hub!)
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
      expect(await ownerOf(hub!, made.token), "the token bob's page made is alice's, an admin's").to.deep.include({
        name: alice,
        admin: true,
      })
      // A plain form (a POST any page can send, no fetch, no CORS), its JSON body in text/plain: the hub
      // refuses it (403) without the _xsrf token and with it in the query too (observed with JupyterHub
      // 6.1.1: "Error authenticating request", the form's cookie request is no user's): no token is made.
      const notes = await aliceTokenNotes(hub!)
      expect(report!.formSent, 'both forms were answered').to.deep.equal([true, true])
      expect(
        notes.filter((n) => n.startsWith('form by bob')),
        notes.join('; '),
      ).to.deep.equal([])
      // Her login cookie itself (path /hub/, HttpOnly) is neither readable by the page nor sent to bob's server.
      expect(report!.documentCookie).to.not.match(/jupyterhub-hub-login/)
      expect(cookiesBobGot(entries).filter((c) => c.includes('jupyterhub-hub-login'))).to.deep.equal([])
    })

    it("with __Host- cookies on a single origin, bob's server receives alice's login cookie (why hubctl enables them only with --subdomains)", async () => {
      const extra = hub!.layout.hubConfigDFile('50-host-prefix.py')
      await fs.writeFile(extra, 'c.JupyterHub.cookie_host_prefix_enabled = True\n')
      try {
        const restarted = await hubctl(['restart', '--prefix', hub!.prefix])
        expect(restarted.exitCode, restarted.stderr).to.equal(0)
        const entries = await aliceOpensBobsPage(hub!)
        const leaked = cookiesBobGot(entries).filter((c) => c.startsWith('__Host-jupyterhub-hub-login='))
        expect(leaked, "bob's server got alice's __Host- login cookie").to.have.length.greaterThan(0)
        // Replayed by bob, it is alice's session: the hub's home page answers as her.
        const home = await fetch(`http://127.0.0.1:${hub!.ports.hub}/hub/home`, {
          headers: {Cookie: leaked[0], 'Sec-Fetch-Mode': 'navigate'},
          redirect: 'manual',
        })
        expect(home.status).to.equal(200)
        expect(await home.text()).to.include(alice)
      } finally {
        await fs.rm(extra, {force: true})
        const back = await hubctl(['restart', '--prefix', hub!.prefix])
        expect(back.exitCode, back.stderr).to.equal(0)
      }
    })
  })

  describe('moved to --subdomains by `hubctl init --subdomains` on the running hub (bob at his own host)', () => {
    let output = ''
    before(async () => {
      // alice's server runs, with a notebook of hers, when the hub moves.
      await serverReady(hub!.layout, hub!.ports, alice)
      await plantNotebook()
      output = await move(hub!, true)
    })

    it('init says what moved and whose servers restarted; they run again', async () => {
      expect(output).to.match(
        /moved: the hub moved to per-user subdomains \(each user's server at https:\/\/NAME\.hub\.localhost\/\)/,
      )
      expect(output).to.include(`the running servers of ${[alice, bob].sort().join(', ')}`)
      const api = HubApi.forLayout(hub!.layout, {ports: hub!.ports})
      for (const user of [alice, bob])
        expect((await api.userServers(user)).find((s) => s.name === '')?.ready, `${user}'s server runs`).to.equal(true)
    })

    it("the login cookie is __Host-jupyterhub-hub-login: path /, Secure, HttpOnly, no Domain (the hub's host only)", async () => {
      const header = await loginCookie(hub!)
      expect(header).to.match(/^__Host-jupyterhub-hub-login=/)
      expect(header).to.match(/;\s*Path=\/(;|$)/i)
      expect(header).to.match(/;\s*Secure(;|$)/i)
      expect(header).to.match(/;\s*HttpOnly(;|$)/i)
      expect(header).to.not.match(/;\s*Domain=/i)
    })

    it('alice logs in at the hub, lands on her own host, finds her notebook and runs a cell', async () => {
      await aliceRunsACell(`${alice}.${DOMAIN}:${hub!.ports.https}`)
    })

    it("bob's page, at his own host, gets none of alice's cookies and cannot use the hub's API as her", async () => {
      const entries = await aliceOpensBobsPage(hub!)
      const report = reportOf(entries)
      expect(report, 'the page reported').to.not.equal(undefined)
      expect(report!.origin).to.equal(hub!.bobOrigin)
      expect(report!.documentCookie).to.not.match(/jupyterhub/)
      expect(report!.xsrfFound, "the hub's page (and its _xsrf token) was out of the page's reach").to.equal(false)
      expect(report!.apiUser.status, JSON.stringify(report!.apiUser)).to.not.equal(200)
      expect(report!.token.status, JSON.stringify(report!.token)).to.not.equal(201)
      // Its plain form (it has no _xsrf token to put in it) makes no token either.
      expect(report!.formSent, 'the form was answered').to.deep.equal([true])
      const notes = await aliceTokenNotes(hub!)
      expect(
        notes.filter((n) => n.includes('form by bob, without _xsrf')),
        notes.join('; '),
      ).to.deep.equal([])
      // Her login cookies never reach bob's host. (jupyterhub-session-id does: JupyterHub sets it on the
      // domain on purpose, for its servers to read; it names her browser session and logs nobody in.)
      expect(cookiesBobGot(entries).filter((c) => /jupyterhub-hub-login|jupyterhub-user-/.test(c))).to.deep.equal([])
      expect(report, JSON.stringify(report)).to.not.equal(undefined)
    })
  })

  describe('moved back to one origin by `hubctl init --no-subdomains`', () => {
    let output = ''
    before(async () => {
      output = await move(hub!, false)
    })

    it("init says so; alice logs in, lands on the hub's host, finds her notebook and runs a cell", async () => {
      expect(output).to.match(
        /moved: the hub moved to one origin \(each user's server at https:\/\/hub\.localhost\/user\/NAME\/\)/,
      )
      expect(output).to.include(`the running servers of ${[alice, bob].sort().join(', ')}`)
      await aliceRunsACell(`${DOMAIN}:${hub!.ports.https}`)
    })
  })
})
