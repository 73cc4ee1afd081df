/**
 * Bench rows for supervision, with both JupyterHubs (Debian's /usr/bin/jupyterhub and the venv's):
 *   start       `hubctl start --detach` until it returns (the hub answers /hub/health through the
 *               proxy), stopped between runs; beside it, JupyterHub alone starting its own proxy
 *               (c.ConfigurableHTTPProxy.should_start = True), until /hub/health answers through it.
 *   proxy-kill  a user server running, kill -9 of the proxy, time until the user's route answers
 *               through the proxy again: under `hubctl start`, and under JupyterHub alone, which
 *               notices its proxy is gone every check_running_interval (default 5 s), restarts it and
 *               restores the routes. Capped (BENCH_PROXY_KILL_CAP_S, default 400 s).
 * Each hub is a local-mode hubctl init (one user, servers as the hub's user); JupyterHub alone loads
 * the very same jupyterhub_config.py, with its own proxy instead of hubctl's.
 */
import {ChildProcess, spawn} from 'node:child_process'
import fs from 'node:fs'
import fsp from 'node:fs/promises'
import path from 'node:path'

import {HubApi} from '../src/lib/stack/hubapi.js'
import {Layout} from '../src/lib/config/layout.js'
import {proxyExecutable} from '../src/lib/stack/proxy.js'
import {DEBIAN_JUPYTERHUB, VENV_JUPYTERHUB, portFlags} from '../test/helpers/cli.js'
import {BenchRow, alive, hubctl, killAll, status, tempDir, timed, until} from './lib.js'

const USER = 'bench'
const JUPYTERHUBS = [DEBIAN_JUPYTERHUB, VENV_JUPYTERHUB]
const CAP_MS = Number(process.env.BENCH_PROXY_KILL_CAP_S ?? 400) * 1000

export interface LocalHub {
  layout: Layout
  ports: Awaited<ReturnType<typeof portFlags>>['ports']
  version: string
  api: HubApi
  jupyterhub: string
  work: string
}

/** Every process that belongs to this hub: its user servers (by the hub API URL in their environment) and anything run from its prefix. */
async function leftovers(hub: LocalHub): Promise<number[]> {
  const pids: number[] = []
  for (const name of await fsp.readdir('/proc')) {
    if (!/^\d+$/.test(name) || Number(name) === process.pid) continue
    const [environ, cmdline] = await Promise.all([
      fsp.readFile(`/proc/${name}/environ`, 'utf8').catch(() => ''),
      fsp.readFile(`/proc/${name}/cmdline`, 'utf8').catch(() => ''),
    ])
    if (
      environ.includes(`127.0.0.1:${hub.ports.hub}/hub/api`) ||
      cmdline.includes(hub.layout.prefix) ||
      cmdline.includes(hub.work)
    )
      pids.push(Number(name))
  }
  return pids
}

export async function withLocalHub<T>(jupyterhub: string, fn: (hub: LocalHub) => Promise<T>): Promise<T> {
  const work = await tempDir('supervision')
  const layout = new Layout(path.join(work, 'hub'))
  const {ports, flags} = await portFlags()
  const hub: LocalHub = {layout, ports, version: '', api: HubApi.forLayout(layout, {ports}), jupyterhub, work}
  try {
    await hubctl([
      'init',
      '--local',
      '--prefix',
      layout.prefix,
      '--yes',
      '--admin',
      USER,
      '--jupyterhub',
      jupyterhub,
      '--no-systemd',
      '--no-schedule',
      ...flags,
    ])
    hub.version = JSON.parse(await fsp.readFile(layout.settings, 'utf8')).jupyterhubVersion
    return await fn(hub)
  } finally {
    await hubctl(['stop', '--prefix', layout.prefix]).catch(() => '')
    killAll(await leftovers(hub))
    await fsp.rm(work, {recursive: true, force: true})
  }
}

const healthy = (hub: LocalHub) => async () =>
  (await status(`http://127.0.0.1:${hub.ports.proxy}/hub/health`)).status === 200

