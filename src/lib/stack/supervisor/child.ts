import {ChildProcess} from 'node:child_process'
import fs from 'node:fs/promises'

import {errnoCode, messageOf, runtimeError} from '../../errors.js'
import {procStartTime} from '../../processes.js'
import {ChildSpec, ChildState, SpawnFn, label, round, signalPid} from '../state.js'
import type {SupervisorContext} from './context.js'
import {NO_RESTARTS, RestartHistory, crashLoopOver, nextRestart, started} from './policy.js'

/*
 * One supervised program (the proxy, the hub, nginx): it is started with its output appended to its
 * log, in a session of its own; when it exits without being asked to, it is started again after the
 * backoff the restart policy (policy.ts) gives; stop() ends it (SIGTERM, then SIGKILL). Its fields
 * are its own: the orchestrator reads them and says what to do through the hooks.
 */

export interface ChildHooks {
  /** A process of this program was started (the hub: end what a hub that is gone left running). */
  started?(pid: number): void
  /** Start it again once its backoff is over (the orchestrator knows how: a seeded proxy, the proxy token first). */
  relaunch(child: SupervisedChild): Promise<void>
  /** A restart of a ready stack is done: what follows it (the proxy's routes, the hub's health). */
  restarted(child: SupervisedChild): Promise<void>
  /** It is in a crash loop before the stack was ever ready: the start fails. */
  failedBeforeReady(child: SupervisedChild, how: string): void
}

/** Spawn `spec` in a session of its own, its output appended to its log. Attach listeners before awaiting anything. */
export async function spawnWithLog(spawnFn: SpawnFn, spec: ChildSpec): Promise<ChildProcess> {
  const handle = await fs.open(spec.logFile, 'a', 0o640)
  try {
    return spawnFn(spec.command, spec.args, {
      cwd: spec.cwd,
      env: spec.env,
      stdio: ['ignore', handle.fd, handle.fd],
      detached: true,
    })
  } finally {
    // Not awaited: spawn() already handed the descriptor over, and a missing executable's
    // 'error' comes on the next tick, before listeners attached after an await would be.
    void handle.close().catch(() => {})
  }
}

export class SupervisedChild {
  private proc?: ChildProcess
  private processId?: number
  private startTime?: string
  private startedAt?: string
  private history: RestartHistory = NO_RESTARTS
  private lastExit: ChildState['lastExit'] = null
  private healthy = false
  /** Set before hubctl itself stops the child: its exit is not a crash. */
  private intentional = false
  private launching?: Promise<void>
  private exited: Promise<void> = Promise.resolve()
  private pendingRestart = false
  /** The backoff of an exit during a restart under way (it exited while being started): restarted after that one. */
  private restartAgainMs?: number

  constructor(
    private spec: ChildSpec,
    private readonly ctx: SupervisorContext,
    private readonly spawnFn: SpawnFn,
    private readonly hooks: ChildHooks,
  ) {}

  get name(): ChildSpec['name'] {
    return this.spec.name
  }

  get logFile(): string {
    return this.spec.logFile
  }

  /** The running process, if any. */
  get process(): ChildProcess | undefined {
    return this.proc
  }

  get pid(): number | undefined {
    return this.processId
  }

  get running(): boolean {
    return this.proc !== undefined
  }

  get restarts(): number {
    return this.history.restarts
  }

  /** A restart is scheduled or under way. */
  get restartPending(): boolean {
    return this.pendingRestart
  }

  /** Whether the hub answered /hub/health since it was started (and the last check said so). */
  get isHealthy(): boolean {
    return this.healthy
  }

  setHealthy(healthy: boolean): void {
    this.healthy = healthy
  }

  /** What later starts (restarts) run: the proxy's command with the token it now has. */
  setSpec(spec: ChildSpec): void {
    this.spec = spec
  }

  /** Its part of state.json. */
  state(): ChildState {
    return {
      pid: this.processId ?? null,
      startTime: this.startTime ?? null,
      running: this.proc !== undefined,
      startedAt: this.startedAt ?? null,
      restarts: this.history.restarts,
      crashLoop: this.history.crashLoop,
      lastExit: this.lastExit,
      ...(this.spec.name === 'hub' ? {healthy: this.healthy} : {}),
      log: this.spec.logFile,
    }
  }

  /**
   * Start it (with `spec` this once, e.g. the proxy seeded with routes). One process at a time: when
   * it runs, or a start is under way, that is the start. A backoff restart that wakes while a control
   * restart awaits (the proxy token) would otherwise start a second hub and lose the first, which then
   * holds the hub's port as "another program" (seen under load in rotate's rollback test).
   */
  async launch(spec: ChildSpec = this.spec): Promise<void> {
    if (this.proc) return
    if (this.launching) return this.launching
    this.launching = this.spawnOnce(spec).finally(() => {
      this.launching = undefined
    })
    return this.launching
  }

  private async spawnOnce(spec: ChildSpec): Promise<void> {
    const {clock} = this.ctx
    const proc = await spawnWithLog(this.spawnFn, spec)
    this.proc = proc
    // From here `proc` guards: once it exits, a restart starts another at once.
    this.launching = undefined
    this.processId = proc.pid
    this.intentional = false
    this.healthy = false
    this.history = started(this.history, clock.now())
    this.startedAt = new Date().toISOString()
    this.exited = new Promise((resolve) => {
      let done = false
      const finish = (code: number | null, signal: NodeJS.Signals | null, error?: Error) => {
        if (done) return
        done = true
        this.onExit(proc, code, signal, error)
        resolve()
      }
      proc.once('exit', (code, signal) => finish(code, signal))
      proc.once('error', (error) => {
        if (proc.pid === undefined || proc.exitCode !== null) finish(null, null, error)
      })
    })
    this.startTime = proc.pid === undefined ? undefined : await procStartTime(proc.pid)
    if (proc.pid !== undefined) this.hooks.started?.(proc.pid)
    if (proc.pid !== undefined)
      this.ctx.log(
        'info',
        'started',
        `${label(spec.name)} started (pid ${proc.pid}); output in ${spec.logFile}`,
        spec.name,
        proc.pid,
      )
    await this.ctx.writeState()
  }

