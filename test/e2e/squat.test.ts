// e2e-lane: parallel
import {expect} from 'chai'
import {ChildProcess, spawn} from 'node:child_process'
import {execa} from 'execa'
import {randomBytes} from 'node:crypto'
import fs from 'node:fs/promises'
import https from 'node:https'
import net from 'node:net'
import os from 'node:os'
import path from 'node:path'

import {Layout} from '../../src/lib/config/layout.js'
import {SERVER_PORTS} from '../../src/lib/config/settings.js'
import {SITE_LIMITS} from '../../src/lib/config/site.js'
import {HubApi, type ServerInfo} from '../../src/lib/stack/hubapi.js'
import {findRoute, proxyRoutes} from '../../src/lib/stack/servers.js'
import {
  checkServersEvery,
  type CommandJson,
  DEBIAN_JUPYTERHUB,
  VENV_JUPYTERHUB,
  hubctl,
  initTestHub,
  portFlags,
  tempPrefix,
  testHubInitArgs,
} from '../helpers/cli.js'
import {killPids, serverPids, stopProcess, waitUntil} from '../helpers/processes.js'
import {addUser, removeUser} from '../helpers/users.js'

/*
 * Attacks by a local user without privileges on the ports hubctl's stack uses (a system user made
 * by the test, running a real listener with runuser), and on the nginx site itself:
 *
 * - the standby proxy's port, which nginx sends requests to whenever the proxy's port refuses:
 *   a listener there must never get a user's request (with its cookies);
 * - the hub's port while the hub restarts for a cookie-secret rotation: a listener that wins the
 *   race must not be taken for the hub (the rotation fails and rolls back, exit 7);
 * - the hub's port while the stack is stopped: `hubctl status` and `hubctl stop` must not send
 *   hubctl's API token to it;
 * - nginx: small request bodies on the hub's pages and its login form (413), a rate limit on the
 *   login form (429 with a page saying so), no version in `Server`, nosniff and a referrer policy.
 */

/**
 * The squatter: binds 127.0.0.1:PORT as soon as it can (every 2 ms), says "bound" in its log, then
 * answers every request 200 with a JSON body and appends what it received to the log.
 */
const SQUATTER = String.raw`
import socket, sys, time
port, log = int(sys.argv[1]), sys.argv[2]
def note(text):
    with open(log, "a") as f:
        f.write(text)
while True:
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        s.bind(("127.0.0.1", port))
        s.listen(64)
        break
    except OSError:
        s.close()
        time.sleep(0.002)
note("bound\n")
while True:
    c, _ = s.accept()
    c.settimeout(2)
    data = b""
    try:
        while b"\r\n\r\n" not in data:
            chunk = c.recv(65536)
            if not chunk:
                break
            data += chunk
    except OSError:
        pass
    note("REQUEST " + data.decode("latin-1") + "\n")
    body = b'{"version": "9.9.9", "items": [], "_pagination": {"next": null}}'
    try:
        c.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nConnection: close\r\nContent-Length: " + str(len(body)).encode() + b"\r\n\r\n" + body)
    except OSError:
        pass
    c.close()
`

interface Reply {
  status: number
  headers: Record<string, string | string[] | undefined>
  body: string
}

/** One https request through nginx, trusting only the hub's own certificate. */
function request(
  url: string,
  ca: string,
  options: {method?: string; headers?: Record<string, string>; body?: Buffer | string; timeoutMs?: number} = {},
): Promise<Reply> {
  return new Promise((resolve, reject) => {
    const req = https.request(
      url,
      {
        method: options.method ?? 'GET',
        ca,
        headers: options.headers,
        agent: false,
        timeout: options.timeoutMs ?? 30_000,
      },
      (response) => {
        const chunks: Buffer[] = []
        response.on('data', (chunk: Buffer) => chunks.push(chunk))
        response.on('end', () =>
          resolve({
            status: response.statusCode ?? 0,
            headers: response.headers,
            body: Buffer.concat(chunks).toString('utf8'),
          }),
        )
      },
    )
    req.on('timeout', () => req.destroy(new Error(`${url}: no answer`)))
    // nginx may answer (413) and close before the whole body is written.
    req.on('error', reject)
    req.end(options.body)
  })
}

