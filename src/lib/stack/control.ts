import {ChildProcess, spawn as nodeSpawn} from 'node:child_process'
import fs from 'node:fs/promises'
import path from 'node:path'

import {ensureLogFile, readIfExists, writeFileAtomic} from '../files/atomic.js'
import {ExitCode, ExitCodeValue, HubctlError, messageOf, runtimeError} from '../errors.js'
import {HubApi, FetchLike, checkHealth, fallbackWarning, hubHealthUrl} from './hubapi.js'
import {Layout} from '../config/layout.js'
import {CullingSummary, cullingSummary} from '../config/culler.js'
import type {LimitSettings} from '../config/limits.js'
import {portOwnedBy, recordedChild} from './listeners.js'
import {processAlive} from '../processes.js'
import {execaRunner} from '../runner.js'
import {ServerWatchSummary, StatusServer, serversForStatus} from './servers.js'
import {serverJobs} from './slurmjobs.js'
import {Settings} from '../config/settings.js'
import {Clock, systemClock} from './clock.js'
import {takePrewarmed} from './prewarm.js'
import {
  ChildName,
  ControlAction,
  ControlRequest,
  ControlResult,
  DEFAULT_TIMINGS,
  SHUTDOWN_ORDER,
  SpawnFn,
  alreadyRunning,
  label,
  readState,
  round,
  runningSupervisor,
  terminatePid,
} from './state.js'

/*
 * The entry points other hubctl commands use: start --detach, stop, restart, status, and control
 * requests to the running supervisor.
 */
// ---------------------------------------------------------------------------------------------
// Control: what `start --detach`, `stop`, `restart` and `status` do from another process

export interface DetachResult {
  pid: number
  readySeconds: number | null
  log: string
}

/** What the parent of a background `hubctl start` writes on its stdin once its checks passed. */
const GO = 'go\n'

/**
 * In the background `hubctl start`: wait for the parent's word on stdin. True once it says go;
 * false when stdin ends without it (the parent's checks failed, or the parent is gone): then
 * nothing may be started.
 */
export function parentSaysGo(stdin: NodeJS.ReadableStream & {destroy?: () => void}): Promise<boolean> {
  return new Promise((resolve) => {
    let text = ''
    const done = (go: boolean) => {
      stdin.removeListener('data', onData)
      stdin.removeListener('end', onEnd)
      stdin.removeListener('error', onEnd)
      stdin.destroy?.()
      resolve(go)
    }
    const onData = (chunk: Buffer | string) => {
      text += chunk.toString()
      if (text.includes(GO)) done(true)
    }
    const onEnd = () => done(false)
    stdin.on('data', onData)
    stdin.once('end', onEnd)
    stdin.once('error', onEnd)
  })
}

/**
 * Run `hubctl start` in the background (its own session, output to the supervisor log) and wait
 * until it says ready; stops it and throws when it fails or takes too long.
 *
 * `checks` (the checks before a start) run here while the background hubctl loads, which waits
 * for them on its stdin (`parentSaysGo`) before it starts anything: when they fail it is told to
 * leave, and exits having changed nothing.
 */
