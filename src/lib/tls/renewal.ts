import {acmeAgent, fetchDirectory} from './acme-http.js'
import {acmeSettingsFrom, AcmeDeps, AcmeFlags, obtainRequestFor, readEabHmacKey} from './acme-settings.js'
import {describeContactChange, obtainCertificate, updateAccountContact} from './acme.js'
import {CertificateInfo} from './certstore.js'
import {checkOrderNames} from './dns01.js'
import {ExitCode, HubctlError, messageOf} from '../errors.js'
import {Layout} from '../config/layout.js'
import {acquireLock} from '../files/lock.js'
import type {Runner} from '../runner.js'
import {AcmeSettings, Settings, SettingsStore} from '../config/settings.js'
import {parseEmail} from '../validate.js'
import {RenewalDecision, shouldRenew} from './policy.js'
import {ariCertId, ariWindowFor} from './ari.js'
import {
  LiveCertificate,
  RenewalState,
  readLiveCertificate,
  readRenewalState,
  writeRenewalState,
} from './renewal-state.js'

/** The longest random delay before a scheduled (non-terminal) renewal, like certbot's. */
export const MAX_RANDOM_SLEEP_MS = 480_000
/** How long a renewal waits for another hubctl's lock before leaving it the work. */
export const LOCK_WAIT_MS = 3000
// ---------------------------------------------------------------------------------------------
// `hubctl cert obtain` and `hubctl cert renew`

export interface CertServiceDeps {
  layout: Layout
  runner: Runner
  clock?: () => Date
  log?: (line: string) => void
  debug?: (line: string) => void
  /** Waits (the random delay); tests pass a fake. */
  sleep?: (ms: number) => Promise<void>
  random?: () => number
  /** Whether a person is watching (no random delay then). */
  interactive?: boolean
  env?: NodeJS.ProcessEnv
}

export interface CertRequestOptions extends AcmeFlags {
  /** Path of the file holding the EAB HMAC key (else HUBCTL_EAB_HMAC_KEY). */
  'eab-hmac-key'?: string
  /** `cert obtain --email`: the CA's contact, kept in hubctl.json; the account's contact follows. */
  email?: string
}

export interface RenewOptions extends CertRequestOptions {
  days?: number
  force?: boolean
  randomSleep?: boolean
}

export interface HookResult {
  command: string
  exitCode: number
  ok: boolean
  output: string
}

export interface CertResult {
  action: 'obtained' | 'renewed' | 'not-due' | 'locked' | 'skipped'
  reason: string
  domains: string[]
  serial?: string
  issuer?: string
  notAfter?: string
  renewAfter?: string
  responder?: 'hubctl' | 'webroot' | 'dns' | 'none'
  nginxReloaded?: boolean
  hooks: HookResult[]
  notes: string[]
}

export class CertService {
  private readonly clock: () => Date
  private readonly log: (line: string) => void

  constructor(private readonly deps: CertServiceDeps) {
    this.clock = deps.clock ?? (() => new Date())
    this.log = deps.log ?? (() => {})
  }

  /**
   * `hubctl cert obtain`: a new certificate now, whatever the current one. Every ACME setting
   * given (and --email) is kept in hubctl.json for the renewals; the deploy hooks run, as after a
   * renewal.
   */
  async obtain(options: CertRequestOptions): Promise<CertResult> {
    const {layout} = this.deps
    const store = new SettingsStore(layout)
    const loaded = await store.load()
    const acme = await acmeSettingsFrom(options, loaded.tls.acme, loaded.ports.http)
    checkOrderNames(loaded.domains, acme.dns)
    const email = options.email === undefined ? undefined : parseEmail(options.email)
    const hmacKey = await readEabHmacKey(options['eab-hmac-key'], this.deps.env)
    const lock = await acquireLock(layout.lockFile, 'cert obtain')
    try {
      // Read again under the lock: an init may have changed them meanwhile.
      const settings = await store.load()
      if (email !== undefined) settings.email = email
      const result = await this.issue(settings, acme, {hmacKey})
      settings.tls = {mode: 'letsencrypt', acme}
      await store.save(settings)
      const nginxReloaded = await this.reloadNginx(settings, result.notes)
      const hooks = await this.runHooks(acme.deployHooks, settings)
      return {...result, action: 'obtained', reason: 'requested (cert obtain)', nginxReloaded, hooks}
    } finally {
      await lock.release()
    }
  }

