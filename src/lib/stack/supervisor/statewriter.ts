import {writeFileAtomic} from '../../files/atomic.js'
import {errnoCode, messageOf} from '../../errors.js'
import type {SupervisorState} from '../state.js'
import type {Log} from './context.js'

/*
 * state.json, written by the supervisor alone: one write at a time, in the order asked, each
 * atomic (readers never see half a file), 0644 (`hubctl status` of any user reads it). What it holds
 * comes from `snapshot`, the orchestrator's view of every part; nothing is written before a child
 * was started (a failed start leaves the previous state.json as it was).
 */
export class StateWriter {
  private queue: Promise<void> = Promise.resolve()

  constructor(
    private readonly file: string,
    private readonly snapshot: () => SupervisorState | undefined,
    private readonly log: Log,
  ) {}

  /** Queue a write of `state` (by default the snapshot at the time of the write); resolves once written or given up. */
  write(state?: SupervisorState): Promise<void> {
    this.queue = this.queue.then(async () => {
      const content = state ?? this.snapshot()
      if (!content) return
      try {
        await writeFileAtomic(this.file, `${JSON.stringify(content, null, 2)}\n`, {mode: 0o644})
      } catch (error) {
        this.log('warn', 'state', `could not write ${this.file}: ${errnoCode(error) ?? messageOf(error)}`)
      }
    })
    return this.queue
  }
}
