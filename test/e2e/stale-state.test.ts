// e2e-lane: parallel
import {expect} from 'chai'
import {ChildProcess, spawn} from 'node:child_process'
import fs from 'node:fs/promises'

import {Layout} from '../../src/lib/config/layout.js'
import {SettingsStore, type Settings} from '../../src/lib/config/settings.js'
import {procStartTime} from '../../src/lib/processes.js'
import {freePort, hubctl, tempPrefix} from '../helpers/cli.js'
import {alive, stopProcess} from '../helpers/processes.js'

/*
 * `hubctl stop` (the built CLI) on a prefix whose pid file and state.json name pids that now
 * belong to other processes, started here: one that even looks like `hubctl start` (its command
 * line names bin/run.js and start), and a plain `sleep`. Their start times differ from the
 * recorded ones, as a reused pid's would: neither may be signalled.
 */
describe('hubctl stop with a stale pid file and state.json (the pids reused by other processes)', function () {
  this.timeout(60_000)
  let layout: Layout
  const spawned: ChildProcess[] = []

  async function started(command: string, args: string[]): Promise<{pid: number; startTime: string}> {
    const child = spawn(command, args, {stdio: 'ignore', detached: true})
    spawned.push(child)
    const pid = child.pid!
    let startTime: string | undefined
    while (!(startTime = await procStartTime(pid))) await new Promise((resolve) => setImmediate(resolve))
    return {pid, startTime}
  }

  /** A start time other than the process's own: the recorded process started one clock tick earlier. */
  const earlier = (startTime: string) => String(Number(startTime) - 1)

  before(async () => {
    layout = new Layout(await tempPrefix('hubctl-stale'))
    const port = async () => freePort()
    const settings: Settings = {
      version: 1,
      domains: ['localhost'],
      admins: ['hstadmin'],
      allowedUsers: [],
      authenticator: 'dummy',
      spawner: 'simple',
      tls: {mode: 'self-signed'},
      ports: {
        http: await port(),
        https: await port(),
        proxy: await port(),
        proxyApi: await port(),
        hub: await port(),
        proxyStandby: await port(),
        proxyStandbyApi: await port(),
      },
      dhparam: {mode: 'ffdhe2048', bits: 2048},
      executables: {jupyterhub: '/usr/bin/jupyterhub', singleuser: '/x', node: process.execPath, proxy: '/x'},
      jupyterhubVersion: '3.0.0',
      nginxSupervised: false,
      proxyTls: false,
    }
    await new SettingsStore(layout).save(settings)
  })

  after(async () => {
    for (const child of spawned) await stopProcess(child)
    await fs.rm(layout.prefix, {recursive: true, force: true})
  })

  it('signals none of them, says each record is stale, and removes the pid file', async () => {
    // Looks like a supervisor to a look at its command line: only the start time tells them apart.
    const lookalike = await started(process.execPath, [
      '-e',
      'setInterval(() => {}, 1 << 30)',
      '/usr/lib/hubctl/bin/run.js',
      'start',
      '--prefix',
      layout.prefix,
    ])
    const sleeper = await started('sleep', ['600'])
    const child = (pid: number, startTime: string) => ({
      pid,
      startTime,
      running: true,
      startedAt: new Date().toISOString(),
      restarts: 0,
      crashLoop: false,
      lastExit: null,
      log: layout.hubLog,
    })
    await fs.mkdir(layout.runDir, {recursive: true})
    await fs.writeFile(layout.pidFile, `${lookalike.pid}\n`)
    await fs.writeFile(
      layout.stateFile,
      JSON.stringify({
        version: 1,
        prefix: layout.prefix,
        supervisor: {
          pid: lookalike.pid,
          startTime: earlier(lookalike.startTime),
          startedAt: new Date().toISOString(),
          ready: true,
          readyAt: null,
          readySeconds: null,
          stopping: false,
          stoppedAt: null,
        },
        proxy: {...child(sleeper.pid, earlier(sleeper.startTime)), log: layout.proxyLog},
        hub: child(lookalike.pid, earlier(lookalike.startTime)),
        reloads: 0,
        lastReload: null,
        lastRouteSync: null,
        updatedAt: new Date().toISOString(),
      }),
    )

    const result = await hubctl(['stop', '--prefix', layout.prefix])
    expect(result.exitCode, result.stderr).to.equal(0)
    expect(result.stdout.trim()).to.equal(`hubctl: nothing runs under ${layout.prefix}.`)
    const stale = (file: string, pid: number, what: string) =>
      `warning: ${file} names pid ${pid} as ${what}, but pid ${pid} is now another process: the record is stale, and that process was left alone`
    expect(result.stderr.trim().split('\n')).to.deep.equal([
      stale(layout.stateFile, lookalike.pid, 'jupyterhub'),
      stale(layout.stateFile, sleeper.pid, 'configurable-http-proxy'),
      stale(layout.pidFile, lookalike.pid, "the hub's supervisor"),
    ])
    expect(await alive(lookalike.pid)).to.equal(true)
    expect(await alive(sleeper.pid)).to.equal(true)
    // Still the same processes, not new ones with those pids.
    expect(await procStartTime(lookalike.pid)).to.equal(lookalike.startTime)
    expect(await procStartTime(sleeper.pid)).to.equal(sleeper.startTime)
    await fs.access(layout.pidFile).then(
      () => expect.fail('the stale pid file is still there'),
      () => {},
    )
  })
})
