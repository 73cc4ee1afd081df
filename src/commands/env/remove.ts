import {Args} from '@oclif/core'

import {BaseCommand} from '../../base-command.js'
import {envChangeLines} from '../../command-parts/env.js'
import {type EnvChangeResult, UsersEnvService} from '../../lib/env/userenv.js'
import {execaRunner} from '../../lib/runner.js'

export default class EnvRemove extends BaseCommand<typeof EnvRemove> {
  static override summary =
    "Remove course packages: the users' environment is built again from its pinned base with the others."

  static override description =
    'The base (JupyterLab, ipykernel, python/userenv.txt) plus the course packages left, built beside the live one, checked, then switched to; what the removed packages brought goes with them. Running servers keep their environment.'

  static override examples = ['<%= config.bin %> env remove matplotlib']

  static override strict = false

  static override args = {
    packages: Args.string({description: 'package names, with versions if wanted', required: true}),
  }

  async run(): Promise<EnvChangeResult> {
    const {argv} = await this.parse(EnvRemove)
    const service = new UsersEnvService({
      layout: this.layout,
      runner: execaRunner,
      onProgress: this.jsonEnabled() ? undefined : (text) => this.logToStderr(text),
    })
    const result = await service.remove(argv as string[])
    if (!this.jsonEnabled()) for (const line of envChangeLines(result)) this.log(line)
    return result
  }
}
