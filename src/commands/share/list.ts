import {BaseCommand} from '../../base-command.js'
import {ShareInfo, SharesService} from '../../lib/course/shares.js'
import {execaRunner} from '../../lib/runner.js'

export default class ShareList extends BaseCommand<typeof ShareList> {
  static override summary = 'The shared folders: path, group and who may write.'

  static override examples = ['<%= config.bin %> share list', '<%= config.bin %> share list --json']

  async run(): Promise<{shares: ShareInfo[]}> {
    const shares = await new SharesService({layout: this.layout, runner: execaRunner}).list()
    if (!this.jsonEnabled()) {
      if (shares.length === 0) this.log('no shared folders (hubctl share add NAME makes one)')
      for (const share of shares)
        this.log(
          `${share.name}  ${share.path}${share.present ? '' : ' (MISSING)'}  group ${share.group}  writers: ${share.members.join(', ') || 'none'}`,
        )
    }
    return {shares}
  }
}
