import {execFile, spawn, type ChildProcess} from 'node:child_process'
import fs from 'node:fs/promises'
import os from 'node:os'
import {promisify} from 'node:util'

import {waitUntil} from './processes.js'

/**
 * A real one-node Slurm cluster on this machine, without systemd (issue #26): Debian's munge,
 * slurmctld and slurmd (.ci/run installs them). munged runs as munge with /run/munge made for it;
 * slurmctld and slurmd are started directly, as root, with their state, pid files and logs under
 * STATE_DIR. The cluster's config is the machine's /etc/slurm/slurm.conf (where sinfo, sbatch and
 * the hub's spawner look), written here: one node (this host, at 127.0.0.1) in one partition.
 *
 * Only one cluster can run on a machine (the config and the daemons' ports are the machine's):
 * startSlurmCluster() holds /tmp/hubctl-slurm.lock (flock) until stop(), and a test process that
 * dies releases it (the lock's holder exits when its stdin closes). A test file's after() calls
 * stopSlurmCluster(), which ends every path: a start still waiting for the lock (a before() that
 * timed out while another file held it: its `flock -w 900` would keep mocha alive for 15 minutes),
 * a start under way, a cluster that runs. The holders are also ended when the process exits.
 */

const run = promisify(execFile)
export const LOCK = '/tmp/hubctl-slurm.lock'
export const STATE_DIR = '/var/lib/hubctl-slurm'
export const SLURM_CONF = '/etc/slurm/slurm.conf'
export const PARTITION = 'hubtest'
/** The node's memory as Slurm is told it, at most what `slurmd -C` reports. */
export const MAX_MEMORY_MB = 4096

export interface SlurmCluster {
  partition: string
  node: string
  memoryMb: number
  cpus: number
  stop(): Promise<void>
}

/** Whether the programs of a cluster are installed. */
export async function slurmInstalled(): Promise<boolean> {
  for (const program of [
    '/usr/sbin/slurmctld',
    '/usr/sbin/slurmd',
    '/usr/bin/sbatch',
    '/usr/sbin/munged',
    '/usr/bin/sudo',
  ]) {
    try {
      await fs.access(program)
    } catch {
      return false
    }
  }
  return true
}

/** The lock holders (flock processes) this process started and that have not exited. */
const holders = new Set<ChildProcess>()
/** Those of them still waiting for the lock. */
const waiting = new Set<ChildProcess>()
let exitHook = false

/** Ends a holder at once: its stdin closed (its `cat` ends, and the lock with it) and flock killed. */
function endHolder(holder: ChildProcess): void {
  holder.stdin?.destroy()
  if (holder.exitCode === null && holder.signalCode === null) holder.kill('SIGKILL')
}

/** Holds the flock on `file` (LOCK; another in the helper's own test) until release(): a `flock FILE cat` whose stdin is ours. */
export async function takeLock(file = LOCK): Promise<{release(): Promise<void>}> {
  if (!exitHook) {
    exitHook = true
    // However the process ends (mocha done, an uncaught error, exit()), no holder outlives it.
    process.once('exit', () => holders.forEach(endHolder))
  }
  const holder: ChildProcess = spawn('flock', ['-w', '900', file, 'sh', '-c', 'echo locked; exec cat >/dev/null'], {
    stdio: ['pipe', 'pipe', 'inherit'],
  })
  holders.add(holder)
  waiting.add(holder)
  const exited = new Promise<void>((resolve) =>
    holder.once('exit', () => {
      holders.delete(holder)
      waiting.delete(holder)
      resolve()
    }),
  )
  try {
    await new Promise<void>((resolve, reject) => {
      let out = ''
      holder.stdout!.on('data', (chunk: Buffer) => {
        out += chunk.toString()
        if (out.includes('locked')) resolve()
      })
      holder.once('exit', (code, signal) =>
        reject(new Error(`flock ${file} exited ${signal ?? code} before taking the lock`)),
      )
      holder.once('error', reject)
    })
  } catch (error) {
    endHolder(holder)
    throw error
  }
  waiting.delete(holder)
  return {
    async release() {
      holder.stdin!.end()
      await exited
    },
  }
}

async function pidFromFile(file: string): Promise<number | undefined> {
  try {
    const pid = Number((await fs.readFile(file, 'utf8')).trim())
    return Number.isInteger(pid) && pid > 0 ? pid : undefined
  } catch {
    return undefined
  }
}

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0)
    return true
  } catch {
    return false
  }
}

/** Ends a daemon named by its pid file (SIGTERM, then SIGKILL), and waits until it is gone. */
async function stopDaemon(pidFile: string): Promise<void> {
  const pid = await pidFromFile(pidFile)
  if (!pid || !alive(pid)) return
  process.kill(pid, 'SIGTERM')
  try {
    await waitUntil(`pid ${pid} (${pidFile}) to exit`, async () => !alive(pid), {withinMs: 20_000})
  } catch {
    if (alive(pid)) process.kill(pid, 'SIGKILL')
    await waitUntil(`pid ${pid} (${pidFile}) to exit on SIGKILL`, async () => !alive(pid), {withinMs: 10_000})
  }
  await fs.rm(pidFile, {force: true})
}

