import {Args} from '@oclif/core'

import {BaseCommand} from '../../base-command.js'
import {ShareRemoveResult, SharesService} from '../../lib/course/shares.js'
import {execaRunner} from '../../lib/runner.js'

export default class ShareRemove extends BaseCommand<typeof ShareRemove> {
  static override summary = 'Delete a shared folder, what it holds, and its group.'

  static override description = `The links to it in users' homes are removed at each user's next server start.`

  static override examples = ['<%= config.bin %> share remove week-1']

  static override args = {name: Args.string({description: 'the share name', required: true})}

  async run(): Promise<ShareRemoveResult> {
    const {args} = await this.parse(ShareRemove)
    const result = await new SharesService({layout: this.layout, runner: execaRunner}).remove(args.name)
    if (!this.jsonEnabled()) this.log(`share ${result.name} removed: ${result.path} and the group ${result.group}`)
    return result
  }
}