export async function startDetached(
  layout: Layout,
  options: {
    bin: string
    args?: string[]
    checks?: () => Promise<void>
    spawn?: SpawnFn
    clock?: Clock
    timeoutMs?: number
    env?: NodeJS.ProcessEnv
  },
): Promise<DetachResult> {
  const clock = options.clock ?? systemClock
  const other = await runningSupervisor(layout)
  if (other) throw alreadyRunning(layout, other.pid)
  const logFile = layout.supervisorLog
  // Started by bin/run.js already (prewarm.ts), for this prefix and these arguments: loaded by now.
  const early = options.checks ? takePrewarmed(layout.prefix, options.args ?? []) : undefined
  // 0640 or tighter, the existing log a prewarmed child writes to as well.
  await fs.mkdir(path.dirname(logFile), {recursive: true, mode: 0o755})
  await ensureLogFile(logFile)
  let proc: ChildProcess
  let logStart: number
  if (early) {
    proc = early.proc
    logStart = early.logStart
  } else {
    const handle = await fs.open(logFile, 'a', 0o640)
    logStart = (await handle.stat()).size
    try {
      proc = (options.spawn ?? nodeSpawn)(
        process.execPath,
        [options.bin, 'start', '--prefix', layout.prefix, ...(options.args ?? [])],
        {
          detached: true,
          stdio: [options.checks ? 'pipe' : 'ignore', handle.fd, handle.fd],
          env: options.env ?? process.env,
          cwd: '/',
        },
      )
    } finally {
      // Not awaited: the listeners below must be attached before a spawn error's next tick.
      void handle.close().catch(() => {})
    }
  }
  let exit: {code: number | null; signal: string | null} | undefined
  // A prewarmed child may have ended already.
  if (proc.exitCode !== null || proc.signalCode !== null) exit = {code: proc.exitCode, signal: proc.signalCode}
  proc.once('exit', (code, signal) => {
    exit = {code, signal}
  })
  proc.once('error', () => {
    exit ??= {code: 127, signal: null}
  })
  proc.unref()
  const pid = proc.pid
  if (options.checks) {
    const stdin = proc.stdin
    // A child gone before it read its word: its exit says why, below.
    stdin?.on('error', () => {})
    try {
      // Begun by bin/run.js beside oclif's loading, for this prefix (the same checks): else here.
      await (early?.checked ?? options.checks())
    } catch (error) {
      // Told to leave (stdin ends without the word), it exits at once; one that does not is stopped.
      stdin?.end()
      const waited = new AbortController()
      const left = new Promise<boolean>((resolve) =>
        exit || !pid ? resolve(true) : proc.once('exit', () => resolve(true)),
      )
      const gone = await Promise.race([left, clock.sleep(10_000, waited.signal).then(() => false)])
      waited.abort()
      if (!gone && pid !== undefined) await terminatePid(pid, null, {clock})
      throw error
    }
    stdin?.end(GO)
  }
  const deadline = clock.now() + (options.timeoutMs ?? DEFAULT_TIMINGS.healthTimeoutMs + 30_000)
  while (clock.now() < deadline) {
    if (exit) {
      const tail = await logTail(logFile, logStart)
      const known = (Object.values(ExitCode) as number[]).includes(exit.code ?? -1) && exit.code !== 0
      // The background hubctl's own error line is "problem. Fix: fix": keep its fix.
      const [problem, fix] = tail.split('. Fix: ')
      throw new HubctlError(
        `hubctl start exited (${exit.signal ?? `code ${exit.code}`}) before the hub was ready${problem ? `: ${problem}` : ''}`,
        {
          exitCode: known ? (exit.code as ExitCodeValue) : ExitCode.RUNTIME,
          fix: fix ?? `read ${logFile} and ${layout.hubLog}, fix the cause, then run \`hubctl start\` again`,
        },
      )
    }
    const state = await readState(layout)
    if (pid !== undefined && state?.supervisor.pid === pid && state.supervisor.ready) {
      return {pid, readySeconds: state.supervisor.readySeconds, log: logFile}
    }
    await clock.sleep(DEFAULT_TIMINGS.pollMs)
  }
  if (pid !== undefined) await terminatePid(pid, null, {clock})
  throw runtimeError(
    'the hub did not become ready in time; hubctl stopped it again',
    `read ${logFile} and ${layout.hubLog}`,
  )
}

async function logTail(file: string, from: number): Promise<string> {
  const text = (await readIfExists(file)) ?? ''
  const lines = text
    .slice(from)
    .trim()
    .split('\n')
    .filter((line) => /error|fail|hubctl:/i.test(line))
  return (lines.at(-1) ?? '')
    .replace(/^\S+\s+hubctl\[\d+\]\s+\w+:\s*/, '')
    .replace(/^hubctl:\s*/, '')
    .slice(0, 400)
}

