import type {Layout} from '../../config/layout.js'
import type {Settings} from '../../config/settings.js'
import type {Clock} from '../clock.js'
import type {FetchLike} from '../hubapi.js'
import type {ChildName, EventLog, SupervisorEvent, SupervisorTimings} from '../state.js'

/*
 * What every part of the supervisor reads and none of them writes: the prefix, the settings, the
 * clock, fetch, the timings, the event log, and the orchestrator's own two facts (stopping, ready),
 * read through functions so that only the orchestrator sets them.
 */

export type Log = (
  level: SupervisorEvent['level'],
  event: string,
  message: string,
  child?: ChildName,
  pid?: number,
) => void

export interface SupervisorContext {
  readonly layout: Layout
  readonly settings: Settings
  readonly clock: Clock
  readonly fetch: FetchLike
  readonly timings: SupervisorTimings
  readonly env?: NodeJS.ProcessEnv
  /** Aborted when the supervisor shuts down: every sleep ends at once. */
  readonly shutdown: AbortSignal
  /** The supervisor is shutting down. */
  stopping(): boolean
  /** The stack became ready (the hub answered through the proxy). */
  ready(): boolean
  log: Log
  /** Write state.json (queued, atomic) from the current state of every part. */
  writeState(): Promise<void>
}

/** The event log's line for `emit`, with the time and the child, if any. */
export function eventLogger(emit: EventLog): Log {
  return (level, event, message, child, pid) =>
    emit({at: new Date().toISOString(), level, event, message, ...(child ? {child} : {}), ...(pid ? {pid} : {})})
}
