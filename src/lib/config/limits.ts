import {usageError} from '../errors.js'

/**
 * Per-user limits (init --mem-limit, --cpu-limit, --tasks-limit), each user's server a transient
 * systemd unit of jupyterhub-systemdspawner with MemoryMax, CPUQuota and TasksMax; and where the
 * OOM killer looks first when the machine runs out of memory.
 */
export interface LimitSettings {
  /** MemoryMax of each user's server (its kernels and terminals included), in bytes. */
  memoryBytes?: number
  /** CPUQuota, in cores (1.5: 150% of one core). */
  cpu?: number
  /** TasksMax: processes and threads of each user's server. */
  tasks?: number
}

/**
 * oom_score_adj (-1000..1000): the hub, the proxy, nginx and hubctl's supervisor are the OOM
 * killer's last choice (the service's OOMScoreAdjust, or the supervisor's own value its children
 * inherit without systemd), users' servers and their kernels its first (at start, before exec).
 */
export const OOM_SCORE_ADJ = {hub: -800, server: 500} as const

export const TASKS_LIMIT = {min: 16, max: 1_000_000} as const
/** Under this, a JupyterLab server and one kernel do not start (bench: about 150 MB together). */
export const MIN_MEMORY_BYTES = 256 * 2 ** 20

const UNITS: Record<string, number> = {'': 1, K: 2 ** 10, M: 2 ** 20, G: 2 ** 30, T: 2 ** 40}

/** A size as systemd writes it: 2G, 512M, 1.5G (K, M, G, T: powers of 1024; optional B, i, iB). */
export function parseSize(input: string): number | undefined {
  const match = /^\s*(\d+(?:\.\d+)?)\s*([KMGT]?)(?:i?B)?\s*$/i.exec(input)
  if (!match) return undefined
  const bytes = Math.floor(Number(match[1]) * UNITS[match[2].toUpperCase()])
  return Number.isSafeInteger(bytes) ? bytes : undefined
}

/** 2147483648 → "2G", 1610612736 → "1.5G": what status and doctor show. */
export function formatSize(bytes: number): string {
  for (const unit of ['T', 'G', 'M', 'K']) {
    const value = bytes / UNITS[unit]
    if (value >= 1) return `${Number(value.toFixed(2))}${unit}`
  }
  return `${bytes}`
}

/** --mem-limit: a size from MIN_MEMORY_BYTES to the machine's memory. */
export function parseMemLimit(input: string, machineBytes: number): number {
  const bytes = parseSize(input)
  if (bytes === undefined)
    throw usageError(
      `--mem-limit ${JSON.stringify(input)} is not a size`,
      'give the memory of each user\'s server with a unit, e.g. "2G" or "512M" (K, M, G, T: powers of 1024)',
    )
  if (bytes < MIN_MEMORY_BYTES)
    throw usageError(
      `--mem-limit ${input} is below ${formatSize(MIN_MEMORY_BYTES)}, too little for a server and one kernel`,
      `give at least ${formatSize(MIN_MEMORY_BYTES)}, e.g. "2G"`,
    )
  if (bytes > machineBytes)
    throw usageError(
      `--mem-limit ${input} is more than this machine's memory (${formatSize(machineBytes)})`,
      `give at most ${formatSize(machineBytes)}; several students share it, e.g. "2G" each`,
    )
  return bytes
}

/** --cpu-limit: cores, above 0 and at most the machine's (CPUQuota is per cent of one core). */
export function parseCpuLimit(input: string, cores: number): number {
  const text = input.trim()
  const value = Number(text)
  if (!/^\d+(\.\d{1,2})?$/.test(text) || !(value > 0))
    throw usageError(
      `--cpu-limit ${JSON.stringify(input)} is not a number of cores above 0`,
      'give the cores each user\'s server may use, e.g. "1" or "1.5" (at most two decimals)',
    )
  if (value > cores)
    throw usageError(
      `--cpu-limit ${input} is more than this machine's ${cores} core${cores === 1 ? '' : 's'}`,
      `give at most ${cores}, e.g. "1"`,
    )
  return value
}

