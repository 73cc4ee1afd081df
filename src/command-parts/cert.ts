import {Flags} from '@oclif/core'

import {EAB_HMAC_ENV} from '../lib/tls/acme-settings.js'
import {DEFAULT_DNS_WAIT_SECONDS, DNS_PROVIDERS} from '../lib/tls/dns01.js'
import {CertResult, notDueLine} from '../lib/tls/renewal.js'
import {KEY_TYPES} from '../lib/config/settings.js'

/*
 * What the certificate commands share (cert obtain, cert renew, and init's ACME flags): their flags
 * and how a certificate result is shown. Beside src/commands, not in it: oclif takes every module
 * in src/commands for a command.
 */

/** The ACME flags shared by `cert obtain`, `cert renew` and `init`. */
export const acmeFlags = {
  staging: Flags.boolean({
    description: "use Let's Encrypt's staging server (untrusted test certificates, higher rate limits)",
  }),
  'acme-directory': Flags.string({
    description: "directory URL of another ACME certificate authority (default: Let's Encrypt production)",
    helpValue: 'URL',
    env: 'HUBCTL_ACME_DIRECTORY',
  }),
  'acme-ca-cert': Flags.string({
    description:
      "PEM file with the CA certificate that signs the ACME server's HTTPS (private or test CAs); TLS stays verified",
    helpValue: 'FILE',
    env: 'HUBCTL_ACME_CA_CERT',
  }),
  'eab-kid': Flags.string({description: 'external account binding key id, for CAs that require one'}),
  'eab-hmac-key': Flags.string({
    description: `file holding the external account binding HMAC key (or set ${EAB_HMAC_ENV}); never stored, never printed`,
    helpValue: 'FILE',
  }),
  'key-type': Flags.string({
    description: 'the certificate key (default: ecdsa-p256, or what was used before)',
    options: [...KEY_TYPES],
  }),
  'deploy-hook': Flags.string({
    description: 'command to run (sh -c) after each new certificate (repeatable; kept in hubctl.json for the renewals)',
    multiple: true,
  }),
  dns: Flags.string({
    description:
      'answer DNS-01 instead of http-01 (needed for a wildcard name): rfc2136 (nsupdate), hook (--dns-hook), none (back to http-01); kept for the renewals',
    options: [...DNS_PROVIDERS],
  }),
  'dns-server': Flags.string({
    description: 'with --dns rfc2136: the primary DNS server of the zone nsupdate sends the TXT records to',
    helpValue: 'HOST[:PORT]',
  }),
  'dns-tsig-key-file': Flags.string({
    description:
      'with --dns rfc2136: the TSIG key file (nsupdate -k), root-owned, mode 0600; never read into argv or logs',
    helpValue: 'FILE',
  }),
  'dns-hook': Flags.string({
    description:
      'an executable (root-owned, not group/other-writable) that adds or removes the TXT record; gets HUBCTL_DNS_ACTION=add|remove, HUBCTL_DNS_NAME, HUBCTL_DNS_VALUE',
    helpValue: 'PATH',
  }),
  'dns-resolver': Flags.string({
    description:
      "the DNS server hubctl looks the TXT record up at before asking the CA (default: --dns-server, or the zone's authoritative servers)",
    helpValue: 'HOST[:PORT]',
  }),
  'dns-wait': Flags.string({
    description: `how long to wait for the TXT record to appear, in seconds (default ${DEFAULT_DNS_WAIT_SECONDS})`,
    helpValue: 'SECONDS',
  }),
}

export const certHttpPortFlag = {
  'http-port': Flags.string({
    description:
      "the port hubctl answers the http-01 challenge on, which the CA reaches (default: the hub's --http-port from init); kept for the renewals",
  }),
}

export function renderCertResult(
  command: {log: (line: string) => void; logToStderr: (line: string) => void},
  result: CertResult,
): void {
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
      command.log(
        `${result.action === 'renewed' ? 'renewed' : 'obtained'} a certificate for ${result.domains.join(', ')} (serial ${result.serial}), valid until ${result.notAfter}; issuer ${result.issuer}`,
      )
      if (result.action === 'renewed') command.log(`  why: ${result.reason}`)
      if (result.responder === 'dns') command.log('  dns-01 answered by TXT records, removed afterwards')
      else if (result.responder && result.responder !== 'none')
        command.log(
          `  http-01 answered by ${result.responder === 'hubctl' ? "hubctl's own listener" : 'nginx from the webroot'}`,
        )
      command.log(
        `  nginx: ${result.nginxReloaded ? 'configuration tested and reloaded' : 'not running, nothing to reload'}`,
      )
  }
  for (const note of result.notes) command.logToStderr(`note: ${note}`)
  for (const hook of result.hooks) {
    if (hook.ok) command.log(`  deploy hook ok: ${hook.command}`)
    else
      command.logToStderr(
        `hubctl: deploy hook failed (exit ${hook.exitCode}): ${hook.command}${hook.output ? `\n${hook.output}` : ''}`,
      )
  }
}
