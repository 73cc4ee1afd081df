import {Args, Flags} from '@oclif/core'

import {BaseCommand} from '../../base-command.js'
import {resultLines} from '../../command-parts/users.js'
import {type ShareAddResult, SharesService} from '../../lib/course/shares.js'
import {usageError} from '../../lib/errors.js'
import {execaRunner} from '../../lib/runner.js'
import {ApplyResult, UsersService} from '../../lib/users/users.js'

export default class UsersAdmin extends BaseCommand<typeof UsersAdmin> {
  static override summary = 'Make users admins, or (--revoke) no longer admins.'

  static override description = `Each must be a user already (\`hubctl users add NAME --admin\` adds one as admin). hubctl.json and the config change, and on a running hub the hub restarts and its database is told at once. The last admin cannot be revoked. With --share-writer SHARE (instructors, TAs), each is also made a writer of that shared folder (a member of its group, as \`hubctl share add SHARE --writers NAME\`); every share and account is checked before anything changes.`

  static override examples = [
    '<%= config.bin %> users admin ta1',
    '<%= config.bin %> users admin ta1 --share-writer data',
    '<%= config.bin %> users admin ta1 --revoke --json',
  ]

  static override strict = false

  static override args = {names: Args.string({description: 'user names', required: true})}

  static override flags = {
    revoke: Flags.boolean({description: 'take admin away'}),
    'share-writer': Flags.string({
      description: 'also make them writers of this shared folder (hubctl share list); repeatable',
      multiple: true,
    }),
  }

  async run(): Promise<ApplyResult & {shares?: ShareAddResult[]}> {
    const {argv} = await this.parse(UsersAdmin)
    const names = argv as string[]
    const shareNames = this.flags['share-writer'] ?? []
    if (this.flags.revoke && shareNames.length > 0)
      throw usageError(
        '--share-writer goes with granting admin, not with --revoke',
        "take a writer out of a share's group with gpasswd --delete NAME GROUP (hubctl share list names the group)",
      )
    const service = new UsersService({layout: this.layout, runner: execaRunner, log: (l) => this.logToStderr(l)})
    const shares = new SharesService({layout: this.layout, runner: execaRunner})
    const plan = await service.planAdmin(names, this.flags.revoke)
    if (shareNames.length > 0) await shares.checkWriters(shareNames, names)
    const result = await service.apply(plan)
    const added = shareNames.length > 0 ? await shares.addWriters(shareNames, names) : undefined
    if (!this.jsonEnabled()) {
      for (const line of resultLines(result)) this.log(line)
      for (const share of added ?? [])
        this.log(
          `share ${share.share.name}: ${share.added.length > 0 ? `${share.added.join(', ')} can write ${share.share.path} (group ${share.share.group}; a running server gets it at its next start)` : 'writers already'}`,
        )
    }
    return {...result, ...(added ? {shares: added} : {})}
  }
}
