import {randomBytes} from 'node:crypto'
import fs from 'node:fs/promises'

import {installHubConfig, renderHubConfig, databaseUrl} from '../config/hubconfig.js'
import {defaultUrlFor, detectJupyterHub, detectUserInterface} from '../config/jupyterhub.js'
import {Layout} from '../config/layout.js'
import {Settings, SettingsStore} from '../config/settings.js'
import {runtimeError, usageError} from '../errors.js'
import {acquireLock} from '../files/lock.js'
import type {Runner} from '../runner.js'
import {systemClock, type Clock} from '../stack/clock.js'
import {restartStack} from '../stack/control.js'
import {FetchLike, HubApi, HubUser} from '../stack/hubapi.js'
import {runningSupervisor} from '../stack/state.js'
import {Account, AccountRecord, UnixAccounts, UsersRecord, UsersRecordStore, systemAccountProblem} from './accounts.js'
import {RemovalDeps, archiveAndDelete, endProcesses, moveHomeAway} from './removal.js'
import {RosterEntry, UserPlan, applyPlan, checkUserName, emptyPlan, planSync} from './roster.js'

/**
 * `hubctl users`: hubctl.json, the rendered jupyterhub_config.py, the hub's database and (with PAM)
 * the system accounts kept in agreement. Every run checks everything it was given before its first
 * change, under the lock; a change re-renders the config as init does, restarts a running hub
 * (servers stay) and tells the hub's database through the API.
 */

export interface UsersDeps {
  layout: Layout
  runner: Runner
  clock?: Clock
  fetch?: FetchLike
  log?: (line: string) => void
  /** Test seams: whether hubctl runs the hub, and its restart. */
  stackRunning?: () => Promise<boolean>
  restart?: (layout: Layout) => Promise<unknown>
  api?: (settings: Settings) => HubApi
  /** The live processes of a uid (default: /proc). */
  processesOf?: RemovalDeps['processesOf']
}

export interface UserListEntry {
  name: string
  admin: boolean
  allowed: boolean
  /** With PAM: whether the system account exists (and is not locked by `users remove`); null otherwise. */
  unixAccount: boolean | null
  /** null when the hub is not running. */
  serverRunning: boolean | null
  lastActivity: string | null
  email?: string
}

export interface UserListResult {
  authenticator: string
  hubRunning: boolean
  users: UserListEntry[]
}

export interface ApplyOptions {
  /** Take existing accounts hubctl did not create. */
  adopt?: boolean
  keepHome?: boolean
  dryRun?: boolean
}

export interface ApplyResult {
  plan: UserPlan
  dryRun: boolean
  changed: boolean
  accounts: {created: string[]; adopted: string[]; reopened: string[]; locked: string[]; left: string[]}
  archives: string[]
  config: 'written' | 'unchanged' | 'not rendered'
  hub: {running: boolean; restarted: boolean; deleted: string[]; adminSet: string[]; serversStopped: string[]}
  seconds: number
  /** Seconds per phase: checks, system accounts, the config (render, JupyterHub loads it), the running hub, removals. */
  phases: {check: number; accounts: number; config: number; hub: number; removals: number}
}

/** The minimum length of a password `users passwd` sets. */
export const MIN_PASSWORD = 8

export class UsersService {
  private readonly clock: Clock
  private readonly accounts: UnixAccounts
  private readonly records: UsersRecordStore
  private readonly log: (line: string) => void

  constructor(private readonly deps: UsersDeps) {
    this.clock = deps.clock ?? systemClock
    this.accounts = new UnixAccounts(deps.runner)
    this.records = new UsersRecordStore(deps.layout)
    this.log = deps.log ?? (() => {})
  }

  static pam(settings: Pick<Settings, 'authenticator'>): boolean {
    return settings.authenticator === 'pam'
  }

  async settings(): Promise<Settings> {
    return new SettingsStore(this.deps.layout).load()
  }

  private async hubRunning(): Promise<boolean> {
    if (this.deps.stackRunning) return this.deps.stackRunning()
    return (await runningSupervisor(this.deps.layout)) !== undefined
  }

  private api(settings: Settings): HubApi {
    return this.deps.api?.(settings) ?? HubApi.forLayout(this.deps.layout, settings, {fetch: this.deps.fetch})
  }

