import {Args, Flags} from '@oclif/core'

import {BaseCommand} from '../base-command.js'
import {LinkResult, hubAssignmentLink} from '../lib/course/link.js'

export default class Link extends BaseCommand<typeof Link> {
  static override summary = "The link that hands out a git repository's notebooks (nbgitpuller)."

  static override description = `A student who clicks it logs in, their server starts, and nbgitpuller clones the repository into their home (a folder named after it) and JupyterLab opens --path. Clicked again after the repository changed, it merges the new commits and keeps the student's edits (nbgitpuller's rule: a file the student changed is kept, one they deleted comes back). The repository must be one the hub's machine can clone without credentials.`

  static override examples = [
    '<%= config.bin %> link https://github.com/ORG/course.git --path week1/intro.ipynb',
    '<%= config.bin %> link https://github.com/ORG/course.git --branch 2026 --json',
  ]

  static override args = {repo: Args.string({description: 'the repository URL (https, http or git)', required: true})}

  static override flags = {
    branch: Flags.string({description: "the branch (default: the repository's default branch)"}),
    path: Flags.string({description: 'the file or folder to open, relative to the top of the repository'}),
  }

  async run(): Promise<LinkResult> {
    const {args} = await this.parse(Link)
    const result = await hubAssignmentLink(this.layout, {
      repo: args.repo,
      branch: this.flags.branch,
      path: this.flags.path,
    })
    if (!this.jsonEnabled()) this.log(result.url)
    return result
  }
}
