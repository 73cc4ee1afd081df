import type {SupervisorTimings} from '../state.js'

/*
 * When a supervised program that exited is started again: the restart policy, pure (no clock, no
 * process, no I/O; the times are parameters), like tls/policy for renewals. Each exit in a row
 * doubles the backoff up to a cap; a run of stableMs or longer starts a new series; crashLoopRestarts
 * exits within crashLoopWindowMs is a crash loop, over once the program has run stableMs.
 */

export type RestartTimings = Pick<
  SupervisorTimings,
  'backoffInitialMs' | 'backoffMaxMs' | 'stableMs' | 'crashLoopRestarts' | 'crashLoopWindowMs'
>

/** What the policy knows of one program's runs and exits (ms since the epoch). */
export interface RestartHistory {
  /** When its latest run began. */
  readonly runningSince: number
  /** Exits in a row, each after a run shorter than stableMs. */
  readonly consecutive: number
  /** Restarts since the supervisor started. */
  readonly restarts: number
  /** When its exits within the crash-loop window happened. */
  readonly recent: readonly number[]
  readonly crashLoop: boolean
}

export const NO_RESTARTS: RestartHistory = {runningSince: 0, consecutive: 0, restarts: 0, recent: [], crashLoop: false}

/** The program was started at `now`. */
export function started(history: RestartHistory, now: number): RestartHistory {
  return {...history, runningSince: now}
}

export interface RestartDecision {
  history: RestartHistory
  /** Start it again after this long. */
  delayMs: number
  /** How long the run that just ended lasted. */
  ranMs: number
  /** This exit makes it a crash loop (it was not in one). */
  crashLoopBegins: boolean
}

/** The program exited at `now`, not asked to: when to start it again, and its history after this exit. */
export function nextRestart(history: RestartHistory, now: number, timings: RestartTimings): RestartDecision {
  const ranMs = now - history.runningSince
  const consecutive = (ranMs >= timings.stableMs ? 0 : history.consecutive) + 1
  const recent = [...history.recent.filter((at) => now - at < timings.crashLoopWindowMs), now]
  const crashLoopBegins = recent.length >= timings.crashLoopRestarts && !history.crashLoop
  return {
    history: {
      runningSince: history.runningSince,
      consecutive,
      restarts: history.restarts + 1,
      recent,
      crashLoop: history.crashLoop || crashLoopBegins,
    },
    delayMs: Math.min(timings.backoffMaxMs, timings.backoffInitialMs * 2 ** (consecutive - 1)),
    ranMs,
    crashLoopBegins,
  }
}

/** A program in a crash loop that has run stableMs by `now` is out of it: its history then; undefined when nothing changes. */
export function crashLoopOver(
  history: RestartHistory,
  now: number,
  timings: Pick<RestartTimings, 'stableMs'>,
): RestartHistory | undefined {
  if (!history.crashLoop || now - history.runningSince < timings.stableMs) return undefined
  return {...history, crashLoop: false, recent: []}
}
