import fs from 'node:fs/promises'
import path from 'node:path'
import {randomInt} from 'node:crypto'

import {writeFileAtomicIfChanged} from '../files/atomic.js'
import {usageError} from '../errors.js'
import {Layout} from './layout.js'
import {OOM_SCORE_ADJ} from './limits.js'
import {renderTemplate} from './render.js'
import type {BackupSchedule} from './settings.js'
import {Runner} from '../runner.js'
import {HUBCTL_VERSION} from '../version.js'

export interface UnitContext {
  node: string
  /** bin/run.js of this hubctl. */
  hubctl: string
}

export interface PlannedFile {
  file: string
  content: string
  mode: number
}

/** True when systemd is the init system (what `sd_booted()` checks). */
export async function systemdRuns(): Promise<boolean> {
  try {
    return (await fs.stat('/run/systemd/system')).isDirectory()
  } catch {
    return false
  }
}

/** systemd runs no executable whose path holds a quote, a backslash or a `$` (which it would not expand there either). */
function assertSystemdExecutable(context: UnitContext): void {
  if (/['"\\$]/.test(context.node)) {
    throw usageError(
      `systemd cannot run node at ${JSON.stringify(context.node)}: its path holds a quote, a backslash or a $`,
      'install node at a path without those characters (e.g. /usr/bin/node), or give --no-systemd',
    )
  }
}

/** The jupyterhub.service unit running `hubctl start`. */
export async function planServiceUnit(layout: Layout, context: UnitContext): Promise<PlannedFile> {
  assertSystemdExecutable(context)
  const content = await renderTemplate(
    'jupyterhub.service',
    {
      ...context,
      prefix: layout.prefix,
      hubctlVersion: HUBCTL_VERSION,
      hubOomScoreAdj: OOM_SCORE_ADJ.hub,
      serverOomScoreAdj: OOM_SCORE_ADJ.server,
    },
    'systemd',
  )
  return {file: layout.systemdUnit, content, mode: 0o644}
}

/**
 * At prefix `/` under systemd the system's nginx.service (Debian's unit, without OOMScoreAdjust) serves
 * the hub: a drop-in gives it the hub's OOMScoreAdjust. (Under a prefix hubctl's supervisor starts
 * its own nginx, which inherits the supervisor's value: stack/oom.ts.)
 */
export async function planNginxOomDropIn(layout: Layout): Promise<PlannedFile> {
  const content = await renderTemplate(
    'nginx-oom.conf',
    {hubctlVersion: HUBCTL_VERSION, hubOomScoreAdj: OOM_SCORE_ADJ.hub, serverOomScoreAdj: OOM_SCORE_ADJ.server},
    'systemd',
  )
  return {file: layout.nginxOomDropIn, content, mode: 0o644}
}

/**
 * The renewal schedule: a systemd timer twice a day when systemd runs, else /etc/cron.d/hubctl.
 * The cron line keeps the random time of the installed file, or of `cronText` (a restore's archive).
 */
export async function planRenewalSchedule(
  layout: Layout,
  context: UnitContext,
  withSystemd: boolean,
  cronText?: string,
): Promise<PlannedFile[]> {
  const view = {...context, prefix: layout.prefix, hubctlVersion: HUBCTL_VERSION}
  if (withSystemd) {
    assertSystemdExecutable(context)
    return [
      {file: layout.renewService, content: await renderTemplate('hubctl-renew.service', view, 'systemd'), mode: 0o644},
      {file: layout.renewTimer, content: await renderTemplate('hubctl-renew.timer', view, 'systemd'), mode: 0o644},
    ]
  }
  const kept = cronText === undefined ? await cronTimeOf(layout.cronFile) : cronTimeIn(cronText)
  const {minute, hourA} = kept ?? {minute: randomInt(60), hourA: randomInt(12)}
  const content = await renderTemplate('cron', {...view, minute, hourA, hourB: hourA + 12}, 'cron')
  return [{file: layout.cronFile, content, mode: 0o644}]
}

/**
 * init --schedule-backup: `hubctl backup --include-homes --keep N` daily or weekly at night, by a
 * systemd timer when systemd runs, else /etc/cron.d/hubctl-backup (its random minute kept, from the
 * installed file or `cronText`).
 */
export async function planBackupSchedule(
  layout: Layout,
  context: UnitContext,
  withSystemd: boolean,
  schedule: BackupSchedule,
  cronText?: string,
): Promise<PlannedFile[]> {
  const view = {
    ...context,
    prefix: layout.prefix,
    hubctlVersion: HUBCTL_VERSION,
    every: schedule.every,
    keep: schedule.keep,
    daily: schedule.every === 'daily',
    weekly: schedule.every === 'weekly',
  }
  if (withSystemd) {
    assertSystemdExecutable(context)
    return [
      {
        file: layout.backupService,
        content: await renderTemplate('hubctl-backup.service', view, 'systemd'),
        mode: 0o644,
      },
      {file: layout.backupTimer, content: await renderTemplate('hubctl-backup.timer', view, 'systemd'), mode: 0o644},
    ]
  }
  let text = cronText
  if (text === undefined) text = await fs.readFile(layout.backupCronFile, 'utf8').catch(() => undefined)
  const kept = /^(\d{1,2}) 3 \* \* /m.exec(text ?? '')
  const minute = kept && Number(kept[1]) < 60 ? Number(kept[1]) : randomInt(60)
  const content = await renderTemplate('cron-backup', {...view, minute}, 'cron')
  return [{file: layout.backupCronFile, content, mode: 0o644}]
}

/** The files of a backup schedule, whichever kind is installed (removed by init --schedule-backup off and uninstall). */
export function backupScheduleFiles(layout: Layout): string[] {
  return [layout.backupTimer, layout.backupService, layout.backupCronFile]
}

/**
 * The random time an installed cron file already has (`M H,H+12 * * *`), kept so that init run
 * again leaves the file as it is; undefined when there is none or it is not hubctl's form.
 */
async function cronTimeOf(file: string): Promise<{minute: number; hourA: number} | undefined> {
  let text: string
  try {
    text = await fs.readFile(file, 'utf8')
  } catch {
    return undefined
  }
  return cronTimeIn(text)
}

function cronTimeIn(text: string): {minute: number; hourA: number} | undefined {
  const match = /^(\d{1,2}) (\d{1,2}),(\d{1,2}) \* \* \* /m.exec(text)
  if (!match) return undefined
  const [minute, hourA, hourB] = match.slice(1).map(Number)
  return minute < 60 && hourA < 12 && hourB === hourA + 12 ? {minute, hourA} : undefined
}

/**
 * etc/logrotate.d/hubctl: the logs nginx and hubctl reopen (nginx's, the audit log) are moved and
 * created anew 0640 (root:adm as root, as Debian's own logs; the owner's otherwise), nginx told to
 * reopen them; those held open by the supervised programs are copied and truncated.
 */
export async function planLogrotate(layout: Layout, uid = process.getuid?.() ?? 0): Promise<PlannedFile> {
  const content = await renderTemplate(
    'logrotate',
    {
      hubctlVersion: HUBCTL_VERSION,
      nginxLogs: [layout.nginxAccessLog, layout.nginxErrorLog, layout.auditLog],
      heldLogs: [layout.hubLog, layout.proxyLog, layout.supervisorLog],
      nginxPid: layout.nginxPid,
      asRoot: uid === 0,
    },
    'logrotate',
  )
  return {file: layout.logrotateConf, content, mode: 0o644}
}

export async function writePlanned(files: PlannedFile[]): Promise<string[]> {
  const written: string[] = []
  for (const planned of files) {
    await fs.mkdir(path.dirname(planned.file), {recursive: true, mode: 0o755})
    if (await writeFileAtomicIfChanged(planned.file, planned.content, {mode: planned.mode})) written.push(planned.file)
  }
  return written
}

/** Tell systemd (only for the real system, prefix `/`). */
export async function enableUnits(runner: Runner, units: string[], timers: string[]): Promise<string[]> {
  const commands = [
    ['systemctl', 'daemon-reload'],
    ...(units.length > 0 ? [['systemctl', 'enable', ...units]] : []),
    ...(timers.length > 0 ? [['systemctl', 'enable', '--now', ...timers]] : []),
  ]
  for (const [command, ...args] of commands) await runner.run(command, args)
  return commands.map((c) => c.join(' '))
}
