import {ChildProcess, SpawnOptions} from 'node:child_process'
import fs from 'node:fs/promises'

import {readIfExists, writeFileAtomic} from '../files/atomic.js'
import {HubctlError, lockedError} from '../errors.js'
import {Layout} from '../config/layout.js'
import {acquireLock} from '../files/lock.js'
import {hasProc, processAlive} from '../processes.js'
import {ServersReport} from './servers.js'
import {Clock, systemClock} from './clock.js'

/*
 * What the supervisor and the commands that talk to it share: the child names, the state file,
 * the pid file, control requests, and how a process is ended.
 */
export const CHILD_NAMES = ['proxy', 'hub', 'nginx'] as const
export type ChildName = (typeof CHILD_NAMES)[number]

/**
 * Shutdown order: the hub first (it may talk to the proxy while it stops), then nginx (so that it
 * never sends a request to a proxy port already given up), then the proxy; the standby last.
 */
export const SHUTDOWN_ORDER: ChildName[] = ['hub', 'nginx', 'proxy']

export type SpawnFn = (command: string, args: readonly string[], options: SpawnOptions) => ChildProcess

export interface SupervisorEvent {
  at: string
  level: 'info' | 'warn' | 'error'
  event: string
  message: string
  child?: ChildName
  pid?: number
}

export type EventLog = (event: SupervisorEvent) => void

/** One supervised program. Secrets travel in `env` only, never in `args`. */
export interface ChildSpec {
  name: ChildName
  command: string
  args: string[]
  env: NodeJS.ProcessEnv
  cwd?: string
  /** Its standard output and error are appended here. */
  logFile: string
  /** Kill what is left of its process group when it exits (nginx workers outliving a killed master). */
  killGroup?: boolean
}

export interface SupervisorTimings {
  /** First restart delay; doubled for each restart in a row. */
  backoffInitialMs: number
  backoffMaxMs: number
  /** A child that ran this long has its backoff reset. */
  stableMs: number
  /** This many unexpected restarts within `crashLoopWindowMs` is a crash loop. */
  crashLoopRestarts: number
  crashLoopWindowMs: number
  /** SIGTERM, then SIGKILL after this long. */
  stopTimeoutMs: number
  /** How long the hub may take to answer /hub/health at start. */
  healthTimeoutMs: number
  healthIntervalMs: number
  pollMs: number
}

export const DEFAULT_TIMINGS: SupervisorTimings = {
  backoffInitialMs: 100,
  backoffMaxMs: 30_000,
  stableMs: 60_000,
  crashLoopRestarts: 5,
  crashLoopWindowMs: 120_000,
  stopTimeoutMs: 10_000,
  healthTimeoutMs: 180_000,
  healthIntervalMs: 5000,
  pollMs: 50,
}

export interface ChildState {
  pid: number | null
  /** The kernel's start time of `pid` (/proc/PID/stat field 22), so that a reused pid is not taken for it. */
  startTime: string | null
  running: boolean
  startedAt: string | null
  /** Unexpected exits that were restarted. */
  restarts: number
  crashLoop: boolean
  lastExit: {code: number | null; signal: string | null; at: string; error?: string} | null
  healthy?: boolean
  log: string
}

export interface SupervisorState {
  version: 1
  prefix: string
  supervisor: {
    pid: number
    startTime: string | null
    startedAt: string
    ready: boolean
    readyAt: string | null
    readySeconds: number | null
    stopping: boolean
    stoppedAt: string | null
  }
  proxy: ChildState
  hub: ChildState
  nginx?: ChildState
  /** Completed `hubctl restart`s (SIGHUP). */
  reloads: number
  lastReload: {at: string; ok: boolean; seconds: number; error?: string} | null
  /** The last time routes were restored after the proxy came back. */
  lastRouteSync: {at: string; ok: boolean; seconds: number} | null
  /** The last check of the user servers (servers.ts): route probes, culls, clean-ups. */
  servers?: ServersReport | null
  /** The last request of another hubctl command (secrets rotate) and how it ended. */
  lastControl?: ControlResult | null
  /** The standby proxy (so that a successor can stop it after a kill -9). */
  standby?: {pid: number; startTime: string | null; restarts?: number} | null
  /**
   * Set by a supervisor that systemd stopped to restart the unit: it left its standby running for
   * the next one to adopt (handover.ts), with the routes in the proxy's seed file.
   */
  handover?: {at: string; standby: {pid: number; startTime: string}; routes: number} | null
  updatedAt: string
}

/**
 * What another hubctl command may ask of the running supervisor (control.json, then SIGUSR2):
 * `proxy-token` replaces the proxy by one started with the token now in its file, without a
 * failed request; `restart-hub` restarts the hub alone (it reads its secrets at start).
 */
export const CONTROL_ACTIONS = ['proxy-token', 'restart-hub'] as const
export type ControlAction = (typeof CONTROL_ACTIONS)[number]

