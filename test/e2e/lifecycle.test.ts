// e2e-lane: parallel
import {expect} from 'chai'
import {execa} from 'execa'
import {ChildProcess} from 'node:child_process'
import fs from 'node:fs/promises'
import path from 'node:path'

import {Layout} from '../../src/lib/config/layout.js'
import {HubApi} from '../../src/lib/stack/hubapi.js'
import {BIN, DEBIAN_JUPYTERHUB, holdPorts, hubctl, jsonOf, portFlags, tempPrefix} from '../helpers/cli.js'
import {alive, serverPids, spawnLogged, stopProcess, waitUntil} from '../helpers/processes.js'
import {onTerminal} from '../helpers/terminal.js'

/*
 * Paths no other test takes, on one hub (Debian's JupyterHub 3.0, dummy authenticator and the
 * simple spawner: alice's server runs as root, found by its environment):
 * - init driven through a pseudo-terminal, answering its questions (the domain, the admin);
 * - the prefix given only as HUBCTL_PREFIX, to init and to every later command;
 * - --nginx PATH: a wrapper that logs each run, then runs the real nginx;
 * - --dhparam generate --dhparam-bits 3072 (slow: generated once, here);
 * - a foreground `hubctl start` ended by SIGTERM to its pid alone (systemd's KillMode=process):
 *   the user's server survives and the next start finds it;
 * - `hubctl stop --keep-servers`: the stack stops, the server runs on, the next start finds it.
 */

interface Status {
  running: boolean
  supervisor: {pid: number | null; running: boolean}
  proxy: {pid: number | null; running: boolean}
  hub: {pid: number | null; running: boolean; healthy: boolean}
  nginx?: {pid: number | null; running: boolean}
  servers: Array<{user: string; name: string; ready: boolean}>
}