export interface StopResult {
  /** The supervisor that was stopped, if one ran. */
  supervisor: {pid: number; result: 'exited' | 'killed' | 'gone'} | null
  servers: Array<{user: string; name: string; result: 'stopped' | 'pending' | 'failed'; error?: string}>
  /** Children stopped directly because no supervisor was left to stop them. */
  leftovers: Array<{name: ChildName; pid: number; result: 'exited' | 'killed' | 'gone'}>
  warnings: string[]
  wasRunning: boolean
}

/**
 * `hubctl stop`: the user servers through the hub API (DELETE /hub/api/users/NAME/server), then
 * the supervisor (SIGTERM: hub, proxy, nginx), then anything a dead supervisor left behind.
 */
export async function stopStack(
  layout: Layout,
  settings: Settings,
  options: {
    api?: HubApi
    clock?: Clock
    fetch?: FetchLike
    keepServers?: boolean
    timeoutMs?: number
    log?: (line: string) => void
  } = {},
): Promise<StopResult> {
  const clock = options.clock ?? systemClock
  const log = options.log ?? (() => {})
  const timeoutMs = options.timeoutMs ?? 60_000
  const result: StopResult = {supervisor: null, servers: [], leftovers: [], warnings: [], wasRunning: false}
  const supervisor = await runningSupervisor(layout)
  const hubUp = await recordedHubAnswers(layout, settings, options.fetch)
  result.wasRunning = supervisor !== undefined || hubUp
  if (!options.keepServers) {
    if (hubUp) {
      const warned = new Set<string>()
      const api =
        options.api ??
        HubApi.forLayout(layout, settings, {
          fetch: options.fetch,
          onFallback: (request) => {
            if (warned.size === 0) result.warnings.push(fallbackWarning(request))
            warned.add(request)
          },
        })
      result.servers = await stopServers(api, {clock, timeoutMs, log})
      for (const server of result.servers.filter((s) => s.result !== 'stopped')) {
        result.warnings.push(
          `the server of ${server.user}${server.name ? `/${server.name}` : ''} did not stop${server.error ? `: ${server.error}` : ''}`,
        )
      }
    } else if (supervisor) {
      result.warnings.push(
        'the hub does not answer: user servers were not stopped (start the hub and run `hubctl stop` again to stop them)',
      )
    }
  }
  if (supervisor) {
    log(`stopping the supervisor (pid ${supervisor.pid}): hub, proxy${settings.nginxSupervised ? ', nginx' : ''}`)
    const unit = await systemdUnitOf(supervisor.pid, layout)
    if (unit) {
      // Under systemd (Restart=always) a plain SIGTERM would only have it started again.
      log(`systemctl stop ${unit}`)
      const stopped = await execaRunner.run('systemctl', ['stop', unit], {timeoutMs: 60_000})
      if (stopped.exitCode !== 0)
        result.warnings.push(`systemctl stop ${unit} failed: ${stopped.stderr.trim().split('\n').pop()}`)
    }
    const outcome = await terminatePid(supervisor.pid, supervisor.startTime, {
      clock,
      timeoutMs: DEFAULT_TIMINGS.stopTimeoutMs * 3 + 5000,
    })
    result.supervisor = {pid: supervisor.pid, result: outcome}
    if (outcome === 'killed')
      result.warnings.push(`the supervisor (pid ${supervisor.pid}) did not stop in time and was killed`)
  }
  const state = await readState(layout)
  if (state) {
    for (const name of SHUTDOWN_ORDER) {
      const child = state[name]
      if (!child?.pid) continue
      if (!(await processAlive(child.pid, child.startTime))) {
        // Its pid taken by another process since (the start time differs): never signalled.
        if (await processAlive(child.pid)) result.warnings.push(staleWarning(layout.stateFile, child.pid, label(name)))
        continue
      }
      log(`stopping ${label(name)} left behind (pid ${child.pid})`)
      result.leftovers.push({
        name,
        pid: child.pid,
        result: await terminatePid(child.pid, child.startTime, {clock, group: name === 'nginx'}),
      })
      result.wasRunning = true
    }
    const standby = state.standby
    if (standby?.pid && (await processAlive(standby.pid, standby.startTime))) {
      log(`stopping the standby proxy left behind (pid ${standby.pid})`)
      result.leftovers.push({
        name: 'proxy',
        pid: standby.pid,
        result: await terminatePid(standby.pid, standby.startTime, {clock}),
      })
      result.wasRunning = true
    } else if (standby?.pid && (await processAlive(standby.pid))) {
      result.warnings.push(staleWarning(layout.stateFile, standby.pid, 'the standby proxy'))
    }
  }
  const pidText = await readIfExists(layout.pidFile)
  if (pidText !== undefined && !(await runningSupervisor(layout))) {
    const pid = Number(pidText.trim())
    // A live process that is not this hub's supervisor (another start time or program) has its pid.
    if (!supervisor && Number.isInteger(pid) && pid > 0 && (await processAlive(pid)))
      result.warnings.push(staleWarning(layout.pidFile, pid, "the hub's supervisor"))
    await fs.rm(layout.pidFile, {force: true})
  }
  return result
}

