// Preloaded into a hubctl process by test/e2e/kill.test.ts (`node --import THIS bin/run.js …`):
// through atomic.ts's fault hook, it numbers every atomic write as it reaches its rename, and
// appends `N<TAB>temp file` to the file named by HUBCTL_TEST_WRITES_LOG. The write numbered
// HUBCTL_TEST_PAUSE_AT (when set) is then held there for good: the temp file written and synced,
// the target still old, the whole process frozen (its event loop blocked, so that no other step
// moves on either) until the test kills it. With HUBCTL_TEST_PAUSE_AT=each, every write is held so,
// in turn, until the test appends `go<TAB>N` to the file named by HUBCTL_TEST_WRITES_GO.
import fs from 'node:fs'

import {setWriteFaults} from '../../dist/lib/files/atomic.js'

const log = process.env.HUBCTL_TEST_WRITES_LOG
const each = process.env.HUBCTL_TEST_PAUSE_AT === 'each'
const pauseAt = each ? 0 : Number(process.env.HUBCTL_TEST_PAUSE_AT ?? 0)
const go = process.env.HUBCTL_TEST_WRITES_GO
let count = 0

/** Whether the test has said `go` for write `n` (read with the process frozen: no event loop). */
const released = (n) => {
  try {
    return fs.readFileSync(go, 'utf8').includes(`go\t${n}\n`)
  } catch {
    return false
  }
}

/** HUBCTL_TEST_PAUSE_STEPS=1: the fault points between steps (atomic.ts's faultPoint: a journal's renames, a program running) are held as writes are. */
const steps = process.env.HUBCTL_TEST_PAUSE_STEPS === '1'

if (log)
  setWriteFaults({
    ...(steps ? {atStep: (what) => hold(`step: ${what}`)} : {}),
    beforeRename(temp) {
      hold(temp)
    },
  })

function hold(temp) {
  count++
  fs.appendFileSync(log, `${count}\t${temp}\n`)
  if (count === pauseAt) {
    fs.appendFileSync(log, `paused\t${count}\n`)
    Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0)
  }
  if (each) {
    fs.appendFileSync(log, `paused\t${count}\n`)
    while (!released(count)) Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, 10)
  }
}
