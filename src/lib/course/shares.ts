import {createHash} from 'node:crypto'
import {constants} from 'node:fs'
import fs from 'node:fs/promises'
import path from 'node:path'

import {Layout, pathChain} from '../config/layout.js'
import {readIfExists, writeFileAtomic} from '../files/atomic.js'
import {acquireLock} from '../files/lock.js'
import {errnoCode, preflightError, runtimeError, usageError} from '../errors.js'
import {uidsHoldingGroup} from '../processes.js'
import type {Runner} from '../runner.js'
import {systemClock, type Clock} from '../stack/clock.js'

/**
 * `hubctl share`: the course's shared folders. Each is `srv/jupyterhub-shared/NAME` under the
 * prefix: root's, its group a Unix group hubctl makes for it (`hubctl-share-NAME`), mode 2775, so
 * every hub user reads it, only the group's members (the writers) write it, nobody but root changes
 * its mode, and what a writer puts in it stays the group's (setgid). The shares are kept in
 * etc/jupyterhub/shares.json, which the hub's pre-spawn hook reads at every server start to place
 * the link `shared/NAME` in the user's home (python/hubctl_hub/shares.py): a share added or removed
 * needs no restart of the hub; a server started after it has the link.
 */

/** A share's name: a folder name and part of its group's name (at most 32 characters: 13 + 19). */
export const SHARE_NAME = /^[a-z][a-z0-9_-]{0,18}$/
/** A writer: a Unix user or group name. */
const UNIX_NAME = /^[a-z_][a-z0-9_-]{0,31}$/
/** The mode of a share's folder: root's, the writers' group, setgid (new files stay the group's). */
export const SHARE_MODE = 0o2775

export interface ShareRecord {
  group: string
  gid: number
  /** The writers as given (users, or groups whose members were added). */
  writers: string[]
  created: string
  source?: string
}

export interface SharesRecord {
  version: 1
  shares: Record<string, ShareRecord>
}

export interface ShareInfo {
  name: string
  path: string
  group: string
  /** The group's members now (getent), who may write. */
  members: string[]
  writers: string[]
  created: string
  /** Whether the folder is there. */
  present: boolean
}

export interface ShareAddResult {
  share: ShareInfo
  /** created: a new share; updated: writers added to an existing one; unchanged. */
  action: 'created' | 'updated' | 'unchanged'
  added: string[]
  copiedFrom?: string
}

export interface ShareRevokeResult {
  share: ShareInfo
  /** 'unchanged': none of the users was a member of the share's group (nor named a writer). */
  action: 'updated' | 'unchanged'
  /** The users taken out of the share's group. */
  removed: string[]
  /**
   * Users out of the group already (an earlier revoke) whose processes still have it: started
   * before they left, say a server an earlier run could not stop. The caller stops them too.
   */
  stillHeld: string[]
}

export interface ShareRemoveResult {
  name: string
  path: string
  group: string
  removed: true
}

export interface SharesDeps {
  layout: Layout
  runner: Runner
  clock?: Clock
  /** Where the processes are read (their groups); /proc unless a test gives its own. */
  procDir?: string
}

/** A share's name, or a usage error naming what is wrong (exit 2, nothing changed). */
export function checkShareName(input: string): string {
  if (!SHARE_NAME.test(input))
    throw usageError(
      `the share name ${JSON.stringify(input)} is not valid`,
      'use 1 to 19 characters from a-z, 0-9, _ and -, starting with a letter (such as data or week-1)',
    )
  return input
}

/**
 * The Unix group of a share: `hubctl-share-NAME` on the system; under another prefix (tests, local
 * mode) a name of its own per prefix (groups are the machine's: two test hubs must not share one).
 */
export function shareGroup(layout: Layout, name: string): string {
  if (layout.isSystem) return `hubctl-share-${name}`
  return `hubctl-share-${createHash('sha256').update(`${layout.prefix}\0${name}`).digest('hex').slice(0, 8)}`
}

