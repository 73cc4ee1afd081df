import {Args, Flags} from '@oclif/core'

import {BaseCommand} from '../../base-command.js'
import {ShareAddResult, SharesService} from '../../lib/course/shares.js'
import {execaRunner} from '../../lib/runner.js'

export default class ShareAdd extends BaseCommand<typeof ShareAdd> {
  static override summary =
    'A shared folder every hub user reads and only its writers change (in each home as shared/NAME).'

  static override description = `The folder is /srv/jupyterhub-shared/NAME: root's, its group hubctl-share-NAME (which hubctl makes), mode 2775, so every hub user reads it, only the writers write it (files they make stay the group's), and nobody else changes its modes. Each user's server finds a link shared/NAME in the home, placed at every start (a deleted one comes back). --writers takes users, or groups whose members become writers; a writer's server started before gets the right to write at its next start. Run again with more --writers to add writers. --source copies a folder's files into a new share.`

  static override examples = [
    '<%= config.bin %> share add data --source /root/course-data --writers ta1 ta2',
    '<%= config.bin %> share add week-1 --writers instructors --json',
  ]

  static override args = {name: Args.string({description: 'the share name (a-z, 0-9, _ and -)', required: true})}

  static override flags = {
    source: Flags.string({description: 'a folder whose files the new share starts with'}),
    writers: Flags.string({description: 'users or groups who may write (repeatable)', multiple: true}),
  }

  async run(): Promise<ShareAddResult> {
    const {args} = await this.parse(ShareAdd)
    const result = await new SharesService({layout: this.layout, runner: execaRunner}).add(args.name, {
      source: this.flags.source,
      writers: this.flags.writers,
    })
    if (!this.jsonEnabled()) {
      const {share} = result
      this.log(`share ${share.name} ${result.action}: ${share.path} (group ${share.group})`)
      if (result.copiedFrom) this.log(`files copied from ${result.copiedFrom}`)
      this.log(`writers: ${share.members.length > 0 ? share.members.join(', ') : 'none (root only)'}`)
      if (result.added.length > 0) this.log(`${result.added.join(', ')} may write from their next server start`)
      this.log(`every user finds it as shared/${share.name} in their home from their next server start`)
    }
    return result
  }
}
