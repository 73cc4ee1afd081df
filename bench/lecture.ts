/**
 * Bench row `lecture`: a class logging in at once. LECTURE_USERS students (default 40), each
 * clicking "Sign in" at a random moment within LECTURE_WINDOW seconds (default 20), each doing what
 * Chromium does up to a cell's output (test/helpers/lecture.ts: the login form with _xsrf, the
 * redirects, the spawn progress stream, a kernel, print(6*7) over its websocket with Origin and
 * cookies). Against hubctl's stack (https through nginx; `hubctl init --local`, so the simple
 * spawner and hubctl's generated dummy login, every name let in by a file in jupyterhub_config.d)
 * and then against the same JupyterHub and config alone, with its own proxy, started in its own
 * session. Reported: failures with their causes, p50/p95/max of login → 42, CPU seconds and peak
 * RSS of the hub, the supervisor, the proxy and nginx (master and workers). One run each.
 */
import fsp from 'node:fs/promises'
import path from 'node:path'

import {StudentResult, classNames, lecture} from '../test/helpers/lecture.js'
import {VENV_JUPYTERHUB} from '../test/helpers/cli.js'
import {HubApi, hubApiUrl} from '../src/lib/stack/hubapi.js'
import {SecretStore} from '../src/lib/files/secrets.js'
import {BenchRow, hubctl, status, stockSitePackages, until} from './lib.js'
import {AloneHub, LocalHub, withLocalHub} from './supervision.js'

const USERS = Number(process.env.LECTURE_USERS ?? 40)
const WINDOW_S = Number(process.env.LECTURE_WINDOW ?? 20)
const TICKS = 100
const ALONE = process.env.LECTURE_ALONE ?? 'stock'

/**
 * JupyterHub as an operator gets it without hubctl: its own defaults for what hubctl sets for a
 * class (no queue: concurrent_spawn_limit 100; start_timeout 60 s, http_timeout 30 s; a random port
 * per server; any answer below 500 taken for "up"; JupyterLab's start-up checks on), and the
 * packages pip installs, rfc3987-syntax included (hubctl removes it: python/unused.txt), put back
 * with PYTHONPATH, which the spawner passes on to each server.
 */
async function stockJupyterHub(): Promise<{extra: string[]; env: NodeJS.ProcessEnv}> {
  const site = await stockSitePackages()
  return {
    extra: [
      'import jupyterhub.objects, jupyterhub.utils',
      'jupyterhub.objects.wait_for_http_server = jupyterhub.utils.wait_for_http_server',
      'c.Spawner.pre_spawn_hook = None',
      'c.JupyterHub.concurrent_spawn_limit = 100',
      'c.Spawner.start_timeout = 60',
      'c.Spawner.http_timeout = 30',
      'c.Spawner.args = [a for a in c.Spawner.args if a == "--allow-root"]',
    ],
    env: {PYTHONPATH: site},
  }
}

/** CPU ticks (utime + stime) and peak RSS (VmHWM, kB) of one process; undefined once it is gone. */
async function usage(pid: number): Promise<{ticks: number; hwmKb: number} | undefined> {
  try {
    const [stat, statusText] = await Promise.all([
      fsp.readFile(`/proc/${pid}/stat`, 'utf8'),
      fsp.readFile(`/proc/${pid}/status`, 'utf8'),
    ])
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ')
    return {
      ticks: Number(fields[11]) + Number(fields[12]),
      hwmKb: Number(/^VmHWM:\s+(\d+)/m.exec(statusText)?.[1] ?? 0),
    }
  } catch {
    return undefined
  }
}

/** The children of a process (nginx's workers). */
async function childrenOf(pid: number): Promise<number[]> {
  const found: number[] = []
  for (const name of await fsp.readdir('/proc')) {
    if (!/^\d+$/.test(name)) continue
    const stat = await fsp.readFile(`/proc/${name}/stat`, 'utf8').catch(() => '')
    if (stat && Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[1]) === pid) found.push(Number(name))
  }
  return found
}

/** CPU seconds and peak RSS of named groups of processes over a run: sampled every 500 ms until stop(). */
class Meter {
  private readonly first = new Map<number, number>()
  private readonly last = new Map<number, {group: string; ticks: number; hwmKb: number}>()
  private timer?: NodeJS.Timeout

  constructor(private readonly groups: Record<string, () => Promise<number[]>>) {}

  async start(): Promise<void> {
    await this.sample(true)
    this.timer = setInterval(() => void this.sample(false), 500)
  }

