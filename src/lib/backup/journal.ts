import fs from 'node:fs/promises'
import path from 'node:path'

import {Layout} from '../config/layout.js'
import {exists, fsyncDir, readIfExists} from '../files/atomic.js'

/*
 * The last phase of `hubctl restore`: a journal (srv/jupyterhub/restore-journal.json, written
 * atomically once every new entry is complete beside its target) of the renames that make the
 * restored hub live. Each step is done only when not done yet, so that a restore killed half way
 * through the renames is finished by the next `hubctl restore` or `hubctl start`.
 */

/** One step of the journal: a rename of a complete new entry over the old (a home: the old moved aside first), or a removal. */
export interface JournalOp {
  op: 'rename' | 'remove'
  from?: string
  to: string
  /** Where the old entry goes first (a directory, which rename cannot replace). */
  aside?: string
}

export interface RestoreJournal {
  version: 1
  archive: string
  ops: JournalOp[]
}

/** Apply a journal's operations; each is done only if not done yet, so a second run finishes a first that was killed. */
export async function applyJournal(journal: RestoreJournal): Promise<void> {
  const dirs = new Set<string>()
  for (const op of journal.ops) {
    if (op.op === 'remove') {
      await fs.rm(op.to, {force: true})
    } else if (op.from && (await exists(op.from))) {
      if (op.aside && (await exists(op.to))) {
        await fs.rm(op.aside, {recursive: true, force: true})
        await fs.rename(op.to, op.aside)
      }
      await fs.rename(op.from, op.to)
    }
    dirs.add(path.dirname(op.to))
  }
  for (const dir of dirs) await fsyncDir(dir)
}

/**
 * A restore killed after its journal was written: finish it (every rename), so that the hub that
 * starts is the restored one, whole. Returns whether there was one.
 */
export async function finishInterruptedRestore(layout: Layout): Promise<boolean> {
  const text = await readIfExists(layout.restoreJournal)
  if (text === undefined) return false
  const journal = JSON.parse(text) as RestoreJournal
  await applyJournal(journal)
  await fs.rm(layout.restoreJournal, {force: true})
  await fsyncDir(path.dirname(layout.restoreJournal))
  for (const op of journal.ops) if (op.aside) await fs.rm(op.aside, {recursive: true, force: true})
  return true
}
