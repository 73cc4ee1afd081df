import fs from 'node:fs/promises'
import path from 'node:path'

import {Layout} from '../config/layout.js'
import {Settings, SettingsStore} from '../config/settings.js'
import {nginxFor} from '../config/nginx.js'
import {restoreDefaultSite} from '../config/site.js'
import {ensureDir, exists} from '../files/atomic.js'
import {acquireLock} from '../files/lock.js'
import {messageOf, preflightError, usageError} from '../errors.js'
import type {Runner} from '../runner.js'
import {UsersRecordStore} from '../users/accounts.js'
import {runningSupervisor} from '../stack/state.js'
import {stopStack} from '../stack/control.js'
import {BackupService, stampOf} from './backup.js'

/*
 * `hubctl uninstall [--purge]`: the hub stopped (its user servers too), and what hubctl put in the
 * system's places removed: the unit, the renewal timer or cron line, the logrotate file, the nginx
 * site (then `nginx -t` and a reload, when an nginx runs: its other sites keep serving). The hub's
 * own files (srv/jupyterhub, etc/jupyterhub), the environment (opt/jupyterhub) and the homes stay,
 * so that `hubctl init` gives the same hub again. --purge first writes a backup with the homes
 * outside srv/jupyterhub (var/backups/hubctl), then removes those too, and the accounts hubctl made.
 */

export interface UninstallOptions {
  purge?: boolean
}

export interface UninstallResult {
  stopped: boolean
  removed: string[]
  nginxReloaded: boolean
  /** --purge: the backup written first. */
  backup?: string
  /** Debian's stock default site's link, which init had removed, made again. */
  defaultSiteRestored?: string
  /** --purge: the accounts hubctl made, removed with their homes. */
  accountsRemoved: string[]
  warnings: string[]
}

export interface UninstallDeps {
  layout: Layout
  runner: Runner
  log?: (line: string) => void
  /** The caller's uid (default: this process's): at prefix `/` only root may uninstall. */
  uid?: number
}

export class UninstallService {
  constructor(private readonly deps: UninstallDeps) {}

  private log(line: string): void {
    this.deps.log?.(line)
  }

  async uninstall(options: UninstallOptions = {}): Promise<UninstallResult> {
    const {layout, runner} = this.deps
    // Before anything stops: a user other than root would stop the hub, then fail on /etc.
    if (layout.isSystem && (this.deps.uid ?? process.getuid?.() ?? 0) !== 0)
      throw preflightError(
        'hubctl must run as root to uninstall the hub under / (its units, schedule and nginx site are in /etc). Nothing was changed',
        'run it with sudo',
      )
    if (!(await exists(layout.settings)))
      throw usageError(
        `there is no hub under ${layout.prefix} (${layout.settings} is missing)`,
        'give the --prefix of the hub to uninstall',
      )
    const settings = await new SettingsStore(layout).load()
    const result: UninstallResult = {
      stopped: false,
      removed: [],
      nginxReloaded: false,
      accountsRemoved: [],
      warnings: [],
    }
    if (options.purge) {
      // Outside srv/jupyterhub, which is removed below.
      await ensureDir(layout.purgeBackupDir, 0o700)
      const backup = await new BackupService({layout, runner, log: this.deps.log}).backup({
        output: layout.purgeBackup(stampOf(new Date())),
        includeHomes: true,
      })
      result.backup = backup.archive
      this.log(`backup written first: ${backup.archive}`)
    }
    const lock = await acquireLock(layout.lockFile, 'uninstall', {waitMs: 10_000})
    try {
      if (await runningSupervisor(layout)) {
        this.log('stopping the hub and its user servers')
        const stop = await stopStack(layout, settings, {log: (line) => this.log(line)})
        result.warnings.push(...stop.warnings)
        result.stopped = true
      }
      // Under systemd (Restart=always) the unit would start the hub again: stopped through systemd (removeService).
      await this.removeService(result)
      await this.removeNginxDropIn(result)
      const remove = async (file: string) => {
        if (!(await exists(file))) return
        await fs.rm(file, {force: true})
        result.removed.push(file)
      }
      for (const file of [
        layout.cronFile,
        layout.backupCronFile,
        layout.logrotateConf,
        layout.nginxChallengeSite,
        layout.nginxSiteLink,
      ])
        await remove(file)
      await remove(layout.nginxSite)
      await this.restoreDefaultSite(settings, result)
      result.nginxReloaded = await this.reloadNginx(settings)
      if (options.purge) await this.purge(result)
    } finally {
      // The lock lives in srv/jupyterhub, gone after --purge.
      await lock.release().catch(() => {})
    }
    return result
  }

