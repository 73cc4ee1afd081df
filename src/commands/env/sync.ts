import {Args} from '@oclif/core'

import {BaseCommand} from '../../base-command.js'
import {envChangeLines} from '../../command-parts/env.js'
import {type EnvChangeResult, UsersEnvService} from '../../lib/env/userenv.js'
import {execaRunner} from '../../lib/runner.js'

export default class EnvSync extends BaseCommand<typeof EnvSync> {
  static override summary = "Make the course packages exactly a requirements file's: built, checked, then switched to."

  static override description =
    "The pinned base plus the file's packages (one requirement a line: names and versions; options, paths and URLs are refused), built beside the live environment, pip check clean, then switched to. Running servers keep their environment."

  static override examples = ['<%= config.bin %> env sync requirements.txt']

  static override args = {file: Args.string({description: 'a requirements file', required: true})}

  async run(): Promise<EnvChangeResult> {
    const {args} = await this.parse(EnvSync)
    const service = new UsersEnvService({
      layout: this.layout,
      runner: execaRunner,
      onProgress: this.jsonEnabled() ? undefined : (text) => this.logToStderr(text),
    })
    const result = await service.sync(args.file)
    if (!this.jsonEnabled()) for (const line of envChangeLines(result)) this.log(line)
    return result
  }
}