  /** Send `signal` to the running process (nginx: SIGHUP reloads it); false when none runs. */
  signal(signal: NodeJS.Signals): boolean {
    if (!this.proc) return false
    this.proc.kill(signal)
    return true
  }

  /** At a health tick: a crash loop is over once it has run stableMs. True when that changed. */
  settle(): boolean {
    const over = this.proc && crashLoopOver(this.history, this.ctx.clock.now(), this.ctx.timings)
    if (!over) return false
    this.history = over
    this.ctx.log(
      'info',
      'stable',
      `${label(this.spec.name)} has run for ${round(this.ctx.timings.stableMs / 1000)}s: no longer in a crash loop`,
      this.spec.name,
    )
    return true
  }

  /** SIGTERM, then SIGKILL after the timeout; resolves once it exited. */
  async stop(): Promise<void> {
    const proc = this.proc
    if (!proc) return
    const {name} = this.spec
    const {clock, timings, log} = this.ctx
    this.intentional = true
    const pid = proc.pid
    proc.kill('SIGTERM')
    const timeout = new AbortController()
    const exited = this.exited.then(() => true)
    const inTime = await Promise.race([exited, clock.sleep(timings.stopTimeoutMs, timeout.signal).then(() => false)])
    timeout.abort()
    if (!inTime) {
      log(
        'warn',
        'kill',
        `${label(name)} (pid ${pid}) did not stop within ${round(timings.stopTimeoutMs / 1000)}s: SIGKILL`,
        name,
        pid,
      )
      proc.kill('SIGKILL')
      await exited
    }
    log('info', 'stopped', `${label(name)} stopped (pid ${pid})`, name, pid)
  }

  private onExit(proc: ChildProcess, code: number | null, signal: NodeJS.Signals | null, error?: Error): void {
    if (this.proc !== proc) return
    const {ctx} = this
    const {name} = this.spec
    const pid = proc.pid
    this.proc = undefined
    this.processId = undefined
    this.startTime = undefined
    this.healthy = false
    this.lastExit = {
      code,
      signal,
      at: new Date().toISOString(),
      ...(error ? {error: errnoCode(error) ?? error.message} : {}),
    }
    if (this.spec.killGroup && pid !== undefined) signalPid(-pid, 'SIGKILL')
    if (this.intentional || ctx.stopping()) {
      void ctx.writeState()
      return
    }
    const {history, delayMs: delay, ranMs, crashLoopBegins} = nextRestart(this.history, ctx.clock.now(), ctx.timings)
    this.history = history
    const how = error
      ? `could not be started (${errnoCode(error) ?? error.message})`
      : signal
        ? `was killed by ${signal}`
        : `exited with code ${code}`
    ctx.log(
      'warn',
      'exited',
      `${label(name)}${pid ? ` (pid ${pid})` : ''} ${how} after ${round(ranMs / 1000)}s; restart ${history.restarts} in ${round(delay / 1000)}s`,
      name,
      pid,
    )
    if (crashLoopBegins) {
      ctx.log(
        'error',
        'crash-loop',
        `${label(name)} is in a crash loop: ${history.recent.length} restarts within ${round(ctx.timings.crashLoopWindowMs / 1000)}s; see ${this.spec.logFile}`,
        name,
      )
      if (!ctx.ready()) {
        this.hooks.failedBeforeReady(this, how)
        return
      }
    }
    void ctx.writeState()
    void this.restartAfter(delay)
  }

  private async restartAfter(delay: number): Promise<void> {
    const {ctx} = this
    if (this.pendingRestart) {
      this.restartAgainMs = delay
      return
    }
    this.pendingRestart = true
    this.restartAgainMs = undefined
    try {
      await ctx.clock.sleep(delay, ctx.shutdown)
      if (ctx.stopping() || this.proc) return
      await this.hooks.relaunch(this)
    } catch (error) {
      ctx.log(
        'error',
        'restart-failed',
        `restarting ${label(this.spec.name)} failed: ${messageOf(error)}`,
        this.spec.name,
      )
      return
    } finally {
      this.pendingRestart = false
    }
    if (this.restartAgainMs !== undefined) {
      // It exited while this restart started it (a missing executable fails at once): the next one.
      const again = this.restartAgainMs
      this.restartAgainMs = undefined
      if (!ctx.stopping() && !this.proc) void this.restartAfter(again)
      return
    }
    // Before ready, run() waits for the hub itself; the proxy's routes are the hub's job at its start.
    if (!ctx.ready()) return
    await this.hooks.restarted(this)
  }
}

/** The error of a start that failed: `child` kept exiting before the hub became ready. */
export function crashLoopError(child: SupervisedChild, how: string) {
  return runtimeError(
    `${label(child.name)} kept exiting before the hub became ready (${how}); see ${child.logFile}`,
    `read ${child.logFile}, fix the cause, then run \`hubctl start\` again`,
  )
}
