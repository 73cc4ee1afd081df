import fs from 'node:fs/promises'
import path from 'node:path'

import {Layout} from '../config/layout.js'
import {exists, faultPoint, fsyncDir, readIfExists} from '../files/atomic.js'
import {acquireLock} from '../files/lock.js'

/*
 * The last phase of `hubctl restore`: a journal (srv/jupyterhub/restore-journal.json, written
 * atomically once every new entry is complete beside its target) of the renames that make the
 * restored hub live. Each step is done only when not done yet, so that a restore killed half way
 * through the renames is finished by the next `hubctl restore` or `hubctl start`. `hubctl upgrade`
 * switches the database, the hub's config and hubctl.json to the new environment's the same way
 * (its own journal, srv/jupyterhub/upgrade-journal.json).
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
    await faultPoint(`journal ${op.op} ${op.to}`)
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
 * A journal's renames finished (a killed run's, or the run that wrote it), then the journal
 * removed; the homes a restore moved aside are deleted before the journal (a kill between the two
 * leaves the journal, whose next run deletes them). Returns whether there was one.
 */
async function finishJournal(file: string, removeAsides: boolean): Promise<boolean> {
  const text = await readIfExists(file)
  if (text === undefined) return false
  const journal = JSON.parse(text) as RestoreJournal
  await applyJournal(journal)
  if (removeAsides) for (const op of journal.ops) if (op.aside) await fs.rm(op.aside, {recursive: true, force: true})
  await faultPoint(`journal done ${file}`)
  await fs.rm(file, {force: true})
  await fsyncDir(path.dirname(file))
  return true
}

/**
 * A restore killed after its journal was written: finish it (every rename), so that the hub that
 * starts is the restored one, whole. Returns whether there was one.
 */
export async function finishInterruptedRestore(layout: Layout): Promise<boolean> {
  return finishJournal(layout.restoreJournal, true)
}

/**
 * An upgrade killed during its switch (the database, the hub's config and hubctl.json renamed over
 * the old ones by srv/jupyterhub/upgrade-journal.json): finished, so that the hub starts on the new
 * environment with the database it migrated (the old database is kept as jupyterhub.sqlite.pre-upgrade).
 */
export async function finishInterruptedUpgrade(layout: Layout): Promise<boolean> {
  return finishJournal(layout.upgradeJournal, false)
}

/**
 * `hubctl start` (before it reads hubctl.json) and the next restore or upgrade: a restore or an
 * upgrade killed half way through its renames is finished first, under the hub's lock (a restore
 * still running holds it). Returns what was finished.
 */
export async function finishInterrupted(layout: Layout): Promise<string[]> {
  if (!(await exists(layout.restoreJournal)) && !(await exists(layout.upgradeJournal))) return []
  const lock = await acquireLock(layout.lockFile, 'start', {waitMs: 10_000})
  try {
    const finished: string[] = []
    if (await finishInterruptedRestore(layout)) finished.push('restore')
    if (await finishInterruptedUpgrade(layout)) finished.push('upgrade')
    return finished
  } finally {
    await lock.release()
  }
}
