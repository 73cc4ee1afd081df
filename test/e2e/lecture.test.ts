// e2e-lane: parallel
import {expect} from 'chai'
import fs from 'node:fs/promises'
import path from 'node:path'

import {Layout} from '../../src/lib/config/layout.js'
import {VENV_JUPYTERHUB, hubctl, portFlags, tempPrefix, testHubInitArgs} from '../helpers/cli.js'
import {classNames, lecture} from '../helpers/lecture.js'

/*
 * A class at 9:00, not timed: 15 students log in within 5 s through nginx (https, the hub's own
 * self-signed certificate trusted as the CA), each as a browser does (test/helpers/lecture.ts: the
 * login form, the spawn page and its progress stream, the OAuth round trip, a kernel and its
 * websocket with Origin and cookies), and every one gets 42 from print(6*7). More servers start
 * than --max-concurrent-spawns allows at once: the rest wait their turn on the spawn page, which
 * says so; none is told to try again (JupyterHub's 429 page). The virtualenv's JupyterHub, dummy login (one password, every name let in by
 * the test's file in jupyterhub_config.d), SimpleLocalProcessSpawner: no system users.
 */

const STUDENTS = 15

describe('a class of 15 logging in at once through nginx', function () {
  this.timeout(1_800_000)

  let prefix = ''
  let layout: Layout
  let ports: Awaited<ReturnType<typeof portFlags>>['ports']
  const users = classNames(STUDENTS)
  let passed = false

  before(async () => {
    prefix = await tempPrefix('hubctl-lecture')
    layout = new Layout(prefix)
    const portInfo = await portFlags()
    ports = portInfo.ports
    const init = await hubctl(
      testHubInitArgs(
        prefix,
        {admin: users[0], jupyterhub: VENV_JUPYTERHUB, extra: ['--authenticator', 'dummy', '--spawner', 'simple']},
        portInfo.flags,
      ),
    )
    expect(init.exitCode, init.stderr).to.equal(0)
    await fs.writeFile(
      path.join(layout.hubConfigD, '90-lecture-test.py'),
      [
        "# hubctl lecture e2e test: every name logs in with hubctl's generated dummy password.",
        'c.Authenticator.allowed_users = set()  # noqa: F821',
        'c.Authenticator.allow_all = True  # noqa: F821',
        '',
      ].join('\n'),
    )
    const started = await hubctl(['start', '--detach', '--prefix', prefix, '--json'])
    expect(started.exitCode, started.stderr + started.stdout).to.equal(0)
  })

  after(async function () {
    this.timeout(300_000)
    if (prefix) {
      await hubctl(['stop', '--prefix', prefix, '--json'])
      // A failed class keeps its logs for a look (the hub's, the proxy's, the supervisor's).
      if (passed) await fs.rm(prefix, {recursive: true, force: true})
      else console.error(`lecture test: logs kept under ${prefix}`)
    }
    await Promise.all(users.map((user) => fs.rm(`/tmp/${user}`, {recursive: true, force: true})))
  })

  it('every student gets 42', async () => {
    const password = (await fs.readFile(layout.loginPassword, 'utf8')).trim()
    const ca = await fs.readFile(layout.fullchain, 'utf8')
    const results = await lecture(users, 5000, {
      origin: `https://localhost:${ports.https}`,
      password,
      ca,
      capMs: 1_500_000,
    })
    // Reported, not asserted: logins nginx answered 429 (one address: the class shares its limits), each waited out and sent again.
    console.log(`      login 429s waited out: ${results.map((r) => r.retries).reduce((a, b) => a + b, 0)}`)
    const failed = results.filter((r) => r.failure)
    expect(
      failed.map((r) => `${r.user}: ${r.failure!.step}: ${r.failure!.message}`),
      `hub log in ${layout.hubLog}`,
    ).to.deep.equal([])
    expect(results.filter((r) => r.ms !== undefined)).to.have.length(STUDENTS)
    // 15 starts, 2 at a time here (--max-concurrent-spawns: one per core, at least 2): some waited
    // in line, and the hub turned none away.
    expect(
      results.map((r) => r.spawnRetries).reduce((a, b) => a + b, 0),
      'spawns answered 429',
    ).to.equal(0)
    expect(results.filter((r) => r.waitedInLine).length, 'students told they wait in line').to.be.greaterThan(0)
    passed = true
  })
})
