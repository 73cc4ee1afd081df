import {constants} from 'node:fs'
import fs from 'node:fs/promises'

import {Layout} from '../config/layout.js'
import {readIfExists, writeFileAtomic} from '../files/atomic.js'
import {errnoCode, preflightError, runtimeError, usageError} from '../errors.js'
import type {Runner} from '../runner.js'

/**
 * System (Unix) accounts for PAM logins: looked up with getent, made with useradd, locked with
 * usermod, passwords set with chpasswd on its standard input (never argv). Which accounts hubctl
 * made, or was told to adopt, is kept in srv/jupyterhub/users.json (0600), so that remove never
 * locks an account hubctl did not make and add refuses one it does not know.
 */

/** The lowest uid of a person's account (login.defs' UID_MIN on Debian). */
export const UID_MIN = 1000
/** nobody. */
const UID_NOBODY = 65534

export interface Account {
  name: string
  uid: number
  gid: number
  home: string
  shell: string
}

export interface AccountRecord {
  /** created: by hubctl users add/sync; adopted: an account that was there, taken with --adopt. */
  origin: 'created' | 'adopted'
  uid: number
  at: string
  email?: string
  /** When `users remove` locked it (and archived its home). */
  removed?: string
}

export interface UsersRecord {
  version: 1
  accounts: Record<string, AccountRecord>
}

/** srv/jupyterhub/users.json. */
export class UsersRecordStore {
  constructor(readonly layout: Layout) {}

  async load(): Promise<UsersRecord> {
    const text = await readIfExists(this.layout.usersRecord)
    if (text === undefined) return {version: 1, accounts: {}}
    try {
      const parsed = JSON.parse(text) as UsersRecord
      if (typeof parsed.accounts !== 'object' || parsed.accounts === null) throw new Error('no accounts')
      return parsed
    } catch {
      throw usageError(
        `${this.layout.usersRecord} is not hubctl's record of user accounts`,
        'repair it by hand (JSON: {"version": 1, "accounts": {}}) or move it away',
      )
    }
  }

  async save(record: UsersRecord): Promise<void> {
    await fs.mkdir(this.layout.srvDir, {recursive: true, mode: 0o700})
    await writeFileAtomic(this.layout.usersRecord, `${JSON.stringify(record, null, 2)}\n`, {mode: 0o600})
  }
}

/** Why an account may not be taken by hubctl (a system account), or undefined. */
export function systemAccountProblem(account: Pick<Account, 'name' | 'uid'>): string | undefined {
  if (account.uid === 0) return `${account.name} is root's account (uid 0)`
  if (account.uid < UID_MIN) return `${account.name} is a system account (uid ${account.uid} < ${UID_MIN})`
  if (account.uid === UID_NOBODY) return `${account.name} is the nobody account`
  return undefined
}

export class UnixAccounts {
  constructor(private readonly runner: Runner) {}

  /** The accounts of these names that exist (one getent for all of them). */
  async lookup(names: string[]): Promise<Map<string, Account>> {
    const found = new Map<string, Account>()
    if (names.length === 0) return found
    // getent takes many keys; it exits 2 when some are missing, which is an answer, not a failure.
    for (let i = 0; i < names.length; i += 500) {
      const result = await this.runner.run('getent', ['passwd', ...names.slice(i, i + 500)])
      if (result.notFound)
        throw preflightError('getent is not installed', 'install libc-bin (apt-get install libc-bin)')
      if (result.exitCode !== 0 && result.exitCode !== 2)
        throw runtimeError(`getent passwd failed: ${result.stderr.trim()}`, 'check /etc/nsswitch.conf, then run again')
      for (const line of result.stdout.split('\n')) {
        const [name, , uid, gid, , home, shell] = line.split(':')
        if (name && uid !== undefined)
          found.set(name, {name, uid: Number(uid), gid: Number(gid), home: home ?? '', shell: shell ?? ''})
      }
    }
    return found
  }

  /** A person's account: its own group, a 0700 home, bash, no password (locked until one is set). */
  async create(name: string): Promise<Account> {
    await this.must('useradd', [
      '--create-home',
      '--user-group',
      '--shell',
      '/bin/bash',
      '--comment',
      'hubctl user',
      name,
    ])
    const account = (await this.lookup([name])).get(name)
    if (!account) throw runtimeError(`useradd made no account ${name}`, 'check /etc/passwd and the system log')
    await ownHome(account)
    return account
  }

  /** An account `remove` locked, made usable again: not expired, no password until one is set, a 0700 home. */
  async reopen(account: Account): Promise<void> {
    await this.must('usermod', ['--expiredate', '', '--password', '!', account.name])
    await fs.mkdir(account.home, {recursive: true, mode: 0o700})
    await ownHome(account)
  }

  /** No login any more: the password locked and the account expired. */
  async lock(name: string): Promise<void> {
    await this.must('usermod', ['--lock', '--expiredate', '1', name])
  }

  /** The password reaches chpasswd on its standard input, never argv. */
  async setPassword(name: string, password: string): Promise<void> {
    const result = await this.runner.run('chpasswd', [], {input: `${name}:${password}\n`})
    if (result.notFound) throw preflightError('chpasswd is not installed', 'install passwd (apt-get install passwd)')
    if (result.exitCode !== 0)
      // chpasswd's message names the user, never the password.
      throw runtimeError(
        `chpasswd could not set ${name}'s password: ${result.stderr.trim().split('\n').pop() ?? ''}`,
        'check that the account exists and that hubctl runs as root',
      )
  }

  private async must(command: string, args: string[]): Promise<void> {
    const result = await this.runner.run(command, args)
    if (result.notFound)
      throw preflightError(`${command} is not installed`, 'install the passwd package (apt-get install passwd)')
    if (result.exitCode !== 0)
      throw runtimeError(
        `${command} ${args.at(-1)} failed: ${result.stderr.trim().split('\n').pop() ?? `exit ${result.exitCode}`}`,
        'run hubctl as root; read the message, fix it, then run the command again',
      )
  }
}

/** The home the user's and 0700: through a descriptor of the directory itself, never a link's target. */
async function ownHome(account: Account): Promise<void> {
  let handle: fs.FileHandle
  try {
    handle = await fs.open(account.home, constants.O_RDONLY | constants.O_DIRECTORY | constants.O_NOFOLLOW)
  } catch (error) {
    throw usageError(
      `${account.home}, the home of ${account.name}, is not a directory (${errnoCode(error) ?? String(error)})`,
      `look at what it is, move it away, then run the command again`,
    )
  }
  try {
    await handle.chown(account.uid, account.gid)
    await handle.chmod(0o700)
  } finally {
    await handle.close()
  }
}