describe("a local user without privileges squatting hubctl's ports, and the nginx site's limits", function () {
  this.timeout(300_000)

  const attacker = `hubctl-sq-${randomBytes(3).toString('hex')}`
  let prefix = ''
  let layout: Layout
  let ports: Awaited<ReturnType<typeof portFlags>>['ports']
  let ca = ''
  let work = ''
  const squatters: ChildProcess[] = []

  /** Start a squatter on `port` as the attacker; its log is returned (read it with fs). */
  const squat = async (port: number): Promise<{child: ChildProcess; log: string}> => {
    const log = path.join(work, `squat-${port}-${squatters.length}.log`)
    await fs.writeFile(log, '', {mode: 0o666})
    await fs.chmod(log, 0o666)
    const child = spawn('runuser', ['-u', attacker, '--', '/usr/bin/python3', '-c', SQUATTER, String(port), log], {
      stdio: 'ignore',
      detached: true,
      cwd: '/',
    })
    squatters.push(child)
    return {child, log}
  }

  const status = async (): Promise<{
    proxy: {pid: number | null}
    hub: {pid: number | null; running: boolean; healthy: boolean}
  }> => {
    const result = await hubctl(['status', '--prefix', prefix, '--json'])
    expect(result.exitCode, result.stderr).to.equal(0)
    return JSON.parse(result.stdout)
  }

  before(async function () {
    const created = await execa('useradd', ['-M', '-s', '/bin/sh', attacker], {reject: false})
    expect(created.exitCode, created.stderr).to.equal(0)
    work = await fs.mkdtemp(path.join(os.tmpdir(), 'hubctl-squat-'))
    await fs.chmod(work, 0o755)
    prefix = await tempPrefix('hubctl-sq')
    layout = new Layout(prefix)
    ports = await initTestHub(prefix, {
      admin: 'alice',
      jupyterhub: DEBIAN_JUPYTERHUB,
      // The login limit's burst at 10 (the default, 100, lets a class in at once): 30 attempts then
      // show both sides of it without 100 PAM failures first.
      extra: ['--login-burst', '10'],
    })
    ca = await fs.readFile(layout.fullchain, 'utf8')
    const started = await hubctl(['start', '--detach', '--prefix', prefix])
    expect(started.exitCode, started.stderr).to.equal(0)
  })

  afterEach(async () => {
    for (const child of squatters.splice(0)) await stopProcess(child)
  })

  after(async function () {
    this.timeout(120_000)
    for (const child of squatters.splice(0)) await stopProcess(child)
    if (prefix) {
      await hubctl(['stop', '--prefix', prefix])
      await fs.rm(prefix, {recursive: true, force: true})
    }
    await execa('pkill', ['-KILL', '-u', attacker], {reject: false})
    await execa('userdel', [attacker], {reject: false})
    if (work) await fs.rm(work, {recursive: true, force: true})
  })

  it('the standby port is held while the stack runs: a squatter never binds it, and gets no request while the proxy is killed', async () => {
    const {log} = await squat(ports.proxyStandby)
    // Give the squatter time to try (it retries every 2 ms).
    await new Promise((resolve) => setTimeout(resolve, 1000))
    const marker = `hubctl-cookie-${randomBytes(6).toString('hex')}`
    const before = await status()
    process.kill(before.proxy.pid!, 'SIGKILL')
    const until = Date.now() + 2000
    let answered = 0
    while (Date.now() < until) {
      try {
        await request(`https://localhost:${ports.https}/hub/home`, ca, {
          headers: {Cookie: `jupyterhub-hub-login=${marker}`},
        })
        answered++
      } catch {
        // a refused request is not what this test is about
      }
    }
    const seen = await fs.readFile(log, 'utf8')
    expect(seen, 'the squatter bound the standby port').to.not.include('bound')
    expect(seen, "the squatter received a user's cookie").to.not.include(marker)
    expect(answered).to.be.greaterThan(0)
    await waitUntil('a new proxy', async () => {
      const now = await status()
      return now.proxy.pid && now.proxy.pid !== before.proxy.pid ? true : undefined
    })
  })

  it("secrets rotate --cookie-secret: a squatter that wins the hub's port is not taken for the hub; the rotation rolls back (exit 7)", async () => {
    const oldSecret = (await fs.readFile(layout.cookieSecret, 'utf8')).trim()
    const {child, log} = await squat(ports.hub)
    const rotated = await hubctl(['secrets', 'rotate', '--cookie-secret', '--yes', '--prefix', prefix])
    const seen = await fs.readFile(log, 'utf8')
    expect(seen, 'the squatter won the race for the hub port (the attack ran)').to.include('bound')
    expect(rotated.exitCode, rotated.stdout + rotated.stderr).to.equal(7)
    expect(rotated.stdout + rotated.stderr).to.not.match(/applied/)
    expect(rotated.stderr).to.match(/^hubctl: .+\. Fix: .+/m)
    expect((await fs.readFile(layout.cookieSecret, 'utf8')).trim(), 'the old secret is back').to.equal(oldSecret)
    expect((await fs.readFile(layout.auditLog, 'utf8')).trim().split('\n').at(-1)).to.match(
      /secret=cookieSecret .*outcome=rolled-back/,
    )
    const apiToken = (await fs.readFile(layout.apiToken, 'utf8')).trim()
    expect(seen, 'hubctl sent its API token to the squatter').to.not.include(apiToken)
    await stopProcess(child)
    await waitUntil(
      'the hub healthy again once the squatter is gone',
      async () => ((await status()).hub.healthy ? true : undefined),
      {tries: 600, intervalMs: 200},
    )
  })

  it("a squatter that took the hub's port after a crash is sent no token: not the PATCH with the proxy's token after the proxy restarts, not status's calls", async () => {
    const {child, log} = await squat(ports.hub)
    const before = await status()
    process.kill(before.hub.pid!, 'SIGKILL')
    await waitUntil("the squatter to win the hub's port", async () =>
      (await fs.readFile(log, 'utf8')).includes('bound') ? true : undefined,
    )
    // The proxy restarts: the supervisor has the hub restore the routes (PATCH /hub/api/proxy with the proxy's token).
    process.kill(before.proxy.pid!, 'SIGKILL')
    await waitUntil('a new proxy', async () => {
      const now = await status()
      return now.proxy.pid && now.proxy.pid !== before.proxy.pid ? true : undefined
    })
    const shown = await status()
    expect(shown.hub.healthy, 'the squatter is not taken for a healthy hub').to.equal(false)
    await new Promise((resolve) => setTimeout(resolve, 3000))
    const seen = await fs.readFile(log, 'utf8')
    const apiToken = (await fs.readFile(layout.apiToken, 'utf8')).trim()
    const proxyToken = (await fs.readFile(layout.proxyAuthToken, 'utf8')).trim()
    expect(seen, 'a token was sent to the squatter').to.not.match(/authorization/i)
    expect(seen).to.not.include(apiToken)
    expect(seen).to.not.include(proxyToken)
    await stopProcess(child)
    await waitUntil(
      'the hub healthy again once the squatter is gone',
      async () => ((await status()).hub.healthy ? true : undefined),
      {tries: 600, intervalMs: 200},
    )
  })

  it('nginx: a large body to the login form or a hub page is refused with 413; /user/ takes a large upload', async () => {
    const big = Buffer.alloc(20 * 1024 * 1024, 0x61)
    const login = await request(`https://localhost:${ports.https}/hub/login`, ca, {
      method: 'POST',
      body: big,
      headers: {'Content-Type': 'application/x-www-form-urlencoded', 'Content-Length': String(big.length)},
    })
    expect(login.status, 'a 20 MB login POST').to.equal(413)
    const page = Buffer.alloc(2 * 1024 * 1024, 0x61)
    const hub = await request(`https://localhost:${ports.https}/hub/api/users`, ca, {
      method: 'POST',
      body: page,
      headers: {'Content-Type': 'application/json', 'Content-Length': String(page.length)},
    })
    expect(hub.status, 'a 2 MB POST to the hub API').to.equal(413)
    // What JupyterLab sends for one 1 MiB chunk of an upload (base64 in JSON), and more: not refused by nginx.
    const chunk = Buffer.from(
      JSON.stringify({
        type: 'file',
        format: 'base64',
        chunk: 1,
        content: randomBytes(3 * 1024 * 1024).toString('base64'),
      }),
    )
    const user = await request(`https://localhost:${ports.https}/user/alice/api/contents/upload.bin`, ca, {
      method: 'PUT',
      body: chunk,
      headers: {'Content-Type': 'application/json', 'Content-Length': String(chunk.length)},
    })
    expect(user.status, 'a 4 MB PUT under /user/ (neither refused nor failed by nginx)').to.not.be.oneOf([413, 500])
  })

  it('nginx: no version in Server, nosniff and a referrer policy on every answer (also errors and redirects)', async () => {
    for (const url of [
      `https://localhost:${ports.https}/hub/login`,
      `https://localhost:${ports.https}/hub/`,
      `https://localhost:${ports.https}/nonexistent`,
    ]) {
      const reply = await request(url, ca)
      expect(reply.headers.server, url).to.equal('nginx')
      expect(reply.headers['x-content-type-options'], url).to.equal('nosniff')
      expect(reply.headers['referrer-policy'], url).to.equal('same-origin')
    }
    const redirect = await fetch(`http://localhost:${ports.http}/hub/`, {redirect: 'manual'})
    await redirect.arrayBuffer()
    expect(redirect.status).to.equal(301)
    expect(redirect.headers.get('location')).to.equal(`https://localhost:${ports.https}/hub/`)
    expect(redirect.headers.get('server')).to.equal('nginx')
  })

  it('nginx: the login form is rate limited (429 with a page that says to wait); other pages are not', async () => {
    // At once, as a guesser would (the hub answers failed PAM logins one after the other, seconds each).
    const replies = await Promise.all(
      Array.from({length: 30}, () =>
        request(`https://localhost:${ports.https}/hub/login`, ca, {
          method: 'POST',
          body: 'username=alice&password=guess',
          headers: {'Content-Type': 'application/x-www-form-urlencoded'},
          timeoutMs: 150_000,
        }),
      ),
    )
    const statuses = replies.map((reply) => reply.status)
    const limited = replies.find((reply) => reply.status === 429)
    // All 30 are within the burst (100), but one address has at most 8 in the hub at once (a wrong
    // password holds a PAM thread for seconds): the others get the same 429 page at once.
    expect(
      statuses.filter((status) => status !== 429).length,
      `a burst of attempts reaches the hub (${statuses.join(' ')})`,
    ).to.be.at.least(SITE_LIMITS.loginConcurrent)
    expect(limited, `some attempts are limited (${statuses.join(' ')})`).to.not.equal(undefined)
    expect(limited!.body).to.match(/too many login attempts/i)
    expect(String(limited!.headers['content-type'])).to.match(/^text\/(plain|html)/)
    // The form itself (GET) is never limited.
    expect((await request(`https://localhost:${ports.https}/hub/login`, ca)).status).to.equal(200)
  })

  it("with the stack stopped, status and stop send no token to a listener on the hub's port", async () => {
    const stopped = await hubctl(['stop', '--prefix', prefix])
    expect(stopped.exitCode, stopped.stderr).to.equal(0)
    const {log} = await squat(ports.hub)
    await waitUntil('the squatter to bind', async () =>
      (await fs.readFile(log, 'utf8')).includes('bound') ? true : undefined,
    )
    const apiToken = (await fs.readFile(layout.apiToken, 'utf8')).trim()
    const shown = await hubctl(['status', '--prefix', prefix, '--json'])
    expect(shown.exitCode, shown.stderr).to.equal(0)
    expect(JSON.parse(shown.stdout).hub).to.include({running: false, healthy: false})
    const again = await hubctl(['stop', '--prefix', prefix])
    expect(again.exitCode, again.stderr).to.equal(0)
    const seen = await fs.readFile(log, 'utf8')
    expect(seen, 'a token was sent to the squatter').to.not.match(/authorization/i)
    expect(seen).to.not.include(apiToken)
  })
})

