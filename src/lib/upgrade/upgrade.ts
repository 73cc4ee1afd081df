import fs from 'node:fs/promises'
import path from 'node:path'

import {BackupService} from '../backup/backup.js'
import {readSchema, schemaState, SchemaReport, SchemaState} from '../config/dbschema.js'
import {importsIdleCuller} from '../config/culler.js'
import {installHubPython} from '../config/hubpython.js'
import {renderHubConfig} from '../config/hubconfig.js'
import {
  JupyterHubInstall,
  defaultUrlFor,
  detectJupyterHub,
  detectUserInterface,
  interpreterProblem,
  validateHubConfig,
} from '../config/jupyterhub.js'
import type {Layout} from '../config/layout.js'
import {Settings, SettingsStore} from '../config/settings.js'
import {HubctlError, messageOf, preflightError, runtimeError, usageError} from '../errors.js'
import {exists, readIfExists, symlinkAtomic, writeFileAtomic} from '../files/atomic.js'
import type {Runner} from '../runner.js'
import {HubEnvPlan, HubEnvService, systemPython} from '../setup/hubenv.js'
import {JournalOp, RestoreJournal, finishInterrupted, finishInterruptedUpgrade} from '../backup/journal.js'
import {UsersEnvLinks, UsersEnvService} from '../env/userenv.js'
import {Stage, Undo, UpgradePlan, compareVersions, planUpgrade, undoSteps} from './plan.js'
import {planUsersEnv} from './usersenv.js'

/**
 * `hubctl upgrade`: the hub to the JupyterHub this hubctl pins (python/constraints.txt), with a
 * rollback at every step.
 *
 *   1. plan: the live JupyterHub, the pinned environment, the database's schema; nothing to do at the pins.
 *   2. backup (`hubctl backup`'s service), while the hub runs.
 *   3. the pinned environment built beside the live one (init's HubEnvService, not made live).
 *   4. a trial: the database copied online and migrated by the new JupyterHub (what `jupyterhub
 *      upgrade-db` runs: alembic upgrade head), and the new config loaded by it. A failure here
 *      changes nothing the hub uses: it never stopped.
 *   5. the switch: the hub stopped (user servers keep running), the database copied again (now
 *      still) and migrated, renamed over the live one (the old one kept beside it), the config,
 *      hubctl.json and the `current` link written, the hub started on the new environment.
 *   6. the check: the hub answers its API with hubctl's token (the migrated database) and the login
 *      page answers through nginx. Any failure after 5 began: everything put back and the old hub
 *      started (undoSteps), then exit 7 naming what failed.
 */

/** The migration `jupyterhub upgrade-db` runs (jupyterhub.dbutil: alembic upgrade head), in process, on a copy. */
const MIGRATE = `
import sys
import alembic.command
from alembic.config import Config
from jupyterhub.dbutil import _temp_alembic_ini
with _temp_alembic_ini("sqlite:///" + sys.argv[1]) as ini:
    alembic.command.upgrade(Config(ini), "head")
`

/** SQLite's backup API (a consistent copy while the hub writes), by the given Python. */
const COPY = `
import pathlib, sqlite3, sys
src = sqlite3.connect(pathlib.Path(sys.argv[1]).as_uri() + "?mode=ro", uri=True, timeout=60)
dst = sqlite3.connect(sys.argv[2])
with dst:
    src.backup(dst)
dst.close()
src.close()
`

/** Stopping and starting the hub (upgrade/stack.ts; tests replace it). */
export interface HubControl {
  /** Whether a hub runs under this prefix now. */
  running(): Promise<boolean>
  /** Stop the hub and its proxy; user servers keep running. */
  stop(settings: Settings): Promise<void>
  /** Start the hub as it was run (systemd at prefix /, else start --detach); resolves once it is ready. */
  start(settings: Settings): Promise<void>
  /** The new hub checked: its API with hubctl's token, the login page through nginx. Throws what failed. */
  check(settings: Settings): Promise<void>
  /** The user servers running now: who, and from which jupyterhub-singleuser. */
  servers(settings: Settings): Promise<string[]>
}