describe('init on a terminal with HUBCTL_PREFIX, --nginx PATH and 3072-bit DH parameters; start in the foreground and stop --keep-servers', function () {
  this.timeout(600_000)

  let work = ''
  let prefix = ''
  let layout: Layout
  let ports: Awaited<ReturnType<typeof portFlags>>['ports']
  let held: Awaited<ReturnType<typeof holdPorts>> | undefined
  let wrapper = ''
  let wrapperLog = ''
  let terminal: Awaited<ReturnType<typeof onTerminal>>
  let api: HubApi
  let foreground: ChildProcess | undefined
  /** alice's server, once started: the pid every later start must find again. */
  let serverPid = 0

  /** hubctl with the prefix in HUBCTL_PREFIX only (no --prefix). */
  const run = (args: string[]) => hubctl(args, {env: {HUBCTL_PREFIX: prefix}})
  const status = async (): Promise<Status> => {
    const result = await run(['status', '--json'])
    expect(result.exitCode, result.stderr).to.equal(0)
    return jsonOf(result) as Status
  }
  const alicePids = () => serverPids({user: 'alice', hubPort: ports.hub})

  before(async function () {
    work = await tempPrefix('hubctl-life')
    prefix = path.join(work, 'hub')
    layout = new Layout(prefix)
    wrapperLog = path.join(work, 'nginx-runs.log')
    wrapper = path.join(work, 'bin', 'my-nginx')
    await fs.mkdir(path.dirname(wrapper), {recursive: true})
    await fs.writeFile(wrapper, `#!/bin/sh\necho "$*" >> '${wrapperLog}'\nexec /usr/sbin/nginx "$@"\n`, {mode: 0o755})
    const allocated = await portFlags()
    ports = allocated.ports
    // No --prefix, --domain, --admin nor --yes: the prefix from HUBCTL_PREFIX, the rest asked.
    terminal = await onTerminal(
      [
        process.execPath,
        BIN,
        'init',
        '--authenticator',
        'dummy',
        '--spawner',
        'simple',
        '--tls',
        'self-signed',
        '--dhparam',
        'generate',
        '--dhparam-bits',
        '3072',
        '--jupyterhub',
        DEBIAN_JUPYTERHUB,
        '--nginx',
        wrapper,
        '--no-systemd',
        '--no-schedule',
        ...allocated.flags,
      ],
      [
        [/Domain name of the hub/, 'localhost'],
        [/Admin user name/, 'alice'],
      ],
      {env: {HUBCTL_PREFIX: prefix}, timeoutSeconds: 540},
    )
    expect(terminal.exitCode, terminal.transcript).to.equal(0)
    held = await holdPorts(Object.values(ports))
    api = HubApi.forLayout(layout, {ports}, {timeoutMs: 60_000})
  })

  after(async function () {
    this.timeout(180_000)
    await held?.release()
    await stopProcess(foreground)
    if (prefix) await run(['stop', '--json'])
    // alice's server as well, whatever a test left.
    if (ports) for (const pid of await alicePids()) process.kill(pid, 'SIGKILL')
    if (work) await fs.rm(work, {recursive: true, force: true})
  })

  it('init asked for the domain and the admin on the terminal and used the answers', async () => {
    expect(terminal.answered).to.equal(2)
    expect(terminal.transcript).to.match(/Domain name of the hub/)
    expect(terminal.transcript).to.match(/Admin user name/)
    const settings = JSON.parse(await fs.readFile(layout.settings, 'utf8')) as {domains: string[]; admins: string[]}
    expect(settings.domains).to.deep.equal(['localhost'])
    expect(settings.admins).to.deep.equal(['alice'])
  })

  it('HUBCTL_PREFIX alone puts every file under it, and later commands find the hub by it', async () => {
    for (const file of [layout.settings, layout.hubConfig, layout.cookieSecret, layout.fullchain]) await fs.access(file)
    const checked = await run(['secrets', 'check', '--json'])
    expect(checked.exitCode, checked.stderr + checked.stdout).to.equal(0)
    expect((await status()).running).to.equal(false)
    // Without it (nor --prefix) the same command looks at / instead, where this hub is not.
    const elsewhere = await hubctl(['secrets', 'check', '--json'])
    expect(elsewhere.stdout + elsewhere.stderr).to.not.include(prefix)
  })

  it('--nginx PATH: init tested the site with that nginx and kept it for the stack', async () => {
    const runs = (await fs.readFile(wrapperLog, 'utf8')).trim().split('\n')
    expect(
      runs.some((line) => /(^| )-t( |$)/.test(line)),
      runs.join('\n'),
    ).to.equal(true)
    const settings = JSON.parse(await fs.readFile(layout.settings, 'utf8')) as {executables: {nginx?: string}}
    expect(settings.executables.nginx).to.equal(wrapper)
  })

  it('--dhparam-bits 3072: generated parameters of 3072 bits that openssl checks', async () => {
    const text = await execa('openssl', ['dhparam', '-in', layout.dhparam, '-noout', '-text'], {reject: false})
    expect(text.exitCode, text.stderr).to.equal(0)
    expect(text.stdout).to.match(/DH Parameters: \(3072 bit\)/)
    // Not the RFC 7919 group of that size: generated.
    expect(text.stdout).to.not.match(/ffdhe3072/i)
    const checked = await execa('openssl', ['dhparam', '-in', layout.dhparam, '-noout', '-check'], {reject: false})
    expect(checked.exitCode, checked.stderr + checked.stdout).to.equal(0)
    const settings = JSON.parse(await fs.readFile(layout.settings, 'utf8')) as {dhparam: {mode: string; bits: number}}
    expect(settings.dhparam).to.include({mode: 'generate', bits: 3072})
  })

  describe('running', () => {
    /** A foreground `hubctl start` (as systemd runs it), up once the hub answers through the proxy. */
    const startForeground = async (): Promise<ChildProcess> => {
      await held?.release()
      const child = spawnLogged(process.execPath, [BIN, 'start'], {
        env: {...process.env, HUBCTL_PREFIX: prefix},
        log: path.join(work, 'start-foreground.log'),
      })
      await waitUntil('the foreground start to be up', async () => {
        const s = await status()
        return s.running && s.hub.healthy ? true : undefined
      })
      return child
    }

    before(async function () {
      foreground = await startForeground()
      expect(await api.startServer('alice')).to.be.oneOf(['started', 'pending'])
      await waitUntil('alice server to be ready', async () =>
        (await api.userServers('alice')).find((s) => s.name === '' && s.ready),
      )
      const pids = await alicePids()
      expect(pids, "alice's server").to.have.length(1)
      serverPid = pids[0]
    })

    it('the stack runs the nginx of --nginx PATH', async () => {
      const runs = await fs.readFile(wrapperLog, 'utf8')
      expect(runs).to.match(/daemon off;/)
      expect((await status()).nginx?.running).to.equal(true)
    })

    it("SIGTERM to a foreground start (systemd's stop) ends it; the user's server survives, and the next start finds it", async () => {
      const started = foreground ?? (await startForeground())
      const before = await status()
      const exited = new Promise<{code: number | null; signal: NodeJS.Signals | null}>((resolve) =>
        started.once('exit', (code, signal) => resolve({code, signal})),
      )
      process.kill(started.pid!, 'SIGTERM')
      const ended = await exited
      foreground = undefined
      expect(ended, 'a clean exit on SIGTERM').to.deep.equal({code: 0, signal: null})
      for (const pid of [before.supervisor.pid, before.hub.pid, before.proxy.pid])
        expect(await alive(pid!), `pid ${pid} after SIGTERM`).to.equal(false)
      expect(await alicePids(), "alice's server survives").to.deep.equal([serverPid])
      // The next start (detached this time) finds it: listed, ready, routed.
      const again = await run(['start', '--detach', '--json'])
      expect(again.exitCode, again.stderr + again.stdout).to.equal(0)
      const found = await waitUntil('the hub to list alice as ready', async () =>
        (await api.userServers('alice')).find((s) => s.name === '' && s.ready),
      )
      expect(found.url).to.equal('/user/alice/')
      expect((await status()).servers.map((s) => s.user)).to.deep.equal(['alice'])
      expect(await alicePids()).to.deep.equal([serverPid])
    })

    it('stop --keep-servers stops the stack and leaves the servers running; the next start finds them', async () => {
      if (!(await status()).running) {
        const started = await run(['start', '--detach', '--json'])
        expect(started.exitCode, started.stderr + started.stdout).to.equal(0)
      }
      const before = await status()
      const stopped = await run(['stop', '--keep-servers', '--json'])
      expect(stopped.exitCode, stopped.stderr + stopped.stdout).to.equal(0)
      const result = jsonOf(stopped)
      expect(result.servers, 'no server stopped').to.deep.equal([])
      expect(result.supervisor.result).to.equal('exited')
      for (const pid of [before.supervisor.pid, before.hub.pid, before.proxy.pid, before.nginx?.pid])
        await waitUntil(`pid ${pid} to be gone`, async () => !(await alive(pid!)), {tries: 100})
      expect(await alicePids(), "alice's server runs on").to.deep.equal([serverPid])
      const again = await run(['start', '--detach', '--json'])
      expect(again.exitCode, again.stderr + again.stdout).to.equal(0)
      await waitUntil('the hub to list alice as ready', async () =>
        (await api.userServers('alice')).find((s) => s.name === '' && s.ready),
      )
      expect(await alicePids()).to.deep.equal([serverPid])
      // And a plain stop stops it.
      const plain = await run(['stop', '--json'])
      expect(plain.exitCode, plain.stderr + plain.stdout).to.equal(0)
      expect(jsonOf(plain).servers).to.deep.equal([{user: 'alice', name: '', result: 'stopped'}])
      await waitUntil("alice's server to be gone", async () => !(await alive(serverPid)), {tries: 100})
    })
  })
})