  /** Every user hubctl.json names, and any other the running hub knows. */
  async list(): Promise<UserListResult> {
    const settings = await this.settings()
    const pam = UsersService.pam(settings)
    const admins = new Set(settings.admins)
    const allowed = new Set([...settings.admins, ...settings.allowedUsers])
    const running = await this.hubRunning()
    const hubUsers = new Map<string, HubUser>()
    if (running) for (const user of await this.api(settings).listUsers()) hubUsers.set(user.name, user)
    const names = [...new Set([...allowed, ...hubUsers.keys()])].sort()
    const record = await this.records.load()
    const accounts = pam ? await this.accounts.lookup(names) : new Map<string, Account>()
    return {
      authenticator: settings.authenticator,
      hubRunning: running,
      users: names.map((name) => {
        const hub = hubUsers.get(name)
        return {
          name,
          admin: admins.has(name),
          allowed: allowed.has(name),
          unixAccount: pam ? accounts.has(name) && !record.accounts[name]?.removed : null,
          serverRunning: running ? Boolean(hub?.servers.some((s) => s.ready || s.pending === 'spawn')) : null,
          lastActivity: hub?.lastActivity ?? null,
          ...(record.accounts[name]?.email ? {email: record.accounts[name].email} : {}),
        }
      }),
    }
  }

  /** `users add`: new users (or admins), existing ones kept; an existing admin stays one. */
  async planAdd(names: string[], admin: boolean): Promise<UserPlan> {
    const settings = await this.settings()
    const entries = this.entries(names, settings, admin)
    const admins = new Set(settings.admins)
    const existing = new Set([...settings.admins, ...settings.allowedUsers])
    const plan: UserPlan = {add: [], remove: [], change: [], keep: [], account: []}
    for (const entry of entries) {
      if (!existing.has(entry.name)) plan.add.push(entry)
      else if (admin && !admins.has(entry.name)) plan.change.push({name: entry.name, admin: true})
      else plan.keep.push(entry.name)
    }
    return this.withMissingAccounts(settings, plan, entries)
  }

  /**
   * With PAM, users hubctl.json has already but whose system account is missing (an init --admin
   * before the account existed): `add` and `sync` make it.
   */
  private async withMissingAccounts(settings: Settings, plan: UserPlan, entries: RosterEntry[]): Promise<UserPlan> {
    if (!UsersService.pam(settings)) return plan
    const staying = entries.filter((e) => !plan.add.includes(e))
    if (staying.length === 0) return plan
    const accounts = await this.accounts.lookup(staying.map((e) => e.name))
    const record = await this.records.load()
    plan.account = staying.filter((e) => !accounts.has(e.name) || record.accounts[e.name]?.removed)
    plan.keep = plan.keep.filter((name) => !plan.account.some((e) => e.name === name))
    return plan
  }

  /** `users remove`: names that are not users are reported kept as they are (a re-run changes nothing). */
  async planRemove(names: string[]): Promise<UserPlan> {
    const settings = await this.settings()
    const entries = this.entries(names, settings, false)
    const existing = new Set([...settings.admins, ...settings.allowedUsers])
    const plan: UserPlan = {add: [], remove: [], change: [], keep: [], account: []}
    for (const {name} of entries) (existing.has(name) ? plan.remove : plan.keep).push(name)
    this.assertAdminLeft(settings, plan)
    return plan
  }

  /** `users admin [--revoke]`: each must be a user already. */
  async planAdmin(names: string[], revoke: boolean): Promise<UserPlan> {
    const settings = await this.settings()
    const entries = this.entries(names, settings, false)
    const admins = new Set(settings.admins)
    const existing = new Set([...settings.admins, ...settings.allowedUsers])
    const missing = entries.filter((e) => !existing.has(e.name)).map((e) => e.name)
    if (missing.length > 0)
      throw usageError(
        `${missing.join(', ')} ${missing.length === 1 ? 'is not a user' : 'are not users'} of this hub`,
        revoke
          ? 'check the names against `hubctl users list` (a user who is not one has nothing to revoke); nothing was changed'
          : `add ${missing.length === 1 ? 'it' : 'them'} first: hubctl users add ${missing.join(' ')} --admin`,
      )
    const plan: UserPlan = {add: [], remove: [], change: [], keep: [], account: []}
    for (const {name} of entries) {
      if (admins.has(name) === !revoke) plan.keep.push(name)
      else plan.change.push({name, admin: !revoke})
    }
    this.assertAdminLeft(settings, plan)
    return plan
  }

