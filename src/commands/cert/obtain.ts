import {Flags} from '@oclif/core'

import {BaseCommand} from '../../base-command.js'
import {ExitCode} from '../../lib/errors.js'
import {CertResult, CertService} from '../../lib/tls/renewal.js'
import {execaRunner} from '../../lib/runner.js'
import {acmeFlags, certHttpPortFlag, renderCertResult} from '../../command-parts/cert.js'

export default class CertObtain extends BaseCommand<typeof CertObtain> {
  static override summary = "Obtain a certificate from Let's Encrypt (or another ACME CA) now, and use it."

  static override description = `Answers the http-01 challenge on the HTTP port: hubctl listens itself when the port is free, otherwise nginx serves the token from the webroot. hubctl fetches each token itself before telling the CA. The new key and chain replace the live ones together; nginx is tested and reloaded when it runs.
The ACME settings (not the EAB HMAC key), --http-port when it differs from the hub's, the deploy hooks and --email are kept in hubctl.json for \`hubctl cert renew\`. A changed --email also becomes the ACME account's contact. After the new certificate: nginx -t, a reload when nginx runs, then the deploy hooks.
Exit codes: 0 done, 2 bad flag, 5 the CA refused or could not be reached (the live certificate is untouched), 6 another hubctl holds the lock, 7 a deploy hook failed.`

  static override examples = [
    '<%= config.bin %> cert obtain',
    '<%= config.bin %> cert obtain --staging --key-type rsa2048',
    '<%= config.bin %> cert obtain --acme-directory https://acme.example.net/directory --eab-kid KID --eab-hmac-key /root/eab-hmac.txt',
    'HUBCTL_EAB_HMAC_KEY=... <%= config.bin %> cert obtain --acme-directory https://acme.example.net/directory --eab-kid KID --json',
  ]

  static override flags = {
    ...acmeFlags,
    ...certHttpPortFlag,
    email: Flags.string({
      description: "contact e-mail for the CA (default: init's --email); kept, and made the ACME account's contact",
    }),
  }

  async run(): Promise<CertResult> {
    const service = new CertService({
      layout: this.layout,
      runner: execaRunner,
      log: this.jsonEnabled() ? undefined : (line) => this.logToStderr(line),
      debug: /hubctl/.test(process.env.DEBUG ?? '') ? (line) => this.logToStderr(`acme: ${line}`) : undefined,
    })
    const result = await service.obtain(this.flags)
    if (!this.jsonEnabled()) renderCertResult(this, result)
    if (result.hooks.some((hook) => !hook.ok)) process.exitCode = ExitCode.RUNTIME
    return result
  }
}
