import fs from 'node:fs/promises'
import os from 'node:os'
import path from 'node:path'

import {batchspawnerWrapper, checkHubConnectIp, type SlurmSettings} from '../config/slurm.js'
import {messageOf, preflightError, usageError} from '../errors.js'
import {type Runner, which} from '../runner.js'
import type {SlurmRequest} from './init-request.js'

/**
 * --spawner slurm against the cluster this machine submits to (issue #26): Slurm's programs are
 * here, sinfo answers, the partition exists, the memory and CPUs asked for fit one of its nodes, the
 * hub's address for the jobs is a private one of this machine, and the programs the jobs run are
 * reachable by every user. Run by init's preflight (before anything is written) and by doctor.
 */

/** The programs the hub runs (sbatch, squeue, scancel as the user through sudo) and init asks (sinfo). */
export const SLURM_PROGRAMS = ['sinfo', 'sbatch', 'squeue', 'scancel', 'sudo'] as const

export interface SlurmNode {
  name: string
  memoryMb: number
  cpus: number
  state: string
}

export interface SlurmPartition {
  name: string
  /** up, down, drain, inact (sinfo's %a). */
  avail: string
  nodes: SlurmNode[]
}

/** Slurm's programs that are missing from PATH. */
export async function missingSlurmPrograms(): Promise<string[]> {
  const missing: string[] = []
  for (const program of SLURM_PROGRAMS) if (!(await which(program))) missing.push(program)
  return missing
}

/** The partitions sinfo lists, each with its nodes; a HubctlError (3) when sinfo does not answer. */
export async function slurmPartitions(runner: Runner): Promise<SlurmPartition[]> {
  const result = await runner.run('sinfo', ['--noheader', '--Node', '--format=%R|%a|%N|%m|%c|%t'], {
    cwd: '/',
    timeoutMs: 30_000,
  })
  if (result.exitCode !== 0)
    throw preflightError(
      `sinfo failed (exit ${result.exitCode}): ${(result.stderr || result.stdout).trim().split('\n').pop() ?? ''}`,
      "make this machine a submit host of the cluster: the cluster's slurm.conf in /etc/slurm, its munge key with munged running (`munge -n | unmunge` answers), and slurmctld reachable",
    )
  const partitions = new Map<string, SlurmPartition>()
  for (const line of result.stdout.split('\n')) {
    const [rawName, avail, node, memory, cpus, state] = line.trim().split('|')
    if (!rawName || node === undefined) continue
    // sinfo marks the default partition with a * (in %P; %R has none, but be safe).
    const name = rawName.replace(/\*$/, '')
    const partition = partitions.get(name) ?? {name, avail, nodes: []}
    partition.nodes.push({
      name: node,
      memoryMb: Number.parseInt(memory, 10) || 0,
      cpus: Number.parseInt(cpus, 10) || 0,
      state,
    })
    partitions.set(name, partition)
  }
  return [...partitions.values()]
}

/** The partition a request names, and whether one of its nodes has the memory and CPUs asked for. */
export function checkPartition(
  partitions: SlurmPartition[],
  request: Pick<SlurmRequest, 'partition' | 'memory' | 'memoryMb' | 'cpus'>,
): {partition: SlurmPartition; warnings: string[]} {
  const partition = partitions.find((p) => p.name === request.partition)
  if (!partition)
    throw usageError(
      `the Slurm partition ${request.partition} does not exist (sinfo lists ${partitions.map((p) => p.name).join(', ') || 'none'})`,
      `give --slurm-partition one of ${partitions.map((p) => p.name).join(', ') || 'the partitions of your cluster (none is configured yet)'}`,
    )
  const largest = Math.max(0, ...partition.nodes.map((n) => n.memoryMb))
  if (request.memoryMb > largest)
    throw usageError(
      `--slurm-memory ${request.memory} is more than any node of partition ${partition.name} has (the largest has ${largest} MB): such a job would never start`,
      `give at most ${largest}M, or another partition with larger nodes`,
    )
  const most = Math.max(0, ...partition.nodes.map((n) => n.cpus))
  if (request.cpus > most)
    throw usageError(
      `--slurm-cpus ${request.cpus} is more than any node of partition ${partition.name} has (at most ${most})`,
      `give at most ${most}, or another partition`,
    )
  assertOneNodeFits(partition, request)
  const warnings =
    partition.avail === 'up'
      ? []
      : [
          `the Slurm partition ${partition.name} is ${partition.avail}: servers wait in the queue until it is up (scontrol update PartitionName=${partition.name} State=UP)`,
        ]
  warnings.push(...unusableNodes(partition))
  return {partition, warnings}
}

