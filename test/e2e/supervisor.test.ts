// e2e-lane: parallel
import {expect} from 'chai'
import {execa} from 'execa'
import fs from 'node:fs/promises'
import path from 'node:path'

import {HubApi} from '../../src/lib/stack/hubapi.js'
import {Layout} from '../../src/lib/config/layout.js'
import {
  DEBIAN_JUPYTERHUB,
  holdPorts,
  hubctl,
  initTestHub,
  portFlags,
  tempPrefix,
  VENV_JUPYTERHUB,
} from '../helpers/cli.js'
import {alive, environOf, killPids, liveProcesses, procInfo, serverPids, waitUntil} from '../helpers/processes.js'
import {addUser, removeUser, testUserName} from '../helpers/users.js'

/*
 * Supervision with the real programs: configurable-http-proxy, JupyterHub (Debian's 3.0 and the
 * virtualenv's current one), nginx, and a real user server from the default LocalProcessSpawner
 * for a system user made for the test. Runs as root (useradd, LocalProcessSpawner).
 */

async function get(url: string): Promise<{status: number; body: string}> {
  const response = await fetch(url, {redirect: 'manual', signal: AbortSignal.timeout(5000)})
  return {status: response.status, body: await response.text()}
}

interface Status {
  running: boolean
  supervisor: {pid: number | null; running: boolean}
  proxy: {pid: number | null; running: boolean; restarts: number}
  hub: {pid: number | null; running: boolean; healthy: boolean; restarts: number}
  nginx?: {pid: number | null; running: boolean; restarts: number}
  servers: Array<{user: string; name: string; url: string; ready: boolean; lastActivity: string | null}>
}

function timing(label: string, ms: number): void {
  // Reported, never asserted.
  console.log(`      timing: ${label}: ${(ms / 1000).toFixed(2)}s`)
}