function staleWarning(file: string, pid: number, what: string): string {
  return `${file} names pid ${pid} as ${what}, but pid ${pid} is now another process: the record is stale, and that process was left alone`
}

/** The systemd unit hubctl installed, when `pid` runs inside it (its cgroup names it). */
export async function systemdUnitOf(pid: number, layout: Layout): Promise<string | undefined> {
  if (!layout.isSystem) return undefined
  const unit = path.basename(layout.systemdUnit)
  const cgroup = await readIfExists(`/proc/${pid}/cgroup`).catch(() => undefined)
  return cgroup?.split('\n').some((line) => line.endsWith(`/${unit}`)) ? unit : undefined
}

/** Ask the hub to stop every user server and wait until it says they are gone. */
export async function stopServers(
  api: HubApi,
  options: {clock?: Clock; timeoutMs?: number; log?: (line: string) => void} = {},
): Promise<StopResult['servers']> {
  const clock = options.clock ?? systemClock
  const servers = await api.listServers()
  const results: StopResult['servers'] = []
  await Promise.all(
    servers.map(async (server) => {
      options.log?.(`stopping the server of ${server.user}${server.name ? `/${server.name}` : ''}`)
      try {
        results.push({user: server.user, name: server.name, result: await api.stopServer(server.user, server.name)})
      } catch (error) {
        results.push({user: server.user, name: server.name, result: 'failed', error: messageOf(error)})
      }
    }),
  )
  const deadline = clock.now() + (options.timeoutMs ?? 60_000)
  for (;;) {
    const pending = results.filter((r) => r.result === 'pending')
    if (pending.length === 0) break
    const still = new Set((await api.listServers()).map((s) => `${s.user}/${s.name}`))
    for (const r of pending) if (!still.has(`${r.user}/${r.name}`)) r.result = 'stopped'
    if (clock.now() >= deadline) break
    await clock.sleep(500)
  }
  return results.sort((a, b) => `${a.user}/${a.name}`.localeCompare(`${b.user}/${b.name}`))
}

export interface RestartResult {
  pid: number
  seconds: number
  proxy: {pid: number | null}
  hub: {pid: number | null; healthy: boolean}
}