/**
 * The watcher (issue 21, item 1): a student who watches for the victim's jupyterhub-singleuser
 * process to appear (its uid and command line are in /proc for everyone), then binds every port
 * of the hub's server range it can, at once, before the victim's server has bound its own (the
 * port is in the server's environment, which only root and the victim can read: the student
 * binds them all). It says "bound N of M" in its log and answers every request 200 with a Jupyter
 * server's JSON, logging each request. Arguments: the victim's uid, FIRST, LAST, the log.
 */
const WATCHER = String.raw`
import os, select, socket, sys, time
victim, first, last, log = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
def note(text):
    with open(log, "a") as f:
        f.write(text)
def victims_server():
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            with open(f"/proc/{name}/status") as f:
                uid = next(int(line.split()[1]) for line in f if line.startswith("Uid:"))
            with open(f"/proc/{name}/cmdline", "rb") as f:
                cmdline = f.read()
        except (OSError, StopIteration):
            continue
        if uid == victim and b"jupyterhub-singleuser" in cmdline:
            return name
    return None
note("watching\n")
while victims_server() is None:
    time.sleep(0.003)
held = []
for port in range(first, last + 1):
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        s.bind(("127.0.0.1", port))
        s.listen(64)
        held.append(s)
    except OSError:
        s.close()
note(f"bound {len(held)} of {last - first + 1}\n")
while True:
    ready, _, _ = select.select(held, [], [])
    for s in ready:
        c, _ = s.accept()
        c.settimeout(2)
        data = b""
        try:
            while b"\r\n\r\n" not in data:
                chunk = c.recv(65536)
                if not chunk:
                    break
                data += chunk
        except OSError:
            pass
        note("REQUEST " + data.decode("latin-1") + "\n")
        body = b'{"version": "9.9.9"}'
        try:
            c.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nConnection: close\r\nContent-Length: " + str(len(body)).encode() + b"\r\n\r\n" + body)
        except OSError:
            pass
        c.close()
`