/** Memory and CPUs asked for must fit the same node, not the largest memory of one and the CPUs of another. */
function assertOneNodeFits(
  partition: SlurmPartition,
  request: Pick<SlurmRequest, 'memory' | 'memoryMb' | 'cpus'>,
): void {
  if (partition.nodes.some((n) => n.memoryMb >= request.memoryMb && n.cpus >= request.cpus)) return
  throw usageError(
    `--slurm-memory ${request.memory} with --slurm-cpus ${request.cpus}: no single node of partition ${partition.name} has both (${partition.nodes.map((n) => `${n.name}: ${n.memoryMb} MB, ${n.cpus} CPUs`).join('; ')})`,
    'ask for less memory or fewer CPUs, so that one node has both',
  )
}

/** A warning when no node of the partition takes jobs (down, drained, failed, or not responding: sinfo's %t). */
function unusableNodes(partition: SlurmPartition): string[] {
  const usable = partition.nodes.filter((n) => !/^(down|drain|drng|fail|inval|unk|boot_fail)|\*$/.test(n.state))
  if (usable.length > 0 || partition.nodes.length === 0) return []
  return [
    `no node of the Slurm partition ${partition.name} takes jobs (${partition.nodes.map((n) => `${n.name} ${n.state}`).join(', ')}): servers wait in the queue until one is back (sinfo -R says why; scontrol update NodeName=NODE State=RESUME)`,
  ]
}

/** Every address of this machine's interfaces. */
export function machineAddresses(): string[] {
  return Object.values(os.networkInterfaces())
    .flat()
    .filter((entry) => entry !== undefined)
    .map((entry) => entry.address)
}

/**
 * Whether every user can reach and run `file`: each directory above it searchable by others, the
 * file readable and executable by them (a Python under root's home is not). The problem, else undefined.
 */
export async function unreachableByUsers(file: string): Promise<string | undefined> {
  try {
    const stat = await fs.stat(file)
    if ((stat.mode & 0o005) !== 0o005)
      return `${file} is mode ${(stat.mode & 0o777).toString(8)}, not readable and executable by others`
    for (let dir = path.dirname(file); ; dir = path.dirname(dir)) {
      const d = await fs.stat(dir)
      if ((d.mode & 0o001) === 0)
        return `the directory ${dir} (mode ${(d.mode & 0o777).toString(8)}) is closed to other users`
      if (dir === '/') break
    }
  } catch (error) {
    return `${file} cannot be checked: ${messageOf(error)}`
  }
  return undefined
}

/**
 * init's preflight for --spawner slurm: everything about the cluster that can be refused, before
 * anything is written. Returns what hubctl.json keeps and the warnings.
 */
export async function checkSlurmRequest(
  runner: Runner,
  request: SlurmRequest,
  executables: {singleuser: string; python: string},
  options: {addresses?: string[]; toBeInstalled?: boolean} = {},
): Promise<{settings: SlurmSettings; warnings: string[]}> {
  const missing = await missingSlurmPrograms()
  if (missing.length > 0)
    throw preflightError(
      `--spawner slurm: ${missing.join(', ')} not found: Slurm's client is not installed on this machine`,
      "install Slurm's client and sudo (apt-get install slurm-client sudo) and make this machine a submit host of the cluster (its slurm.conf and munge key), then run init again",
    )
  const partitions = await slurmPartitions(runner)
  const {warnings} = checkPartition(partitions, request)
  const connect = checkHubConnectIp(request.hubConnectIp ?? '127.0.0.1', options.addresses ?? machineAddresses())
  warnings.push(...connect.warnings)
  if (!options.toBeInstalled) {
    const wrapper = batchspawnerWrapper(executables.singleuser)
    for (const file of [executables.singleuser, wrapper]) {
      const problem = await unreachableByUsers(file)
      if (problem)
        throw preflightError(
          `--spawner slurm: each job runs ${file} as its user, and ${problem}`,
          `install JupyterHub where every user can run it (hubctl's own environment under /opt/jupyterhub: run init without --jupyterhub), with batchspawner (pip install batchspawner==1.3.0 beside it)`,
        )
    }
    const imports = await runner.run(executables.python, ['-c', 'import batchspawner'], {cwd: '/', timeoutMs: 60_000})
    if (imports.exitCode !== 0)
      throw preflightError(
        `--spawner slurm needs batchspawner in ${executables.python}'s environment, and it cannot import it`,
        `install it there (${path.dirname(executables.python)}/pip install batchspawner==1.3.0), or run init without --jupyterhub (hubctl's environment has it)`,
      )
  }
  return {
    settings: {
      partition: request.partition,
      memory: request.memory,
      cpus: request.cpus,
      runtime: request.runtime,
      ...(request.gpus ? {gpus: request.gpus} : {}),
      extra: request.extra,
      hubConnectIp: connect.hubConnectIp,
      connectAddress: connect.connectAddress,
    },
    warnings,
  }
}
