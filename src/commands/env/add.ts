import {Args} from '@oclif/core'

import {BaseCommand} from '../../base-command.js'
import {envChangeLines} from '../../command-parts/env.js'
import {type EnvChangeResult, UsersEnvService} from '../../lib/env/userenv.js'
import {execaRunner} from '../../lib/runner.js'

export default class EnvAdd extends BaseCommand<typeof EnvAdd> {
  static override summary =
    "Install course packages into the users' environment: a new one is built, checked, then switched to."

  static override description =
    "A copy of the live users' environment (hard links) gets the packages with pip, every pinned version kept (python/constraints.txt: a package that needs another JupyterLab is refused with pip's reason), then pip check; only then do new servers start from it. Running servers keep the environment they started with. Offline, a package that does not exist, or a conflict: an error, and the live environment untouched. The hub's own environment is never touched."

  static override examples = [
    '<%= config.bin %> env add pandas scikit-learn matplotlib',
    '<%= config.bin %> env add numpy==2.1.3 --json',
  ]

  static override strict = false

  static override args = {
    packages: Args.string({description: 'package names, with versions if wanted', required: true}),
  }

  async run(): Promise<EnvChangeResult> {
    const {argv} = await this.parse(EnvAdd)
    const service = new UsersEnvService({
      layout: this.layout,
      runner: execaRunner,
      onProgress: this.jsonEnabled() ? undefined : (text) => this.logToStderr(text),
    })
    const result = await service.add(argv as string[])
    if (!this.jsonEnabled()) for (const line of envChangeLines(result)) this.log(line)
    return result
  }
}