  /** For `hubctl init --tls letsencrypt`: the settings are saved by init afterwards (with tls.acme set here). */
  async obtainForInit(settings: Settings, acme: AcmeSettings, hmacKey?: string): Promise<CertificateInfo> {
    const obtained = await obtainCertificate(obtainRequestFor(settings, acme, {hmacKey}), this.acmeDeps(settings))
    settings.tls = {mode: settings.tls.mode, acme}
    return obtained.info
  }

  /**
   * For `hubctl init` keeping a valid certificate while --email changed: the ACME account's
   * contact is updated now (an order would do it too). `warning` when the CA refused.
   */
  async updateAccountContact(settings: Settings, acme: AcmeSettings): Promise<{message?: string; warning: boolean}> {
    if (!settings.email) return {warning: false}
    const change = await updateAccountContact(
      {directoryUrl: acme.directory, caCertFile: acme.caCert, email: settings.email},
      {layout: this.deps.layout, clock: this.deps.clock, log: this.log, debug: this.deps.debug},
    )
    if (change.status === 'no-account')
      return {message: `no ACME account yet: the first order registers ${settings.email}`, warning: false}
    return {message: describeContactChange(change), warning: change.status === 'failed'}
  }

  async renew(options: RenewOptions): Promise<CertResult> {
    const {layout} = this.deps
    const store = new SettingsStore(layout)
    const settings = await store.load()
    const notes: string[] = []
    if (settings.tls.mode !== 'letsencrypt') {
      return {
        action: 'skipped',
        reason: `the certificate is ${settings.tls.mode}: hubctl renews only certificates it obtained (hubctl cert obtain switches to ACME)`,
        domains: settings.domains,
        hooks: [],
        notes,
      }
    }
    const acme = await acmeSettingsFrom(options, settings.tls.acme, settings.ports.http)
    const state = await readRenewalState(layout)

    let decision = await this.decide(settings, acme, options, notes, state)
    if (!decision.due) {
      await this.keepChangedSettings(store, settings, acme, notes)
      return {
        action: 'not-due',
        reason: decision.reason,
        domains: settings.domains,
        renewAfter: decision.renewAfter.toISOString(),
        serial: decision.live?.serial,
        notAfter: decision.live?.notAfter.toISOString(),
        hooks: [],
        notes,
      }
    }

    if (options.randomSleep !== false && !this.deps.interactive && !options.force) {
      const ms = Math.floor((this.deps.random ?? Math.random)() * MAX_RANDOM_SLEEP_MS)
      this.log(
        `renewal due (${decision.reason}); waiting a random ${Math.round(ms / 1000)}s first so that scheduled runs do not all reach the CA at once (--no-random-sleep skips this)`,
      )
      await (this.deps.sleep ?? ((t) => new Promise((resolve) => setTimeout(resolve, t))))(ms)
    }

    let lock
    try {
      lock = await acquireLock(layout.lockFile, 'cert renew', {waitMs: LOCK_WAIT_MS})
    } catch (error) {
      if (error instanceof HubctlError && error.exitCode === ExitCode.LOCKED) {
        return {
          action: 'locked',
          reason: `${error.message}; it does the work, this run leaves it alone`,
          domains: settings.domains,
          hooks: [],
          notes,
        }
      }
      throw error
    }
    try {
      // Another run may have renewed while we waited for the lock.
      if (!options.force) {
        decision = await this.decide(settings, acme, options, notes, await readRenewalState(layout))
        if (!decision.due)
          return {
            action: 'not-due',
            reason: decision.reason,
            domains: settings.domains,
            renewAfter: decision.renewAfter.toISOString(),
            serial: decision.live?.serial,
            hooks: [],
            notes,
          }
      }
      this.log(`renewing: ${decision.reason}`)
      const hmacKey = await readEabHmacKey(options['eab-hmac-key'], this.deps.env)
      const attempt = this.clock().toISOString()
      let result: Omit<CertResult, 'action' | 'reason'>
      try {
        result = await this.issue(settings, acme, {hmacKey, replaces: decision.certId})
      } catch (error) {
        const message = error instanceof HubctlError ? error.message : String(messageOf(error) ?? error)
        await writeRenewalState(layout, {...(await readRenewalState(layout)), lastAttempt: attempt, lastError: message})
        throw error
      }
      await writeRenewalState(layout, {
        lastAttempt: attempt,
        lastSuccess: this.clock().toISOString(),
        lastSerial: result.serial,
      })
      settings.tls = {mode: 'letsencrypt', acme}
      await store.save(settings)
      result.notes.push(...notes)
      const nginxReloaded = await this.reloadNginx(settings, result.notes)
      const hookResults = await this.runHooks(acme.deployHooks, settings)
      return {...result, action: 'renewed', reason: decision.reason, nginxReloaded, hooks: hookResults}
    } finally {
      await lock.release()
    }
  }