describe("a student squatting another user's server port (/user/VICTIM/)", function () {
  this.timeout(400_000)

  const victim = `hcsq-v-${randomBytes(3).toString('hex')}`
  const student = `hcsq-a-${randomBytes(3).toString('hex')}`
  let victimUid = -1
  let studentUid = -1
  let prefix = ''
  let layout: Layout
  let ports: Awaited<ReturnType<typeof portFlags>>['ports']
  let api: HubApi
  let work = ''
  let first = 0
  const RANGE = 4
  const children: ChildProcess[] = []

  /** `count` neighbouring ports of the default server range that nothing holds now, on IPv4 or IPv6. */
  const freeRange = async (count: number): Promise<number> => {
    const free = (port: number) =>
      new Promise<boolean>((resolve) => {
        const server = net.createServer()
        server.once('error', () => resolve(false))
        server.listen(port, '::', () => server.close(() => resolve(true)))
      })
    for (;;) {
      const start = SERVER_PORTS.first + Math.floor(Math.random() * (SERVER_PORTS.last - SERVER_PORTS.first - count))
      let all = true
      for (let port = start; port < start + count && all; port++) all = await free(port)
      if (all) return start
    }
  }

  /** A program run as the student (runuser), its log returned. */
  const asStudent = async (label: string, script: string, args: string[]): Promise<string> => {
    const log = path.join(work, `${label}-${children.length}.log`)
    await fs.writeFile(log, '', {mode: 0o666})
    await fs.chmod(log, 0o666)
    children.push(
      spawn('runuser', ['-u', student, '--', '/usr/bin/python3', '-c', script, ...args, log], {
        stdio: 'ignore',
        detached: true,
        cwd: '/',
      }),
    )
    await waitUntil(`the ${label} to run`, async () => ((await fs.readFile(log, 'utf8')).length > 0 ? true : undefined))
    return log
  }

  const status = async (): Promise<CommandJson> => {
    const result = await hubctl(['status', '--prefix', prefix, '--json'])
    expect(result.exitCode, result.stderr).to.equal(0)
    return JSON.parse(result.stdout) as CommandJson
  }

  /** Start the victim's server; its ready record, or undefined when the spawn failed. */
  const spawnVictim = async (): Promise<ServerInfo | undefined> => {
    await api.startServer(victim).catch(() => 'failed')
    return waitUntil(
      "the victim's spawn to end (ready or failed)",
      async () => {
        const servers = await api.userServers(victim)
        const ready = servers.find((server) => server.ready)
        if (ready) return {server: ready}
        return servers.length === 0 ? {server: undefined} : undefined
      },
      {tries: 1200, intervalMs: 250},
    ).then((outcome) => outcome.server)
  }

  before(async function () {
    this.timeout(200_000)
    victimUid = await addUser(victim)
    studentUid = await addUser(student)
    work = await fs.mkdtemp(path.join(os.tmpdir(), 'hubctl-sqserver-'))
    await fs.chmod(work, 0o755)
    prefix = await tempPrefix('hubctl-sqserver')
    layout = new Layout(prefix)
    first = await freeRange(RANGE)
    const portInfo = await portFlags()
    ports = portInfo.ports
    const init = await hubctl(
      testHubInitArgs(
        prefix,
        {admin: victim, jupyterhub: VENV_JUPYTERHUB, extra: ['--server-ports', `${first}-${first + RANGE - 1}`]},
        portInfo.flags,
      ),
    )
    expect(init.exitCode, init.stderr).to.equal(0)
    // The tests wait for the supervisor's checks of the servers: every 5 s here, not 30.
    await checkServersEvery(layout.settings, 5)
    // The hub's own poll (every 30 s) would clean up a killed server before the supervisor's
    // route check sees it: this test hub polls once an hour.
    await fs.writeFile(
      path.join(layout.hubConfigD, '90-squat-test.py'),
      '# hubctl squat e2e test: the hub leaves a killed server to the supervisor.\nc.Spawner.poll_interval = 3600\n',
      {mode: 0o644},
    )
    const started = await hubctl(['start', '--detach', '--prefix', prefix, '--json'])
    expect(started.exitCode, started.stderr + started.stdout).to.equal(0)
    api = HubApi.forLayout(layout, {ports}, {timeoutMs: 60_000})
  })

  afterEach(async () => {
    for (const child of children.splice(0)) await stopProcess(child)
  })

  after(async function () {
    this.timeout(120_000)
    for (const child of children.splice(0)) await stopProcess(child)
    if (prefix) {
      await hubctl(['stop', '--prefix', prefix, '--json'])
      await fs.rm(prefix, {recursive: true, force: true})
    }
    if (studentUid >= 0) await removeUser(student, studentUid)
    if (victimUid >= 0) await removeUser(victim, victimUid)
    if (work) await fs.rm(work, {recursive: true, force: true})
  })

  it("a student who binds the victim's port first never gets /user/VICTIM/: the spawn fails at once, naming the other program", async () => {
    const log = await asStudent('watcher', WATCHER, [String(victimUid), String(first), String(first + RANGE - 1)])
    const server = await spawnVictim()
    const seen = await fs.readFile(log, 'utf8')
    expect(seen, "the student bound every port of the range before the victim's server (the attack ran)").to.include(
      `bound ${RANGE} of ${RANGE}`,
    )
    // Through the proxy, as the victim's browser would ask (with a marker the student must never see).
    const marker = `hubctl-cookie-${randomBytes(6).toString('hex')}`
    const answer = await fetch(`http://127.0.0.1:${ports.proxy}/user/${victim}/api`, {
      headers: {Cookie: `jupyterhub-session-id=${marker}`},
      redirect: 'manual',
    })
    const body = await answer.text()
    const after = await fs.readFile(log, 'utf8')
    expect(after, "the student's listener got a request").to.not.include('REQUEST')
    expect(after).to.not.include(marker)
    expect(body, 'the squatter answered for the victim').to.not.include('9.9.9')
    expect(server, "every port is the student's: the victim's server cannot start, the spawn fails").to.equal(undefined)
    const hubLog = await fs.readFile(layout.hubLog, 'utf8')
    expect(hubLog).to.match(new RegExp(`port ${first}|port ${first + 1}|port ${first + 2}|port ${first + 3}`))
    expect(hubLog, "the spawn failed at once (not at the timeout), naming the student's listener").to.match(
      new RegExp(`exited.*held by another program \\(pid \\d+, uid ${studentUid}\\)`),
    )
  })

  it("hubctl status does not say routeOk for a route whose port a student took after the victim's server died", async () => {
    const server = await spawnVictim()
    expect(server, "the victim's server starts when nobody squats").to.not.equal(undefined)
    const routes = await proxyRoutes(
      `http://127.0.0.1:${ports.proxyApi}`,
      async () => (await fs.readFile(layout.proxyAuthToken, 'utf8')).trim(),
      fetch,
    )()
    const port = Number(new URL(findRoute(routes, {user: victim, name: '', url: server!.url})!.target).port)
    expect(port).to.be.within(first, first + RANGE - 1)
    const routeOf = (shown: CommandJson) =>
      (shown.servers as Array<{user: string; routeOk: boolean | null; routeProblem?: string}>).find(
        (s) => s.user === victim,
      )
    await waitUntil(
      "the supervisor's check to find the victim's route ok",
      async () => (routeOf(await status())?.routeOk === true ? true : undefined),
      {tries: 120, intervalMs: 500},
    )
    // The victim's server dies; the student takes its port at once and answers as a Jupyter server.
    const pids = await serverPids({uid: victimUid})
    expect(pids).to.have.length.greaterThan(0)
    const log = path.join(work, 'late-squatter.log')
    await fs.writeFile(log, '', {mode: 0o666})
    await fs.chmod(log, 0o666)
    children.push(
      spawn('runuser', ['-u', student, '--', '/usr/bin/python3', '-c', SQUATTER, String(port), log], {
        stdio: 'ignore',
        detached: true,
        cwd: '/',
      }),
    )
    killPids(pids)
    await waitUntil("the student to take the victim's port", async () =>
      (await fs.readFile(log, 'utf8')).includes('bound') ? true : undefined,
    )
    const squattedAt = Date.now()
    const shown = await waitUntil(
      "the supervisor's next check of the servers",
      async () => {
        const now = await status()
        const checked = Date.parse((now.serverWatch as {checkedAt?: string} | undefined)?.checkedAt ?? '')
        return checked > squattedAt ? now : undefined
      },
      {tries: 120, intervalMs: 500},
    )
    const route = routeOf(shown)
    expect(route, "the hub still lists the victim's server").to.not.equal(undefined)
    expect(route!.routeOk, JSON.stringify(route)).to.equal(false)
    expect(route!.routeProblem).to.match(new RegExp(`another program \\(pid \\d+, uid ${studentUid}\\)`))
    await api.stopServer(victim).catch(() => undefined)
  })
})
