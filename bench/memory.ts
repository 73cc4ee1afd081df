/**
 * Memory per student: a user's server and one idle kernel, RSS and PSS (/proc/PID/smaps_rollup),
 * on a local-mode hub of the venv's JupyterHub 6.1.1 and JupyterLab 4.6.6 (the kernel: ipykernel_launcher of
 * the same Python, started beside the server), with JupyterLab as
 * hubctl starts it and as pip installs it (spawn.ts's labDefaults: LAB_SERVER_ARGS out, the
 * packages of python/unused.txt back), alternating, MEMORY_RUNS pairs (default 3). What to give
 * --mem-limit: a student's server and kernel before any of their own data.
 *   npm run build && node --import tsx --no-warnings bench/memory.ts
 */
import fsp from 'node:fs/promises'
import {spawn} from 'node:child_process'
import path from 'node:path'

import {VENV_JUPYTERHUB} from '../test/helpers/cli.js'
import {hubctl, sleep, until} from './lib.js'
import {labDefaults} from './spawn.js'
import {LocalHub, stopUserServer, withLocalHub} from './supervision.js'

const USER = 'bench'
const RUNS = Number(process.env.MEMORY_RUNS ?? 3)
const IDLE_MS = 5000

interface Usage {
  rss: number
  pss: number
}
interface Sample {
  server: Usage
  kernel: Usage
}

async function usageOf(pid: number): Promise<Usage> {
  const text = await fsp.readFile(`/proc/${pid}/smaps_rollup`, 'utf8')
  const kb = (field: string) => Number(new RegExp(`^${field}:\\s+(\\d+) kB`, 'm').exec(text)?.[1] ?? NaN) * 1024
  return {rss: kb('Rss'), pss: kb('Pss')}
}

/** The server's pid: the process whose environment names this hub's API and the user. */
async function processes(hub: LocalHub): Promise<{server?: number}> {
  const found: {server?: number} = {}
  for (const name of await fsp.readdir('/proc')) {
    if (!/^\d+$/.test(name)) continue
    const environ = await fsp.readFile(`/proc/${name}/environ`, 'utf8').catch(() => '')
    if (
      !environ.includes(`127.0.0.1:${hub.ports.hub}/hub/api`) ||
      !environ.split('\0').includes(`JUPYTERHUB_USER=${USER}`)
    )
      continue
    const cmdline = await fsp.readFile(`/proc/${name}/cmdline`, 'utf8').catch(() => '')
    if (cmdline.includes('jupyterhub-singleuser')) found.server = Number(name)
  }
  return found
}

async function measure(hub: LocalHub): Promise<Sample> {
  await hub.api.startServer(USER)
  const base = `http://127.0.0.1:${hub.ports.proxy}/user/${USER}/api`
  const up = await until(async () => (await fetch(base).catch(() => undefined))?.status === 200, 180_000, 200)
  if (up === undefined) throw new Error(`the server of ${USER} never answered`)
  // The kernel as the server starts it (ipykernel_launcher -f CONNECTION_FILE of the same Python),
  // started here: this local-mode hub's servers refuse a token's POST /api/kernels (403).
  const python = path.join(path.dirname(hub.jupyterhub), 'python')
  const connection = path.join(hub.work, `kernel-${Date.now()}.json`)
  const kernel = spawn(python, ['-m', 'ipykernel_launcher', '-f', connection], {stdio: 'ignore', cwd: hub.work})
  let server: number | undefined
  await until(async () => Boolean((server = (await processes(hub)).server)), 60_000, 200)
  await until(
    async () =>
      await fsp
        .access(connection)
        .then(() => true)
        .catch(() => false),
    60_000,
    200,
  )
  // Idle: the kernel has started and listens.
  await sleep(IDLE_MS)
  const sample = {server: await usageOf(server!), kernel: await usageOf(kernel.pid!)}
  kernel.kill()
  await stopUserServer(hub)
  return sample
}

const mb = (bytes: number) => `${(bytes / 2 ** 20).toFixed(0)} MB`
const median = (values: number[]) => [...values].sort((a, b) => a - b)[Math.floor(values.length / 2)]

await withLocalHub(VENV_JUPYTERHUB, async (hub) => {
  await hubctl(['start', '--detach', '--prefix', hub.layout.prefix])
  const samples: Record<string, Sample[]> = {hubctl: [], pip: []}
  for (let i = 0; i < RUNS; i++) {
    for (const pip of i % 2 ? [true, false] : [false, true]) {
      await labDefaults(hub, pip)
      const sample = await measure(hub)
      samples[pip ? 'pip' : 'hubctl'].push(sample)
      process.stderr.write(
        `bench: memory ${pip ? 'as pip installs it' : 'as hubctl starts it'} run ${i + 1}: server ${mb(sample.server.rss)} RSS ${mb(sample.server.pss)} PSS, kernel ${mb(sample.kernel.rss)} RSS ${mb(sample.kernel.pss)} PSS\n`,
      )
    }
  }
  console.log(`memory per student (JupyterHub ${hub.version}, one idle kernel), medians of ${RUNS}`)
  console.log('| JupyterLab | server RSS | server PSS | kernel RSS | kernel PSS | server + kernel PSS |')
  console.log('|---|---|---|---|---|---|')
  for (const [label, list] of Object.entries(samples)) {
    const m = (f: (s: Sample) => number) => mb(median(list.map(f)))
    console.log(
      `| ${label === 'pip' ? 'as pip installs it' : 'as hubctl starts it'} | ${m((s) => s.server.rss)} | ${m((s) => s.server.pss)} | ${m((s) => s.kernel.rss)} | ${m((s) => s.kernel.pss)} | ${m((s) => s.server.pss + s.kernel.pss)} |`,
    )
  }
})