  /** Per group: CPU seconds used during the run, and the sum of its processes' peak RSS in MB. */
  async stop(): Promise<Record<string, {cpuS: number; rssMb: number}>> {
    clearInterval(this.timer)
    await this.sample(false)
    const result: Record<string, {cpuS: number; rssMb: number}> = {}
    for (const name of Object.keys(this.groups)) result[name] = {cpuS: 0, rssMb: 0}
    for (const [pid, last] of this.last) {
      result[last.group].cpuS += (last.ticks - (this.first.get(pid) ?? 0)) / TICKS
      result[last.group].rssMb += last.hwmKb / 1024
    }
    return result
  }

  private async sample(initial: boolean): Promise<void> {
    for (const [group, pids] of Object.entries(this.groups)) {
      for (const pid of await pids()) {
        const now = await usage(pid)
        if (!now) continue
        // A process first seen during the run (a new nginx worker) counts from zero.
        if (!this.first.has(pid)) this.first.set(pid, initial ? now.ticks : 0)
        this.last.set(pid, {group, ...now})
      }
    }
  }
}

function percentile(sorted: number[], p: number): number {
  if (sorted.length === 0) return Number.NaN
  return sorted[Math.min(sorted.length - 1, Math.ceil((p / 100) * sorted.length) - 1)]
}

const secs = (ms: number) => `${(ms / 1000).toFixed(1)} s`

/** One line per run on stderr: failures by cause, the spread, the resources. */
function summary(label: string, results: StudentResult[], resources: Record<string, {cpuS: number; rssMb: number}>) {
  const times = results.flatMap((r) => (r.ms === undefined ? [] : [r.ms])).sort((a, b) => a - b)
  const failed = results.filter((r) => r.failure)
  const causes = new Map<string, number>()
  for (const r of failed) {
    const message = r
      .failure!.message.replace(/hcl[0-9a-f]+-\d+/g, 'USER')
      .replace(/:\d{4,5}\b/g, ':PORT')
      .replace(/\b\d+(\.\d+)? seconds/g, 'N seconds')
    const cause = `${r.failure!.step}: ${message.slice(0, 200)}`
    causes.set(cause, (causes.get(cause) ?? 0) + 1)
  }
  const retries = results.reduce((sum, r) => sum + r.retries, 0)
  const spawnRetries = results.reduce((sum, r) => sum + r.spawnRetries, 0)
  const inLine = results.filter((r) => r.waitedInLine).length
  const spread = `p50 ${secs(percentile(times, 50))}, p95 ${secs(percentile(times, 95))}, max ${secs(times.at(-1) ?? Number.NaN)}`
  const used = Object.entries(resources)
    .map(([name, r]) => `${name} ${r.cpuS.toFixed(1)} CPU-s ${r.rssMb.toFixed(0)} MB`)
    .join(', ')
  process.stderr.write(
    `bench: lecture ${label}: ${failed.length} of ${results.length} failed, ${retries} retries after 429 (${spawnRetries} of them the hub's), ${inLine} waited in line; ${spread}; ${used}\n`,
  )
  for (const [cause, count] of causes) process.stderr.write(`bench:   ${count} x ${cause}\n`)
  return {times, failed: failed.length, spread, used}
}

/** The logs of a run, kept for a look after the bench (the hub's work folder is removed). */
async function keepLogs(hub: LocalHub, label: string, files: string[]): Promise<void> {
  const dir = path.join(path.dirname(hub.work), `hubctl-bench-lecture-logs-${label}`)
  await fsp.rm(dir, {recursive: true, force: true})
  await fsp.mkdir(dir, {recursive: true})
  for (const file of files) await fsp.copyFile(file, path.join(dir, path.basename(file))).catch(() => undefined)
  process.stderr.write(`bench: lecture ${label}: logs kept in ${dir}\n`)
}

async function stopAll(api: HubApi, users: string[]): Promise<void> {
  await Promise.all(users.map((user) => api.stopServer(user).catch(() => undefined)))
  await until(
    async () => (await Promise.all(users.map((u) => api.userServers(u).catch(() => [])))).every((s) => s.length === 0),
    120_000,
    500,
  )
}