/** etc/jupyterhub/shares.json (0644: it holds names, no secret; the hub's hook reads it). */
export class SharesStore {
  constructor(readonly layout: Layout) {}

  async load(): Promise<SharesRecord> {
    const text = await readIfExists(this.layout.sharesRecord)
    if (text === undefined) return {version: 1, shares: {}}
    try {
      const parsed = JSON.parse(text) as SharesRecord
      if (typeof parsed.shares !== 'object' || parsed.shares === null || Array.isArray(parsed.shares))
        throw new Error('no shares')
      return parsed
    } catch {
      throw usageError(
        `${this.layout.sharesRecord} is not hubctl's record of shared folders`,
        'repair it by hand (JSON: {"version": 1, "shares": {}}) or move it away',
      )
    }
  }

  async save(record: SharesRecord): Promise<void> {
    await fs.mkdir(this.layout.etcDir, {recursive: true, mode: 0o755})
    await writeFileAtomic(this.layout.sharesRecord, `${JSON.stringify(record, null, 2)}\n`, {mode: 0o644})
  }
}

interface GroupEntry {
  name: string
  gid: number
  members: string[]
}

export class SharesService {
  private readonly store: SharesStore
  private readonly clock: Clock

  constructor(private readonly deps: SharesDeps) {
    this.store = new SharesStore(deps.layout)
    this.clock = deps.clock ?? systemClock
  }

  async list(): Promise<ShareInfo[]> {
    const record = await this.store.load()
    const names = Object.keys(record.shares).sort()
    const groups = await this.groups(names.map((name) => record.shares[name].group))
    return Promise.all(names.map((name) => this.info(name, record.shares[name], groups.get(record.shares[name].group))))
  }

  /**
   * `share add NAME [--source DIR] [--writers W…]`: a new share (its group, its folder, the files of
   * DIR copied in), or writers added to an existing one. Everything is checked before the first
   * change; a new share half made is taken away again.
   */
  async add(input: string, options: {source?: string; writers?: string[]} = {}): Promise<ShareAddResult> {
    const {layout} = this.deps
    const name = checkShareName(input)
    const writerNames = [...new Set(options.writers ?? [])]
    for (const writer of writerNames)
      if (!UNIX_NAME.test(writer))
        throw usageError(
          `the writer ${JSON.stringify(writer)} is not a Unix user or group name`,
          'give the names of system users or groups (such as ta1 or instructors)',
        )
    const source = options.source === undefined ? undefined : path.resolve(options.source)
    if (source !== undefined) {
      const stat = await fs.stat(source).catch(() => undefined)
      if (!stat?.isDirectory())
        throw usageError(`--source ${source} is not a directory`, 'give the folder whose files the share starts with')
    }
    const lock = await acquireLock(layout.lockFile, 'share add', {waitMs: 10_000})
    try {
      const record = await this.store.load()
      const existing = record.shares[name]
      if (existing && source !== undefined)
        throw usageError(
          `the share ${name} exists already; --source only fills a new share`,
          `copy the files in as one of its writers, or remove it first (hubctl share remove ${name})`,
        )
      const group = existing?.group ?? shareGroup(layout, name)
      const dir = layout.sharedDir(name)
      // Who the writers are: each a user, or a group whose members become writers.
      const users = await this.users(writerNames)
      const groups = await this.groups([group, ...writerNames.filter((w) => !users.has(w))])
      const unknown = writerNames.filter((w) => !users.has(w) && !groups.has(w))
      if (unknown.length > 0)
        throw usageError(
          `${unknown.join(', ')} ${unknown.length === 1 ? 'is neither a user nor a group' : 'are neither users nor groups'} of this machine`,
          `add ${unknown.length === 1 ? 'it' : 'them'} first (hubctl users add NAME), then run this again`,
        )
      const members = writerNames.flatMap((w) => (users.has(w) ? [w] : (groups.get(w)?.members ?? [])))
      if (!existing) {
        if (groups.has(group))
          throw usageError(
            `the group ${group} exists already, and hubctl did not make it for a share`,
            `look at it (getent group ${group}); remove it (groupdel ${group}) or choose another share name`,
          )
        if (await fs.lstat(dir).catch(() => undefined))
          throw usageError(
            `${dir} exists already, and is not a share of hubctl's`,
            `look at what it holds and move it away, or choose another share name`,
          )
        await this.assertReachable()
      }
      const current = new Set(groups.get(group)?.members ?? [])
      const added = [...new Set(members)].filter((m) => !current.has(m))
      // Changes from here.
      let entry = existing
      if (!entry) {
        const gid = await this.create(name, group, source)
        entry = {
          group,
          gid,
          writers: [],
          created: new Date(this.clock.now()).toISOString(),
          ...(source ? {source} : {}),
        }
      }
      for (const user of added) await this.must('gpasswd', ['--add', user, group])
      const writers = [...new Set([...entry.writers, ...writerNames])]
      const changed = !existing || writers.length !== entry.writers.length || added.length > 0
      record.shares[name] = {...entry, writers}
      if (changed) await this.store.save(record)
      const after = await this.groups([group])
      return {
        share: await this.info(name, record.shares[name], after.get(group)),
        action: !existing ? 'created' : changed ? 'updated' : 'unchanged',
        added,
        ...(source ? {copiedFrom: source} : {}),
      }
    } finally {
      await lock.release()
    }
  }

