import {expect} from 'chai'

import {
  NO_RESTARTS,
  RestartHistory,
  crashLoopOver,
  nextRestart,
  started,
} from '../../../../src/lib/stack/supervisor/policy.js'

/*
 * The restart policy alone: a pure function of the history, the time and the timings. The time is
 * a number the test moves (a fake clock): no process, no sleep.
 */

const timings = {
  backoffInitialMs: 500,
  backoffMaxMs: 30_000,
  stableMs: 60_000,
  crashLoopRestarts: 5,
  crashLoopWindowMs: 120_000,
}

/** A program started at `t0` and run for `runsMs` before each exit; its delays, and the history at the end. */
function runs(runsMs: number[], t0 = Date.parse('2026-01-10T12:00:00Z')) {
  let now = t0
  let history: RestartHistory = started(NO_RESTARTS, now)
  const delays: number[] = []
  const crashLoopBegins: number[] = []
  runsMs.forEach((ranMs, i) => {
    now += ranMs
    const decision = nextRestart(history, now, timings)
    expect(decision.ranMs).to.equal(ranMs)
    delays.push(decision.delayMs)
    if (decision.crashLoopBegins) crashLoopBegins.push(i + 1)
    now += decision.delayMs
    history = started(decision.history, now)
  })
  return {delays, crashLoopBegins, history, now}
}

describe('supervisor restart policy (nextRestart)', () => {
  it('the first exit waits the initial backoff, and counts one restart', () => {
    const {history, delayMs, crashLoopBegins} = nextRestart(started(NO_RESTARTS, 1000), 3000, timings)
    expect(delayMs).to.equal(500)
    expect(history).to.deep.include({restarts: 1, consecutive: 1, crashLoop: false, recent: [3000]})
    expect(crashLoopBegins).to.equal(false)
  })

  it('doubles the backoff for each exit in a row, up to the cap', () => {
    // Runs of 1 s, spread out so that no five fall within the crash-loop window.
    const {delays} = runs(Array.from({length: 9}, () => 1000))
    expect(delays).to.deep.equal([500, 1000, 2000, 4000, 8000, 16_000, 30_000, 30_000, 30_000])
  })

  it('a run of stableMs starts a new series; one ms less does not', () => {
    expect(runs([1000, 1000, 60_000]).delays).to.deep.equal([500, 1000, 500])
    expect(runs([1000, 1000, 59_999]).delays).to.deep.equal([500, 1000, 2000])
  })

  it('the fifth exit within the window is a crash loop, said once', () => {
    const {crashLoopBegins, history} = runs([10, 10, 10, 10, 10, 10, 10])
    expect(crashLoopBegins).to.deep.equal([5])
    expect(history.crashLoop).to.equal(true)
    expect(history.restarts).to.equal(7)
  })

  it('exits older than the window do not count toward a crash loop', () => {
    // 5 exits, but the delays (0.5 + 1 + 2 + 4 s) and 40 s runs put the first one more than 120 s before the fifth.
    const {crashLoopBegins, history} = runs([40_000, 40_000, 40_000, 40_000, 40_000])
    expect(crashLoopBegins).to.deep.equal([])
    expect(history.recent).to.have.length(3)
  })

  it('a crash loop is over once the program has run stableMs, and not before', () => {
    const {history, now} = runs([10, 10, 10, 10, 10])
    expect(history.crashLoop).to.equal(true)
    expect(crashLoopOver(history, now + 59_999, timings)).to.equal(undefined)
    expect(crashLoopOver(history, now + 60_000, timings)).to.deep.include({crashLoop: false, recent: [], restarts: 5})
    expect(crashLoopOver(started(NO_RESTARTS, now), now + 600_000, timings), 'not in one').to.equal(undefined)
  })

  it('leaves the history it is given unchanged', () => {
    const before = started(NO_RESTARTS, 0)
    const copy = structuredClone(before)
    nextRestart(before, 10, timings)
    expect(before).to.deep.equal(copy)
  })
})
