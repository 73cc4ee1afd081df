/**
 * Bench row `spawn`: CPU seconds a user server's start costs, on a local-mode hub (`hubctl init
 * --local`, `hubctl start --detach`), the server started through the hub API
 * (POST /hub/api/users/NAME/server). Counted: utime + stime of every process of the server (those
 * whose environment names this hub's API and the user), with cutime + cstime for the children
 * they have reaped (yarn, npm), from the spawn until the server answers `/user/NAME/api` through
 * the proxy, and again 10 s later (jupyter-lsp's search runs once the server answers). CPU time,
 * not wall time: other programs may share the cores.
 *
 * For JupyterLab (the venv's JupyterHub 6.1.1 and JupyterLab 4.6.6), runs alternate between
 * hubctl's config and JupyterLab as pip installs it: LAB_SERVER_ARGS taken out again and the packages
 * hubctl removes (python/unused.txt) put back on the servers' PYTHONPATH (a file in
 * jupyterhub_config.d, then `hubctl restart`), so that the machine's load falls on both alike.
 * Debian's JupyterHub 3.0 (the classic notebook, which gets no such args) is measured once per run.
 */
import fsp from 'node:fs/promises'
import path from 'node:path'

import {LAB_SERVER_ARGS} from '../src/lib/config/hubconfig.js'
import {DEBIAN_JUPYTERHUB, VENV_JUPYTERHUB} from '../test/helpers/cli.js'
import {BenchRow, hubctl, sleep, status, stockSitePackages, until} from './lib.js'
import {LocalHub, stopUserServer, withLocalHub} from './supervision.js'

const USER = 'bench'
const SETTLE_MS = 10_000
const TICKS = 100

interface Sample {
  /** CPU ms until the server answered, and SETTLE_MS later. */
  answered: number
  settled: number
  /** Wall ms from the API call until it answered. */
  wall: number
  /** Processes seen (the server and its children). */
  processes: number
}

/** CPU ms of this hub's server processes for USER: utime + stime + cutime + cstime of each. */
async function serverCpu(hub: LocalHub, seen: Set<number>): Promise<number> {
  let ticks = 0
  for (const name of await fsp.readdir('/proc')) {
    if (!/^\d+$/.test(name)) continue
    const environ = await fsp.readFile(`/proc/${name}/environ`, 'utf8').catch(() => '')
    if (
      !environ.includes(`127.0.0.1:${hub.ports.hub}/hub/api`) ||
      !environ.split('\0').includes(`JUPYTERHUB_USER=${USER}`)
    )
      continue
    const stat = await fsp.readFile(`/proc/${name}/stat`, 'utf8').catch(() => '')
    if (!stat) continue
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ')
    // fields[0] is field 3 (state); utime, stime, cutime, cstime are fields 14-17.
    ticks += Number(fields[11]) + Number(fields[12]) + Number(fields[13]) + Number(fields[14])
    seen.add(Number(name))
  }
  return (ticks * 1000) / TICKS
}

async function measureStart(hub: LocalHub): Promise<Sample> {
  const seen = new Set<number>()
  let last = 0
  const began = process.hrtime.bigint()
  await hub.api.startServer(USER)
  const answers = async () => {
    // Sampled often, so that a process's CPU is counted before it exits (its reaper's cutime then holds it).
    last = Math.max(last, await serverCpu(hub, seen))
    const answer = await status(`http://127.0.0.1:${hub.ports.proxy}/user/${USER}/api`)
    return answer.status === 200 && typeof (JSON.parse(answer.body) as {version?: unknown}).version === 'string'
  }
  if ((await until(answers, 300_000, 50)) === undefined)
    throw new Error(`the server of ${USER} never answered (JupyterHub ${hub.version})`)
  const wall = Number(process.hrtime.bigint() - began) / 1e6
  const answered = Math.max(last, await serverCpu(hub, seen))
  let settled = answered
  const until_ = Date.now() + SETTLE_MS
  while (Date.now() < until_) {
    settled = Math.max(settled, await serverCpu(hub, seen))
    await sleep(100)
  }
  return {answered, settled, wall, processes: seen.size}
}

