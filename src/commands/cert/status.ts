import {BaseCommand} from '../../base-command.js'
import {ExitCode} from '../../lib/errors.js'
import {CertStatus, certificateStatus} from '../../lib/tls/cert-status.js'

export default class CertStatusCommand extends BaseCommand<typeof CertStatusCommand> {
  static override summary =
    'Show the live certificate: domains, issuer, serial, validity, when it renews, the last renewal attempt.'

  static override description =
    'Exits 0 when all is well; 1 when there is no certificate, it has expired, or it is past its renewal time and the last renewal attempt failed.'

  static override examples = ['<%= config.bin %> cert status', '<%= config.bin %> cert status --json']

  async run(): Promise<CertStatus> {
    const status = await certificateStatus(this.layout, new Date())
    if (!this.jsonEnabled()) {
      if (status.installed) {
        this.log(`domains:      ${status.domains?.join(', ')}`)
        this.log(`issuer:       ${status.issuer?.replaceAll('\n', ', ')}`)
        this.log(`serial:       ${status.serial}`)
        this.log(`not before:   ${status.notBefore}`)
        this.log(`not after:    ${status.notAfter} (${status.daysLeft} days left)`)
        this.log(
          `renew after:  ${status.renewAfter}${status.mode && status.mode !== 'letsencrypt' ? ` (${status.mode}: not renewed by hubctl)` : ''}`,
        )
      }
      this.log(
        `last attempt: ${status.lastAttempt ?? 'none'}${status.lastError ? `, failed: ${status.lastError}` : status.lastAttempt ? ', succeeded' : ''}`,
      )
      if (status.problem)
        this.logToStderr(`problem: ${status.problem}. Fix: run \`hubctl cert renew --force\` and read its error`)
    }
    if (!status.ok) process.exitCode = ExitCode.CHECK_FAILED
    return status
  }
}