  /** `users sync`: the roster against hubctl.json. */
  async planRoster(roster: RosterEntry[], removeMissing: boolean): Promise<UserPlan> {
    const settings = await this.settings()
    return this.withMissingAccounts(settings, planSync(settings, roster, {removeMissing}), roster)
  }

  private entries(names: string[], settings: Settings, admin: boolean): RosterEntry[] {
    if (names.length === 0)
      throw usageError('no user name was given', 'give one or more names, such as: hubctl users add ada')
    const pam = UsersService.pam(settings)
    const checked = names.map((name) => checkUserName(name, {pam}))
    const twice = checked.find((name, i) => checked.indexOf(name) !== i)
    if (twice) throw usageError(`${twice} is given twice`, 'give each name once')
    return checked.map((name) => ({name, admin}))
  }

  private assertAdminLeft(settings: Settings, plan: UserPlan): void {
    if (applyPlan(settings, plan).admins.length === 0)
      throw usageError(
        'that would leave the hub without an admin',
        'make another user admin first (hubctl users admin NAME), then run this again',
      )
  }

  /**
   * Carry out a plan. Everything is checked first (names, system accounts, the rendered config);
   * then, in order: system accounts made (PAM), the config installed (JupyterHub loads it) and
   * hubctl.json saved, a running hub restarted and its database told (servers of removed users
   * stopped, the users deleted; admin flags set), and the accounts of removed users locked and
   * their homes archived.
   */
  async apply(plan: UserPlan, options: ApplyOptions = {}): Promise<ApplyResult> {
    const began = this.clock.now()
    const result: ApplyResult = {
      plan,
      dryRun: Boolean(options.dryRun),
      changed: false,
      accounts: {created: [], adopted: [], reopened: [], locked: [], left: []},
      archives: [],
      config: 'not rendered',
      hub: {running: false, restarted: false, deleted: [], adminSet: [], serversStopped: []},
      seconds: 0,
      phases: {check: 0, accounts: 0, config: 0, hub: 0, removals: 0},
    }
    let mark = began
    const phase = (name: keyof ApplyResult['phases']) => {
      const now = this.clock.now()
      result.phases[name] = Math.round((now - mark) / 100) / 10
      mark = now
    }
    const lock = options.dryRun ? undefined : await acquireLock(this.deps.layout.lockFile, 'users', {waitMs: 10_000})
    try {
      const settings = await this.settings()
      const pam = UsersService.pam(settings)
      const record = await this.records.load()
      // 1. Check: every account a new user would get or take.
      const accounts = pam
        ? await this.accounts.lookup([...plan.add, ...plan.account].map((e) => e.name))
        : new Map<string, Account>()
      const accountPlan = pam ? this.checkAccounts(plan, accounts, record, Boolean(options.adopt)) : undefined
      const lists = applyPlan(settings, plan)
      const next: Settings = {...settings, admins: lists.admins, allowedUsers: lists.allowedUsers}
      result.hub.running = await this.hubRunning()
      if (options.dryRun || emptyPlan(plan)) {
        if (emptyPlan(plan) && !options.dryRun) await this.finishRemovals(plan, record, options, result)
        result.seconds = this.seconds(began)
        return result
      }
      // Only system accounts to make (init --create-users, `users add` of a user without one): the
      // lists, so the config, stay as they are, and JupyterHub need not be asked anything.
      const listsChange =
        JSON.stringify([next.admins, next.allowedUsers]) !== JSON.stringify([settings.admins, settings.allowedUsers])
      const install = listsChange
        ? await detectJupyterHub(this.deps.runner, settings.executables.jupyterhub)
        : undefined
      const ui = install && (await detectUserInterface(this.deps.runner, install))
      const content = install && ui && (await renderHubConfig(this.deps.layout, next, install, defaultUrlFor(ui)))
      phase('check')
      // 2. System accounts (PAM): made or taken; undone if the config does not load.
      const made: string[] = []
      try {
        for (const entry of accountPlan?.create ?? []) {
          const account = await this.accounts.create(entry.name)
          made.push(entry.name)
          record.accounts[entry.name] = this.recordOf('created', account, entry.email)
          result.accounts.created.push(entry.name)
        }
        for (const {entry, account} of accountPlan?.reopen ?? []) {
          await this.accounts.reopen(account)
          record.accounts[entry.name] = {...this.recordOf(record.accounts[entry.name].origin, account, entry.email)}
          result.accounts.reopened.push(entry.name)
        }
        for (const {entry, account} of accountPlan?.adopt ?? []) {
          record.accounts[entry.name] = this.recordOf('adopted', account, entry.email)
          result.accounts.adopted.push(entry.name)
        }
        for (const entry of plan.add)
          if (!pam && entry.email) record.accounts[entry.name] = {...record.accounts[entry.name], email: entry.email}
        phase('accounts')
        // 3. The config, as init renders it; then hubctl.json and the record.
        result.config =
          install && content
            ? (await installHubConfig(this.deps.layout, this.deps.runner, content, install)).action
            : 'unchanged'
      } catch (error) {
        for (const name of made) await this.deps.runner.run('userdel', ['--remove', name])
        throw error
      }
      await new SettingsStore(this.deps.layout).save(next)
      await this.records.save(record)
      result.changed = true
      this.log(`hubctl.json and ${this.deps.layout.hubConfig} updated`)
      phase('config')
      // 4. The running hub: servers of removed users stopped, the hub restarted, its database told.
      const python = install?.python ?? ''
      if (!install) {
        // Nothing of the hub's changes.
      } else if (result.hub.running) await this.tellRunningHub(next, python, plan, result)
      else
        await this.updateDatabase(
          python,
          {delete: plan.remove, revoke: plan.change.filter((c) => !c.admin).map((c) => c.name)},
          result,
        )
      phase('hub')
      // 5. Accounts of removed users: locked, homes archived.
      await this.finishRemovals(plan, record, options, result)
      phase('removals')
      result.seconds = this.seconds(began)
      return result
    } finally {
      await lock?.release()
    }
  }