export interface ControlRequest {
  id: string
  action: ControlAction
  at: string
}

export interface ControlResult {
  id: string
  action: ControlAction
  ok: boolean
  at: string
  seconds: number
  error?: string
}

// ---------------------------------------------------------------------------------------------
// Processes

export function signalPid(pid: number, signal: NodeJS.Signals): boolean {
  try {
    process.kill(pid, signal)
    return true
  } catch {
    return false
  }
}

/** SIGTERM, wait, SIGKILL: for processes hubctl did not spawn itself (leftovers, a detached supervisor). */
export async function terminatePid(
  pid: number,
  startTime: string | null | undefined,
  options: {clock?: Clock; timeoutMs?: number; pollMs?: number; group?: boolean} = {},
): Promise<'exited' | 'killed' | 'gone'> {
  const clock = options.clock ?? systemClock
  if (!(await processAlive(pid, startTime))) return 'gone'
  signalPid(pid, 'SIGTERM')
  const deadline = clock.now() + (options.timeoutMs ?? DEFAULT_TIMINGS.stopTimeoutMs)
  while (clock.now() < deadline) {
    if (!(await processAlive(pid, startTime))) {
      if (options.group) signalPid(-pid, 'SIGKILL')
      return 'exited'
    }
    await clock.sleep(options.pollMs ?? DEFAULT_TIMINGS.pollMs)
  }
  signalPid(pid, 'SIGKILL')
  if (options.group) signalPid(-pid, 'SIGKILL')
  while (await processAlive(pid, startTime)) await clock.sleep(options.pollMs ?? DEFAULT_TIMINGS.pollMs)
  return 'killed'
}

// ---------------------------------------------------------------------------------------------
// State and pid file

export async function readState(layout: Layout): Promise<SupervisorState | undefined> {
  const text = await readIfExists(layout.stateFile)
  if (text === undefined) return undefined
  try {
    const state = JSON.parse(text) as SupervisorState
    return state && typeof state === 'object' && state.version === 1 ? state : undefined
  } catch {
    return undefined
  }
}

/** The running supervisor of this prefix, from its pid file (checked against /proc and state.json). */
export async function runningSupervisor(layout: Layout): Promise<{pid: number; startTime: string | null} | undefined> {
  const text = await readIfExists(layout.pidFile)
  const pid = Number(text?.trim())
  if (!Number.isInteger(pid) || pid <= 0) return undefined
  const state = await readState(layout)
  const startTime = state?.supervisor.pid === pid ? state.supervisor.startTime : null
  if (!(await processAlive(pid, startTime))) return undefined
  if (startTime === null && !(await looksLikeHubctl(pid))) return undefined
  return {pid, startTime}
}

async function looksLikeHubctl(pid: number): Promise<boolean> {
  try {
    const cmdline = (await fs.readFile(`/proc/${pid}/cmdline`, 'utf8')).split('\0')
    return cmdline.some((arg) => /hubctl|run\.js/.test(arg)) && cmdline.includes('start')
  } catch {
    return !(await hasProc())
  }
}

/** Write this process's pid to the pid file, refusing when another supervisor runs for the prefix. */
export async function claimPidFile(layout: Layout): Promise<void> {
  const lock = await acquireLock(layout.lockFile, 'hubctl start', {waitMs: 10_000})
  try {
    const other = await runningSupervisor(layout)
    if (other && other.pid !== process.pid) throw alreadyRunning(layout, other.pid)
    await fs.mkdir(layout.runDir, {recursive: true, mode: 0o755})
    await writeFileAtomic(layout.pidFile, `${process.pid}\n`, {mode: 0o644})
  } finally {
    await lock.release()
  }
}

export function alreadyRunning(layout: Layout, pid: number): HubctlError {
  return lockedError(
    `a hubctl supervisor already runs for the hub under ${layout.prefix} (pid ${pid})`,
    'see `hubctl status`; use `hubctl restart` or `hubctl stop` first',
  )
}

export async function releasePidFile(layout: Layout): Promise<void> {
  const text = await readIfExists(layout.pidFile)
  if (Number(text?.trim()) === process.pid) await fs.rm(layout.pidFile, {force: true})
}

export function label(name: ChildName): string {
  return name === 'proxy' ? 'configurable-http-proxy' : name === 'hub' ? 'jupyterhub' : 'nginx'
}

export function round(value: number): number {
  return Math.round(value * 10) / 10
}

// ---------------------------------------------------------------------------------------------
// Requests of other hubctl commands to the running supervisor

export async function readControlRequest(layout: Layout): Promise<ControlRequest | undefined> {
  const text = await readIfExists(layout.controlFile).catch(() => undefined)
  if (text === undefined) return undefined
  try {
    const request = JSON.parse(text) as ControlRequest
    return typeof request.id === 'string' && (CONTROL_ACTIONS as readonly string[]).includes(request.action)
      ? request
      : undefined
  } catch {
    return undefined
  }
}
