import fs from 'node:fs/promises'

import {Nginx} from '../../config/nginx.js'
import type {Settings} from '../../config/settings.js'
import {exists} from '../../files/atomic.js'
import type {Layout} from '../../config/layout.js'
import type {Runner} from '../../runner.js'
import {
  type PlannedFile,
  backupScheduleFiles,
  enableUnits,
  planBackupSchedule,
  planLogrotate,
  planNginxOomDropIn,
  planRenewalSchedule,
  planServiceUnit,
  systemdRuns,
  writePlanned,
} from '../../config/units.js'
import {OOM_SCORE_ADJ} from '../../config/limits.js'
import {protectRunningService} from '../../stack/oom.js'
import type {InitDeps, InitStep} from './context.js'

/**
 * The service unit (with systemd, unless --no-systemd), the renewal schedule (unless --no-schedule),
 * the backup schedule (when hubctl.json has one: init --schedule-backup) and logrotate's file.
 */
export async function plannedUnits(
  deps: Pick<InitDeps, 'layout' | 'units' | 'systemd' | 'schedule'>,
  settings?: Pick<Settings, 'backupSchedule'>,
): Promise<PlannedFile[]> {
  const {layout, units} = deps
  const withSystemd = await systemdRuns()
  const planned: PlannedFile[] = []
  if (deps.systemd !== false && withSystemd) planned.push(await planServiceUnit(layout, units))
  if (deps.schedule !== false) planned.push(...(await planRenewalSchedule(layout, units, withSystemd)))
  if (settings?.backupSchedule)
    planned.push(...(await planBackupSchedule(layout, units, withSystemd, settings.backupSchedule)))
  planned.push(await planLogrotate(layout))
  // The system's nginx serves the hub at `/`: as much the OOM killer's last choice as the hub.
  if (layout.isSystem && withSystemd) planned.push(await planNginxOomDropIn(layout))
  return planned
}

/**
 * At prefix `/` hubctl never runs nginx itself (the system's service does): a stopped one is
 * enabled and started under systemd, or named in a warning elsewhere.
 */
async function startSystemNginx(runner: Runner, warnings: string[]): Promise<string[]> {
  if (await systemdRuns()) {
    const started = await runner.run('systemctl', ['enable', '--now', 'nginx.service'])
    if (started.exitCode === 0) return ['systemctl enable --now nginx.service']
    warnings.push(
      `nginx did not start (systemctl enable --now nginx.service: ${started.stderr.trim().split('\n').pop()}); look at \`journalctl -u nginx\`, fix it, then \`systemctl start nginx\``,
    )
    return []
  }
  warnings.push(
    'nginx is not running, and the hub answers only through it: start it (`nginx`, or your service manager)',
  )
  return []
}

function systemctlCommands(layout: Layout, units: PlannedFile[]): boolean {
  return layout.isSystem && units.length > 0
}

/** The backup schedule's files that are installed but not planned (--schedule-backup off, or another kind). */
async function unplannedBackupFiles(layout: Layout, units: PlannedFile[]): Promise<string[]> {
  const stale = []
  for (const file of backupScheduleFiles(layout))
    if (!units.some((u) => u.file === file) && (await exists(file))) stale.push(file)
  return stale
}

/** A backup schedule no longer wanted: its timer stopped and disabled at prefix `/`, its files removed. */
export async function removeBackupSchedule(layout: Layout, runner: Runner, files: string[]): Promise<string[]> {
  const commands: string[] = []
  if (files.includes(layout.backupTimer) && layout.isSystem && (await systemdRuns())) {
    await runner.run('systemctl', ['disable', '--now', 'hubctl-backup.timer'])
    commands.push('systemctl disable --now hubctl-backup.timer')
  }
  for (const file of files) await fs.rm(file, {force: true})
  return commands
}

/**
 * 6. install: the units, the schedule and logrotate's file (unchanged ones are left alone), enabled
 * under systemd at prefix `/`; nginx reloaded, or at `/` started when it is not running.
 */
export const install: InitStep = {
  name: 'install',

  async plan(ctx) {
    const {layout, result, plan} = ctx
    const settings = plan.rendered.settings
    result.files.push(...plan.units.map((u) => ({file: u.file, action: 'would write' as const})))
    for (const file of await unplannedBackupFiles(layout, plan.units)) result.files.push({file, action: 'would remove'})
    if (plan.nginxRunning) result.commands.push(`${settings.executables.nginx} -s reload`)
    if (systemctlCommands(layout, plan.units))
      result.commands.push(
        'systemctl daemon-reload',
        'systemctl enable jupyterhub.service',
        'systemctl enable --now hubctl-renew.timer',
        ...(settings.backupSchedule ? ['systemctl enable --now hubctl-backup.timer'] : []),
      )
  },

  async run(ctx) {
    const {layout, runner, result, plan, deps, reporter: r} = ctx
    const {commands} = result
    r.start('install')
    const stale = await unplannedBackupFiles(layout, plan.units)
    commands.push(...(await removeBackupSchedule(layout, runner, stale)))
    result.files.push(...stale.map((file) => ({file, action: 'removed' as const})))
    const unitsWritten = await writePlanned(plan.units)
    result.files.push(
      ...plan.units.map((planned) => ({
        file: planned.file,
        action: unitsWritten.includes(planned.file) ? ('written' as const) : ('unchanged' as const),
      })),
    )
    if (systemctlCommands(layout, plan.units) && (await systemdRuns())) {
      commands.push(
        ...(await enableUnits(
          runner,
          deps.systemd === false ? [] : ['jupyterhub.service'],
          ['hubctl-renew.timer', 'hubctl-backup.timer'].filter((timer) =>
            plan.units.some(
              (f) => f.file === (timer === 'hubctl-renew.timer' ? layout.renewTimer : layout.backupTimer),
            ),
          ),
        )),
      )
      // The drop-in applies from nginx's next start: a running nginx is lowered now, without a restart.
      const dropIn = plan.units.some((f) => f.file === layout.nginxOomDropIn)
      if (dropIn && (await protectRunningService(runner, 'nginx.service')) > 0)
        commands.push(`oom_score_adj ${OOM_SCORE_ADJ.hub} for the running nginx`)
    }
    // nginx may have started since preflight (apt-get starts Debian's): reload whichever runs now.
    if (await new Nginx(layout, plan.nginxInstall, runner).reloadIfRunning()) commands.push('nginx -s reload')
    else if (layout.isSystem) commands.push(...(await startSystemNginx(runner, result.warnings)))
    r.done('install', commands.length > 0 ? commands.join('; ') : 'files in place')
  },
}