  private recordOf(origin: AccountRecord['origin'], account: Account, email?: string): AccountRecord {
    return {origin, uid: account.uid, at: new Date(this.clock.now()).toISOString(), ...(email ? {email} : {})}
  }

  /** What to do to each new user's account; refuses system accounts and strangers' accounts before any change. */
  private checkAccounts(
    plan: UserPlan,
    accounts: Map<string, Account>,
    record: UsersRecord,
    adopt: boolean,
  ): {
    create: RosterEntry[]
    reopen: Array<{entry: RosterEntry; account: Account}>
    adopt: Array<{entry: RosterEntry; account: Account}>
  } {
    const out = {
      create: [] as RosterEntry[],
      reopen: [] as Array<{entry: RosterEntry; account: Account}>,
      adopt: [] as Array<{entry: RosterEntry; account: Account}>,
    }
    const problems: string[] = []
    const strangers: string[] = []
    for (const entry of [...plan.add, ...plan.account]) {
      const account = accounts.get(entry.name)
      if (!account) {
        out.create.push(entry)
        continue
      }
      const system = systemAccountProblem(account)
      if (system) {
        problems.push(system)
        continue
      }
      const known = record.accounts[entry.name]
      if (known && known.uid === account.uid) {
        if (known.removed) out.reopen.push({entry, account})
      } else if (adopt) out.adopt.push({entry, account})
      else strangers.push(entry.name)
    }
    if (problems.length > 0)
      throw usageError(
        `${problems.join('; ')}: system accounts never become hub users`,
        'choose personal names; nothing was changed',
      )
    if (strangers.length > 0)
      throw usageError(
        `${strangers.join(', ')} already ${strangers.length === 1 ? 'has a system account' : 'have system accounts'} that hubctl did not create`,
        `give --adopt to let hub users log in with ${strangers.length === 1 ? 'it' : 'them'} (hubctl then never locks or archives ${strangers.length === 1 ? 'it' : 'them'}), or choose other names; nothing was changed`,
      )
    return out
  }

