import {Args, Flags} from '@oclif/core'

import {BaseCommand} from '../../base-command.js'
import {resultLines} from '../../command-parts/users.js'
import {execaRunner} from '../../lib/runner.js'
import {ApplyResult, UsersService} from '../../lib/users/users.js'

export default class UsersRemove extends BaseCommand<typeof UsersRemove> {
  static override summary =
    'Stop users logging in: their servers stopped, deleted from the hub, (PAM) accounts locked and homes archived.'

  static override description = `Each user leaves hubctl.json and the rendered config; on a running hub their server is stopped and they are deleted from the hub's database through its API (on a stopped hub, from the database file), so that no JupyterHub version lets them in again. With PAM, the system account hubctl made is locked and expired and its home directory archived to srv/jupyterhub/archive/NAME-TIME.tar.gz (0600), then removed; --keep-home leaves the home. Accounts adopted with --adopt are left as they are. The last admin cannot be removed.`

  static override examples = [
    '<%= config.bin %> users remove ada',
    '<%= config.bin %> users remove ada grace --keep-home --json',
  ]

  static override strict = false

  static override args = {names: Args.string({description: 'user names', required: true})}

  static override flags = {
    'keep-home': Flags.boolean({description: 'leave the home directory in place (no archive)'}),
  }

  async run(): Promise<ApplyResult> {
    const {argv} = await this.parse(UsersRemove)
    const service = new UsersService({layout: this.layout, runner: execaRunner, log: (l) => this.logToStderr(l)})
    const result = await service.apply(await service.planRemove(argv as string[]), {keepHome: this.flags['keep-home']})
    if (!this.jsonEnabled()) for (const line of resultLines(result)) this.log(line)
    return result
  }
}
