import {Args, Flags} from '@oclif/core'
import {fileURLToPath} from 'node:url'

import {BaseCommand} from '../base-command.js'
import {RestoreResult, RestoreService} from '../lib/backup/restore.js'
import {usageError} from '../lib/errors.js'
import {execaRunner} from '../lib/runner.js'
import {PORT_FLAGS, PORT_NAMES} from '../lib/config/settings.js'
import {confirmOnTerminal, isInteractive} from '../lib/setup/prompts.js'

export default class Restore extends BaseCommand<typeof Restore> {
  static override summary = 'Bring back the hub of a `hubctl backup` archive: checked first, then written atomically.'

  static override description = `The archive is checked whole first (its manifest, every member's size and SHA-256, the versions): a changed or truncated archive is refused (exit 2) before anything changes. Then the hub is stopped, the system accounts hubctl made are made again (same names and password hashes; the same uid where it is free, the home chowned where not), every file, link and home is written complete beside the one it replaces and renamed over it by a journal (a restore killed at any moment leaves the old hub or the new one; \`hubctl start\` or a second restore finishes one killed during the renames), and the hub is started and checked. Asks on a terminal; elsewhere --yes is needed.
On a new machine, or under another --prefix, the same hub comes back: its paths moved under this prefix, its config, nginx site, units and cron line rendered again here. It keeps the archive's ports unless a port flag (as init's) chooses another; a port another program holds is refused before anything changes.`

  static override examples = [
    '<%= config.bin %> restore /srv/jupyterhub/backup/hubctl-backup-20261207T120000Z.tar',
    '<%= config.bin %> restore hub.tar --yes --prefix /tmp/hub --json',
    '<%= config.bin %> restore hub.tar --yes --prefix /tmp/hub2 --https-port 9443 --http-port 9080',
  ]

  static override args = {file: Args.string({description: 'the archive', required: true})}

  static override flags = {
    yes: Flags.boolean({char: 'y', description: 'do not ask'}),
    'http-port': Flags.string({description: "nginx's HTTP port (default: the archive's)", helpValue: 'PORT'}),
    'https-port': Flags.string({description: "nginx's HTTPS port (default: the archive's)", helpValue: 'PORT'}),
    'proxy-port': Flags.string({description: "the proxy's port (default: the archive's)", helpValue: 'PORT'}),
    'proxy-api-port': Flags.string({description: "the proxy API's port (default: the archive's)", helpValue: 'PORT'}),
    'hub-port': Flags.string({description: "the hub's own port (default: the archive's)", helpValue: 'PORT'}),
    'proxy-standby-port': Flags.string({
      description: "the standby proxy's port (default: the archive's)",
      helpValue: 'PORT',
    }),
    'proxy-standby-api-port': Flags.string({
      description: "the standby proxy API's port (default: the archive's)",
      helpValue: 'PORT',
    }),
  }

  async run(): Promise<RestoreResult> {
    const {args} = await this.parse(Restore)
    const ask = !this.flags.yes && isInteractive() && !this.jsonEnabled()
    const service = new RestoreService({
      layout: this.layout,
      runner: execaRunner,
      log: this.jsonEnabled() ? undefined : (line) => this.logToStderr(line),
    })
    const result = await service.restore({
      archive: args.file,
      bin: fileURLToPath(new URL('../../bin/run.js', import.meta.url)),
      ports: Object.fromEntries(
        PORT_NAMES.map((name) => [name, this.flags[PORT_FLAGS[name].flag.slice(2) as keyof typeof this.flags]]),
      ),
      confirm: async (summary) => {
        if (this.flags.yes) return true
        if (!ask)
          throw usageError(
            'restore replaces the hub and asks first; this is not a terminal. Nothing was changed',
            'give --yes',
          )
        return confirmOnTerminal(summary)
      },
    })
    for (const warning of result.warnings) this.logToStderr(`warning: ${warning}`)
    this.log(
      `hubctl restored the hub of ${result.createdAt} under ${this.layout.prefix} (${result.seconds}s); it runs (${result.started}) and answers.`,
    )
    if (result.relocated)
      this.log(
        `  moved from ${result.from}: HTTPS port ${result.ports.https}, HTTP port ${result.ports.http} (its config, site and units rendered again here)`,
      )
    for (const account of result.accounts)
      this.log(
        `  account ${account.name}: uid ${account.uid}${account.created ? ' (made again)' : ''}${account.uidKept ? '' : ' (its old uid was taken: home chowned)'}`,
      )
    return result
  }
}