  /**
   * The running servers of these users stopped through the hub API (none when the hub is not
   * running); the names whose servers were stopped. `users admin --revoke --share-writer`: a
   * running server keeps the groups it started with, so it would keep writing the share.
   */
  async stopServers(names: string[]): Promise<string[]> {
    if (!(await this.hubRunning())) return []
    const api = this.api(await this.settings())
    const stopped: string[] = []
    for (const name of names) if (await this.stopServersOf(api, name)) stopped.push(name)
    return stopped
  }

  /** Every server of the user stopped, waited for (at most 2 minutes); whether there was one. */
  private async stopServersOf(api: HubApi, name: string): Promise<boolean> {
    const servers = await api.userServers(name).catch(() => [])
    if (servers.length === 0) return false
    for (const server of servers) await api.stopServer(name, server.name)
    for (let i = 0; i < 600 && (await api.userServers(name).catch(() => [])).length > 0; i++)
      await this.clock.sleep(200)
    return true
  }

  private async tellRunningHub(settings: Settings, python: string, plan: UserPlan, result: ApplyResult): Promise<void> {
    const api = this.api(settings)
    for (const name of plan.remove) if (await this.stopServersOf(api, name)) result.hub.serversStopped.push(name)
    // An admin revoked: JupyterHub 5+ lets no service but an admin one take the flag away through
    // the API, and its start only ever grants it (admin_users): the database is told first.
    await this.updateDatabase(python, {revoke: plan.change.filter((c) => !c.admin).map((c) => c.name)}, result)
    if (result.config === 'written') {
      await (this.deps.restart ?? restartStack)(this.deps.layout)
      result.hub.restarted = true
      this.log('the hub restarted with the new config; user servers kept running')
    }
    for (const name of plan.remove) if ((await api.deleteUser(name)) === 'deleted') result.hub.deleted.push(name)
    // A new admin is made one by the restarted hub (admin_users); both directions checked here.
    if (plan.change.length > 0) {
      const admins = new Map((await api.listUsers()).map((user) => [user.name, user.admin]))
      const set = plan.change.filter(({name, admin}) => admins.get(name) === admin).map((c) => c.name)
      result.hub.adminSet = [...new Set([...result.hub.adminSet, ...set])]
    }
  }

  /**
   * The hub's database through JupyterHub's own ORM (the hub's Python): users deleted (with the hub
   * stopped) and admin flags taken away. The names reach the script on its standard input.
   */
  private async updateDatabase(
    python: string,
    changes: {delete?: string[]; revoke?: string[]},
    result: ApplyResult,
  ): Promise<void> {
    const lines = [
      ...(changes.delete ?? []).map((name) => `delete ${name}`),
      ...(changes.revoke ?? []).map((name) => `revoke ${name}`),
    ]
    if (lines.length === 0) return
    const found = await fs.stat(this.deps.layout.database).then(
      () => true,
      () => false,
    )
    if (!found) return
    const run = await this.deps.runner.run(python, ['-I', '-c', DATABASE_SCRIPT, databaseUrl(this.deps.layout)], {
      input: `${lines.join('\n')}\n`,
      timeoutMs: 60_000,
      cwd: '/',
    })
    if (run.exitCode !== 0)
      throw runtimeError(
        `could not update the hub's database (${lines.join(', ')}): ${run.stderr.trim().split('\n').pop() ?? ''}`,
        'read the message; then run the same `hubctl users` command again',
      )
    for (const line of run.stdout.split('\n')) {
      const [action, name] = line.split(' ')
      if (action === 'deleted') result.hub.deleted.push(name)
      if (action === 'revoked') result.hub.adminSet.push(name)
    }
  }