/** Take LAB_SERVER_ARGS out of c.Spawner.args (JupyterLab's own defaults), or put them back; the hub restarts. */
export async function labDefaults(hub: LocalHub, on: boolean): Promise<void> {
  const file = path.join(hub.layout.hubConfigD, 'zz-bench-lab-defaults.py')
  if (on) {
    await fsp.mkdir(hub.layout.hubConfigD, {recursive: true})
    // A file of jupyterhub_config.d gets a config of its own (merged after): it cannot read the
    // main file's c.Spawner.args, so it sets them whole, as the main file has them without the savings
    // (local mode as root: the servers run as root).
    const args = (process.getuid?.() ?? 0) === 0 ? ['--allow-root'] : []
    // And the packages a plain pip install has, which hubctl removes (python/unused.txt).
    const site = await stockSitePackages()
    await fsp.writeFile(
      file,
      [
        `c.Spawner.args = ${JSON.stringify(args)}  # noqa: F821`,
        `c.Spawner.environment = {"PYTHONPATH": ${JSON.stringify(site)}}  # noqa: F821`,
        '',
      ].join('\n'),
    )
  } else {
    await fsp.rm(file, {force: true})
  }
  // hubctl restart can fail when the standby proxy's routes are being brought in step right then
  // (its API answers 404 to deleting the route of the server just stopped): once more after that tick.
  await hubctl(['restart', '--prefix', hub.layout.prefix]).catch(async (error: Error) => {
    process.stderr.write(`bench: spawn: restart failed, again in 6 s: ${error.message.split('\n')[0]}\n`)
    await sleep(6000)
    await hubctl(['restart', '--prefix', hub.layout.prefix])
  })
  if (
    (await until(
      async () => (await status(`http://127.0.0.1:${hub.ports.proxy}/hub/health`)).status === 200,
      120_000,
      200,
    )) === undefined
  )
    throw new Error('the hub did not come back after restart')
}

function log(label: string, sample: Sample): void {
  process.stderr.write(
    `bench: spawn ${label}: ${(sample.answered / 1000).toFixed(2)} CPU-s until it answered (${(sample.wall / 1000).toFixed(1)} s wall), ${(sample.settled / 1000).toFixed(2)} CPU-s 10 s later, ${sample.processes} processes\n`,
  )
}

export async function spawnRows(runs: number): Promise<BenchRow[]> {
  const rows: BenchRow[] = []
  rows.push(
    ...(await withLocalHub(VENV_JUPYTERHUB, async (hub) => {
      await hubctl(['start', '--detach', '--prefix', hub.layout.prefix])
      const tuned: Sample[] = []
      const defaults: Sample[] = []
      for (let i = 0; i < runs; i++) {
        for (const useDefaults of i % 2 ? [true, false] : [false, true]) {
          await labDefaults(hub, useDefaults)
          const sample = await measureStart(hub)
          await stopUserServer(hub)
          log(`${useDefaults ? 'JupyterLab defaults' : 'hubctl args'} run ${i + 1}`, sample)
          ;(useDefaults ? defaults : tuned).push(sample)
        }
      }
      await hubctl(['stop', '--prefix', hub.layout.prefix])
      const other = (key: keyof Sample) => ({
        name: `as pip installs it: JupyterLab's defaults (${LAB_SERVER_ARGS.length} args taken out), python/unused.txt's packages back`,
        times: defaults.map((s) => s[key]),
      })
      return [
        {
          name: `user server start, CPU ms until it answers (JupyterHub ${hub.version}, JupyterLab, hubctl's args)`,
          hubctl: tuned.map((s) => s.answered),
          other: other('answered'),
        },
        {
          name: `user server start, CPU ms until 10 s after it answers (JupyterHub ${hub.version}, JupyterLab)`,
          hubctl: tuned.map((s) => s.settled),
          other: other('settled'),
        },
        {
          name: `user server start, wall ms until it answers (JupyterHub ${hub.version}, JupyterLab)`,
          hubctl: tuned.map((s) => s.wall),
          other: other('wall'),
        },
      ]
    })),
  )
  rows.push(
    ...(await withLocalHub(DEBIAN_JUPYTERHUB, async (hub) => {
      await hubctl(['start', '--detach', '--prefix', hub.layout.prefix])
      const samples: Sample[] = []
      for (let i = 0; i < runs; i++) {
        const sample = await measureStart(hub)
        await stopUserServer(hub)
        log(`Debian run ${i + 1}`, sample)
        samples.push(sample)
      }
      await hubctl(['stop', '--prefix', hub.layout.prefix])
      return [
        {
          name: `user server start, CPU ms until it answers (JupyterHub ${hub.version}, classic notebook)`,
          hubctl: samples.map((s) => s.answered),
        },
        {
          name: `user server start, CPU ms until 10 s after it answers (JupyterHub ${hub.version}, classic notebook)`,
          hubctl: samples.map((s) => s.settled),
        },
      ]
    })),
  )
  return rows
}
