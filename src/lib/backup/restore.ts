import {randomBytes} from 'node:crypto'
import {constants as fsConstants} from 'node:fs'
import fs from 'node:fs/promises'
import path from 'node:path'

import {Layout} from '../config/layout.js'
import {PORT_FLAGS, PORT_NAMES, Ports, Settings, SettingsStore} from '../config/settings.js'
import {JupyterHubInstall, detectJupyterHub} from '../config/jupyterhub.js'
import {nginxFor} from '../config/nginx.js'
import {exists, readIfExists, writeFileAtomic} from '../files/atomic.js'
import {acquireLock} from '../files/lock.js'
import {messageOf, preflightError, runtimeError, usageError} from '../errors.js'
import type {Runner} from '../runner.js'
import {HUBCTL_VERSION} from '../version.js'
import {UnixAccounts, UsersRecord} from '../users/accounts.js'
import {checkHealth, hubHealthUrl} from '../stack/hubapi.js'
import {runningSupervisor} from '../stack/state.js'
import {startDetached, stopStack} from '../stack/control.js'
import {
  JournalOp,
  RestoreJournal,
  accountsBefore,
  finishInterruptedRestore,
  finishInterruptedUpgrade,
} from './journal.js'
import {MANIFEST, Manifest, compareVersions, parseManifest, sha256File} from './manifest.js'
import {PortChoice, isRelocated, movedPath, relocatedSettings, renderedForHere} from './relocate.js'

/*
 * `hubctl restore FILE`: the archive is unpacked beside srv/jupyterhub and checked whole (manifest,
 * every member's size and SHA-256, nothing more and nothing less, the versions) before anything of
 * the hub changes. Then the stack is stopped, the journal written in its `accounts` phase (the
 * accounts as they are), the system accounts made and their password hashes set, and every new
 * file, link and home written complete beside the one it replaces (`.NAME.hubctl-restore`,
 * fsynced, its mode and owner set); only then is the journal of the renames written (atomically,
 * over the first). Renaming each new entry over the old one follows the journal; a restore killed
 * before the renames' journal exists left the old hub, its accounts rolled back by the next
 * `hubctl restore` or `hubctl start` (plus unused `.hubctl-restore` files, replaced by the next
 * restore), one killed after it is completed by them (finishInterruptedRestore): the old hub and
 * accounts or the new ones, never a mix that runs.
 */

export interface RestoreDeps {
  layout: Layout
  runner: Runner
  log?: (line: string) => void
}

export interface RestoreOptions {
  archive: string
  /** Asked once the archive is verified, before anything changes; false refuses (exit 2). */
  confirm: (summary: string) => Promise<boolean>
  /** hubctl's bin/run.js, to start the restored hub in the background (`start --detach`). */
  bin: string
  /** The ports the operator chose (restore's port flags); the others are the archive's. */
  ports?: PortChoice
}

export interface RestoreResult {
  archive: string
  /** The prefix the archive's hub was under (its paths were moved under this one when it differs). */
  from: string
  ports: Ports
  /** The hub's config and nginx site rendered again here (another prefix or other ports). */
  relocated: boolean
  createdAt: string
  hubctl: string
  jupyterhub: string
  files: number
  homes: string[]
  accounts: Array<{name: string; uid: number; created: boolean; uidKept: boolean}>
  stopped: boolean
  started: 'systemd' | 'detached'
  healthy: boolean
  seconds: number
  warnings: string[]
}

function refused(problem: string): never {
  throw usageError(
    `the archive is not a complete hubctl backup: ${problem}; nothing was changed`,
    'use another backup (`ls srv/jupyterhub/backup/`), or make a new one with `hubctl backup`',
  )
}

export class RestoreService {
  private readonly warnings: string[] = []

  constructor(private readonly deps: RestoreDeps) {}

  private log(line: string): void {
    this.deps.log?.(line)
  }

