import fs from 'node:fs/promises'
import path from 'node:path'

import {Layout} from '../config/layout.js'
import {exists, faultPoint, fsyncDir, readIfExists, symlinkAtomic} from '../files/atomic.js'
import {acquireLock} from '../files/lock.js'
import {runtimeError} from '../errors.js'
import type {Runner} from '../runner.js'

/*
 * The last phase of `hubctl restore`: a journal (srv/jupyterhub/restore-journal.json, written
 * atomically once every new entry is complete beside its target) of the renames that make the
 * restored hub live. Each step is done only when not done yet, so that a restore killed half way
 * through the renames is finished by the next `hubctl restore` or `hubctl start`. `hubctl upgrade`
 * switches the database, the hub's config and hubctl.json to the new environment's the same way
 * (its own journal, srv/jupyterhub/upgrade-journal.json).
 *
 * A restore's system accounts (useradd, chpasswd of the archive's password hashes) change the
 * machine before any file is staged: the restore first writes its journal in the `accounts` phase
 * (each account's state before: whether it and its group existed, its password hash), so that a
 * restore killed while it makes the accounts or stages its files is rolled back by the next run
 * (the old hashes set again, the accounts and groups it made removed): the old machine. Once the
 * renames are journaled (the `files` phase, written atomically over it) the accounts are the
 * restored ones and the renames are finished: the restored machine.
 */

/**
 * One step of the journal: a rename of a complete new entry over the old (a home: the old moved
 * aside first), a removal, or a link (`to`) made to name `target` (upgrade's `current` link of the
 * hub's environment), each safe to do again.
 */
export interface JournalOp {
  op: 'rename' | 'remove' | 'link'
  from?: string
  to: string
  /** link: what the link names once done. */
  target?: string
  /** Where the old entry goes first (a directory, which rename cannot replace). */
  aside?: string
}

/** A system account as it was before a restore made or changed it: what its rollback puts back. */
export interface AccountBefore {
  name: string
  /** The account existed (else the restore made it: removed by the rollback). */
  existed: boolean
  /** A group of the account's name existed (else one the restore made is removed). */
  groupExisted: boolean
  /** Its password field in /etc/shadow (set again by chpasswd --encrypted, on standard input). */
  shadow?: string
}

export interface RestoreJournal {
  version: 1
  archive: string
  /** `accounts`: the accounts are being made, nothing renamed yet: rolled back. Absent (`files`): the renames, finished. */
  phase?: 'accounts' | 'files'
  accounts?: AccountBefore[]
  ops: JournalOp[]
}

/** The accounts' state before a restore changes them (getent; the hash read by root, kept in the 0600 journal only). */
export async function accountsBefore(runner: Runner, names: string[]): Promise<AccountBefore[]> {
  const result: AccountBefore[] = []
  for (const name of names) {
    const existed = (await runner.run('getent', ['passwd', name])).exitCode === 0
    const groupExisted = (await runner.run('getent', ['group', name])).exitCode === 0
    const shadow = existed ? await runner.run('getent', ['shadow', name]) : undefined
    const hash = shadow?.exitCode === 0 ? shadow.stdout.split(':')[1] : undefined
    result.push({name, existed, groupExisted, ...(hash === undefined ? {} : {shadow: hash})})
  }
  return result
}

/**
 * The accounts put back as they were before the restore (a restore killed, or failed, before its
 * renames were journaled): each old password hash set again, each account and group it made removed.
 */
export async function rollBackAccounts(runner: Runner, accounts: AccountBefore[]): Promise<void> {
  const failed = (what: string, stderr: string) =>
    runtimeError(
      `rolling back an interrupted restore: ${what} failed: ${stderr.trim().split('\n').pop() ?? ''}`,
      'run the command as root (hubctl start, or hubctl restore FILE again)',
    )
  for (const account of [...accounts].reverse()) {
    await faultPoint(`journal account back ${account.name}`)
    if (account.existed) {
      if (account.shadow === undefined) continue
      const set = await runner.run('chpasswd', ['--encrypted'], {input: `${account.name}:${account.shadow}\n`})
      if (set.exitCode !== 0) throw failed(`chpasswd ${account.name}`, set.stderr)
      continue
    }
    if ((await runner.run('getent', ['passwd', account.name])).exitCode === 0) {
      const removed = await runner.run('userdel', [account.name])
      if (removed.exitCode !== 0) throw failed(`userdel ${account.name}`, removed.stderr)
    }
    if (!account.groupExisted && (await runner.run('getent', ['group', account.name])).exitCode === 0) {
      const removed = await runner.run('groupdel', [account.name])
      if (removed.exitCode !== 0) throw failed(`groupdel ${account.name}`, removed.stderr)
    }
  }
}

/** Apply a journal's operations; each is done only if not done yet, so a second run finishes a first that was killed. */
export async function applyJournal(journal: RestoreJournal): Promise<void> {
  const dirs = new Set<string>()
  for (const op of journal.ops) {
    await faultPoint(`journal ${op.op} ${op.to}`)
    if (op.op === 'remove') {
      await fs.rm(op.to, {force: true})
    } else if (op.op === 'link') {
      if ((await fs.readlink(op.to).catch(() => undefined)) !== op.target) await symlinkAtomic(op.target!, op.to)
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
async function finishJournal(file: string, removeAsides: boolean, runner?: Runner): Promise<boolean> {
  const text = await readIfExists(file)
  if (text === undefined) return false
  const journal = JSON.parse(text) as RestoreJournal
  if (journal.phase === 'accounts') {
    // Killed while it made the accounts or staged its files: the old machine back.
    if (!runner) throw new Error(`${file} is in its accounts phase: a runner is needed to roll it back`)
    await rollBackAccounts(runner, journal.accounts ?? [])
    await faultPoint(`journal done ${file}`)
    await fs.rm(file, {force: true})
    await fsyncDir(path.dirname(file))
    return true
  }
  await applyJournal(journal)
  if (removeAsides) for (const op of journal.ops) if (op.aside) await fs.rm(op.aside, {recursive: true, force: true})
  await faultPoint(`journal done ${file}`)
  await fs.rm(file, {force: true})
  await fsyncDir(path.dirname(file))
  return true
}

/**
 * A restore killed after its journal was written: finish it (every rename), so that the hub that
 * starts is the restored one, whole; or, killed while it made the accounts (the journal's
 * `accounts` phase), roll the accounts back, so that the hub that starts is the old one on the old
 * machine. Returns whether there was one.
 */
export async function finishInterruptedRestore(layout: Layout, runner: Runner): Promise<boolean> {
  return finishJournal(layout.restoreJournal, true, runner)
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
export async function finishInterrupted(layout: Layout, runner: Runner): Promise<string[]> {
  if (!(await exists(layout.restoreJournal)) && !(await exists(layout.upgradeJournal))) return []
  const lock = await acquireLock(layout.lockFile, 'start', {waitMs: 10_000})
  try {
    const finished: string[] = []
    if (await finishInterruptedRestore(layout, runner)) finished.push('restore')
    if (await finishInterruptedUpgrade(layout)) finished.push('upgrade')
    return finished
  } finally {
    await lock.release()
  }
}