/** `hubctl restart`: SIGHUP to the running supervisor, then wait until it reports the restart done. */
export async function restartStack(
  layout: Layout,
  options: {clock?: Clock; timeoutMs?: number} = {},
): Promise<RestartResult> {
  const clock = options.clock ?? systemClock
  const supervisor = await runningSupervisor(layout)
  if (!supervisor)
    throw runtimeError(
      `hubctl does not supervise a hub under ${layout.prefix}`,
      'start it with `hubctl start --detach` (or `systemctl start jupyterhub`)',
    )
  const before = await readState(layout)
  if (before && !before.supervisor.ready)
    throw runtimeError(
      'the hub is still starting',
      'wait until `hubctl status` shows it healthy, then run `hubctl restart` again',
    )
  const reloads = before?.reloads ?? 0
  const began = clock.now()
  process.kill(supervisor.pid, 'SIGHUP')
  const deadline = began + (options.timeoutMs ?? DEFAULT_TIMINGS.healthTimeoutMs + DEFAULT_TIMINGS.stopTimeoutMs * 2)
  while (clock.now() < deadline) {
    await clock.sleep(DEFAULT_TIMINGS.pollMs)
    const state = await readState(layout)
    if (state && state.reloads > reloads) {
      if (!state.lastReload?.ok)
        throw runtimeError(
          `the restart failed: ${state.lastReload?.error ?? 'unknown reason'}`,
          `read ${layout.hubLog} and ${layout.proxyLog}`,
        )
      return {
        pid: supervisor.pid,
        seconds: round((clock.now() - began) / 1000),
        proxy: {pid: state.proxy.pid},
        hub: {pid: state.hub.pid, healthy: Boolean(state.hub.healthy)},
      }
    }
    if (!(await processAlive(supervisor.pid, supervisor.startTime)))
      throw runtimeError(
        'the supervisor exited during the restart',
        `read ${layout.supervisorLog}, then run \`hubctl start --detach\``,
      )
  }
  throw runtimeError('the restart did not finish in time', `see \`hubctl status\` and ${layout.hubLog}`)
}

export interface ChildStatus {
  pid: number | null
  running: boolean
  restarts: number
  crashLoop: boolean
  startedAt: string | null
  log: string
}

export interface StatusReport {
  prefix: string
  running: boolean
  supervisor: {pid: number | null; running: boolean; startedAt: string | null; ready: boolean}
  proxy: ChildStatus
  hub: ChildStatus & {healthy: boolean; version?: string}
  nginx?: ChildStatus
  /** Each with the running supervisor's last probe of its route (routeOk). */
  servers: StatusServer[]
  serversError?: string
  /** --spawner slurm: squeue could not be asked (each server's job is then unknown). */
  slurmError?: string
  /** The running supervisor's last check of the servers: when, the cull time, recent culls and clean-ups. */
  serverWatch?: ServerWatchSummary
  /** Who stops idle servers and when (hubctl.json's cull settings). */
  culling: CullingSummary
  /** Each user's server's limits (init --mem-limit, --cpu-limit, --tasks-limit); null: none. */
  limits: LimitSettings | null
  reloads: number
}

