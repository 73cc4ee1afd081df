import {Flags} from '@oclif/core'

import {BaseCommand} from '../base-command.js'
import {CheckResult, Doctor} from '../lib/setup/doctor.js'
import {ExitCode, usageError} from '../lib/errors.js'
import {execaRunner} from '../lib/runner.js'
import {parseCount} from '../lib/config/slurm.js'
import {CHECK_SUBMIT_TIMEOUT} from '../lib/setup/slurmcheck.js'
import {parseUserName} from '../lib/validate.js'

export default class DoctorCommand extends BaseCommand<typeof DoctorCommand> {
  static override summary = 'Check everything hubctl set up; each check passes, warns or fails with the exact fix.'

  static override description =
    'Secrets (format, owner, modes), certificate (expiry, renewal schedule, last renewal), configs (JupyterHub loads its config, nginx -t), DNS for each domain, ports, versions (Node, JupyterHub, nginx, configurable-http-proxy), a user server starts (the spawner command, as a user). Exits 1 when any check fails.'

  static override examples = [
    '<%= config.bin %> doctor',
    '<%= config.bin %> doctor --json',
    '<%= config.bin %> doctor --check-submit alice',
  ]

  static override flags = {
    'check-submit': Flags.string({
      description:
        'with --spawner slurm: submit a tiny test job as this user (sudo -u USER sbatch, as the hub does) and wait for it to complete',
    }),
    'server-check': Flags.boolean({
      description:
        "start a user's server as the spawner would and stop it (--no-server-check skips it: a quicker doctor, its `user server` check a warning)",
      default: true,
      allowNo: true,
    }),
    'check-submit-timeout': Flags.string({
      description: `with --check-submit: seconds the test job may take before it is cancelled and the check fails (default: ${CHECK_SUBMIT_TIMEOUT})`,
    }),
  }

  async run(): Promise<{ok: boolean; checks: CheckResult[]}> {
    const {flags} = this
    const timeout = flags['check-submit-timeout']
    if (timeout !== undefined && flags['check-submit'] === undefined)
      throw usageError(
        '--check-submit-timeout goes with --check-submit',
        'add --check-submit USER, or drop --check-submit-timeout',
      )
    const checkSubmit =
      flags['check-submit'] === undefined
        ? undefined
        : {
            user: parseUserName(flags['check-submit'], '--check-submit'),
            ...(timeout === undefined
              ? {}
              : {timeoutSeconds: parseCount(timeout, '--check-submit-timeout', 5, 3600, '120')}),
          }
    const result = await new Doctor({
      layout: this.layout,
      runner: execaRunner,
      checkSubmit,
      serverCheck: flags['server-check'],
    }).run()
    const mark = {pass: 'ok  ', warn: 'WARN', fail: 'FAIL'}
    for (const check of result.checks) {
      this.log(`${mark[check.status]} ${check.check}: ${check.message}${check.fix ? `\n     fix: ${check.fix}` : ''}`)
    }
    if (!result.ok) process.exitCode = ExitCode.CHECK_FAILED
    return result
  }
}
