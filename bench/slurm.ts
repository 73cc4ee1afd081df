/**
 * Bench (not part of `npm test` nor of `npm run bench`'s rows): seconds from a spawn request
 * (POST /hub/api/users/NAME/server) until the hub has the server ready, with --spawner slurm on
 * the one-node test cluster (test/helpers/slurm.ts) against the local spawner, same machine, same
 * JupyterHub, runs alternating. For Slurm, what the time is made of, from the cluster's own logs
 * (slurmctld's and slurmd's, millisecond timestamps): the hub until the job is submitted (its
 * pre-spawn hook, `sudo -E -u NAME sbatch`), the scheduler until it allocates the node, slurmd until
 * the job's `srun` step (the server) is launched, then the server until the hub has it ready.
 *
 * Run as root: `node --import tsx --no-warnings bench/slurm.ts` (BENCH_RUNS=N, default 3;
 * HUBCTL_TEST_VENV_JUPYTERHUB picks a JupyterHub with batchspawner, default .venv's).
 */
import fs from 'node:fs/promises'
import path from 'node:path'

import {HubApi} from '../src/lib/stack/hubapi.js'
import {Layout} from '../src/lib/config/layout.js'
import {hubctl, initTestHub, tempPrefix, VENV_JUPYTERHUB} from '../test/helpers/cli.js'
import {squeue, startSlurmCluster, STATE_DIR} from '../test/helpers/slurm.js'
import {addUser, removeUser, testUserName} from '../test/helpers/users.js'

const RUNS = Number(process.env.BENCH_RUNS ?? 3)

interface Hub {
  prefix: string
  api: HubApi
  user: string
}

async function makeHub(label: string, user: string, extra: string[]): Promise<Hub> {
  const prefix = await tempPrefix(`hubctl-bench-${label}`)
  const ports = await initTestHub(prefix, {admin: user, allowUsers: [user], jupyterhub: VENV_JUPYTERHUB, extra})
  const started = await hubctl(['start', '--detach', '--prefix', prefix])
  if (started.exitCode !== 0) throw new Error(`start: ${started.stderr}`)
  return {prefix, api: HubApi.forLayout(new Layout(prefix), {ports}, {timeoutMs: 60_000}), user}
}

const median = (values: number[]) => [...values].sort((a, b) => a - b)[Math.floor(values.length / 2)]
const seconds = (ms: number) => (ms / 1000).toFixed(1)

interface Run {
  ready: number
  /** Slurm: ms from the request until the job was submitted, allocated, and its server step launched. */
  submitted?: number
  allocated?: number
  launched?: number
}

/** When a line of a Slurm log matching `pattern` was written (its [YYYY-MM-DDTHH:MM:SS.mmm], local time), in ms. */
async function loggedAt(log: string, pattern: RegExp): Promise<number | undefined> {
  const text = await fs.readFile(path.join(STATE_DIR, log), 'utf8').catch(() => '')
  const line = text.split('\n').find((l) => pattern.test(l))
  const stamp = line && /^\[([\d-]+T[\d:.]+)\]/.exec(line)
  return stamp ? new Date(stamp[1]).getTime() : undefined
}

/** One start: ms until ready, and (Slurm) until its job was submitted, allocated and launched. */
async function measure(hub: Hub, slurm: boolean): Promise<Run> {
  const t0 = Date.now()
  await hub.api.startServer(hub.user)
  for (;;) {
    const server = (await hub.api.userServers(hub.user)).find((s) => s.name === '')
    if (server?.ready) break
    if (Date.now() - t0 > 300_000) throw new Error('no server within 300 s')
    await new Promise((resolve) => setTimeout(resolve, 100))
  }
  const ready = Date.now() - t0
  const job = slurm ? (await squeue()).find((j) => j.user === hub.user)?.id : undefined
  await hub.api.stopServer(hub.user)
  for (;;) {
    const left = (await hub.api.userServers(hub.user)).find((s) => s.name === '')
    const jobs = slurm ? (await squeue()).filter((j) => j.user === hub.user) : []
    if (!left && jobs.length === 0) break
    await new Promise((resolve) => setTimeout(resolve, 200))
  }
  if (!job) return {ready}
  const since = async (log: string, pattern: RegExp) => ((await loggedAt(log, pattern)) ?? Number.NaN) - t0
  return {
    ready,
    submitted: await since('slurmctld.log', new RegExp(`_slurm_rpc_submit_batch_job: JobId=${job} `)),
    allocated: await since('slurmctld.log', new RegExp(`sched: Allocate JobId=${job} `)),
    launched: await since('slurmd.log', new RegExp(`launch task StepId=${job}\\.0 `)),
  }
}

async function main(): Promise<void> {
  const cluster = await startSlurmCluster()
  const user = testUserName()
  const uid = await addUser(user)
  const hubs: Hub[] = []
  try {
    const slurmHub = await makeHub('slurm', user, [
      '--spawner',
      'slurm',
      '--slurm-partition',
      cluster.partition,
      '--slurm-memory',
      '512M',
    ])
    hubs.push(slurmHub)
    const localHub = await makeHub('local', user, [])
    hubs.push(localHub)
    const slurmRuns: Run[] = []
    const localRuns: number[] = []
    for (let i = 0; i < RUNS; i++) {
      slurmRuns.push(await measure(slurmHub, true))
      localRuns.push((await measure(localHub, false)).ready)
    }
    const slurmReady = slurmRuns.map((r) => r.ready)
    const part = (f: (r: Run) => number) => seconds(median(slurmRuns.map(f)))
    console.log(`spawn request to ready, ${RUNS} runs each, median (min-max):`)
    console.log(
      `  slurm: ${seconds(median(slurmReady))} s (${seconds(Math.min(...slurmReady))}-${seconds(Math.max(...slurmReady))})`,
    )
    console.log(`    the hub until sbatch submitted the job: ${part((r) => r.submitted!)} s`)
    console.log(`    the scheduler until it allocated the node: ${part((r) => r.allocated! - r.submitted!)} s`)
    console.log(`    slurmd until the server's srun step launched: ${part((r) => r.launched! - r.allocated!)} s`)
    console.log(`    the server until the hub had it ready: ${part((r) => r.ready - r.launched!)} s`)
    console.log(
      `  local: ${seconds(median(localRuns))} s (${seconds(Math.min(...localRuns))}-${seconds(Math.max(...localRuns))})`,
    )
  } finally {
    for (const hub of hubs) {
      await hubctl(['stop', '--prefix', hub.prefix])
      await fs.rm(hub.prefix, {recursive: true, force: true})
    }
    await removeUser(user, uid)
    await cluster.stop()
  }
}

await main()
