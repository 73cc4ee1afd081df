import {Flags} from '@oclif/core'

import {BaseCommand} from '../../base-command.js'
import {ExitCode} from '../../lib/errors.js'
import {CertResult, CertService} from '../../lib/tls/renewal.js'
import {execaRunner} from '../../lib/runner.js'
import {acmeFlags, certHttpPortFlag, renderCertResult} from '../../command-parts/cert.js'

export default class CertRenew extends BaseCommand<typeof CertRenew> {
  static override summary =
    'Renew the certificate when it is due (run twice a day by the timer or cron job init installs).'

  static override description = `Due when a third of its lifetime remains (half for certificates shorter than 10 days), when fewer than --days remain, earlier when the CA's renewal information (ARI, RFC 9773) says so, or with --force. When nothing is due it exits 0 at once.
When a renewal is due and no terminal is attached (the timer, cron), it first waits a random delay of up to 8 minutes (--no-random-sleep or --force skip it). When another hubctl holds the lock it exits 0 and leaves the work to it. After a renewal: nginx -t, a reload when nginx runs, then the deploy hooks (sh -c, with RENEWED_LINEAGE, RENEWED_DOMAINS, HUBCTL_FULLCHAIN, HUBCTL_PRIVKEY set).
ACME flags and deploy hooks given here are kept in hubctl.json for later renewals: after a successful renewal, or at once when nothing is due.
Exit codes: 0 renewed or not due, 5 the CA refused or could not be reached (the live certificate is untouched), 7 a deploy hook failed.`

  static override examples = [
    '<%= config.bin %> cert renew',
    '<%= config.bin %> cert renew --force --no-random-sleep',
    '<%= config.bin %> cert renew --days 30 --deploy-hook "systemctl restart jupyterhub"',
    '<%= config.bin %> cert renew --json',
  ]

  static override flags = {
    ...acmeFlags,
    ...certHttpPortFlag,
    days: Flags.integer({
      description: 'renew when fewer than this many days remain (instead of a third of the lifetime)',
      min: 0,
    }),
    force: Flags.boolean({description: 'renew now, whether due or not'}),
    'random-sleep': Flags.boolean({
      description:
        'when due and not on a terminal, wait a random delay (up to 8 min) first (--no-random-sleep skips it)',
      allowNo: true,
      default: true,
    }),
  }

  async run(): Promise<CertResult> {
    const {flags} = this
    const service = new CertService({
      layout: this.layout,
      runner: execaRunner,
      interactive: Boolean(process.stdin.isTTY && process.stderr.isTTY),
      log: this.jsonEnabled() ? undefined : (line) => this.logToStderr(line),
      debug: /hubctl/.test(process.env.DEBUG ?? '') ? (line) => this.logToStderr(`acme: ${line}`) : undefined,
    })
    const result = await service.renew({...flags, randomSleep: flags['random-sleep']})
    if (!this.jsonEnabled()) renderCertResult(this, result)
    if (result.hooks.some((hook) => !hook.ok)) process.exitCode = ExitCode.RUNTIME
    return result
  }
}