  async restore(options: RestoreOptions): Promise<RestoreResult> {
    const {layout} = this.deps
    const started = Date.now()
    const archive = path.resolve(options.archive)
    const stat = await fs.stat(archive).catch(() => undefined)
    if (!stat?.isFile())
      throw usageError(`${archive} is not a file`, 'give the path of an archive `hubctl backup` wrote')
    await fs.mkdir(path.dirname(layout.srvDir), {recursive: true, mode: 0o755})
    const staging = layout.restoreStaging(randomBytes(6).toString('hex'))
    await fs.mkdir(staging, {mode: 0o700})
    try {
      this.log(`checking ${archive}`)
      const manifest = await this.verify(archive, staging)
      // Elsewhere (another prefix, other ports): hubctl.json moved here, its files rendered again.
      const archived = await this.stagedSettings(manifest, staging)
      const settings = relocatedSettings(archived, manifest.prefix, layout, options.ports)
      const relocated = isRelocated(archived, manifest.prefix, layout, settings)
      const install = await this.checkVersions(manifest, settings)
      if (!(await runningSupervisor(layout))) await this.checkPorts(settings)
      const where = relocated
        ? ` (moved from ${manifest.prefix}; ports ${PORT_NAMES.map((name) => `${PORT_FLAGS[name].flag.slice(2)} ${settings.ports[name]}`).join(', ')})`
        : ''
      const summary = `Restore the hub of ${manifest.createdAt} (hubctl ${manifest.hubctl}, JupyterHub ${manifest.jupyterhub}; ${manifest.files.length} entries, ${manifest.accounts.length} accounts, ${manifest.homes.length} homes) under ${layout.prefix}${where}, replacing what is there?`
      if (!(await options.confirm(summary)))
        throw usageError('the restore was not confirmed; nothing changed', 'answer yes, or give --yes')
      await fs.mkdir(layout.srvDir, {recursive: true, mode: 0o700})
      const lock = await acquireLock(layout.lockFile, 'restore', {waitMs: 10_000})
      let stopped = false
      const accounts: RestoreResult['accounts'] = []
      try {
        // A restore or an upgrade killed after its journal: finished (or rolled back) first, then replaced by this one.
        await finishInterruptedRestore(layout, this.deps.runner)
        await finishInterruptedUpgrade(layout)
        await this.removeStale(staging)
        if (await runningSupervisor(layout)) {
          this.log('stopping the running hub')
          const current = (await exists(layout.settings)) ? await new SettingsStore(layout).load() : settings
          const stop = await stopStack(layout, current, {log: (line) => this.log(line)})
          this.warnings.push(...stop.warnings)
          stopped = true
        }
        // Under systemd (Restart=always) the unit would start the old hub again: stopped through systemd.
        if (layout.isSystem && (await exists(layout.systemdUnit)))
          await this.deps.runner.run('systemctl', ['stop', 'jupyterhub.service'])
        const ops: RestoreJournal['ops'] = []
        // The accounts as they are, journaled before any changes: a kill from here to the renames' journal is rolled back.
        const before = await accountsBefore(
          this.deps.runner,
          manifest.accounts.map((a) => a.name),
        )
        const first: RestoreJournal = {version: 1, archive, phase: 'accounts', accounts: before, ops: []}
        await writeFileAtomic(layout.restoreJournal, `${JSON.stringify(first, null, 2)}\n`, {mode: 0o600})
        try {
          accounts.push(...(await this.accounts(manifest, staging)))
          await this.renderHere(manifest, staging, {settings, install, relocated, bin: options.bin})
          await this.stageFiles(manifest, staging, ops)
          await this.stageHomes(manifest, staging, accounts, ops)
        } catch (error) {
          // Failed before the renames: the accounts as they were, the old hub's files untouched.
          await finishInterruptedRestore(layout, this.deps.runner).catch((undo: unknown) =>
            this.log(
              `the accounts could not be put back: ${messageOf(undo)} (the next hubctl start or restore tries again)`,
            ),
          )
          throw error
        }
        for (const sidecar of layout.databaseSidecars) ops.unshift({op: 'remove', to: sidecar})
        const journal: RestoreJournal = {version: 1, archive, phase: 'files', ops}
        await writeFileAtomic(layout.restoreJournal, `${JSON.stringify(journal, null, 2)}\n`, {mode: 0o600})
        this.log(`replacing ${ops.length} entries`)
        await finishInterruptedRestore(layout, this.deps.runner)
      } finally {
        await lock.release()
      }
      const restored = await new SettingsStore(layout).load()
      const nginx = await nginxFor(layout, restored, this.deps.runner)
      // What the archive does not hold: the prefix nginx's run and log directories, the ACME webroot.
      await nginx.writeMainConf()
      await nginx.ensureAcmeWebroot()
      if (layout.isSystem && !restored.nginxSupervised) await nginx.reloadIfRunning()
      const how = await this.start(restored, options.bin)
      const healthy = await checkHealth(hubHealthUrl(restored, 'proxy'), {timeoutMs: 10_000})
      if (!healthy)
        throw runtimeError(
          `the restored hub started but ${hubHealthUrl(restored, 'proxy')} does not answer`,
          `read ${layout.hubLog}; then \`hubctl restart\``,
        )
      return {
        archive,
        from: manifest.prefix,
        ports: restored.ports,
        relocated,
        createdAt: manifest.createdAt,
        hubctl: manifest.hubctl,
        jupyterhub: manifest.jupyterhub,
        files: manifest.files.length,
        homes: manifest.homes.map((home) => home.user),
        accounts,
        stopped,
        started: how,
        healthy,
        seconds: Math.round((Date.now() - started) / 100) / 10,
        warnings: this.warnings,
      }
    } finally {
      await fs.rm(staging, {recursive: true, force: true})
    }
  }