  /**
   * `users admin NAME… --share-writer SHARE…`: before anything changes, every share exists and every
   * user has a Unix account (a writer is a member of the share's group); usage error otherwise.
   */
  async checkWriters(shareNames: string[], users: string[], revoke = false): Promise<void> {
    const names = shareNames.map(checkShareName)
    const record = await this.store.load()
    const unknown = names.filter((name) => !record.shares[name])
    if (unknown.length > 0)
      throw usageError(
        `there is no share ${unknown.join(', ')}`,
        `see the shares with \`hubctl share list\` (hubctl share add NAME makes one); nothing was changed`,
      )
    const found = await this.users(users)
    const missing = users.filter((u) => !found.has(u))
    if (missing.length > 0)
      throw usageError(
        `${missing.join(', ')} ${missing.length === 1 ? 'has' : 'have'} no Unix account on this machine, so cannot write a share`,
        revoke
          ? "check the names against the members `hubctl share list` shows (only a Unix account can be in a share's group); nothing was changed"
          : 'make the accounts (hubctl users add NAME with --create-users, or useradd), then run this again; nothing was changed',
      )
  }

  /** The users made writers of each share (members of its group): `share add SHARE --writers USER…` of each. */
  async addWriters(shareNames: string[], users: string[]): Promise<ShareAddResult[]> {
    await this.checkWriters(shareNames, users)
    const results: ShareAddResult[] = []
    for (const name of shareNames) results.push(await this.add(name, {writers: users}))
    return results
  }