export interface UpgradeDeps {
  layout: Layout
  runner: Runner
  control: HubControl
  log?: (line: string) => void
  /** Asked before anything changes (the command: --yes, or a terminal). */
  confirm: (summary: string) => Promise<boolean>
  /**
   * An environment already built with the pinned JupyterHub (a directory with bin/jupyterhub), used
   * instead of building hubctl's own: for machines that build it elsewhere, and the tests (which
   * upgrade to the prebuilt /opt/hubctl-venv rather than spend minutes on PyPI).
   */
  env?: string
  /** Where the constraints come from (tests). */
  constraintsFile?: string
  /** Run before each stage (tests: make a step fail). */
  beforeStage?: (stage: Stage) => Promise<void>
}

export interface UpgradeOptions {
  rebuild?: boolean
}

export interface UpgradeResult {
  action: 'nothing' | 'upgraded'
  why: string
  from: {jupyterhub: string; executable: string}
  to: {jupyterhub: string; executable: string}
  backup?: string
  /** Migrations the database was given (empty: it was at the schema already). */
  migrations: string[]
  /** Seconds the hub did not run (stop to ready). */
  downtimeSeconds?: number
  /** The user servers that kept running, with what they run until they are restarted. */
  servers: string[]
  seconds: number
  /**
   * The users' environment: built again with the hub's (its Python was gone: part of the switch,
   * rolled back with it), or after the hub's upgrade for the new pins (upgrade/usersenv.ts), or kept and why.
   */
  usersEnv?: UsersEnvOutcome
}

export interface UsersEnvOutcome {
  action: 'rebuilt' | 'kept'
  why: string
  /** rebuilt: the new live environment and the course's packages in it. */
  current?: string
  packages?: string[]
  /** kept: what failed, and what the operator does about it. */
  error?: string
  fix?: string
}

/** What was in place before the switch, to put back. */
interface Saved {
  settings: Settings
  config?: string
  link?: string
  /** The users' environment's links, when the upgrade builds it again. */
  usersLinks?: UsersEnvLinks
}

export class UpgradeService {
  private readonly done = new Set<Stage>()

  constructor(private readonly deps: UpgradeDeps) {}

  private log(line: string): void {
    this.deps.log?.(line)
  }

  private async reach(stage: Stage): Promise<void> {
    await this.deps.beforeStage?.(stage)
  }