  /** What a killed restore left and nothing uses: its staging directories beside srv/jupyterhub (under the lock: not a running restore's). */
  private async removeStale(staging: string): Promise<void> {
    const {layout} = this.deps
    const dir = path.dirname(staging)
    const prefix = path.basename(layout.restoreStaging(''))
    for (const name of await fs.readdir(dir))
      if (name.startsWith(prefix) && path.join(dir, name) !== staging)
        await fs.rm(path.join(dir, name), {recursive: true, force: true})
  }

  /** Unpack the archive and check it whole: the manifest, every member's size and hash, no member more or less. */
  async verify(archive: string, staging: string): Promise<Manifest> {
    const tar = await this.deps.runner.run(
      'tar',
      ['--extract', '--file', archive, '--directory', staging, '--no-same-owner', '--no-same-permissions'],
      {cwd: '/', timeoutMs: 3_600_000},
    )
    if (tar.exitCode !== 0)
      refused(`tar cannot read it (truncated or damaged: ${tar.stderr.trim().split('\n').pop() ?? ''})`)
    const text = await readIfExists(path.join(staging, MANIFEST))
    if (text === undefined) refused('it has no manifest.json')
    const manifest = parseManifest(text)
    const expected = new Map<string, {size?: number; sha256?: string}>()
    for (const entry of manifest.files) if (entry.type === 'file') expected.set(entry.member!, entry)
    for (const entry of [...manifest.homes, ...manifest.environment]) expected.set(entry.member, entry)
    const found = new Set<string>()
    const walk = async (dir: string): Promise<void> => {
      for (const entry of await fs.readdir(dir, {withFileTypes: true})) {
        const full = path.join(dir, entry.name)
        const relative = path.relative(staging, full)
        if (entry.isDirectory()) await walk(full)
        else if (!entry.isFile()) refused(`${relative} is neither a file nor a directory`)
        else if (relative !== MANIFEST) found.add(relative)
      }
    }
    await walk(staging)
    for (const member of found) if (!expected.has(member)) refused(`${member} is not in its manifest`)
    for (const [member, entry] of expected) {
      if (!found.has(member)) refused(`${member} is missing (a truncated archive?)`)
      const {sha256, size} = await sha256File(path.join(staging, member))
      if (size !== entry.size || sha256 !== entry.sha256)
        refused(`${member} does not match its SHA-256 in the manifest (the archive was changed or damaged)`)
    }
    return manifest
  }

  private async stagedSettings(manifest: Manifest, staging: string): Promise<Settings> {
    const {layout} = this.deps
    const entry = manifest.files.find((f) => f.path === layout.relativeToPrefix(layout.settings))
    if (!entry?.member) refused('it has no hubctl.json')
    try {
      return JSON.parse(await fs.readFile(path.join(staging, entry.member), 'utf8')) as Settings
    } catch {
      refused('its hubctl.json is not JSON')
    }
  }

