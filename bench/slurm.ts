/**
 * Bench (not part of `npm test` nor of `npm run bench`'s rows): seconds from a spawn request
 * (POST /hub/api/users/NAME/server) until the hub has the server ready, with --spawner slurm on
 * the one-node test cluster (test/helpers/slurm.ts) against the local spawner, same machine, same
 * JupyterHub, runs alternating. For Slurm, what the time is made of: until squeue shows the job
 * RUNNING (submission, the scheduler's pass, slurmd's launch), then until the server answers.
 *
 * Run as root: `node --import tsx --no-warnings bench/slurm.ts` (BENCH_RUNS=N, default 3;
 * HUBCTL_TEST_VENV_JUPYTERHUB picks a JupyterHub with batchspawner, default .venv's).
 */
import fs from 'node:fs/promises'

import {HubApi} from '../src/lib/stack/hubapi.js'
import {Layout} from '../src/lib/config/layout.js'
import {hubctl, initTestHub, tempPrefix, VENV_JUPYTERHUB} from '../test/helpers/cli.js'
import {squeue, startSlurmCluster} from '../test/helpers/slurm.js'
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

/** One start: ms until ready, and (Slurm) until its job was RUNNING. */
async function measure(hub: Hub, slurm: boolean): Promise<{ready: number; running?: number}> {
  const t0 = Date.now()
  await hub.api.startServer(hub.user)
  let running: number | undefined
  for (;;) {
    if (slurm && running === undefined && (await squeue()).some((j) => j.user === hub.user && j.state === 'RUNNING'))
      running = Date.now() - t0
    const server = (await hub.api.userServers(hub.user)).find((s) => s.name === '')
    if (server?.ready) break
    if (Date.now() - t0 > 300_000) throw new Error('no server within 300 s')
    await new Promise((resolve) => setTimeout(resolve, 100))
  }
  const ready = Date.now() - t0
  await hub.api.stopServer(hub.user)
  for (;;) {
    const left = (await hub.api.userServers(hub.user)).find((s) => s.name === '')
    const jobs = slurm ? (await squeue()).filter((j) => j.user === hub.user) : []
    if (!left && jobs.length === 0) break
    await new Promise((resolve) => setTimeout(resolve, 200))
  }
  return {ready, running: running ?? (slurm ? ready : undefined)}
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
    const slurmRuns: Array<{ready: number; running?: number}> = []
    const localRuns: number[] = []
    for (let i = 0; i < RUNS; i++) {
      slurmRuns.push(await measure(slurmHub, true))
      localRuns.push((await measure(localHub, false)).ready)
    }
    const slurmReady = slurmRuns.map((r) => r.ready)
    const toRunning = slurmRuns.map((r) => r.running!)
    const afterRunning = slurmRuns.map((r) => r.ready - r.running!)
    console.log(`spawn request to ready, ${RUNS} runs each, median (min-max):`)
    console.log(
      `  slurm: ${seconds(median(slurmReady))} s (${seconds(Math.min(...slurmReady))}-${seconds(Math.max(...slurmReady))})`,
    )
    console.log(`    until squeue shows the job RUNNING: ${seconds(median(toRunning))} s`)
    console.log(`    then until the server is ready: ${seconds(median(afterRunning))} s`)
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