  /**
   * `users admin NAME… --revoke --share-writer SHARE…`: each user leaves each share's group (the one
   * hubctl made for it) and its list of writers; checked first as addWriters is, nothing changed on a
   * refusal; a user not in the group is left as is. A process already running keeps the group (the
   * kernel reads groups at login): the caller stops such servers.
   */
  async removeWriters(shareNames: string[], users: string[]): Promise<ShareRevokeResult[]> {
    await this.checkWriters(shareNames, users, true)
    const results: ShareRevokeResult[] = []
    const lock = await acquireLock(this.deps.layout.lockFile, 'users admin --revoke --share-writer', {waitMs: 10_000})
    try {
      for (const name of [...new Set(shareNames.map(checkShareName))]) {
        const record = await this.store.load()
        const entry = record.shares[name]
        if (!entry)
          throw usageError(
            `there is no share ${name}`,
            'see the shares with `hubctl share list`; the shares before it in the command were changed',
          )
        const group = (await this.groups([entry.group])).get(entry.group)
        const current = new Set(group?.members ?? [])
        const removed = [...new Set(users)].filter((u) => current.has(u))
        for (const user of removed) await this.must('gpasswd', ['--delete', user, entry.group])
        const stillHeld = await this.holdingGroup(
          [...new Set(users)].filter((u) => !current.has(u)),
          group?.gid,
        )
        const writers = entry.writers.filter((w) => !users.includes(w))
        const changed = removed.length > 0 || writers.length !== entry.writers.length
        record.shares[name] = {...entry, writers}
        if (changed) await this.store.save(record)
        const after = await this.groups([entry.group])
        results.push({
          share: await this.info(name, record.shares[name], after.get(entry.group)),
          action: changed ? 'updated' : 'unchanged',
          removed,
          stillHeld,
        })
      }
      return results
    } finally {
      await lock.release()
    }
  }

  /** `share remove NAME`: the folder (and what it holds), its group and its record; the links go at each user's next start. */
  async remove(input: string): Promise<ShareRemoveResult> {
    const {layout} = this.deps
    const name = checkShareName(input)
    const lock = await acquireLock(layout.lockFile, 'share remove', {waitMs: 10_000})
    try {
      const record = await this.store.load()
      const entry = record.shares[name]
      if (!entry) throw usageError(`there is no share ${name}`, 'see the shares with `hubctl share list`')
      const dir = layout.sharedDir(name)
      // The record first: a hook reading it from now on places no link to a folder about to go.
      delete record.shares[name]
      await this.store.save(record)
      // fs.rm never follows a link inside the folder (a writer's link to elsewhere is removed, not its target).
      await fs.rm(dir, {recursive: true, force: true})
      if ((await this.groups([entry.group])).has(entry.group)) await this.must('groupdel', [entry.group])
      return {name, path: dir, group: entry.group, removed: true}
    } finally {
      await lock.release()
    }
  }

  /** The group made, the folder made (root's, the group's, 2775), DIR's files copied in; undone on a failure. */
  private async create(name: string, group: string, source: string | undefined): Promise<number> {
    const {layout} = this.deps
    const dir = layout.sharedDir(name)
    await this.must('groupadd', [group])
    try {
      const gid = (await this.groups([group])).get(group)?.gid
      if (gid === undefined) throw runtimeError(`groupadd made no group ${group}`, 'check /etc/group and run again')
      await fs.mkdir(layout.sharedRoot, {recursive: true, mode: 0o755})
      const root = await fs.lstat(layout.sharedRoot)
      if (!root.isDirectory() || root.uid !== (process.getuid?.() ?? 0) || (root.mode & 0o022) !== 0)
        throw usageError(
          `${layout.sharedRoot} is not a directory of root's that only root writes`,
          `look at it, move it away, then run this again`,
        )
      await fs.mkdir(dir, {mode: 0o700})
      // Through a descriptor of the folder itself, never a link's target.
      const handle = await fs.open(dir, constants.O_RDONLY | constants.O_DIRECTORY | constants.O_NOFOLLOW)
      try {
        await handle.chown(process.getuid?.() ?? 0, gid)
        await handle.chmod(SHARE_MODE)
      } finally {
        await handle.close()
      }
      if (source !== undefined) {
        // Copied as root, links kept as links: root's, and the group's (the folder is setgid, and its
        // new folders keep the bit); then all of it the writers' to change and everyone's to read.
        await this.must('cp', ['-R', '-P', '--preserve=mode,timestamps', '--', `${source}/.`, `${dir}/`])
        await this.must('chmod', ['-R', 'u+rwX,g+rwX,o+rX,o-w', '--', dir])
      }
      return gid
    } catch (error) {
      await fs.rm(dir, {recursive: true, force: true})
      await this.deps.runner.run('groupdel', [group])
      throw error
    }
  }