  /** hubctl and JupyterHub: the archive's must not be newer than this machine's (a newer database cannot be read). */
  private async checkVersions(manifest: Manifest, settings: Settings): Promise<JupyterHubInstall> {
    if (compareVersions(manifest.hubctl, HUBCTL_VERSION) > 0)
      throw usageError(
        `the archive was made by hubctl ${manifest.hubctl}, newer than this hubctl ${HUBCTL_VERSION}; nothing was changed`,
        `install hubctl ${manifest.hubctl} or later, then restore`,
      )
    let install: JupyterHubInstall
    try {
      install = await detectJupyterHub(this.deps.runner, settings.executables.jupyterhub)
    } catch (error) {
      throw preflightError(
        `the archive's hub runs ${settings.executables.jupyterhub} (JupyterHub ${manifest.jupyterhub}), which this machine lacks (${messageOf(error)}); nothing was changed`,
        `install that JupyterHub first (hubctl init with the same --jupyterhub, or its virtualenv), then restore`,
      )
    }
    const {version} = install
    if (compareVersions(version, manifest.jupyterhub) < 0)
      throw preflightError(
        `the archive's database is JupyterHub ${manifest.jupyterhub}'s, newer than this machine's ${version}; nothing was changed`,
        `install JupyterHub ${manifest.jupyterhub} or later at ${settings.executables.jupyterhub}, then restore`,
      )
    if (compareVersions(version, manifest.jupyterhub) > 0)
      this.warnings.push(
        `the archive's database is JupyterHub ${manifest.jupyterhub}'s, this machine runs ${version}: the hub may need \`jupyterhub upgrade-db\``,
      )
    return install
  }

  /**
   * Where no hub of this prefix runs, the restored hub's ports must be free (a new VM's other
   * programs, another hub on this machine): refused before anything changes, naming the flag. At
   * prefix `/` the system's nginx may hold the HTTP and HTTPS ports.
   */
  private async checkPorts(settings: Settings): Promise<void> {
    const {portInUse} = await import('../setup/preflight.js')
    for (const name of PORT_NAMES) {
      if (this.deps.layout.isSystem && (name === 'http' || name === 'https')) continue
      const port = settings.ports[name]
      if (!(await portInUse(port))) continue
      const {flag} = PORT_FLAGS[name]
      throw preflightError(
        `port ${port} (${flag}) of the restored hub is already in use by another program; nothing was changed`,
        `stop that program (ss -ltnp 'sport = :${port}' names it), or give restore another ${flag} (the archive's ports are kept unless a port flag says otherwise)`,
      )
    }
  }

  /**
   * This machine's renderings in place of the archive's (relocate.ts): hubctl.json with this
   * prefix's paths and the chosen ports, the units and cron line, and when relocated the hub's
   * config, the nginx site and main conf; the links under the old prefix pointed under this one.
   * A file of the archive that still names the old prefix (a hand-written jupyterhub_config.d
   * file) is named in a warning.
   */
  private async renderHere(
    manifest: Manifest,
    staging: string,
    inputs: {settings: Settings; install: JupyterHubInstall; relocated: boolean; bin: string},
  ): Promise<void> {
    const {layout, runner} = this.deps
    const byTarget = new Map(manifest.files.map((entry) => [layout.underPrefix(entry.path), entry]))
    const cronText = async (file: string) => {
      const member = byTarget.get(file)?.member
      return member && (await fs.readFile(path.join(staging, member), 'utf8'))
    }
    const rendered = await renderedForHere(
      {
        layout,
        runner,
        settings: inputs.settings,
        install: inputs.install,
        units: {node: process.execPath, hubctl: inputs.bin},
        archivedCron: await cronText(layout.cronFile),
        archivedBackupCron: await cronText(layout.backupCronFile),
        relocated: inputs.relocated,
      },
      new Set([...byTarget].filter(([, entry]) => entry.type === 'file').map(([target]) => target)),
    )
    const replace = async (target: string, content: string) => {
      const entry = byTarget.get(target)!
      const file = path.join(staging, entry.member!)
      await fs.writeFile(file, content)
      Object.assign(entry, await sha256File(file))
    }
    await replace(layout.settings, `${JSON.stringify(inputs.settings, null, 2)}\n`)
    for (const planned of rendered) await replace(planned.file, planned.content)
    for (const entry of manifest.files)
      if (entry.type === 'link') entry.target = movedPath(entry.target!, manifest.prefix, layout)
    if (new Layout(manifest.prefix).prefix === layout.prefix || new Layout(manifest.prefix).isSystem) return
    const kept = new Set([layout.settings, ...rendered.map((planned) => planned.file)])
    for (const [target, entry] of byTarget) {
      if (entry.type !== 'file' || kept.has(target) || target === layout.database || (entry.size ?? 0) > 1_000_000)
        continue
      if ((await fs.readFile(path.join(staging, entry.member!), 'utf8')).includes(manifest.prefix))
        this.warnings.push(`${target} names the archive's prefix ${manifest.prefix}: change it to ${layout.prefix}`)
    }
  }