/** What runs under the prefix, checked live (pids in /proc, the hub's health, its API); never throws for a stopped stack. */
export async function stackStatus(
  layout: Layout,
  settings: Settings,
  options: {api?: HubApi; fetch?: FetchLike} = {},
): Promise<StatusReport> {
  const state = await readState(layout)
  const supervisor = await runningSupervisor(layout)
  const childStatus = async (name: ChildName, logFile: string): Promise<ChildStatus> => {
    const child = state?.[name]
    const running = child ? await processAlive(child.pid, child.startTime) : false
    return {
      pid: running ? (child?.pid ?? null) : null,
      running,
      restarts: child?.restarts ?? 0,
      crashLoop: Boolean(child?.crashLoop) && running,
      startedAt: running ? (child?.startedAt ?? null) : null,
      log: child?.log ?? logFile,
    }
  }
  const proxy = await childStatus('proxy', layout.proxyLog)
  const hubChild = await childStatus('hub', layout.hubLog)
  // Only the hub hubctl started is asked (never whatever listens on its port when it is stopped).
  const healthy = hubChild.running && (await recordedHubAnswers(layout, settings, options.fetch))
  const report: StatusReport = {
    prefix: layout.prefix,
    running: false,
    supervisor: {
      pid: supervisor?.pid ?? null,
      running: supervisor !== undefined,
      startedAt: supervisor ? (state?.supervisor.startedAt ?? null) : null,
      ready: Boolean(supervisor && state?.supervisor.ready),
    },
    proxy,
    hub: {...hubChild, healthy},
    servers: [],
    culling: cullingSummary(settings),
    limits: settings.limits ?? null,
    reloads: supervisor ? (state?.reloads ?? 0) : 0,
  }
  if (settings.nginxSupervised && !layout.isSystem) report.nginx = await childStatus('nginx', layout.nginxErrorLog)
  report.running = report.supervisor.running || proxy.running || hubChild.running
  if (healthy) {
    try {
      const api = options.api ?? HubApi.forLayout(layout, settings, {fetch: options.fetch, timeoutMs: 5000})
      report.hub.version = await api.version()
      const watched = serversForStatus(await api.listServers(), supervisor ? state?.servers : undefined)
      report.servers = watched.servers
      if (watched.watch) report.serverWatch = watched.watch
      if (settings.spawner === 'slurm') {
        // Each server's Slurm job: matched by user (batchspawner submits a job as its user).
        const {jobs, error} = await serverJobs(execaRunner)
        if (error) report.slurmError = error
        for (const server of report.servers)
          server.slurmJobs = jobs
            .filter((job) => job.user === server.user)
            .map(({id, state, node, reason}) => ({id, state, node, reason}))
      }
    } catch (error) {
      report.serversError = error instanceof HubctlError ? error.line : messageOf(error)
    }
  }
  return report
}

/** The hub recorded in state.json runs, holds the hub's port, and answers /hub/health there. */
async function recordedHubAnswers(layout: Layout, settings: Settings, fetchFn?: FetchLike): Promise<boolean> {
  const hub = await recordedChild(layout, 'hub')
  if (!hub || !(await portOwnedBy(settings.ports.hub, hub.pid)).owned) return false
  return checkHealth(hubHealthUrl(settings), {fetch: fetchFn})
}

/**
 * Ask the running supervisor to do `action` and wait for its answer. Undefined when no supervisor
 * runs (the caller then only changes files); throws when it does not answer in time.
 */
export async function requestControl(
  layout: Layout,
  action: ControlAction,
  options: {clock?: Clock; timeoutMs?: number} = {},
): Promise<ControlResult | undefined> {
  const clock = options.clock ?? systemClock
  const supervisor = await runningSupervisor(layout)
  if (!supervisor) return undefined
  const request: ControlRequest = {
    id: `${process.pid}-${clock.now()}-${Math.random().toString(16).slice(2, 10)}`,
    action,
    at: new Date().toISOString(),
  }
  await writeFileAtomic(layout.controlFile, `${JSON.stringify(request)}\n`, {mode: 0o600})
  process.kill(supervisor.pid, 'SIGUSR2')
  const deadline = clock.now() + (options.timeoutMs ?? 300_000)
  while (clock.now() < deadline) {
    const state = await readState(layout)
    if (state?.lastControl?.id === request.id) return state.lastControl
    if (!(await processAlive(supervisor.pid, supervisor.startTime))) {
      throw runtimeError(
        `the supervisor (pid ${supervisor.pid}) exited before it finished ${action}`,
        `read ${layout.supervisorLog}, then run \`hubctl start\``,
      )
    }
    await clock.sleep(100)
  }
  throw runtimeError(
    `the supervisor (pid ${supervisor.pid}) did not finish ${action} in time`,
    `read ${layout.supervisorLog} and \`hubctl status\``,
  )
}
