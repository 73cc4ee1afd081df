import {Args, Flags} from '@oclif/core'

import {BaseCommand} from '../../base-command.js'
import {resultLines, revokeLines} from '../../command-parts/users.js'
import {type ShareAddResult, type ShareRevokeResult, SharesService} from '../../lib/course/shares.js'
import {execaRunner} from '../../lib/runner.js'
import {ApplyResult, UsersService} from '../../lib/users/users.js'

export default class UsersAdmin extends BaseCommand<typeof UsersAdmin> {
  static override summary = 'Make users admins, or (--revoke) no longer admins.'

  static override description = `Each must be a user already (\`hubctl users add NAME --admin\` adds one as admin). hubctl.json and the config change, and on a running hub the hub restarts and its database is told at once. The last admin cannot be revoked. With --share-writer SHARE (instructors, TAs), each is also made a writer of that shared folder (a member of its group, as \`hubctl share add SHARE --writers NAME\`); every share and account is checked before anything changes. With --revoke and --share-writer SHARE, each is no longer admin and leaves that folder's group (idempotent); a running server of theirs keeps the group it started with, so hubctl stops it through the hub (it starts again without the group at their next login).`

  static override examples = [
    '<%= config.bin %> users admin ta1',
    '<%= config.bin %> users admin ta1 --share-writer data',
    '<%= config.bin %> users admin ta1 --revoke --json',
    '<%= config.bin %> users admin ta1 --revoke --share-writer data',
  ]

  static override strict = false

  static override args = {names: Args.string({description: 'user names', required: true})}

  static override flags = {
    revoke: Flags.boolean({description: 'take admin away'}),
    'share-writer': Flags.string({
      description:
        'also make them writers of this shared folder (hubctl share list), or with --revoke no longer writers; repeatable',
      multiple: true,
    }),
  }

  async run(): Promise<
    ApplyResult & {shares?: ShareAddResult[]; sharesLeft?: ShareRevokeResult[]; serversStopped?: string[]}
  > {
    const {argv} = await this.parse(UsersAdmin)
    const names = argv as string[]
    const shareNames = this.flags['share-writer'] ?? []
    const service = new UsersService({layout: this.layout, runner: execaRunner, log: (l) => this.logToStderr(l)})
    const shares = new SharesService({layout: this.layout, runner: execaRunner})
    // Everything checked before the first change: the users, the last admin, the shares, the accounts.
    const plan = await service.planAdmin(names, this.flags.revoke)
    if (shareNames.length > 0) await shares.checkWriters(shareNames, names, this.flags.revoke)
    const result = await service.apply(plan)
    if (this.flags.revoke && shareNames.length > 0) {
      const left = await shares.removeWriters(shareNames, names)
      // A running server keeps the groups it started with (and would still write): stopped, so
      // the revoke holds now; it starts again, without the group, at the user's next login.
      // Those an earlier run took out of the group but whose server still has it (that run could not
      // stop it) too: a second run finishes the revoke.
      const serversStopped = await service.stopServers([
        ...new Set(left.flatMap((s) => [...s.removed, ...s.stillHeld])),
      ])
      if (!this.jsonEnabled()) {
        for (const line of resultLines(result)) this.log(line)
        for (const line of revokeLines(left, serversStopped)) this.log(line)
      }
      return {...result, sharesLeft: left, serversStopped}
    }
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
