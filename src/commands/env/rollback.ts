import {BaseCommand} from '../../base-command.js'
import {envChangeLines} from '../../command-parts/env.js'
import {type EnvChangeResult, UsersEnvService} from '../../lib/env/userenv.js'
import {execaRunner} from '../../lib/runner.js'

export default class EnvRollback extends BaseCommand<typeof EnvRollback> {
  static override summary =
    "New servers start from the previous users' environment again (a link swapped, nothing built)."

  static override description =
    'The live and the previous environment trade places, so a second rollback undoes the first. Running servers keep their environment.'

  static override examples = ['<%= config.bin %> env rollback']

  async run(): Promise<EnvChangeResult> {
    const result = await new UsersEnvService({layout: this.layout, runner: execaRunner}).rollback()
    if (!this.jsonEnabled()) for (const line of envChangeLines(result)) this.log(line)
    return result
  }
}