  /**
   * The system accounts hubctl made: recreated with the same name, the same uid where it is free,
   * the same password hash (chpasswd -e, on its standard input); users.json's uids follow.
   */
  private async accounts(manifest: Manifest, staging: string): Promise<RestoreResult['accounts']> {
    const {runner, layout} = this.deps
    const unix = new UnixAccounts(runner)
    const existing = await unix.lookup(manifest.accounts.map((a) => a.name))
    const result: RestoreResult['accounts'] = []
    for (const account of manifest.accounts) {
      let uid = existing.get(account.name)?.uid
      let created = false
      if (uid === undefined) {
        const taken = (await runner.run('getent', ['passwd', String(account.uid)])).exitCode === 0
        const groupTaken = (await runner.run('getent', ['group', String(account.gid)])).exitCode === 0
        const args = [
          ...(taken ? [] : ['--uid', String(account.uid)]),
          ...(taken || groupTaken ? [] : ['--gid', String(account.gid)]),
          '--no-create-home',
          '--home-dir',
          account.home,
          '--shell',
          account.shell || '/bin/bash',
          '--comment',
          'hubctl user',
          account.name,
        ]
        if (!taken && !groupTaken) {
          const group = await runner.run('groupadd', ['--gid', String(account.gid), account.name])
          if (group.exitCode !== 0) args.splice(args.indexOf('--gid'), 2, '--user-group')
        } else args.unshift('--user-group')
        const made = await runner.run('useradd', args)
        if (made.exitCode !== 0)
          throw runtimeError(
            `useradd ${account.name} failed: ${made.stderr.trim().split('\n').pop() ?? ''}`,
            'run hubctl restore as root; read the message, fix it, then restore again',
          )
        uid = (await unix.lookup([account.name])).get(account.name)?.uid
        created = true
        this.log(`account ${account.name} made (uid ${uid})`)
      }
      if (account.shadow !== undefined) {
        const set = await runner.run('chpasswd', ['--encrypted'], {input: `${account.name}:${account.shadow}\n`})
        if (set.exitCode !== 0)
          throw runtimeError(
            `chpasswd could not restore ${account.name}'s password: ${set.stderr.trim().split('\n').pop() ?? ''}`,
            'run hubctl restore as root, then restore again',
          )
      }
      result.push({name: account.name, uid: uid ?? account.uid, created, uidKept: uid === account.uid})
    }
    // users.json: the uids of this machine.
    const recordEntry = manifest.files.find((f) => f.path === layout.relativeToPrefix(layout.usersRecord))
    if (recordEntry?.member) {
      const file = path.join(staging, recordEntry.member)
      const record = JSON.parse(await fs.readFile(file, 'utf8')) as UsersRecord
      for (const account of result) if (record.accounts[account.name]) record.accounts[account.name].uid = account.uid
      await fs.writeFile(file, `${JSON.stringify(record, null, 2)}\n`)
      const {sha256, size} = await sha256File(file)
      Object.assign(recordEntry, {sha256, size})
    }
    return result
  }

