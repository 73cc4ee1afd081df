import {CertStore, type CertificateInfo, inspectPair} from '../../tls/certstore.js'
import {shouldRenew} from '../../tls/policy.js'
import {makeSelfSigned} from '../../tls/selfsigned.js'
import {messageOf, usageError} from '../../errors.js'
import type {InitContext, InitResult, InitStep} from './context.js'

type CertificateSummary = NonNullable<InitResult['certificate']>

/**
 * The certificate init installs, or the one in place when it still serves: the same pair as --cert
 * and --key, or one that covers every name and that the one renewal rule (tls/renewal.ts) does not
 * call due.
 */
export async function installCertificate(ctx: InitContext): Promise<CertificateSummary> {
  const {request, deps} = ctx
  const store = new CertStore(ctx.layout)
  const current = await store.currentInfo().catch(() => undefined)
  const covers =
    current &&
    request.domains.every((d) => current.domains.includes(d)) &&
    !shouldRenew({notBefore: new Date(current.notBefore), notAfter: new Date(current.notAfter), now: ctx.clock()}).due
  const summary = (info: CertificateInfo, reused: boolean) => ({
    mode: request.tls,
    subject: info.subject,
    issuer: info.issuer,
    notAfter: info.notAfter,
    serial: info.serial,
    reused,
  })
  if (request.tls === 'manual' && request.cert) {
    if (current && current.fingerprint256 === inspectPair(request.cert).fingerprint256) return summary(current, true)
    return summary(await store.install(request.cert), false)
  }
  if (request.tls === 'self-signed') {
    if (current && covers && current.selfSigned) return summary(current, true)
    return summary(await store.install(await makeSelfSigned(request.domains)), false)
  }
  if (current && covers && !current.selfSigned) return summary(current, true)
  if (!deps.obtainCertificate) {
    throw usageError(
      "Let's Encrypt issuance is not available in this build of hubctl",
      'use --tls self-signed, or --tls manual with --cert and --key',
    )
  }
  return summary(await deps.obtainCertificate(ctx.plan.rendered.settings), false)
}

/**
 * 4. certificate: installed, or kept (see installCertificate); with Let's Encrypt and a changed
 * --email, the ACME account's contact follows when no order is placed.
 */
export const certificate: InitStep = {
  name: 'certificate',

  plan(ctx) {
    ctx.result.files.push(
      {file: ctx.layout.fullchain, action: 'would write'},
      {file: ctx.layout.privkey, action: 'would write'},
    )
  },

  async run(ctx) {
    const {request, result, deps, reporter: r} = ctx
    const settings = ctx.plan.rendered.settings
    r.start('certificate')
    const installed = await installCertificate(ctx)
    result.certificate = installed
    if (
      installed.reused &&
      request.tls === 'letsencrypt' &&
      settings.email &&
      settings.email !== ctx.plan.previous?.email &&
      deps.updateAccountContact
    ) {
      try {
        const contact = await deps.updateAccountContact(settings)
        if (contact.warning && contact.message) result.warnings.push(contact.message)
        else if (contact.message) installed.accountContact = contact.message
      } catch (error) {
        result.warnings.push(
          `the ACME account's contact was not changed to ${settings.email}: ${messageOf(error)}; the next renewal changes it`,
        )
      }
    }
    r.done(
      'certificate',
      `${installed.reused ? 'kept' : 'installed'} ${installed.mode} certificate for ${request.domains.join(', ')}, valid until ${installed.notAfter}`,
    )
  },
}