  async upgrade(options: UpgradeOptions = {}): Promise<UpgradeResult> {
    const {layout, runner} = this.deps
    const began = Date.now()
    if (!(await exists(layout.settings)))
      throw usageError(
        `there is no hub under ${layout.prefix} to upgrade (${layout.settings} is missing)`,
        'give the --prefix of the hub, or set one up with `hubctl init`',
      )
    // An upgrade or a restore killed half way through its renames: finished first.
    for (const what of await finishInterrupted(layout, runner)) this.log(`finished an interrupted ${what}`)
    const settings = await new SettingsStore(layout).load()
    const hubEnv = new HubEnvService({layout, runner, constraintsFile: this.deps.constraintsFile})
    const pinned = HubEnvService.pinned(await hubEnv.constraints())
    const liveExecutable = await resolved(settings.executables.jupyterhub)
    // Gone: the link bin/python3 is there, the interpreter it names is not (exists() does not follow it).
    const pythonGone = (await interpreterProblem(runner, settings.executables.jupyterhub)) !== undefined
    const users = new UsersEnvService({layout, runner, constraintsFile: this.deps.constraintsFile, lock: false})
    const usersPythonGone =
      Boolean(settings.usersEnv) &&
      (await exists(layout.usersEnvCurrentSingleuser)) &&
      (await interpreterProblem(runner, layout.usersEnvCurrentSingleuser)) !== undefined
    const live = pythonGone ? undefined : await detectJupyterHub(runner, settings.executables.jupyterhub)
    const liveVersion = live?.version ?? settings.jupyterhubVersion
    if (compareVersions(liveVersion, pinned.jupyterhub) > 0)
      throw usageError(
        `the hub runs JupyterHub ${liveVersion}, newer than the ${pinned.jupyterhub} this hubctl pins; hubctl upgrade does not downgrade`,
        'upgrade hubctl (npm install -g hubctl), then run `hubctl upgrade` again',
      )
    // The target: an environment given (--env), else hubctl's own of the pins, with today's Python.
    let envPlan: HubEnvPlan | undefined
    let target: {executable: string; dir: string; built: boolean}
    if (this.deps.env) {
      // Resolved: a link to an environment (the tests' .venv) is copied as what it names (the users' environment).
      const dir = await resolved(this.deps.env)
      target = {executable: await resolved(path.join(dir, 'bin/jupyterhub')), dir, built: true}
    } else {
      const python = await systemPython()
      if (!python)
        throw preflightError(
          'there is no python3 to build the environment with',
          'apt-get install python3 python3-venv',
        )
      envPlan = await hubEnv.plan(python)
      target = {
        executable: path.resolve(envPlan.jupyterhub),
        dir: envPlan.dir,
        built: await exists(layout.hubEnvComplete(envPlan.id)),
      }
      if (target.built) target.executable = await resolved(envPlan.jupyterhub)
    }
    const liveSchema: SchemaState =
      live && (await exists(layout.database))
        ? schemaState(await readSchema(runner, live.python, layout.database))
        : 'current'
    const plan = planUpgrade({
      live: {executable: liveExecutable, version: liveVersion},
      pinned,
      target,
      liveSchema,
      rebuild: Boolean(options.rebuild),
      pythonGone,
      usersPythonGone,
    })
    const result: UpgradeResult = {
      action: 'nothing',
      why: plan.why,
      from: {jupyterhub: liveVersion, executable: liveExecutable},
      to: {jupyterhub: pinned.jupyterhub, executable: target.executable},
      migrations: [],
      servers: [],
      seconds: 0,
    }
    if (plan.action === 'nothing') {
      const usersEnv = await this.usersEnv(target.dir)
      if (usersEnv) result.usersEnv = usersEnv
      result.seconds = seconds(began)
      return result
    }
    this.log(plan.why)
    if (!(await this.deps.confirm(`Upgrade the hub under ${layout.prefix}: ${plan.why}?`)))
      throw usageError('the upgrade was not confirmed; nothing changed', 'answer yes, or give --yes')
    const running = await this.deps.control.running()

    // 2. backup
    await this.reach('backup')
    this.log('backing up the hub first (hubctl backup)')
    result.backup = (await new BackupService({layout, runner}).backup()).archive
    this.log(`  ${result.backup}`)
    this.done.add('backup')

    // 3. the environment, beside the live one
    if (plan.build) {
      if (!envPlan)
        throw usageError(
          `--rebuild builds hubctl's environment; ${this.deps.env} was given instead`,
          'leave out --env, or rebuild that environment yourself',
        )
      await this.reach('built')
      this.log(`building JupyterHub ${pinned.jupyterhub} and JupyterLab ${pinned.jupyterlab} into ${envPlan.dir}`)
      await this.stepFails('the build of the new environment', () =>
        new HubEnvService({
          layout,
          runner,
          constraintsFile: this.deps.constraintsFile,
          onProgress: (text) => this.log(`  ${text}`),
        }).build(envPlan!, {live: false}),
      )
      target.executable = await resolved(envPlan.jupyterhub)
      result.to.executable = target.executable
      this.done.add('built')
    }
    let usersLinks: UsersEnvLinks | undefined
    if (plan.rebuildUsers) {
      await this.reach('users-built')
      this.log(`building the users' environment again from ${target.dir}`)
      const rebuilt = await this.stepFails("the build of the users' environment", () =>
        new UsersEnvService({
          layout,
          runner,
          constraintsFile: this.deps.constraintsFile,
          lock: false,
          onProgress: (text) => this.log(`  ${text}`),
        }).rebuildFrom(target.dir),
      )
      usersLinks = rebuilt.links
      result.usersEnv = {
        action: 'rebuilt',
        why: 'its Python was gone',
        current: rebuilt.links.current!.replace(/^envs\//, ''),
        packages: rebuilt.packages,
      }
    }
    const next = await detectJupyterHub(runner, target.executable)
    result.to.jupyterhub = next.version
    if (next.version !== pinned.jupyterhub)
      throw usageError(
        `${target.executable} is JupyterHub ${next.version}, not the ${pinned.jupyterhub} this hubctl pins`,
        'give --env an environment built from python/constraints.txt, or leave --env out',
      )

    // 4. the trial: the database migrated on a copy, the config loaded by the new JupyterHub
    const schema = (await exists(layout.database)) ? await readSchema(runner, next.python, layout.database) : undefined
    const state = schema ? schemaState(schema) : 'current'
    if (state === 'newer')
      throw runtimeError(
        `the hub's database is newer than JupyterHub ${next.version} (schema revision ${schema?.revision}); nothing changed`,
        'restore a backup made with this JupyterHub, or upgrade hubctl',
      )
    const migrate = state === 'older'
    result.migrations = schema?.pending ?? []
    const nextSettings = await this.nextSettings(settings, next)
    const config = await renderHubConfig(
      layout,
      nextSettings,
      next,
      defaultUrlFor(await detectUserInterface(runner, next)),
    )
    await this.reach('trial-migrated')
    if (migrate) {
      this.log(`migrating a copy of the database (${result.migrations.join(', ')})`)
      await this.stepFails('the migration of the database', () => this.migrateCopy(next))
      await fs.rm(layout.databaseUpgrade, {force: true})
    }
    await installHubPython(layout)
    await writeFileAtomic(layout.hubConfigCandidate, config, {mode: 0o644})
    try {
      await this.stepFails(`the new config loaded by JupyterHub ${next.version}`, () =>
        validateHubConfig(runner, next, layout.hubConfigCandidate),
      )
    } finally {
      await fs.rm(layout.hubConfigCandidate, {force: true})
    }
    this.done.add('trial-migrated')
    const servers = running ? await this.deps.control.servers(settings).catch(() => []) : []

    // 5. the switch
    const saved: Saved = {
      settings,
      config: await readIfExists(layout.hubConfig),
      link: await fs.readlink(layout.hubEnvCurrent).catch(() => undefined),
      usersLinks: usersLinks ? await users.links() : undefined,
    }
    let stoppedAt = 0
    try {
      await this.reach('stopped')
      if (running) {
        this.log('stopping the hub (user servers keep running)')
        stoppedAt = Date.now()
        await this.deps.control.stop(settings)
      }
      this.done.add('stopped')
      if (migrate) {
        await this.reach('database-swapped')
        this.log('migrating the database')
        await this.stepFails('the migration of the database', () => this.migrateCopy(next))
      }
      await this.reach('config-written')
      await this.reach('settings-written')
      // The database (the old one kept as .pre-upgrade), the config and hubctl.json: one journal.
      // A rebuild's `current` link too: a kill between the build and the switch leaves the old hub
      // whole (no journal yet) or a journal the next run finishes (hubctl.json and the link together).
      if (envPlan) await this.reach('link-switched')
      await this.switchFiles({
        config,
        settings: nextSettings,
        database: migrate ? {from: layout.databaseUpgrade, aside: layout.databasePreUpgrade} : undefined,
        link: envPlan ? {target: layout.hubEnvLinkTarget(envPlan.id), previous: saved.link} : undefined,
      })
      if (migrate) this.done.add('database-swapped')
      this.done.add('config-written')
      this.done.add('settings-written')
      if (envPlan) {
        this.done.add('link-switched')
        // The links are switched: this removes the environments neither names.
        await hubEnv.makeLive(envPlan.id)
      }
      if (usersLinks) {
        await this.reach('users-switched')
        await users.setLinks(usersLinks)
        this.done.add('users-switched')
      }
      await this.reach('started')
      this.log(`starting the hub on JupyterHub ${next.version}`)
      await this.stepFails(`the start of JupyterHub ${next.version}`, () => this.deps.control.start(nextSettings))
      if (stoppedAt) result.downtimeSeconds = seconds(stoppedAt)
      this.done.add('started')
      await this.stepFails('the check of the new hub', () => this.deps.control.check(nextSettings))
      this.done.add('checked')
    } catch (error) {
      // An environment whose Python is gone cannot run again: the rollback puts back the links,
      // config and database, and says that the old hub was not started.
      await this.rollBack(saved, running && !pythonGone)
      if (usersLinks) await users.prune().catch(() => {})
      const what = error instanceof HubctlError ? error.message : messageOf(error)
      throw runtimeError(
        `the upgrade failed: ${what}; rolled back: the old environment and the old database are back${pythonGone ? ` (the old environment's Python is gone: the hub was not started again)` : running ? ', and the hub runs as before' : ''}`,
        `fix what the message names, then run \`hubctl upgrade\` again (the backup: ${result.backup})`,
        error,
      )
    }
    if (usersLinks) await users.prune().catch(() => {})
    result.action = 'upgraded'
    // After the hub's upgrade stands: a users' environment that cannot be built again never undoes it.
    // (One built in the switch above, its Python gone, was built from the new environment already.)
    const usersEnv = usersLinks ? undefined : await this.usersEnv(target.dir)
    if (usersEnv) result.usersEnv = usersEnv
    result.servers = servers.map(
      (s) => `${s} (JupyterHub ${liveVersion}'s server, until it is restarted; then ${next.version}'s)`,
    )
    result.seconds = seconds(began)
    return result
  }

  /**
   * The users' environment built again from the hub's environment `source` when its base pins
   * changed or its Python is gone (planUsersEnv), with the course's packages; kept, and said so,
   * when that fails. undefined: nothing to do (or no users' environment).
   */
  private async usersEnv(source: string): Promise<UsersEnvOutcome | undefined> {
    const service = new UsersEnvService({
      layout: this.deps.layout,
      runner: this.deps.runner,
      constraintsFile: this.deps.constraintsFile,
      onProgress: (text) => this.log(`  ${text}`),
    })
    const facts = await service.baseFacts()
    const plan = planUsersEnv({enabled: facts !== undefined, pythonRuns: true, installed: {}, pinned: {}, ...facts})
    if (plan.action === 'none') return undefined
    this.log(`building the users' environment again: ${plan.why}`)
    try {
      const built = await service.rebase(source)
      return {action: 'rebuilt', why: plan.why, current: built.current, packages: built.packages}
    } catch (error) {
      const hubctlError = error instanceof HubctlError ? error : undefined
      return {
        action: 'kept',
        why: plan.why,
        error: hubctlError?.message ?? messageOf(error),
        fix: `${facts?.pythonRuns === false ? 'user servers cannot start until it is built: ' : 'user servers run the old one meanwhile; '}${hubctlError?.fix ?? 'fix what the error names'}, then run \`hubctl env sync\` with the course's packages (hubctl env list)`,
      }
    }
  }

  /** hubctl.json for the new JupyterHub: its executables, its version, the culler run by its Python when it has one. */
  private async nextSettings(settings: Settings, next: JupyterHubInstall): Promise<Settings> {
    const {runner} = this.deps
    const executables = {...settings.executables, jupyterhub: next.executable, singleuser: next.singleuser}
    let cull = settings.cull
    const ownCuller =
      !settings.executables.idleCuller || settings.executables.idleCuller.startsWith(this.deps.layout.hubEnvRoot)
    if (cull && ownCuller && (await importsIdleCuller(runner, next.python))) {
      executables.idleCuller = next.python
      cull = {...cull, by: 'jupyterhub-idle-culler'}
    }
    return {...settings, executables, jupyterhubVersion: next.version, ...(cull ? {cull} : {})}
  }

  /**
   * The switch of the hub's files, whole or not at all: the new config and hubctl.json written
   * complete beside the live ones, then a journal (upgradeJournal) of the renames (the database's
   * too: the live one moved aside first when `aside` is given), then the renames. An upgrade
   * killed after the journal is finished by the next `hubctl start` or upgrade; before it, the
   * old files are all still in place.
   */
  private async switchFiles(parts: {
    config?: string
    settings: Settings
    database?: {from: string; aside?: string}
    link?: {target: string; previous?: string}
  }): Promise<void> {
    const {layout} = this.deps
    const staged = async (target: string, text: string, mode: number) => {
      const next = layout.upgradeNew(target)
      await writeFileAtomic(next, text, {mode})
      return next
    }
    const config = parts.config === undefined ? undefined : await staged(layout.hubConfig, parts.config, 0o644)
    const settings = SettingsStore.file(parts.settings)
    const settingsNew = await staged(layout.settings, settings.text, settings.mode)
    const ops = switchOps(layout, {database: parts.database, config, settings: settingsNew, link: parts.link})
    const journal: RestoreJournal = {version: 1, archive: 'hubctl upgrade', ops}
    await writeFileAtomic(layout.upgradeJournal, `${JSON.stringify(journal, null, 2)}\n`, {mode: 0o600})
    await finishInterruptedUpgrade(layout)
  }

  /** The live database copied (consistent, SQLite's backup API) to databaseUpgrade, then migrated there. */
  private async migrateCopy(next: JupyterHubInstall): Promise<void> {
    const {layout, runner} = this.deps
    await fs.rm(layout.databaseUpgrade, {force: true})
    const stat = await fs.stat(layout.database)
    await writeFileAtomic(layout.databaseUpgrade, '', {mode: 0o600})
    await fs.chown(layout.databaseUpgrade, stat.uid, stat.gid)
    for (const [what, script, args] of [
      ['copy', COPY, [layout.database, layout.databaseUpgrade]],
      ['migrate', MIGRATE, [layout.databaseUpgrade]],
    ] as const) {
      const run = await runner.run(next.python, ['-I', '-c', script, ...args], {cwd: '/', timeoutMs: 600_000})
      if (run.exitCode !== 0) {
        await fs.rm(layout.databaseUpgrade, {force: true})
        const last = run.stderr.trim().split('\n').pop() ?? 'no output'
        throw runtimeError(`${what === 'copy' ? 'the copy' : 'alembic upgrade head'} failed: ${last}`, '')
      }
    }
  }

  private async stepFails<T>(what: string, work: () => Promise<T>): Promise<T> {
    try {
      return await work()
    } catch (error) {
      const why = error instanceof HubctlError ? error.message : messageOf(error)
      throw runtimeError(
        `${what} failed (${why})`,
        this.done.has('stopped') ? 'see the rollback below' : 'nothing changed; the hub runs as before',
        error,
      )
    }
  }

  /** Put back what the switch changed, in undoSteps' order, and start the old hub; every step tried. */
  private async rollBack(saved: Saved, wasRunning: boolean): Promise<void> {
    const {layout, control} = this.deps
    const steps: Record<Undo, () => Promise<void>> = {
      'stop-new-hub': () => control.stop(saved.settings),
      // hubctl.json, the config and the database were switched together: put back together (one journal).
      'settings-back': () =>
        this.switchFiles({
          config: saved.config,
          settings: saved.settings,
          database: this.done.has('database-swapped') ? {from: layout.databasePreUpgrade} : undefined,
          link: this.done.has('link-switched') && saved.link ? {target: saved.link} : undefined,
        }),
      'config-back': async () => {},
      'link-back': async () => {
        if (saved.link) await symlinkAtomic(saved.link, layout.hubEnvCurrent)
      },
      'users-links-back': async () => {
        if (saved.usersLinks) await new UsersEnvService({layout, runner: this.deps.runner}).setLinks(saved.usersLinks)
      },
      'database-back': async () => {},
      'start-old-hub': async () => {
        if (wasRunning) await control.start(saved.settings)
      },
    }
    for (const undo of undoSteps(this.done)) {
      this.log(`rolling back: ${undo}`)
      await steps[undo]().catch((error: unknown) => this.log(`  ${undo} failed: ${messageOf(error)}`))
    }
  }
}

/**
 * The upgrade's switch as one journal (upgradeJournal): the database's rename (the live one moved
 * aside first when `aside` is given), the config's and hubctl.json's (staged beside them), and a
 * rebuild's `current` link of the hub's environment (`previous` naming the one it replaces):
 * finished whole by the next `hubctl start` or upgrade when the upgrade is killed after writing it.
 */
export function switchOps(
  layout: Layout,
  parts: {
    database?: {from: string; aside?: string}
    config?: string
    settings: string
    link?: {target: string; previous?: string}
  },
): JournalOp[] {
  const ops: JournalOp[] = []
  if (parts.database) {
    for (const sidecar of layout.databaseSidecars) ops.push({op: 'remove', to: sidecar})
    ops.push({op: 'rename', from: parts.database.from, to: layout.database, aside: parts.database.aside})
  }
  if (parts.config !== undefined) ops.push({op: 'rename', from: parts.config, to: layout.hubConfig})
  ops.push({op: 'rename', from: parts.settings, to: layout.settings})
  if (parts.link) {
    if (parts.link.previous && parts.link.previous !== parts.link.target)
      ops.push({op: 'link', to: layout.hubEnvPrevious, target: parts.link.previous})
    ops.push({op: 'link', to: layout.hubEnvCurrent, target: parts.link.target})
  }
  return ops
}

async function resolved(executable: string): Promise<string> {
  return fs.realpath(executable).catch(() => path.resolve(executable))
}

function seconds(since: number): number {
  return Math.round((Date.now() - since) / 100) / 10
}

export type {UpgradePlan, SchemaReport}