/** --tasks-limit: processes and threads, a whole number (a kernel alone runs about 10 threads). */
export function parseTasksLimit(input: string): number {
  const text = input.trim()
  const value = Number(text)
  if (!/^\d{1,7}$/.test(text) || value < TASKS_LIMIT.min || value > TASKS_LIMIT.max)
    throw usageError(
      `--tasks-limit ${JSON.stringify(input)} is not a whole number from ${TASKS_LIMIT.min} to ${TASKS_LIMIT.max}`,
      'give the processes and threads each user\'s server may have, e.g. "512"',
    )
  return value
}

/** The flags' values, checked against the machine; undefined when none was given. */
export function parseLimits(
  flags: {'mem-limit'?: string; 'cpu-limit'?: string; 'tasks-limit'?: string},
  machine: {cores: number; memoryBytes: number},
): LimitSettings | undefined {
  const limits: LimitSettings = {}
  if (flags['mem-limit'] !== undefined) limits.memoryBytes = parseMemLimit(flags['mem-limit'], machine.memoryBytes)
  if (flags['cpu-limit'] !== undefined) limits.cpu = parseCpuLimit(flags['cpu-limit'], machine.cores)
  if (flags['tasks-limit'] !== undefined) limits.tasks = parseTasksLimit(flags['tasks-limit'])
  return Object.keys(limits).length > 0 ? limits : undefined
}

/** "memory 2G, CPU 1.5 cores, 512 tasks per user" */
export function describeLimits(limits: LimitSettings | undefined): string {
  if (!limits) return 'none'
  const parts = [
    limits.memoryBytes !== undefined ? `memory ${formatSize(limits.memoryBytes)}` : undefined,
    limits.cpu !== undefined ? `CPU ${limits.cpu} core${limits.cpu === 1 ? '' : 's'}` : undefined,
    limits.tasks !== undefined ? `${limits.tasks} tasks` : undefined,
  ].filter(Boolean)
  return `${parts.join(', ')} per user's server`
}

/** hubctl.json's "limits": what the flags accept, or the problem (checked by settings.ts). */
export function limitsShapeProblem(value: unknown): string | undefined {
  if (typeof value !== 'object' || value === null || Array.isArray(value)) return 'is not an object'
  const {memoryBytes, cpu, tasks} = value as Record<string, unknown>
  if (memoryBytes !== undefined && !(Number.isSafeInteger(memoryBytes) && (memoryBytes as number) >= MIN_MEMORY_BYTES))
    return `has a memoryBytes that is not a whole number of bytes from ${MIN_MEMORY_BYTES}`
  if (cpu !== undefined && !(typeof cpu === 'number' && cpu > 0 && cpu <= 4096))
    return 'has a cpu that is not cores above 0'
  if (
    tasks !== undefined &&
    !(Number.isInteger(tasks) && (tasks as number) >= TASKS_LIMIT.min && (tasks as number) <= TASKS_LIMIT.max)
  )
    return `has a tasks that is not a whole number from ${TASKS_LIMIT.min} to ${TASKS_LIMIT.max}`
  return undefined
}

/**
 * Where the limits can be had: each user's server a transient unit of systemd, so systemd must be
 * PID 1 (sd_booted: /run/systemd/system), and each server must be its user's own (--spawner local,
 * root). Refused before anything is written, naming the fix.
 */
export function assertLimitsPossible(
  limits: LimitSettings | undefined,
  context: {systemdBooted: boolean; spawner?: 'local' | 'simple' | 'slurm'; local: boolean},
): void {
  if (!limits) return
  const flags = ['--mem-limit', '--cpu-limit', '--tasks-limit'].join(', ')
  if (context.spawner === 'slurm')
    throw usageError(
      `${flags} set the limits of user servers on this machine, and --spawner slurm runs them as jobs on the cluster`,
      'give the job its limits with --slurm-memory and --slurm-cpus (Slurm enforces them on the node), and drop the limit flags',
    )
  if (!context.systemdBooted)
    throw usageError(
      `${flags} need systemd as PID 1 (each user's server becomes a systemd unit with its limits), and this machine does not run systemd`,
      "drop the limit flags (the hub runs as before, without per-user limits; its own processes are still the OOM killer's last choice), or set up the hub on a machine booted with systemd",
    )
  if (context.local || context.spawner === 'simple')
    throw usageError(
      `${flags} need each user's server to run as that user (--spawner local, as root), not as the hub's user`,
      'drop --local and --spawner simple and run init as root, or drop the limit flags',
    )
}