  private decide(
    settings: Settings,
    acme: AcmeSettings,
    options: RenewOptions,
    notes: string[],
    state: RenewalState,
  ): Promise<RenewalDecision & {live?: LiveCertificate; certId?: string}> {
    return decideRenewal(this.deps.layout, settings, acme, state, {
      now: this.clock(),
      days: options.days,
      force: options.force,
      notes,
      lookUpReplaces: true,
    })
  }

  /**
   * `cert renew` with nothing due but flags that change the kept ACME settings (a new deploy hook,
   * another CA...): kept now, under the lock, so the next renewal uses them. Without such flags
   * (the timer's runs) nothing is written and no lock is taken.
   */
  private async keepChangedSettings(
    store: SettingsStore,
    settings: Settings,
    acme: AcmeSettings,
    notes: string[],
  ): Promise<void> {
    const changed = changedAcmeSettings(settings.tls.acme, acme)
    if (changed.length === 0) return
    let lock
    try {
      lock = await acquireLock(this.deps.layout.lockFile, 'cert renew', {waitMs: LOCK_WAIT_MS})
    } catch (error) {
      if (error instanceof HubctlError && error.exitCode === ExitCode.LOCKED) {
        notes.push(`the new ${changed.join(', ')} could not be kept: ${error.message}; give them again`)
        return
      }
      throw error
    }
    try {
      const current = await store.load()
      current.tls = {mode: 'letsencrypt', acme}
      await store.save(current)
      notes.push(`kept the new ${changed.join(', ')} in ${this.deps.layout.settings} for the renewals`)
    } finally {
      await lock.release()
    }
  }

  private async issue(
    settings: Settings,
    acme: AcmeSettings,
    options: {hmacKey?: string; replaces?: string},
  ): Promise<Omit<CertResult, 'action' | 'reason'>> {
    const request = obtainRequestFor(settings, acme, options)
    const obtained = await obtainCertificate(request, this.acmeDeps(settings))
    const notes = [...obtained.notes]
    return {
      domains: obtained.info.domains,
      serial: obtained.info.serial,
      issuer: obtained.info.issuer,
      notAfter: obtained.info.notAfter,
      responder: obtained.responder,
      hooks: [],
      notes,
    }
  }

  /** What an order needs: the layout, clock and log, and the nginx that answers http-01 when it holds the port. */
  private acmeDeps(settings: Settings): AcmeDeps {
    return {
      layout: this.deps.layout,
      clock: this.deps.clock,
      log: this.log,
      debug: this.deps.debug,
      runner: this.deps.runner,
      nginx: async () => {
        const {nginxFor} = await import('../config/nginx.js')
        return nginxFor(this.deps.layout, settings, this.deps.runner).catch(() => undefined)
      },
    }
  }

  /** `nginx -t`, then a reload when nginx runs; nothing to do when it does not. */
  private async reloadNginx(settings: Settings, notes: string[]): Promise<boolean> {
    const {nginxFor} = await import('../config/nginx.js')
    let nginx
    try {
      nginx = await nginxFor(this.deps.layout, settings, this.deps.runner)
    } catch (error) {
      notes.push(`nginx not reloaded: ${messageOf(error)}`)
      return false
    }
    return nginx.reloadIfRunning()
  }

  private async runHooks(hooks: string[], settings: Settings): Promise<HookResult[]> {
    const {layout, runner} = this.deps
    const results: HookResult[] = []
    if (hooks.length > 0) {
      // The hooks come from hubctl.json: run none that someone else could have put there.
      const {assertTrustedFile} = await import('../setup/trust.js')
      await assertTrustedFile(layout.settings, 'the deploy hooks were not run')
    }
    for (const command of hooks) {
      this.log(`running deploy hook: ${command}`)
      const result = await runner.run('/bin/sh', ['-c', command], {
        env: deployHookEnv(layout, settings),
        extendEnv: false,
        timeoutMs: 300_000,
        cwd: '/',
      })
      results.push({
        command,
        exitCode: result.exitCode,
        ok: result.exitCode === 0,
        output: `${result.stdout}\n${result.stderr}`.trim().slice(-2000),
      })
    }
    return results
  }
}

/**
 * A deploy hook's whole environment: a fixed PATH, the locale when set, and the documented
 * variables. Nothing else of root's (tokens, credentials, a PYTHONPATH or LD_PRELOAD) reaches it.
 */
