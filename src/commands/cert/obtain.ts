import {Flags} from '@oclif/core'

import {BaseCommand} from '../../base-command.js'
import {EAB_HMAC_ENV} from '../../lib/tls/acme.js'
import {ExitCode} from '../../lib/errors.js'
import {CertResult, CertService, notDueLine} from '../../lib/tls/renewal.js'
import {execaRunner} from '../../lib/runner.js'
import {KEY_TYPES} from '../../lib/config/settings.js'

/** The ACME flags shared by `cert obtain`, `cert renew` and `init`. */
export const acmeFlags = {
  staging: Flags.boolean({description: 'use Let\'s Encrypt\'s staging server (untrusted test certificates, higher rate limits)'}),
  'acme-directory': Flags.string({description: 'directory URL of another ACME certificate authority (default: Let\'s Encrypt production)', helpValue: 'URL', env: 'HUBCTL_ACME_DIRECTORY'}),
  'acme-ca-cert': Flags.string({description: 'PEM file with the CA certificate that signs the ACME server\'s HTTPS (private or test CAs); TLS stays verified', helpValue: 'FILE', env: 'HUBCTL_ACME_CA_CERT'}),
  'eab-kid': Flags.string({description: 'external account binding key id, for CAs that require one'}),
  'eab-hmac-key': Flags.string({description: `file holding the external account binding HMAC key (or set ${EAB_HMAC_ENV}); never stored, never printed`, helpValue: 'FILE'}),
  'key-type': Flags.string({description: 'the certificate key (default: ecdsa-p256, or what was used before)', options: [...KEY_TYPES]}),
  'deploy-hook': Flags.string({description: 'command to run (sh -c) after each new certificate (repeatable; kept in hubctl.json for the renewals)', multiple: true}),
}

export const certHttpPortFlag = {
  'http-port': Flags.string({description: 'the port hubctl answers the http-01 challenge on, which the CA reaches (default: the hub\'s --http-port from init); kept for the renewals'}),
}

export function renderCertResult(command: {log: (line: string) => void; logToStderr: (line: string) => void}, result: CertResult): void {
  switch (result.action) {
    case 'not-due':
      command.log(notDueLine(result.domains, result.reason))
      break
    case 'locked':
      command.log(`not renewing now: ${result.reason}`)
      break
    case 'skipped':
      command.log(`nothing to renew: ${result.reason}`)
      break
    default:
      command.log(`${result.action === 'renewed' ? 'renewed' : 'obtained'} a certificate for ${result.domains.join(', ')} (serial ${result.serial}), valid until ${result.notAfter}; issuer ${result.issuer}`)
      if (result.action === 'renewed') command.log(`  why: ${result.reason}`)
      if (result.responder && result.responder !== 'none') command.log(`  http-01 answered by ${result.responder === 'hubctl' ? 'hubctl\'s own listener' : 'nginx from the webroot'}`)
      command.log(`  nginx: ${result.nginxReloaded ? 'configuration tested and reloaded' : 'not running, nothing to reload'}`)
  }
  for (const note of result.notes) command.logToStderr(`note: ${note}`)
  for (const hook of result.hooks) {
    if (hook.ok) command.log(`  deploy hook ok: ${hook.command}`)
    else command.logToStderr(`hubctl: deploy hook failed (exit ${hook.exitCode}): ${hook.command}${hook.output ? `\n${hook.output}` : ''}`)
  }
}

export default class CertObtain extends BaseCommand<typeof CertObtain> {
  static override summary = 'Obtain a certificate from Let\'s Encrypt (or another ACME CA) now, and use it.'

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
    email: Flags.string({description: 'contact e-mail for the CA (default: init\'s --email); kept, and made the ACME account\'s contact'}),
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