for (const jupyterhub of [DEBIAN_JUPYTERHUB, VENV_JUPYTERHUB]) {
  describe(`supervision with ${jupyterhub}`, function () {
    this.timeout(300_000)

    const user = testUserName()
    let uid = -1
    let prefix = ''
    let layout: Layout
    let ports: Awaited<ReturnType<typeof portFlags>>['ports']
    let api: HubApi
    let serverPid = 0
    const testBegan = Date.now()
    /** The ports, held from init until the start that binds them. */
    let held: Awaited<ReturnType<typeof holdPorts>> | undefined
    /** Every pid seen during the test: after() makes sure none outlives it. */
    const seen = new Set<number>()

    const status = async (): Promise<Status> => {
      const result = await hubctl(['status', '--prefix', prefix, '--json'])
      expect(result.exitCode, result.stderr).to.equal(0)
      const parsed = JSON.parse(result.stdout) as Status
      for (const pid of [parsed.supervisor.pid, parsed.proxy.pid, parsed.hub.pid, parsed.nginx?.pid])
        if (pid) seen.add(pid)
      return parsed
    }

    /** The user's server answers through the proxy (its own /api, not the hub's redirect). */
    const routeAnswers = async (): Promise<true | undefined> => {
      const response = await get(`http://127.0.0.1:${ports.proxy}/user/${user}/api`)
      if (response.status !== 200) return undefined
      const body = JSON.parse(response.body) as {version?: string}
      return typeof body.version === 'string' ? true : undefined
    }

    before(async function () {
      uid = await addUser(user)
      // LocalProcessSpawner runs the singleuser server as the user: it must be able to execute it.
      const singleuser = path.join(path.dirname(jupyterhub), 'jupyterhub-singleuser')
      const canRun = await execa('runuser', ['-u', user, '--', singleuser, '--version'], {reject: false, cwd: '/'})
      if (canRun.exitCode !== 0) {
        throw new Error(
          `${user} cannot run ${singleuser} (${(canRun.stderr || canRun.stdout).trim().split('\n').pop()}): a LocalProcessSpawner hub cannot start its server. ` +
            'Build the virtualenv from a Python every user can execute (e.g. /usr/bin/python3 -m venv), or point HUBCTL_TEST_VENV_JUPYTERHUB at one.',
        )
      }
      prefix = await tempPrefix('hubctl-sup')
      layout = new Layout(prefix)
      ports = await initTestHub(prefix, {admin: user, allowUsers: [user], jupyterhub})
      held = await holdPorts(Object.values(ports))
      // A generous client timeout: a spawn request is answered after the hub's slow_spawn_timeout (10 s), later under load.
      api = HubApi.forLayout(layout, {ports}, {timeoutMs: 60_000})
    })

    after(async function () {
      this.timeout(120_000)
      await held?.release()
      if (prefix) {
        await hubctl(['stop', '--prefix', prefix, '--json'])
        // Whatever is still there, by pid: the supervisor, its children, the user's server.
        const pidText = await fs.readFile(layout.pidFile, 'utf8').catch(() => '')
        if (Number(pidText.trim()) > 0) seen.add(Number(pidText.trim()))
        const state = JSON.parse(await fs.readFile(layout.stateFile, 'utf8').catch(() => '{}')) as Record<
          string,
          {pid?: number | null} | undefined
        >
        for (const name of ['supervisor', 'proxy', 'hub', 'nginx']) if (state[name]?.pid) seen.add(state[name]!.pid!)
      }
      if (uid >= 0) for (const pid of await serverPids({uid})) seen.add(pid)
      if (serverPid) seen.add(serverPid)
      for (const pid of seen) if (pid !== process.pid && (await alive(pid))) killPids([pid])
      // Every process of the user, by pid, then the user.
      if (uid >= 0) await removeUser(user, uid)
      if (prefix) await fs.rm(prefix, {recursive: true, force: true})
    })

    it('status --json before start: nothing runs, exit 0', async () => {
      const before = await status()
      expect(before.running).to.equal(false)
      expect(before.proxy).to.include({pid: null, running: false})
      expect(before.hub).to.include({pid: null, running: false, healthy: false})
      expect(before.servers).to.deep.equal([])
    })

    /** `hubctl start --detach`, once: each group of tests that needs the stack running asks for it. */
    let started: {pid: number; readySeconds: number; wallMs: number} | undefined
    const startStack = async () => {
      if (started) return started
      await held?.release()
      const began = Date.now()
      const result = await hubctl(['start', '--detach', '--prefix', prefix, '--json'])
      expect(result.exitCode, result.stderr + result.stdout).to.equal(0)
      const parsed = JSON.parse(result.stdout) as {pid: number; readySeconds: number}
      seen.add(parsed.pid)
      started = {...parsed, wallMs: Date.now() - began}
      return started
    }

    /** The user's server, started once through the hub API (its pid in serverPid). */
    let serverStart: {outcome: string; url: string; ms: number} | undefined
    const startUserServer = async () => {
      await startStack()
      if (serverStart) return serverStart
      const began = Date.now()
      const outcome = await api.startServer(user)
      const server = await waitUntil('the server to be ready', async () =>
        (await api.userServers(user)).find((s) => s.name === '' && s.ready),
      )
      await waitUntil('the user route through the proxy', routeAnswers)
      const pids = await serverPids({uid})
      expect(pids, 'one jupyterhub-singleuser running as the user').to.have.length(1)
      serverPid = pids[0]
      seen.add(serverPid)
      serverStart = {outcome, url: server.url, ms: Date.now() - began}
      return serverStart
    }

    describe('running, before any user server', () => {
      before(startStack)

      it('start --detach returns once /hub/health answers 200 through the proxy', async () => {
        const result = await startStack()
        timing('start --detach to ready (hubctl)', result.readySeconds * 1000)
        timing('start --detach wall time', result.wallMs)
        expect(await alive(result.pid)).to.equal(true)
        expect(Number((await fs.readFile(layout.pidFile, 'utf8')).trim())).to.equal(result.pid)
        const health = await get(`http://127.0.0.1:${ports.proxy}/hub/health`)
        expect(health.status).to.equal(200)
      })

      it('keeps the proxy token out of argv and logs, and writes each program to its own log', async () => {
        const token = (await fs.readFile(layout.proxyAuthToken, 'utf8')).trim()
        const apiToken = (await fs.readFile(layout.apiToken, 'utf8')).trim()
        const state = await status()
        for (const pid of [state.supervisor.pid, state.proxy.pid, state.hub.pid, state.nginx?.pid]) {
          const info = await procInfo(pid!)
          expect(info, `pid ${pid}`).to.not.equal(undefined)
          expect(info!.cmdline.join(' ')).to.not.include(token)
          expect(info!.cmdline.join(' ')).to.not.include(apiToken)
        }
        const proxyEnv = await fs.readFile(`/proc/${state.proxy.pid}/environ`, 'utf8')
        expect(proxyEnv.split('\0')).to.include(`CONFIGPROXY_AUTH_TOKEN=${token}`)
        const hubEnv = await fs.readFile(`/proc/${state.hub.pid}/environ`, 'utf8')
        expect(hubEnv).to.not.include(token)
        for (const file of [layout.proxyLog, layout.hubLog, layout.stateFile, layout.supervisorLog]) {
          const text = await fs.readFile(file, 'utf8')
          expect(text.length, file).to.be.greaterThan(0)
          expect(text, file).to.not.include(token)
          expect(text, file).to.not.include(apiToken)
        }
      })

      it('status --json while running', async () => {
        const running = await status()
        expect(running.running).to.equal(true)
        expect(running.supervisor.running).to.equal(true)
        expect(running.proxy.running).to.equal(true)
        expect(running.proxy.pid).to.be.a('number')
        expect(running.proxy.restarts).to.equal(0)
        expect(running.hub).to.include({running: true, healthy: true, restarts: 0})
        expect(running.nginx?.running).to.equal(true)
        expect(running.servers).to.deep.equal([])
      })
    })

    describe('running, with a user server', () => {
      before(startUserServer)

      it("starts the user's server through the hub API with the hubctl token (LocalProcessSpawner)", async () => {
        const {outcome, url, ms} = await startUserServer()
        expect(['started', 'pending']).to.include(outcome)
        timing('user server start', ms)
        expect(url).to.equal(`/user/${user}/`)
        expect(await serverPids({uid})).to.deep.equal([serverPid])
        const running = await status()
        expect(running.servers).to.have.length(1)
        expect(running.servers[0]).to.include({user, name: '', url: `/user/${user}/`, ready: true})
        expect(running.servers[0]).to.have.property('lastActivity')
        // A plausible recent time: not before this test began, not in the future.
        const reported = Date.parse(running.servers[0].lastActivity ?? '')
        expect(reported, `lastActivity ${running.servers[0].lastActivity}`).to.be.within(testBegan, Date.now() + 1000)
        // It follows the hub's record: activity as the server reports it (POST …/activity) shows at once.
        const later = new Date(Math.max(Date.now(), reported) + 60_000).toISOString()
        // With the server's own token (hubctl's may only read activity), as the server does.
        const token = (await environOf(serverPid))
          ?.find((entry) => entry.startsWith('JUPYTERHUB_API_TOKEN='))
          ?.slice('JUPYTERHUB_API_TOKEN='.length)
        expect(token, "the server's JUPYTERHUB_API_TOKEN").to.be.a('string')
        const posted = await fetch(`http://127.0.0.1:${ports.hub}/hub/api/users/${user}/activity`, {
          method: 'POST',
          headers: {Authorization: `token ${token}`, 'Content-Type': 'application/json'},
          body: JSON.stringify({last_activity: later, servers: {'': {last_activity: later}}}),
        })
        expect(posted.status, await posted.text()).to.be.oneOf([200, 204])
        const after = await status()
        expect(Date.parse(after.servers[0].lastActivity ?? '')).to.equal(Date.parse(later))
      })

      it("kill -9 of the proxy: it is restarted and the user's route answers again through it", async () => {
        const before = await status()
        const oldProxy = before.proxy.pid!
        process.kill(oldProxy, 'SIGKILL')
        const began = Date.now()
        // A generous bound (the bench measures under 2 s): it proves the route comes back by itself
        // (seeded proxy, then the hub's PATCH), not how fast. Polled every 100 ms, without status in the loop.
        const bound = 30_000
        await waitUntil('the killed proxy to be gone', async () => !(await alive(oldProxy)), {withinMs: bound})
        await waitUntil('the user route through the restarted proxy', routeAnswers, {
          withinMs: bound - (Date.now() - began),
        })
        const after = await waitUntil(
          'a new proxy in status',
          async () => {
            const s = await status()
            return s.proxy.running && s.proxy.pid !== oldProxy ? s : undefined
          },
          {withinMs: bound - (Date.now() - began)},
        )
        timing('proxy kill to user route answering again', Date.now() - began)
        expect(after.proxy.restarts).to.equal(1 + before.proxy.restarts)
        expect(await alive(oldProxy)).to.equal(false)
        expect(await serverPids({uid})).to.deep.equal([serverPid])
      })

      it("kill -9 of the hub: it comes back and finds the user's server, same pid", async () => {
        const before = await status()
        const oldHub = before.hub.pid!
        process.kill(oldHub, 'SIGKILL')
        const began = Date.now()
        const after = await waitUntil('a new healthy hub', async () => {
          const s = await status()
          return s.hub.running && s.hub.healthy && s.hub.pid !== oldHub ? s : undefined
        })
        timing('hub kill to healthy again', Date.now() - began)
        expect(after.hub.restarts).to.equal(1 + before.hub.restarts)
        await waitUntil('the hub to list the server as ready', async () =>
          (await api.userServers(user)).find((s) => s.ready),
        )
        await waitUntil('the user route', routeAnswers)
        expect(await alive(serverPid)).to.equal(true)
        expect(await serverPids({uid})).to.deep.equal([serverPid])
      })

      it('hubctl restart restarts proxy and hub and keeps the server (same pid) and its route', async () => {
        const before = await status()
        const restarted = await hubctl(['restart', '--prefix', prefix, '--json'])
        expect(restarted.exitCode, restarted.stderr + restarted.stdout).to.equal(0)
        const result = JSON.parse(restarted.stdout) as {
          seconds: number
          proxy: {pid: number}
          hub: {pid: number; healthy: boolean}
        }
        timing('hubctl restart', result.seconds * 1000)
        seen.add(result.proxy.pid)
        seen.add(result.hub.pid)
        expect(result.proxy.pid).to.not.equal(before.proxy.pid)
        expect(result.hub.pid).to.not.equal(before.hub.pid)
        expect(result.hub.healthy).to.equal(true)
        expect(await alive(before.proxy.pid!)).to.equal(false)
        expect(await alive(before.hub.pid!)).to.equal(false)
        await waitUntil('the user route after the restart', routeAnswers)
        expect(await serverPids({uid})).to.deep.equal([serverPid])
        const after = await status()
        expect(after.hub.healthy).to.equal(true)
        expect(after.supervisor.pid).to.equal(before.supervisor.pid)
        expect(after.servers.map((s) => s.user)).to.deep.equal([user])
      })
    })

    /** `hubctl stop` of the running stack with its user server, once; the pids that ran before it. */
    let stopping: Promise<{pids: number[]; stopped: Awaited<ReturnType<typeof hubctl>>}> | undefined
    const stopStack = () =>
      (stopping ??= (async () => {
        await startUserServer()
        const before = await status()
        const pids = [before.supervisor.pid!, before.proxy.pid!, before.hub.pid!, before.nginx!.pid!, serverPid]
        for (const pid of pids) expect(await alive(pid), `pid ${pid} before stop`).to.equal(true)
        return {pids, stopped: await hubctl(['stop', '--prefix', prefix, '--json'])}
      })())

    describe('stopped', () => {
      it('hubctl stop stops the user server, the hub, the proxy, nginx and the supervisor; nothing is left', async () => {
        const {pids, stopped} = await stopStack()
        expect(stopped.exitCode, stopped.stderr + stopped.stdout).to.equal(0)
        const result = JSON.parse(stopped.stdout) as {
          servers: Array<{user: string; result: string}>
          supervisor: {result: string}
          leftovers: unknown[]
        }
        expect(result.servers).to.deep.equal([{user, name: '', result: 'stopped'}])
        expect(result.supervisor.result).to.equal('exited')
        expect(result.leftovers).to.deep.equal([])
        // Reaping is asynchronous: poll (bounded) until /proc has none of them.
        await waitUntil(
          'every recorded pid to be gone',
          async () => {
            for (const pid of pids) if (await alive(pid)) return undefined
            return true
          },
          {tries: 100},
        )
        expect(await serverPids({uid})).to.deep.equal([])
        expect((await liveProcesses()).filter((p) => p.uid === uid)).to.deep.equal([])
        await fs.access(layout.pidFile).then(
          () => expect.fail('the pid file is still there'),
          () => {},
        )
      })

      it('status --json while stopped: exit 0, nothing running', async () => {
        expect((await stopStack()).stopped.exitCode).to.equal(0)
        const stopped = await status()
        expect(stopped.running).to.equal(false)
        expect(stopped.supervisor).to.include({pid: null, running: false})
        expect(stopped.proxy).to.include({pid: null, running: false})
        expect(stopped.hub).to.include({pid: null, running: false, healthy: false})
        expect(stopped.nginx).to.include({pid: null, running: false})
        expect(stopped.servers).to.deep.equal([])
        const text = await hubctl(['status', '--prefix', prefix])
        expect(text.exitCode).to.equal(0)
        expect(text.stdout).to.include('not running')
      })
    })
  })
}
