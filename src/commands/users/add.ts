import {Args, Flags} from '@oclif/core'

import {BaseCommand} from '../../base-command.js'
import {resultLines} from '../../command-parts/users.js'
import {execaRunner} from '../../lib/runner.js'
import {ApplyResult, UsersService} from '../../lib/users/users.js'

export default class UsersAdd extends BaseCommand<typeof UsersAdd> {
  static override summary =
    'Let users log in: hubctl.json, the config, the running hub and (PAM) their system accounts.'

  static override description = `With PAM (authenticator pam), each new user gets a system account: their own group, a 0700 home, /bin/bash, no password until \`hubctl users passwd\` sets one. An account that exists already and was not made by hubctl is refused unless --adopt; system accounts (uid < 1000, root) always are. With the dummy or shared-password authenticator no system account is touched. A running hub restarts with the new config; user servers keep running. Adding a user who is one already changes nothing.`

  static override examples = [
    '<%= config.bin %> users add ada grace',
    '<%= config.bin %> users add ta1 --admin',
    '<%= config.bin %> users add alice --adopt --json',
  ]

  static override strict = false

  static override args = {names: Args.string({description: 'user names', required: true})}

  static override flags = {
    admin: Flags.boolean({description: 'make them admins'}),
    adopt: Flags.boolean({
      description: 'let users log in with system accounts that exist already (hubctl never locks those)',
    }),
  }

  async run(): Promise<ApplyResult> {
    const {argv} = await this.parse(UsersAdd)
    const service = new UsersService({layout: this.layout, runner: execaRunner, log: (l) => this.logToStderr(l)})
    const result = await service.apply(await service.planAdd(argv as string[], this.flags.admin), {
      adopt: this.flags.adopt,
    })
    if (!this.jsonEnabled()) for (const line of resultLines(result)) this.log(line)
    return result
  }
}
