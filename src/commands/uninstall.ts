import {Flags} from '@oclif/core'

import {BaseCommand} from '../base-command.js'
import {UninstallResult, UninstallService} from '../lib/backup/uninstall.js'
import {usageError} from '../lib/errors.js'
import {execaRunner} from '../lib/runner.js'
import {confirmOnTerminal, isInteractive} from '../lib/setup/prompts.js'

export default class Uninstall extends BaseCommand<typeof Uninstall> {
  static override summary =
    "Stop the hub and remove what hubctl put in the system's places; keep the hub's files unless --purge."

  static override description = `Stops the hub and its user servers, removes the systemd unit and renewal timer (or the cron line), the logrotate file and the nginx site, then \`nginx -t\` and a reload when an nginx runs (its other sites keep serving). srv/jupyterhub, etc/jupyterhub, the environment (opt/jupyterhub) and the homes stay: \`hubctl init\` gives the hub again. --purge first writes a backup with the homes to var/backups/hubctl/ and prints where, then removes those too and the system accounts hubctl made. Asks on a terminal; elsewhere --yes is needed.`

  static override examples = ['<%= config.bin %> uninstall', '<%= config.bin %> uninstall --purge --yes']

  static override flags = {
    purge: Flags.boolean({
      description: "also remove the hub's files, environment, logs, and the accounts hubctl made (a backup first)",
    }),
    yes: Flags.boolean({char: 'y', description: 'do not ask'}),
  }

  async run(): Promise<UninstallResult> {
    const {purge, yes} = this.flags
    if (!yes) {
      if (!isInteractive() || this.jsonEnabled())
        throw usageError('uninstall asks first; this is not a terminal. Nothing was changed', 'give --yes')
      const question = purge
        ? `Remove the hub under ${this.layout.prefix} entirely (a backup is written first)?`
        : `Stop the hub under ${this.layout.prefix} and remove its unit, schedule and nginx site (its files stay)?`
      if (!(await confirmOnTerminal(question)))
        throw usageError('uninstall was not confirmed; nothing changed', 'answer yes, or give --yes')
    }
    const service = new UninstallService({
      layout: this.layout,
      runner: execaRunner,
      log: this.jsonEnabled() ? undefined : (line) => this.logToStderr(line),
    })
    const result = await service.uninstall({purge})
    for (const warning of result.warnings) this.logToStderr(`warning: ${warning}`)
    if (result.backup) this.log(`backup written first: ${result.backup}`)
    this.log(`hubctl uninstalled the hub under ${this.layout.prefix}${result.stopped ? ' (stopped)' : ''}.`)
    for (const file of result.removed) this.log(`  removed ${file}`)
    if (result.defaultSiteRestored)
      this.log(`  enabled again ${result.defaultSiteRestored} (Debian's default site, which init had disabled)`)
    if (result.nginxReloaded) this.log('  nginx reloaded (nginx -t passed)')
    if (!purge)
      this.log(
        '  kept: srv/jupyterhub, etc/jupyterhub, the environment and the homes (`hubctl init` brings the hub back)',
      )
    return result
  }
}
