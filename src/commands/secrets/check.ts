import {BaseCommand} from '../../base-command.js'
import {ExitCode} from '../../lib/errors.js'
import {SecretProblem, SecretStore} from '../../lib/files/secrets.js'

export default class SecretsCheck extends BaseCommand<typeof SecretsCheck> {
  static override summary =
    'Check every secret: present, well-formed, owned by the service user, 0600 in a 0700 directory.'

  static override description =
    'Exits 0 when all is well, 1 listing each problem and its fix otherwise. Stricter than JupyterHub, which accepts group-readable secrets. Never prints a secret value.'

  static override examples = ['<%= config.bin %> secrets check', '<%= config.bin %> secrets check --json']

  async run(): Promise<{ok: boolean; problems: SecretProblem[]}> {
    const problems = await new SecretStore(this.layout).check()
    if (problems.length === 0) {
      this.log('secrets: all present, well-formed, 0600 in a 0700 directory')
    } else {
      for (const problem of problems) this.logToStderr(`problem: ${problem.problem}. Fix: ${problem.fix}`)
      process.exitCode = ExitCode.CHECK_FAILED
    }
    return {ok: problems.length === 0, problems}
  }
}