  /** Every directory made (mode, owner); every file and link written complete beside its target. */
  private async stageFiles(manifest: Manifest, staging: string, ops: JournalOp[]): Promise<void> {
    const {layout} = this.deps
    for (const entry of manifest.files) {
      const target = layout.underPrefix(entry.path)
      await fs.mkdir(path.dirname(target), {recursive: true, mode: 0o755})
      if (entry.type === 'dir') {
        const stat = await fs.lstat(target).catch(() => undefined)
        if (stat && !stat.isDirectory())
          throw preflightError(`${target} is not a directory`, 'move it away, then restore again')
        if (!stat) await fs.mkdir(target, {mode: entry.mode})
        await fs.chown(target, entry.uid, entry.gid)
        await fs.chmod(target, entry.mode)
        continue
      }
      const next = layout.restoreNew(target)
      await fs.rm(next, {recursive: true, force: true})
      if (entry.type === 'link') {
        await fs.symlink(entry.target!, next)
        await fs.lchown(next, entry.uid, entry.gid)
      } else {
        const handle = await fs.open(
          next,
          fsConstants.O_CREAT | fsConstants.O_EXCL | fsConstants.O_WRONLY | fsConstants.O_NOFOLLOW,
          0o600,
        )
        try {
          await handle.writeFile(await fs.readFile(path.join(staging, entry.member!)))
          await handle.chown(entry.uid, entry.gid)
          await handle.chmod(entry.mode)
          await handle.sync()
        } finally {
          await handle.close()
        }
      }
      ops.push({op: 'rename', from: next, to: target})
    }
  }

  /** Each home unpacked complete beside the live one (numeric owners; a uid that changed, chowned). */
  private async stageHomes(
    manifest: Manifest,
    staging: string,
    accounts: RestoreResult['accounts'],
    ops: JournalOp[],
  ): Promise<void> {
    const {layout, runner} = this.deps
    for (const home of manifest.homes) {
      this.log(`unpacking ${home.user}'s home into ${home.home}`)
      const next = layout.restoreNew(home.home)
      await fs.rm(next, {recursive: true, force: true})
      await fs.mkdir(path.dirname(home.home), {recursive: true, mode: 0o755})
      await fs.mkdir(next, {mode: 0o700})
      const tar = await runner.run(
        'tar',
        [
          '--extract',
          '--gzip',
          '--numeric-owner',
          '--same-permissions',
          '--same-owner',
          '--file',
          path.join(staging, home.member),
          '--directory',
          next,
        ],
        {cwd: '/', timeoutMs: 3_600_000},
      )
      if (tar.exitCode !== 0)
        throw runtimeError(
          `tar could not unpack ${home.user}'s home: ${tar.stderr.trim().split('\n').pop() ?? ''}`,
          `check the free space beside ${home.home}, then restore again`,
        )
      const account = accounts.find((a) => a.name === home.user)
      const entry = manifest.accounts.find((a) => a.name === home.user)
      if (account && entry && account.uid !== home.uid) {
        const ids = (await new UnixAccounts(runner).lookup([home.user])).get(home.user)!
        for (const [from, to] of [
          [`${home.uid}`, `${ids.uid}`],
          [`:${home.gid}`, `:${ids.gid}`],
        ]) {
          const chown = await runner.run('chown', ['-R', '--no-dereference', `--from=${from}`, to, next])
          if (chown.exitCode !== 0)
            throw runtimeError(
              `chown of ${home.user}'s home failed: ${chown.stderr.trim().split('\n').pop() ?? ''}`,
              'run hubctl restore as root, then restore again',
            )
        }
      }
      ops.push({op: 'rename', from: next, to: home.home, aside: layout.restoreOld(home.home)})
    }
  }

  /** systemd's unit when it is installed at prefix `/`; else `hubctl start --detach`. */
  private async start(settings: Settings, bin: string): Promise<'systemd' | 'detached'> {
    const {layout, runner} = this.deps
    if (layout.isSystem && (await exists(layout.systemdUnit))) {
      const started = await runner.run('systemctl', ['start', 'jupyterhub.service'])
      if (started.exitCode === 0 || !started.notFound) {
        if (started.exitCode !== 0)
          throw runtimeError(
            `systemctl start jupyterhub failed: ${started.stderr.trim()}`,
            'read `journalctl -u jupyterhub`, fix the cause, then `systemctl start jupyterhub`',
          )
        // Ready when the hub answers.
        for (let i = 0; i < 120 && !(await checkHealth(hubHealthUrl(settings, 'proxy'))); i++)
          await new Promise((resolve) => setTimeout(resolve, 500))
        return 'systemd'
      }
    }
    const {checkBeforeStart} = await import('../setup/preflight.js')
    this.log('starting the restored hub')
    await startDetached(layout, {
      bin,
      args: ['--checked-by-parent'],
      checks: () => checkBeforeStart(layout, settings, runner),
    })
    return 'detached'
  }
}