async function allowEveryone(hub: LocalHub): Promise<void> {
  await fsp.mkdir(hub.layout.hubConfigD, {recursive: true})
  await fsp.writeFile(
    path.join(hub.layout.hubConfigD, '50-lecture-bench.py'),
    [
      '# bench lecture: every name logs in with the generated password (DummyAuthenticator).',
      'c.JupyterHub.authenticator_class = "dummy"  # noqa: F821',
      `c.DummyAuthenticator.password = open(${JSON.stringify(hub.layout.loginPassword)}).read().strip()  # noqa: F821`,
      'c.Authenticator.allowed_users = set()  # noqa: F821',
      'c.Authenticator.allow_all = True  # noqa: F821',
      '',
    ].join('\n'),
  )
}

export async function lectureRows(): Promise<BenchRow[]> {
  return withLocalHub(VENV_JUPYTERHUB, async (hub: LocalHub) => {
    await allowEveryone(hub)
    const password = (await fsp.readFile(hub.layout.loginPassword, 'utf8')).trim()
    const ca = await fsp.readFile(hub.layout.fullchain, 'utf8')
    const secrets = new SecretStore(hub.layout)
    const api = new HubApi({
      baseUrl: hubApiUrl({ports: hub.ports}),
      token: () => secrets.read('apiToken'),
      verify: async () => {},
    })
    const homes = [] as string[]

    // hubctl's stack.
    await hubctl(['start', '--detach', '--prefix', hub.layout.prefix])
    const state = JSON.parse(await hubctl(['status', '--json', '--prefix', hub.layout.prefix])) as Record<
      'supervisor' | 'proxy' | 'hub' | 'nginx',
      {pid: number | null}
    >
    const one = (pid: number | null) => async () => (pid ? [pid] : [])
    const stack = new Meter({
      hub: one(state.hub.pid),
      supervisor: one(state.supervisor.pid),
      proxy: one(state.proxy.pid),
      nginx: async () => (state.nginx.pid ? [state.nginx.pid, ...(await childrenOf(state.nginx.pid))] : []),
    })
    await stack.start()
    const users = classNames(USERS)
    homes.push(...users)
    const withHubctl = await lecture(users, WINDOW_S * 1000, {
      origin: `https://localhost:${hub.ports.https}`,
      password,
      ca,
    })
    const stackUse = await stack.stop()
    const ours = summary(`hubctl (JupyterHub ${hub.version}, https via nginx)`, withHubctl, stackUse)
    await keepLogs(hub, 'hubctl', [hub.layout.hubLog, hub.layout.proxyLog, hub.layout.supervisorLog])
    await stopAll(api, users)
    await hubctl(['stop', '--prefix', hub.layout.prefix])

    // JupyterHub alone, own proxy, own session: as pip installs it and with its own defaults
    // (LECTURE_ALONE=hubctl-config: with hubctl's config and environment instead).
    const other = new AloneHub(hub, ALONE === 'stock' ? await stockJupyterHub() : {})
    await other.start()
    let theirs: ReturnType<typeof summary>
    try {
      if (
        (await until(
          async () => (await status(`http://127.0.0.1:${hub.ports.proxy}/hub/health`)).status === 200,
          180_000,
          100,
        )) === undefined
      )
        throw new Error('JupyterHub alone never answered /hub/health')
      const hubPid = other.pid ?? 0
      const proxyPid = await other.proxyPid()
      const alone = new Meter({hub: one(hubPid), proxy: one(proxyPid)})
      await alone.start()
      const others = classNames(USERS)
      homes.push(...others)
      const results = await lecture(others, WINDOW_S * 1000, {
        origin: `http://127.0.0.1:${hub.ports.proxy}`,
        password,
      })
      theirs = summary(
        `JupyterHub ${hub.version} alone (own proxy, http, ${ALONE === 'stock' ? 'its own defaults' : "hubctl's config"})`,
        results,
        await alone.stop(),
      )
      await keepLogs(hub, 'alone', [path.join(other.dir, 'jupyterhub.log')])
      await stopAll(api, others)
    } finally {
      await other.stop()
      await Promise.all(homes.map((user) => fsp.rm(`/tmp/${user}`, {recursive: true, force: true})))
    }
    return [
      {
        name: `lecture: ${USERS} users in ${WINDOW_S} s, login → 42 (JupyterHub ${hub.version}, https via nginx); ${ours.failed} failed; ${ours.spread}; ${ours.used}`,
        hubctl: ours.times.length > 0 ? ours.times : [Number.NaN],
        other: {
          name: `jupyterhub alone, own proxy, http, ${ALONE === 'stock' ? 'its own defaults' : "hubctl's config"}; ${theirs.failed} failed; ${theirs.spread}; ${theirs.used}`,
          times: theirs.times.length > 0 ? theirs.times : [Number.NaN],
        },
      },
    ]
  })
}