export function deployHookEnv(
  layout: Layout,
  settings: Pick<Settings, 'domains'>,
  base: NodeJS.ProcessEnv = process.env,
): Record<string, string> {
  const env: Record<string, string> = {PATH: '/usr/sbin:/usr/bin:/sbin:/bin'}
  for (const name of ['LANG', 'LC_ALL'] as const) if (base[name]) env[name] = base[name]!
  return {
    ...env,
    RENEWED_LINEAGE: layout.sslDir,
    RENEWED_DOMAINS: settings.domains.join(' '),
    HUBCTL_FULLCHAIN: layout.fullchain,
    HUBCTL_PRIVKEY: layout.privkey,
    HUBCTL_PREFIX: layout.prefix,
  }
}

const ACME_SETTING_FLAGS: Record<keyof AcmeSettings, string> = {
  directory: '--acme-directory',
  caCert: '--acme-ca-cert',
  eabKid: '--eab-kid',
  keyType: '--key-type',
  deployHooks: '--deploy-hook',
  httpPort: '--http-port',
  dns: '--dns',
}

/** The flags whose kept value differs between two ACME settings. */
export function changedAcmeSettings(before: AcmeSettings | undefined, after: AcmeSettings): string[] {
  const keys = Object.keys(ACME_SETTING_FLAGS) as Array<keyof AcmeSettings>
  return keys
    .filter((key) => JSON.stringify(before?.[key]) !== JSON.stringify(after[key]))
    .map((key) => ACME_SETTING_FLAGS[key])
}

/**
 * Whether the live certificate is due: missing, not covering the domains, self-signed, the local
 * rule (or --days, --force), then the CA's ARI window. With `lookUpReplaces`, a due certificate's
 * ARI id is looked up for the order's `replaces` (one directory fetch).
 */
export async function decideRenewal(
  layout: Layout,
  settings: Settings,
  acme: AcmeSettings,
  state: RenewalState,
  options: {now: Date; days?: number; force?: boolean; notes: string[]; lookUpReplaces: boolean},
): Promise<RenewalDecision & {live?: LiveCertificate; certId?: string}> {
  const {now, days, force} = options
  const live = await readLiveCertificate(layout)
  if (!live) return {due: true, reason: `no certificate at ${layout.fullchain}`, renewAfter: now, byAri: false}
  const missing = settings.domains.filter((d) => !live.domains.includes(d))
  if (missing.length > 0)
    return {
      due: true,
      reason: `the certificate does not cover ${missing.join(', ')}`,
      renewAfter: now,
      byAri: false,
      live,
    }
  if (live.selfSigned) return {due: true, reason: 'the certificate is self-signed', renewAfter: now, byAri: false, live}
  // The local rule first: when it already says "due" (or --force), no need to ask the CA.
  const local = shouldRenew({...live, now, days, force})
  if (!local.due) {
    const found = await ariWindowFor(layout, acme, live, state, now)
    if (found.note) options.notes.push(found.note)
    return {
      ...shouldRenew({...live, now, days, ari: found.window}),
      live,
      certId: found.hasAri ? found.certId : undefined,
    }
  }
  let certId: string | undefined
  if (options.lookUpReplaces) {
    // ARI's `replaces` needs the CA's renewalInfo: one directory look-up (the order fetches it anyway).
    try {
      const directory = await fetchDirectory(acme.directory, await acmeAgent(acme.caCert))
      if (directory.renewalInfo) certId = ariCertId(live.pem)
    } catch {
      // The order will report an unreachable CA.
    }
  }
  return {...local, live, certId}
}

/** What `cert renew` prints when nothing is due. */
export function notDueLine(domains: readonly string[], reason: string): string {
  return `certificate for ${domains.join(', ')} not due for renewal: ${reason}`
}

/**
 * `hubctl cert renew` as the timer and cron run it, answered without oclif when nothing is due
 * (bin/run.js): the same decision as CertService.renew (the kept settings, the live certificate,
 * the local rule, the CA's window). Returns the line to print, or undefined whenever the full
 * command must run: due, not an ACME certificate, a note to report, any error.
 */
export async function renewNotDueQuickly(layout: Layout, now = new Date()): Promise<string | undefined> {
  try {
    const settings = await new SettingsStore(layout).load()
    const acme = settings.tls.acme
    if (settings.tls.mode !== 'letsencrypt' || !acme?.directory) return undefined
    const notes: string[] = []
    const decision = await decideRenewal(layout, settings, acme, await readRenewalState(layout), {
      now,
      notes,
      lookUpReplaces: false,
    })
    return decision.due || notes.length > 0 ? undefined : notDueLine(settings.domains, decision.reason)
  } catch {
    return undefined
  }
}
