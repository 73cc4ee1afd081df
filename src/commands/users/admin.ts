import {Args, Flags} from '@oclif/core'

import {BaseCommand} from '../../base-command.js'
import {resultLines} from '../../command-parts/users.js'
import {execaRunner} from '../../lib/runner.js'
import {ApplyResult, UsersService} from '../../lib/users/users.js'

export default class UsersAdmin extends BaseCommand<typeof UsersAdmin> {
  static override summary = 'Make users admins, or (--revoke) no longer admins.'

  static override description = `Each must be a user already (\`hubctl users add NAME --admin\` adds one as admin). hubctl.json and the config change, and on a running hub the hub restarts and its database is told at once. The last admin cannot be revoked.`

  static override examples = ['<%= config.bin %> users admin ta1', '<%= config.bin %> users admin ta1 --revoke --json']

  static override strict = false

  static override args = {names: Args.string({description: 'user names', required: true})}

  static override flags = {
    revoke: Flags.boolean({description: 'take admin away'}),
  }

  async run(): Promise<ApplyResult> {
    const {argv} = await this.parse(UsersAdmin)
    const service = new UsersService({layout: this.layout, runner: execaRunner, log: (l) => this.logToStderr(l)})
    const result = await service.apply(await service.planAdmin(argv as string[], this.flags.revoke))
    if (!this.jsonEnabled()) for (const line of resultLines(result)) this.log(line)
    return result
  }
}
