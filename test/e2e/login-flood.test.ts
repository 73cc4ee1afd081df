// e2e-lane: parallel
import {expect} from 'chai'
import {execa} from 'execa'
import {randomBytes} from 'node:crypto'
import fs from 'node:fs/promises'

import {Layout} from '../../src/lib/config/layout.js'
import {DEBIAN_JUPYTERHUB, VENV_JUPYTERHUB, hubctl, initTestHub, tempPrefix, type TestHubPorts} from '../helpers/cli.js'
import {HubBrowser, loginForm, submitLogin, type Reply} from '../helpers/hub.js'
import {waitUntil} from '../helpers/processes.js'
import {addUser, removeUser} from '../helpers/users.js'

/*
 * One address must not stall every login (issue 21, item 4). A PAM hub (each JupyterHub: the
 * virtualenv's, Debian's 3.0 with one PAM thread before the fix; a real system user, real PAM: a
 * wrong password costs 2-4 s of pam_faildelay), through nginx. From
 * 127.0.0.1, 60 wrong-password POSTs at once: under the login burst (100), so nginx's rate limit
 * lets them all through, and before the fix the hub ran them a few at a time (PAM threads), ahead
 * of everyone else. Then, from 127.0.0.2, the right password: it must be answered (a 302 with the
 * login cookie) while the flood is still in progress, i.e. while most of the flood requests that
 * reached the hub are still unanswered. Not timed: the order is asserted, the times are printed.
 */

const FLOOD = 60

/** Established TCP connections to this local port (/proc/net/tcp and tcp6: the accepted side). */
async function establishedTo(port: number): Promise<number> {
  let count = 0
  for (const table of ['/proc/net/tcp', '/proc/net/tcp6']) {
    const lines = (await fs.readFile(table, 'utf8').catch(() => '')).split('\n').slice(1)
    for (const line of lines) {
      const [, local, , state] = line.trim().split(/\s+/)
      if (state === '01' && Number.parseInt(local.split(':').pop() ?? '', 16) === port) count++
    }
  }
  return count
}

for (const jupyterhub of [VENV_JUPYTERHUB, DEBIAN_JUPYTERHUB]) {
  describe(`one address flooding the login form does not stall other logins (PAM, ${jupyterhub})`, function () {
    this.timeout(900_000)

    const user = `hcfl${randomBytes(2).toString('hex')}`
    const password = randomBytes(12).toString('hex')
    let uid: number | undefined
    let prefix = ''
    let layout: Layout
    let ports: TestHubPorts

    before(async () => {
      uid = await addUser(user)
      const set = await execa('chpasswd', {input: `${user}:${password}\n`, reject: false})
      expect(set.exitCode, set.stderr).to.equal(0)
      prefix = await tempPrefix('hubctl-flood')
      layout = new Layout(prefix)
      ports = await initTestHub(prefix, {admin: user, jupyterhub})
      const started = await hubctl(['start', '--detach', '--prefix', prefix])
      expect(started.exitCode, started.stderr).to.equal(0)
    })

    after(async function () {
      this.timeout(180_000)
      if (prefix) {
        await hubctl(['stop', '--prefix', prefix])
        await fs.rm(prefix, {recursive: true, force: true})
      }
      if (uid !== undefined) await removeUser(user, uid)
    })

    it(`a correct login from another address answers while ${FLOOD} wrong ones from one address are pending`, async () => {
      const origin = `https://localhost:${ports.https}`
      const ca = await fs.readFile(layout.fullchain, 'utf8')
      // Unanswered for minutes before the fix: the times are what the test reports.
      const flooder = new HubBrowser(origin, {ca, localAddress: '127.0.0.1', timeoutMs: 600_000})
      const student = new HubBrowser(origin, {ca, localAddress: '127.0.0.2', timeoutMs: 600_000})
      const floodForm = await loginForm(flooder)
      const studentForm = await loginForm(student)
      expect(floodForm.page.status).to.equal(200)
      expect(studentForm.page.status).to.equal(200)

      const began = Date.now()
      const floodReplies: Array<Reply | Error> = []
      const flood = Array.from({length: FLOOD}, () =>
        submitLogin(flooder, {user, password: 'wrong-password', xsrf: floodForm.xsrf}).then(
          (reply) => floodReplies.push(reply),
          (error: Error) => floodReplies.push(error),
        ),
      )
      // The flood is on its way to the hub once each of its requests was either answered (nginx's
      // 429s come at once) or is a connection nginx opened to the proxy (one a request): from then
      // on, what the hub is given comes after it.
      await waitUntil(
        'every flood request answered or forwarded by nginx',
        async () => floodReplies.length + (await establishedTo(ports.proxy)) >= FLOOD,
        {tries: 3000},
      )
      const turnedAway = () => floodReplies.filter((r) => !(r instanceof Error) && r.status === 429).length
      const sent = Date.now()
      const login = await submitLogin(student, {user, password, xsrf: studentForm.xsrf})
      const answered = Date.now()
      const pending = FLOOD - floodReplies.length
      const reachedHub = FLOOD - turnedAway()
      await Promise.all(flood)
      const drained = Date.now()

      const statuses = new Map<string, number>()
      for (const reply of floodReplies) {
        const key = reply instanceof Error ? reply.message : String(reply.status)
        statuses.set(key, (statuses.get(key) ?? 0) + 1)
      }
      console.log(
        `      flood of ${FLOOD} from 127.0.0.1: ${[...statuses].map(([k, n]) => `${n}× ${k}`).join(', ')}; ` +
          `${reachedHub} reached the hub. The correct login from 127.0.0.2 answered ${answered - sent} ms after it was sent ` +
          `(${answered - began} ms into the flood), with ${pending} of the flood still pending; the flood drained after ${drained - began} ms`,
      )
      expect(login.status, 'the correct login answers a redirect').to.equal(302)
      expect(
        login.cookies.some((c) => /^jupyterhub-hub-login="?[^";]{16,}/.test(c)),
        'the correct login sets the login cookie',
      ).to.equal(true)
      // Every flood request is answered: refused by the hub (403; 200 with the form again on 3.0),
      // or turned away by nginx (429, with the page that says to wait).
      expect(
        floodReplies
          .filter((r) => {
            if (r instanceof Error) return true
            if (r.status === 429) return !/too many login attempts/i.test(r.body)
            return !r.body.includes('Invalid username or password')
          })
          .map((r) => (r instanceof Error ? r.message : `${r.status} ${r.body.slice(0, 200)}`)),
      ).to.deep.equal([])
      expect(
        pending,
        `flood requests still unanswered when the correct login answered (of ${reachedHub} that reached the hub)`,
      ).to.be.at.least(Math.ceil(reachedHub / 2))
    })
  })
}