  /** Removed users' accounts: those hubctl made are locked (home archived unless --keep-home); adopted ones are left. */
  private async finishRemovals(
    plan: UserPlan,
    record: UsersRecord,
    options: ApplyOptions,
    result: ApplyResult,
  ): Promise<void> {
    const settings = await this.settings()
    if (!UsersService.pam(settings)) return
    // `users remove` of a name no longer a user still finishes the lock of an interrupted run.
    const names = [...plan.remove, ...plan.keep.filter((name) => record.accounts[name] && !this.isUser(settings, name))]
    const accounts = await this.accounts.lookup(names)
    for (const name of names) {
      const known = record.accounts[name]
      const account = accounts.get(name)
      if (!known || !account || known.uid !== account.uid || known.removed) continue
      if (known.origin !== 'created') {
        result.accounts.left.push(name)
        continue
      }
      // No new login, then whatever still runs as the user (a server the hub no longer knows, a
      // terminal's children, a process that does not want to go) ended; then the home moved out of
      // the user's reach before root archives and deletes it (removal.ts).
      await this.accounts.lock(name)
      await endProcesses(account, {runner: this.deps.runner, clock: this.clock, processesOf: this.deps.processesOf})
      const moved = options.keepHome ? undefined : await moveHomeAway(this.deps.layout, account)
      if (moved) {
        const stamp = new Date(this.clock.now()).toISOString().replace(/[:.]/g, '-')
        const archive = this.deps.layout.homeArchive(name, stamp)
        await fs.mkdir(this.deps.layout.homeArchiveDir, {recursive: true, mode: 0o700})
        await archiveAndDelete(this.deps.runner, name, moved, archive)
        result.archives.push(archive)
      }
      record.accounts[name] = {...known, removed: new Date(this.clock.now()).toISOString()}
      await this.records.save(record)
      result.accounts.locked.push(name)
    }
    if (result.accounts.locked.length > 0) result.changed = true
  }

  private isUser(settings: Settings, name: string): boolean {
    return settings.admins.includes(name) || settings.allowedUsers.includes(name)
  }

  /** `users passwd`: the Unix password of a hub user's account hubctl made or adopted (PAM only). */
  async setPassword(name: string, password: string): Promise<void> {
    const settings = await this.settings()
    if (!UsersService.pam(settings))
      throw usageError(
        `this hub's authenticator is ${settings.authenticator}, which does not use Unix passwords`,
        'users log in as the authenticator says; `users passwd` is for PAM hubs',
      )
    checkUserName(name, {pam: true})
    if (!this.isUser(settings, name))
      throw usageError(`${name} is not a user of this hub`, `add it first: hubctl users add ${name}`)
    checkPassword(password)
    const lock = await acquireLock(this.deps.layout.lockFile, 'users passwd', {waitMs: 10_000})
    try {
      const account = (await this.accounts.lookup([name])).get(name)
      if (!account) throw usageError(`${name} has no system account`, `create it: hubctl users add ${name}`)
      const system = systemAccountProblem(account)
      if (system) throw usageError(`${system}: hubctl never sets its password`, 'use passwd(1) as root')
      const known = (await this.records.load()).accounts[name]
      if (!known || known.uid !== account.uid || known.removed)
        throw usageError(
          `${name}'s system account was not created or adopted by hubctl`,
          `adopt it first (hubctl users add ${name} --adopt), or use passwd(1)`,
        )
      await this.accounts.setPassword(name, password)
    } finally {
      await lock.release()
    }
  }

  private seconds(began: number): number {
    return Math.round((this.clock.now() - began) / 100) / 10
  }
}

/** A password `users passwd` accepts. */
export function checkPassword(password: string): void {
  if (password.length < MIN_PASSWORD)
    throw usageError(`the password is shorter than ${MIN_PASSWORD} characters`, `give a longer one, or use --generate`)
  if (/[\r\n\0]/.test(password))
    throw usageError('the password holds a line break or NUL', 'give it on one line, or use --generate')
}

/** A generated password: 18 characters of base64url (108 bits). */
export function generatePassword(): string {
  return randomBytes(14).toString('base64url').slice(0, 18)
}

/**
 * Lines on stdin, "delete NAME" or "revoke NAME": the user deleted (and, by the ORM's cascade, its
 * servers and tokens), or its admin flag cleared; prints what it did, one line each.
 */
const DATABASE_SCRIPT = `
import sys
from jupyterhub import orm
db = orm.new_session_factory(sys.argv[1])()
for line in sys.stdin.read().splitlines():
    action, _, name = line.partition(" ")
    user = db.query(orm.User).filter_by(name=name).first()
    if user is None:
        continue
    if action == "delete":
        db.delete(user)
        print("deleted", name)
    elif action == "revoke":
        # JupyterHub 2+: admin is also the role "admin", which grants the admin page's scopes.
        admin_role = db.query(orm.Role).filter_by(name="admin").first()
        if admin_role is not None and admin_role in user.roles:
            user.roles.remove(admin_role)
        user.admin = False
        print("revoked", name)
db.commit()
`
