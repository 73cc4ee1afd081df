import {Flags} from '@oclif/core'

import {BaseCommand} from '../base-command.js'
import {BackupResult, BackupService, DEFAULT_KEEP} from '../lib/backup/backup.js'
import {execaRunner} from '../lib/runner.js'

export default class Backup extends BaseCommand<typeof Backup> {
  static override summary = 'Write the whole hub into one archive (0600), while it runs.'

  static override description = `One tar archive, written atomically (a temp file beside it, fsync, rename) with mode 0600: the hub's SQLite database copied online with SQLite's backup API by the hub's own Python (users keep working), the secrets, the certificate lineage and ACME account key, hubctl.json, users.json, jupyterhub_config.py and jupyterhub_config.d, the nginx site, the systemd units or cron line, the logrotate file, the pinned constraints and the hub's installed packages, the system accounts hubctl made (their password hashes), and with --include-homes their homes (tar --numeric-owner --one-file-system). A manifest lists hubctl's and JupyterHub's versions and every member's SHA-256, which \`hubctl restore\` checks before it changes anything.
Default place: srv/jupyterhub/backup/hubctl-backup-TIME.tar (0700), the last --keep kept.`

  static override examples = [
    '<%= config.bin %> backup',
    '<%= config.bin %> backup --include-homes --keep 14',
    '<%= config.bin %> backup --output /root/hub.tar --json',
  ]

  static override flags = {
    output: Flags.string({char: 'o', description: 'write the archive here instead (no pruning)', helpValue: 'FILE'}),
    'include-homes': Flags.boolean({description: 'also the homes of the accounts hubctl made (owners and modes kept)'}),
    keep: Flags.integer({
      description: 'archives kept in the default directory',
      default: DEFAULT_KEEP,
      min: 1,
      max: 1000,
    }),
  }

  async run(): Promise<BackupResult> {
    const service = new BackupService({
      layout: this.layout,
      runner: execaRunner,
      log: this.jsonEnabled() ? undefined : (line) => this.logToStderr(line),
    })
    const result = await service.backup({
      output: this.flags.output,
      includeHomes: this.flags['include-homes'],
      keep: this.flags.keep,
    })
    this.log(`hubctl backup: ${result.archive} (${result.bytes} bytes, ${result.seconds}s)`)
    this.log(
      `  ${result.files} files, accounts: ${result.accounts.join(', ') || 'none'}, homes: ${result.homes.join(', ') || 'none'}; hubctl ${result.hubctl}, JupyterHub ${result.jupyterhub}`,
    )
    for (const old of result.pruned) this.log(`  removed an older backup: ${old}`)
    return result
  }
}