/** The user's server answers through the proxy (its own /api, not the hub's redirect). */
const routeAnswers = (hub: LocalHub) => async () => {
  const answer = await status(`http://127.0.0.1:${hub.ports.proxy}/user/${USER}/api`)
  return answer.status === 200 && typeof (JSON.parse(answer.body) as {version?: unknown}).version === 'string'
}

async function startUserServer(hub: LocalHub): Promise<void> {
  await hub.api.startServer(USER)
  if ((await until(routeAnswers(hub), 180_000, 200)) === undefined)
    throw new Error(`the server of ${USER} never answered through the proxy (JupyterHub ${hub.version})`)
}

export async function stopUserServer(hub: LocalHub): Promise<void> {
  await hub.api.stopServer(USER).catch(() => undefined)
  await until(async () => (await hub.api.userServers(USER)).length === 0, 60_000, 200)
}

/** JupyterHub alone: the same config, but it starts (and watches) its own configurable-http-proxy. */
export class AloneHub {
  private child?: ChildProcess
  readonly dir: string
  readonly pidFile: string

  /**
   * `extra`: config lines after hubctl's (the lecture bench puts JupyterHub's own defaults back);
   * `env`: added to the hub's environment.
   */
  constructor(
    readonly hub: LocalHub,
    readonly options: {extra?: string[]; env?: NodeJS.ProcessEnv} = {},
  ) {
    this.dir = path.join(hub.work, 'alone')
    this.pidFile = path.join(this.dir, 'jupyterhub-proxy.pid')
  }

  async start(): Promise<void> {
    // Nothing of hubctl's stack may still answer on the proxy's port (JupyterHub would use that proxy).
    if (
      (await until(
        async () => (await status(`http://127.0.0.1:${this.hub.ports.proxy}/`)).status === 0,
        30_000,
        100,
      )) === undefined
    ) {
      throw new Error(`port ${this.hub.ports.proxy} still answers after hubctl stop`)
    }
    await fsp.mkdir(this.dir, {recursive: true})
    const config = path.join(this.dir, 'jupyterhub_config.py')
    await fsp.writeFile(
      config,
      [
        `load_subconfig(${JSON.stringify(this.hub.layout.hubConfig)})  # noqa: F821`,
        'c.ConfigurableHTTPProxy.should_start = True',
        `c.ConfigurableHTTPProxy.command = [${JSON.stringify(process.execPath)}, ${JSON.stringify(proxyExecutable())}]`,
        `c.ConfigurableHTTPProxy.pid_file = ${JSON.stringify(this.pidFile)}`,
        ...(this.options.extra ?? []),
        '',
      ].join('\n'),
    )
    const log = fs.openSync(path.join(this.dir, 'jupyterhub.log'), 'a')
    this.child = spawn(this.hub.jupyterhub, ['-f', config], {
      cwd: this.dir,
      stdio: ['ignore', log, log],
      detached: true,
      env: {...process.env, ...this.options.env},
    })
    fs.closeSync(log)
  }

  /** The hub's pid, once started. */
  get pid(): number | undefined {
    return this.child?.pid
  }

  async proxyPid(): Promise<number> {
    return Number((await fsp.readFile(this.pidFile, 'utf8')).trim())
  }

  async stop(): Promise<void> {
    const child = this.child
    if (!child?.pid || child.exitCode !== null || child.signalCode !== null) return
    const exited = new Promise((resolve) => child.once('exit', resolve))
    process.kill(-child.pid, 'SIGTERM')
    const timer = setTimeout(() => {
      try {
        process.kill(-child.pid!, 'SIGKILL')
      } catch {
        /* gone */
      }
    }, 15_000)
    await exited
    clearTimeout(timer)
    const proxy = await this.proxyPid().catch(() => 0)
    if (proxy) killAll([proxy])
  }
}