/** The node's memory in MB and CPUs, as slurmd -C reports them. */
async function nodeResources(): Promise<{memoryMb: number; cpus: number}> {
  const {stdout} = await run('slurmd', ['-C'])
  const memory = /RealMemory=(\d+)/.exec(stdout)
  const cpus = /CPUs=(\d+)/.exec(stdout)
  if (!memory || !cpus) throw new Error(`slurmd -C printed no RealMemory or CPUs: ${stdout}`)
  return {memoryMb: Number(memory[1]), cpus: Number(cpus[1])}
}

export function slurmConf(node: string, memoryMb: number, cpus: number): string {
  return `# A one-node test cluster, written by hubctl's tests (test/helpers/slurm.ts).
ClusterName=hubctltest
SlurmctldHost=${node}(127.0.0.1)
SlurmUser=root
AuthType=auth/munge
StateSaveLocation=${STATE_DIR}/ctld
SlurmdSpoolDir=${STATE_DIR}/d
SlurmctldPidFile=${STATE_DIR}/slurmctld.pid
SlurmdPidFile=${STATE_DIR}/slurmd.pid
SlurmctldLogFile=${STATE_DIR}/slurmctld.log
SlurmdLogFile=${STATE_DIR}/slurmd.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
MailProg=/bin/true
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
ReturnToService=2
KillWait=5
MinJobAge=30
NodeName=${node} NodeAddr=127.0.0.1 CPUs=${cpus} RealMemory=${memoryMb} State=UNKNOWN
PartitionName=${PARTITION} Nodes=${node} Default=YES MaxTime=INFINITE State=UP
`
}

async function stopAll(): Promise<void> {
  await stopDaemon(`${STATE_DIR}/slurmd.pid`)
  await stopDaemon(`${STATE_DIR}/slurmctld.pid`)
  await stopDaemon('/run/munge/munged.pid')
}

/**
 * Starts the cluster (stopping first what a killed earlier run left) and waits until the node is
 * idle in sinfo. Its jobs are cancelled and its daemons ended by stop(), which releases the lock.
 */
let starting: Promise<SlurmCluster> | undefined

export function startSlurmCluster(): Promise<SlurmCluster> {
  starting = startCluster()
  return starting
}

/**
 * What a test file's after() calls, whatever before() got to: a start still waiting for the lock
 * gives up (its holder ended), a start under way is let finish, and the cluster it started is
 * stopped (its jobs cancelled, daemons ended, lock released). Any holder left is ended.
 */
export async function stopSlurmCluster(): Promise<void> {
  const start = starting
  starting = undefined
  try {
    waiting.forEach(endHolder)
    const cluster = await start?.catch(() => undefined)
    await cluster?.stop()
  } finally {
    holders.forEach(endHolder)
  }
}

async function startCluster(): Promise<SlurmCluster> {
  const lock = await takeLock()
  try {
    await stopAll()
    const node = os.hostname().split('.')[0]
    const resources = await nodeResources()
    const memoryMb = Math.min(resources.memoryMb, MAX_MEMORY_MB)
    const cpus = resources.cpus
    // Fresh state each time: no job or node state of an earlier run.
    await fs.rm(STATE_DIR, {recursive: true, force: true})
    await fs.mkdir(`${STATE_DIR}/ctld`, {recursive: true, mode: 0o755})
    await fs.mkdir(`${STATE_DIR}/d`, {recursive: true, mode: 0o755})
    await fs.mkdir('/etc/slurm', {recursive: true})
    await fs.writeFile(SLURM_CONF, slurmConf(node, memoryMb, cpus), {mode: 0o644})
    await fs.mkdir('/run/munge', {recursive: true, mode: 0o755})
    await run('chown', ['munge:munge', '/run/munge'])
    await run('runuser', ['-u', 'munge', '--', '/usr/sbin/munged'])
    await run('slurmctld')
    await run('slurmd')
    await waitUntil(
      `the Slurm node ${node} to be idle in partition ${PARTITION}`,
      async () => {
        try {
          const {stdout} = await run('sinfo', ['-h', '-p', PARTITION, '-o', '%a %t'])
          return /^up idle/.test(stdout.trim())
        } catch {
          return false
        }
      },
      {withinMs: 60_000},
    )
    return {
      partition: PARTITION,
      node,
      memoryMb,
      cpus,
      async stop() {
        try {
          await run('scancel', ['--full', '--partition', PARTITION]).catch(() => undefined)
          await stopAll()
        } finally {
          await lock.release()
        }
      },
    }
  } catch (error) {
    await stopAll().catch(() => undefined)
    await lock.release()
    throw error
  }
}

/** The jobs in the queue: id, user, state (long form) and node, from squeue. */
export async function squeue(): Promise<{id: string; user: string; state: string; node: string; name: string}[]> {
  const {stdout} = await run('squeue', ['-h', '-o', '%i|%u|%T|%N|%j'])
  return stdout
    .split('\n')
    .filter((line) => line.trim())
    .map((line) => {
      const [id, user, state, node, name] = line.trim().split('|')
      return {id, user, state, node, name}
    })
}