  /** Every directory above the shares must let every user through (o+x), or no student reaches a share. */
  private async assertReachable(): Promise<void> {
    for (const dir of pathChain(path.dirname(this.deps.layout.sharedRoot))) {
      const stat = await fs.stat(dir).catch((error: unknown) => {
        if (errnoCode(error) === 'ENOENT') return undefined
        throw error
      })
      if (stat && (stat.mode & 0o001) === 0)
        throw preflightError(
          `${dir} does not let other users through (mode ${(stat.mode & 0o777).toString(8)}), so no hub user could reach a shared folder under it`,
          `chmod o+x ${dir}, or use a prefix every user can reach`,
        )
    }
  }

  private async info(name: string, entry: ShareRecord, group: GroupEntry | undefined): Promise<ShareInfo> {
    const dir = this.deps.layout.sharedDir(name)
    return {
      name,
      path: dir,
      group: entry.group,
      members: group?.members ?? [],
      writers: entry.writers,
      created: entry.created,
      present: (await fs.lstat(dir).catch(() => undefined))?.isDirectory() ?? false,
    }
  }

  /** The users of these names that exist. */
  private async users(names: string[]): Promise<Set<string>> {
    const found = new Set<string>()
    if (names.length === 0) return found
    const result = await this.getent('passwd', names)
    for (const line of result.split('\n')) if (line.includes(':')) found.add(line.split(':')[0])
    return found
  }

  /** Those of these users with a process that still has the group (see ShareRevokeResult.stillHeld). */
  private async holdingGroup(users: string[], gid: number | undefined): Promise<string[]> {
    if (users.length === 0 || gid === undefined) return []
    const uidOf = new Map<string, number>()
    for (const line of (await this.getent('passwd', users)).split('\n')) {
      const [name, , uid] = line.split(':')
      if (name && users.includes(name) && /^\d+$/.test(uid ?? '')) uidOf.set(name, Number(uid))
    }
    const holding = await uidsHoldingGroup([...uidOf.values()], gid, this.deps.procDir)
    return users.filter((user) => uidOf.has(user) && holding.has(uidOf.get(user)!))
  }

  /** The groups of these names that exist, with their gid and (supplementary) members. */
  private async groups(names: string[]): Promise<Map<string, GroupEntry>> {
    const found = new Map<string, GroupEntry>()
    if (names.length === 0) return found
    for (const line of (await this.getent('group', names)).split('\n')) {
      const [name, , gid, members] = line.split(':')
      if (name && gid !== undefined)
        found.set(name, {name, gid: Number(gid), members: members ? members.split(',').filter(Boolean) : []})
    }
    return found
  }

  private async getent(database: 'passwd' | 'group', names: string[]): Promise<string> {
    const result = await this.deps.runner.run('getent', [database, ...names])
    if (result.notFound) throw preflightError('getent is not installed', 'install libc-bin (apt-get install libc-bin)')
    // getent exits 2 when some keys are missing: an answer, not a failure.
    if (result.exitCode !== 0 && result.exitCode !== 2)
      throw runtimeError(
        `getent ${database} failed: ${result.stderr.trim()}`,
        'check /etc/nsswitch.conf, then run again',
      )
    return result.stdout
  }

  private async must(command: string, args: string[]): Promise<void> {
    const result = await this.deps.runner.run(command, args, {cwd: '/'})
    if (result.notFound)
      throw preflightError(`${command} is not installed`, `install it (groupadd and gpasswd: apt-get install passwd)`)
    if (result.exitCode !== 0)
      throw runtimeError(
        `${command} ${args.filter((a) => !a.startsWith('-')).join(' ')} failed: ${result.stderr.trim().split('\n').pop() ?? `exit ${result.exitCode}`}`,
        'run hubctl as root; read the message, fix it, then run the command again',
      )
  }
}
