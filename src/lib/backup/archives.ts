import fs from 'node:fs/promises'

import type {Layout} from '../config/layout.js'
import type {Settings} from '../config/settings.js'

/*
 * The archives in the default backup directory, for `hubctl status`: small, so that status loads
 * none of the backup service (backup.ts).
 */

export interface BackupStatus {
  schedule: Settings['backupSchedule'] | null
  newest: {archive: string; at: string} | null
  count: number
}

export async function backupStatus(layout: Layout, settings: Settings): Promise<BackupStatus> {
  const names = (await fs.readdir(layout.backupDir).catch(() => [] as string[]))
    .filter((name) => ARCHIVE_NAME.test(name))
    .sort()
  const last = names.at(-1)
  const stamp = last && ARCHIVE_NAME.exec(last)![1]
  return {
    schedule: settings.backupSchedule ?? null,
    newest:
      last && stamp
        ? {
            archive: layout.backupFile(last),
            at: stamp.replace(/^(\d{4})(\d\d)(\d\d)T(\d\d)(\d\d)(\d\d)Z$/, '$1-$2-$3T$4:$5:$6Z'),
          }
        : null,
    count: names.length,
  }
}

/** The archives `hubctl backup` writes into its default directory (pruned by --keep). */
export const ARCHIVE_NAME = /^hubctl-backup-(\d{8}T\d{6}Z)\.tar$/

/** status's line: the schedule, and the newest archive. */
export function describeBackups(backups: BackupStatus): string {
  const newest = backups.newest ? `; newest ${backups.newest.archive} (${backups.newest.at})` : ''
  const schedule = backups.schedule
    ? `${backups.schedule.every}, the last ${backups.schedule.keep} kept`
    : 'not scheduled (init --schedule-backup daily)'
  return `backups: ${schedule}${newest}`
}
