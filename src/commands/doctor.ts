import {BaseCommand} from '../base-command.js'
import {CheckResult, Doctor} from '../lib/setup/doctor.js'
import {ExitCode} from '../lib/errors.js'
import {execaRunner} from '../lib/runner.js'

export default class DoctorCommand extends BaseCommand<typeof DoctorCommand> {
  static override summary = 'Check everything hubctl set up; each check passes, warns or fails with the exact fix.'

  static override description =
    'Secrets (format, owner, modes), certificate (expiry, renewal schedule, last renewal), configs (JupyterHub loads its config, nginx -t), DNS for each domain, ports, versions (Node, JupyterHub, nginx, configurable-http-proxy), a user server starts (the spawner command, as a user). Exits 1 when any check fails.'

  static override examples = ['<%= config.bin %> doctor', '<%= config.bin %> doctor --json']

  async run(): Promise<{ok: boolean; checks: CheckResult[]}> {
    const result = await new Doctor({layout: this.layout, runner: execaRunner}).run()
    const mark = {pass: 'ok  ', warn: 'WARN', fail: 'FAIL'}
    for (const check of result.checks) {
      this.log(`${mark[check.status]} ${check.check}: ${check.message}${check.fix ? `\n     fix: ${check.fix}` : ''}`)
    }
    if (!result.ok) process.exitCode = ExitCode.CHECK_FAILED
    return result
  }
}