  /** systemd's unit and timer: stopped and disabled at prefix `/`, then their files removed. */
  private async removeService(result: UninstallResult): Promise<void> {
    const {layout, runner} = this.deps
    const units = [layout.systemdUnit, layout.renewService, layout.renewTimer, layout.backupService, layout.backupTimer]
    const present = []
    for (const unit of units) if (await exists(unit)) present.push(unit)
    if (present.length === 0) return
    if (layout.isSystem) {
      // Only the units that exist: systemctl refuses the whole command for one it does not know
      // (a hub without --schedule-backup has no hubctl-backup.timer), and would disable none.
      const disable = await runner.run('systemctl', ['disable', '--now', ...present.map((unit) => path.basename(unit))])
      if (disable.exitCode !== 0 && !disable.notFound)
        result.warnings.push(`systemctl disable --now: ${disable.stderr.trim().split('\n').pop() ?? ''}`)
    }
    for (const unit of present) {
      await fs.rm(unit, {force: true})
      result.removed.push(unit)
    }
    if (layout.isSystem) await runner.run('systemctl', ['daemon-reload'])
  }

  /**
   * Debian's stock default site, whose link init removed (site.ts): enabled again as it was, so
   * that the machine's nginx answers as before the hub; kept disabled, with a warning saying how
   * to enable it, when it changed, another site claims its default_server, or `nginx -t` refuses it.
   */
  private async restoreDefaultSite(settings: Settings, result: UninstallResult): Promise<void> {
    const {layout, runner} = this.deps
    const enable = `ln -s ${layout.systemPath(layout.nginxDefaultSite)} ${layout.systemPath(layout.nginxDefaultSiteLink)}, then \`nginx -t\` and reload nginx`
    const outcome = await restoreDefaultSite(layout)
    if (outcome.skipped)
      result.warnings.push(
        `Debian's default nginx site, which init disabled, stays disabled: ${outcome.skipped}; to enable it: ${enable}`,
      )
    if (!outcome.restored) return
    const check = await nginxFor(layout, settings, runner)
      .then((nginx) => nginx.test())
      .catch(() => ({ok: true, output: ''}))
    if (check.ok) {
      result.defaultSiteRestored = outcome.restored
      return
    }
    await fs.rm(outcome.restored, {force: true})
    result.warnings.push(
      `Debian's default nginx site, which init disabled, stays disabled: nginx -t refuses it (${check.output.split('\n').pop()}); fix that, then ${enable}`,
    )
  }

  /** init's drop-in of the system's nginx.service (OOMScoreAdjust): removed, its folder too when empty, systemd told. */
  private async removeNginxDropIn(result: UninstallResult): Promise<void> {
    const {layout, runner} = this.deps
    const dropIn = layout.nginxOomDropIn
    if (!(await exists(dropIn))) return
    await fs.rm(dropIn, {force: true})
    result.removed.push(dropIn)
    await fs.rmdir(layout.nginxDropInDir).catch(() => {})
    if (layout.isSystem) await runner.run('systemctl', ['daemon-reload'])
  }

  /** An nginx that runs (the system's, or the prefix's own started by someone else) drops the site: `nginx -t`, then reload. */
  private async reloadNginx(settings: Settings): Promise<boolean> {
    try {
      const nginx = await nginxFor(this.deps.layout, settings, this.deps.runner)
      return await nginx.reloadIfRunning()
    } catch (error) {
      if (error instanceof Error && 'exitCode' in error) throw error
      // No nginx on this machine any more: nothing serves the site.
      return false
    }
  }

  /** --purge: the hub's files, the environment, the logs, and the accounts hubctl made (with their homes). */
  private async purge(result: UninstallResult): Promise<void> {
    const {layout, runner} = this.deps
    const record = await new UsersRecordStore(layout).load().catch(() => ({version: 1 as const, accounts: {}}))
    for (const [name, entry] of Object.entries(record.accounts)) {
      if (entry.origin !== 'created') continue
      const removed = await runner.run('userdel', ['--remove', name])
      if (removed.exitCode === 0) result.accountsRemoved.push(name)
      else result.warnings.push(`userdel --remove ${name}: ${removed.stderr.trim().split('\n').pop() ?? ''}`)
    }
    for (const dir of [
      layout.etcDir,
      layout.hubEnvRoot,
      layout.logDir,
      layout.acmeWebroot,
      layout.nginxRunDir,
      ...(layout.isSystem ? [] : [layout.nginxMainConf]),
      layout.srvDir,
    ]) {
      if (!(await exists(dir))) continue
      try {
        await fs.rm(dir, {recursive: true, force: true})
        result.removed.push(dir)
      } catch (error) {
        result.warnings.push(`could not remove ${dir}: ${messageOf(error)}`)
      }
    }
  }
}