export async function startRows(runs: number): Promise<BenchRow[]> {
  const rows: BenchRow[] = []
  for (const jupyterhub of JUPYTERHUBS) {
    rows.push(
      await withLocalHub(jupyterhub, async (hub) => {
        const withHubctl: number[] = []
        for (let i = 0; i < runs; i++) {
          withHubctl.push(await timed(() => hubctl(['start', '--detach', '--prefix', hub.layout.prefix])))
          await hubctl(['stop', '--prefix', hub.layout.prefix])
        }
        const alone: number[] = []
        for (let i = 0; i < runs; i++) {
          const jupyterhubAlone = new AloneHub(hub)
          try {
            const began = process.hrtime.bigint()
            await jupyterhubAlone.start()
            if ((await until(healthy(hub), 180_000, 50)) === undefined)
              throw new Error(`JupyterHub ${hub.version} alone never answered /hub/health`)
            alone.push(Number(process.hrtime.bigint() - began) / 1e6)
          } finally {
            await jupyterhubAlone.stop()
          }
        }
        return {
          name: `start --detach to healthy (JupyterHub ${hub.version}, nginx, proxy)`,
          hubctl: withHubctl,
          other: {name: `jupyterhub ${hub.version} alone, own proxy, to /hub/health`, times: alone},
        }
      }),
    )
  }
  return rows
}

/** kill -9 of the proxy, then the time until the user's route answers through a new one (the old pid gone). */
async function killAndTime(hub: LocalHub, pid: number): Promise<number> {
  if (!pid || !alive(pid)) throw new Error(`no proxy process to kill (pid ${pid})`)
  const began = process.hrtime.bigint()
  process.kill(pid, 'SIGKILL')
  const answers = routeAnswers(hub)
  const back = await until(async () => !alive(pid) && (await answers()), CAP_MS, 20)
  return back ?? Number(process.hrtime.bigint() - began) / 1e6
}

export async function proxyKillRows(runs: number): Promise<BenchRow[]> {
  const rows: BenchRow[] = []
  for (const jupyterhub of JUPYTERHUBS) {
    rows.push(
      await withLocalHub(jupyterhub, async (hub) => {
        const withHubctl: number[] = []
        await hubctl(['start', '--detach', '--prefix', hub.layout.prefix])
        await startUserServer(hub)
        for (let i = 0; i < runs; i++) {
          const state = JSON.parse(await hubctl(['status', '--json', '--prefix', hub.layout.prefix])) as {
            proxy: {pid: number | null}
          }
          withHubctl.push(await killAndTime(hub, state.proxy.pid ?? 0))
          // The supervisor has written the new proxy's pid before the next kill.
          await until(
            async () => {
              const next = JSON.parse(await hubctl(['status', '--json', '--prefix', hub.layout.prefix])) as {
                proxy: {pid: number | null; running: boolean}
              }
              return Boolean(next.proxy.running && next.proxy.pid && next.proxy.pid !== state.proxy.pid)
            },
            60_000,
            200,
          )
        }
        await stopUserServer(hub)
        await hubctl(['stop', '--prefix', hub.layout.prefix])

        const alone: number[] = []
        const jupyterhubAlone = new AloneHub(hub)
        try {
          await jupyterhubAlone.start()
          if ((await until(healthy(hub), 180_000, 100)) === undefined)
            throw new Error(`JupyterHub ${hub.version} alone never answered /hub/health`)
          await startUserServer(hub)
          for (let i = 0; i < runs; i++) {
            const pid = await jupyterhubAlone.proxyPid()
            alone.push(await killAndTime(hub, pid))
            await until(async () => (await jupyterhubAlone.proxyPid()) !== pid, 60_000, 200)
          }
          await stopUserServer(hub)
        } finally {
          await jupyterhubAlone.stop()
        }
        const capped = (times: number[]) => times.filter((t) => t >= CAP_MS).length
        const note = (times: number[]) =>
          capped(times) > 0 ? `, ${capped(times)} of ${times.length} runs > cap ${CAP_MS / 1000} s` : ''
        return {
          name: `proxy kill -9 → user route answers again (JupyterHub ${hub.version}${note(withHubctl)})`,
          hubctl: withHubctl,
          other: {
            name: `jupyterhub ${hub.version} alone, own proxy, check_running_interval 5 s${note(alone)}`,
            times: alone,
          },
        }
      }),
    )
  }
  return rows
}
