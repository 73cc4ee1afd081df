import {createHash} from 'node:crypto'
import fs from 'node:fs/promises'

import {DhparamMode, FFDHE2048_PEM, generateDhparam} from '../tls/dhparam.js'
import {errnoCode, messageOf, preflightError, runtimeError, usageError, validationError} from '../errors.js'
import {FetchLike, HubApi, fallbackWarning, hubApiUrl, hubVerifier, keepAlive, proxyApiUrl} from './hubapi.js'
import {databaseUrl} from '../config/hubconfig.js'
import {jupyterhubPython} from '../config/jupyterhub.js'
import {Layout} from '../config/layout.js'
import {verifyRecordedListener} from './listeners.js'
import {ensureLogFile} from '../files/atomic.js'
import {acquireLock} from '../files/lock.js'
import {nginxFor} from '../config/nginx.js'
import {Runner} from '../runner.js'
import {SECRET_LABELS, SecretName, SecretStore} from '../files/secrets.js'
import type {Settings} from '../config/settings.js'
import {Clock, systemClock} from './clock.js'
import {ControlAction, ControlResult, runningSupervisor} from './state.js'
import {requestControl} from './control.js'

/*
 * `hubctl secrets rotate`: replace secrets without losing anyone's running notebook.
 *
 *   secret            what restarts (running stack)                        what users notice
 *   proxy token       the proxy, handed over to a standby (nginx fails     nothing (open websockets
 *                     over to it); the hub learns the token at runtime     reconnect)
 *   cookie secret     the hub                                              they log in again
 *   API token         the hub; hubctl's old token is then revoked           nothing
 *   DH parameters     nothing: nginx -t, then nginx reloads                nothing
 *
 * Each old value is kept as a 0600 backup (the last BACKUPS_KEPT per secret) before the new one is
 * written; when the stack does not come back healthy the old values are written back and applied
 * again. Every file write is atomic, so a rotation killed at any moment leaves either value, both
 * valid; `hubctl restart` (or a stop and start) then runs everything with the files' values.
 */

export const BACKUPS_KEPT = 5

/** Rotated together, in this order: the proxy first (no restart), then the hub once for both of its secrets. */
export const ROTATION_ORDER: readonly SecretName[] = ['dhparam', 'proxyAuthToken', 'apiToken', 'cookieSecret']

export interface RotateRequest {
  secrets: SecretName[]
  /** Also restart every user server, one at a time (ends sessions signed with the old cookie secret). */
  restartServers: boolean
  dhparam: {mode: DhparamMode; bits: number}
}

export interface RotationRecord {
  secret: SecretName
  /** The first 8 hex digits of the new value's SHA-256 (never the value). */
  sha256: string
  backup?: string
  outcome: 'applied' | 'written' | 'rolled-back'
}

export interface RotateResult {
  running: boolean
  rotated: RotationRecord[]
  restarted: string[]
  serversRestarted: string[]
  seconds: number
  /** What users notice, in words. */
  notice: string[]
}

export interface RotateDeps {
  layout: Layout
  settings: Settings
  runner: Runner
  clock?: Clock
  fetch?: FetchLike
  secrets?: SecretStore
  /** Where progress goes (never a secret). */
  log?: (line: string) => void
  /** Ask the running supervisor (tests replace it). */
  control?: (action: ControlAction) => Promise<ControlResult | undefined>
  makeDhparam?: (mode: DhparamMode, bits: number) => Promise<string>
  /** Whether what listens on `port` is the `name` hubctl started (undefined) or not (the problem); tests replace it. */
  listenerCheck?: (name: 'hub' | 'proxy', port: number) => Promise<string | undefined>
}

/** What each secret's rotation makes users notice (said before it acts). */
export function rotationNotice(secrets: readonly SecretName[], restartServers: boolean): string[] {
  const notice: string[] = []
  if (secrets.includes('cookieSecret'))
    notice.push(
      'Every user must log in again: the hub restarts and forgets all login cookies. Running servers keep running' +
        (restartServers ? ', but are restarted one at a time (their open notebooks lose their kernels).' : '.'),
    )
  if (secrets.includes('apiToken') && !secrets.includes('cookieSecret'))
    notice.push('The hub restarts (a few seconds); users stay logged in and their servers keep running.')
  if (secrets.includes('proxyAuthToken'))
    notice.push(
      'The proxy is replaced; requests keep being answered. Open notebook connections reconnect by themselves.',
    )
  if (secrets.includes('dhparam')) notice.push('nginx reloads; nobody notices.')
  return notice
}

export function fingerprint(value: string): string {
  return createHash('sha256').update(value).digest('hex').slice(0, 8)
}

export class RotationService {
  private readonly layout: Layout
  private readonly store: SecretStore
  private readonly clock: Clock
  private readonly log: (line: string) => void

  constructor(private readonly deps: RotateDeps) {
    this.layout = deps.layout
    this.store = deps.secrets ?? new SecretStore(deps.layout)
    this.clock = deps.clock ?? systemClock
    this.log = deps.log ?? (() => {})
  }

  async rotate(request: RotateRequest): Promise<RotateResult> {
    if (request.secrets.length === 0)
      throw usageError(
        'no secret to rotate was named',
        'give --cookie-secret, --proxy-token, --api-token, --dhparam or --all',
      )
    const began = this.clock.now()
    const secrets = ROTATION_ORDER.filter((name) => request.secrets.includes(name))
    const lock = await acquireLock(this.layout.lockFile, 'secrets rotate', {waitMs: 10_000})
    try {
      const supervisor = await runningSupervisor(this.layout)
      const running = supervisor !== undefined
      // Everything new is made before anything is written: a failure here changes nothing.
      const olds = new Map<SecretName, string | undefined>()
      const news = new Map<SecretName, string>()
      for (const name of secrets) {
        olds.set(name, await this.readOld(name))
        news.set(
          name,
          name === 'dhparam'
            ? await this.makeDhparam(request.dhparam.mode, request.dhparam.bits)
            : this.store.newToken(),
        )
      }
      const records: RotationRecord[] = []
      for (const name of secrets) {
        const old = olds.get(name)
        const backup = old === undefined ? undefined : await this.store.backup(name, old, new Date(this.clock.now()))
        await this.store.write(name, news.get(name)!)
        records.push({
          secret: name,
          sha256: fingerprint(news.get(name)!),
          ...(backup ? {backup} : {}),
          outcome: 'written',
        })
        this.log(
          `wrote the new ${SECRET_LABELS[name]} (sha256 ${fingerprint(news.get(name)!)}…)${backup ? `; the old one is kept in ${backup}` : ''}`,
        )
      }
      const restarted: string[] = []
      let serversRestarted: string[] = []
      try {
        restarted.push(...(await this.apply(secrets, running, news, olds)))
        if (running && request.restartServers) serversRestarted = await this.restartServers()
      } catch (error) {
        await this.rollback(secrets, olds, running, records)
        throw error
      }
      for (const record of records) record.outcome = running || record.secret === 'dhparam' ? 'applied' : 'written'
      for (const record of records) await this.audit(record.secret, record.sha256, record.outcome)
      for (const name of secrets) await this.store.pruneBackups(name, BACKUPS_KEPT)
      return {
        running,
        rotated: records,
        restarted,
        serversRestarted,
        seconds: round((this.clock.now() - began) / 1000),
        notice: rotationNotice(secrets, request.restartServers && running),
      }
    } finally {
      await lock.release()
    }
  }

  /** Make the running programs use the new values; returns what was restarted or reloaded. */
  private async apply(
    secrets: readonly SecretName[],
    running: boolean,
    news: Map<SecretName, string>,
    olds: Map<SecretName, string | undefined>,
  ): Promise<string[]> {
    const restarted: string[] = []
    if (secrets.includes('dhparam')) {
      if (await this.reloadNginx()) restarted.push('nginx (reload)')
    }
    if (!running) return restarted
    if (secrets.includes('proxyAuthToken')) {
      this.log('replacing the proxy (a standby serves meanwhile)…')
      await this.control('proxy-token')
      await this.verifyProxyToken(news.get('proxyAuthToken')!, olds.get('proxyAuthToken'))
      restarted.push('proxy')
    }
    if (secrets.includes('cookieSecret') || secrets.includes('apiToken')) {
      this.log('restarting the hub…')
      await this.control('restart-hub')
      restarted.push('hub')
      if (secrets.includes('apiToken')) await this.revokeOldApiTokens(news.get('apiToken')!, olds.get('apiToken'))
    }
    return restarted
  }

  private async control(action: ControlAction): Promise<void> {
    const result = await (
      this.deps.control ?? ((a: ControlAction) => requestControl(this.layout, a, {clock: this.clock}))
    )(action)
    if (result && !result.ok)
      throw runtimeError(
        `the stack did not come back healthy with the new value (${result.error})`,
        `read ${this.layout.supervisorLog}, ${this.layout.hubLog} and ${this.layout.proxyLog}`,
      )
  }

  /** The proxy answers the new token and refuses the old one. */
  private async verifyProxyToken(token: string, old: string | undefined): Promise<void> {
    const url = `${proxyApiUrl(this.deps.settings.ports)}/api/routes`
    const doFetch = this.deps.fetch ?? fetch
    const status = async (value: string) => {
      // A token goes only to the proxy hubctl started (listeners.ts).
      const problem = await (
        this.deps.listenerCheck ?? ((name, port) => verifyRecordedListener(this.layout, name, port))
      )('proxy', this.deps.settings.ports.proxyApi)
      if (problem)
        throw runtimeError(
          `hubctl did not send the proxy's token: ${problem}`,
          `read ${this.layout.proxyLog} and \`hubctl status\``,
        )
      try {
        const response = await keepAlive(
          5000,
          doFetch(url, {headers: {Authorization: `token ${value}`}, signal: AbortSignal.timeout(5000)}),
        )
        await response.body?.cancel()
        return response.status
      } catch (error) {
        throw runtimeError(
          `the proxy's API at ${url} does not answer (${(error as {cause?: {code?: string}}).cause?.code ?? messageOf(error)})`,
          `read ${this.layout.proxyLog} and \`hubctl status\``,
        )
      }
    }
    const withNew = await status(token)
    if (withNew !== 200)
      throw runtimeError(`the new proxy answers ${withNew} to the new token`, `read ${this.layout.proxyLog}`)
    if (old !== undefined && old !== token) {
      const withOld = await status(old)
      if (withOld !== 403)
        throw runtimeError(
          `the proxy still accepts the old token (HTTP ${withOld})`,
          `run \`hubctl restart\`, then rotate again`,
        )
    }
  }

  /**
   * The hub keeps every service token it was ever given in its database: after it accepted the
   * new one, delete hubctl's other tokens (with JupyterHub's own ORM, the hub's Python; the token
   * reaches the script on its standard input).
   */
  private async revokeOldApiTokens(token: string, old: string | undefined): Promise<void> {
    // The new token or a failure: no fallback to the old one here, which would hide a hub refusing the new.
    const api = HubApi.forLayout(this.layout, this.deps.settings, {
      secrets: this.store,
      fetch: this.deps.fetch,
      onFallback: false,
    })
    await api.version()
    // The hub's Python, from its executable's first line: the script below imports jupyterhub.orm
    // itself, and a `jupyterhub --version` first (seconds of imports) would tell nothing more.
    const executable = this.deps.settings.executables.jupyterhub
    const python = await jupyterhubPython(executable)
    if (!python)
      throw preflightError(
        `the JupyterHub executable "${executable}" recorded in ${this.layout.settings} was not found`,
        'install it again, or run `hubctl init --jupyterhub PATH` to record another, then rotate again',
      )
    const result = await this.deps.runner.run(python, ['-I', '-c', REVOKE_SCRIPT, databaseUrl(this.layout)], {
      input: `${token}\n`,
      timeoutMs: 60_000,
      cwd: '/',
    })
    if (result.exitCode !== 0) {
      throw runtimeError(
        `could not revoke hubctl's old API token: ${result.stderr.trim().split('\n').pop()}`,
        `read the message, then rotate again`,
      )
    }
    this.log(`revoked ${result.stdout.trim() || 0} old hubctl API token(s) in the hub's database`)
    if (old !== undefined && old !== token) {
      const oldApi = new HubApi({
        baseUrl: hubApiUrl(this.deps.settings),
        token: old,
        verify: hubVerifier(this.layout, this.deps.settings),
        fetch: this.deps.fetch,
      })
      const stillAccepted = await oldApi.listUsers().then(
        () => true,
        () => false,
      )
      if (stillAccepted)
        throw runtimeError('the hub still accepts the old API token', 'run `hubctl restart`, then rotate again')
    }
  }

  /** Restart each running user server, one after the other (to end sessions of the old cookie secret). */
  private async restartServers(): Promise<string[]> {
    const api = HubApi.forLayout(this.layout, this.deps.settings, {
      secrets: this.store,
      fetch: this.deps.fetch,
      onFallback: (request) => this.log(`warning: ${fallbackWarning(request)}`),
    })
    const done: string[] = []
    for (const server of await api.listServers()) {
      if (!server.ready) continue
      const who = server.name ? `${server.user}/${server.name}` : server.user
      this.log(`restarting ${who}'s server…`)
      await api.stopServer(server.user, server.name)
      await this.waitServer(api, server.user, server.name, false)
      await api.startServer(server.user, server.name)
      await this.waitServer(api, server.user, server.name, true)
      done.push(who)
    }
    return done
  }

  private async waitServer(api: HubApi, user: string, name: string, ready: boolean): Promise<void> {
    const deadline = this.clock.now() + 120_000
    while (this.clock.now() < deadline) {
      const servers = await api.userServers(user)
      const server = servers.find((s) => s.name === name)
      if (ready ? server?.ready : !server) return
      await this.clock.sleep(250)
    }
    throw runtimeError(
      `${user}'s server did not ${ready ? 'start' : 'stop'} within 120s`,
      `look at ${this.layout.hubLog}`,
    )
  }

  private async reloadNginx(): Promise<boolean> {
    const nginx = await nginxFor(this.layout, this.deps.settings, this.deps.runner)
    const check = await nginx.test()
    if (!check.ok)
      throw validationError(
        `nginx -t rejected the new DH parameters: ${check.output.split('\n').find((l) => /emerg|error/.test(l)) ?? check.output}`,
        'the old parameters were put back; fix what nginx names, then rotate again',
      )
    return nginx.reloadIfRunning()
  }

  /** Put every old value back and make the stack use it again; say what happened in the audit log. */
  private async rollback(
    secrets: readonly SecretName[],
    olds: Map<SecretName, string | undefined>,
    running: boolean,
    records: RotationRecord[],
  ): Promise<void> {
    this.log('the stack is not healthy with the new values: putting the old ones back')
    for (const name of secrets) {
      const old = olds.get(name)
      if (old !== undefined) await this.store.write(name, old)
    }
    try {
      if (secrets.includes('dhparam')) await this.reloadNginx()
      if (running && secrets.includes('proxyAuthToken')) await this.control('proxy-token')
      if (running && (secrets.includes('cookieSecret') || secrets.includes('apiToken')))
        await this.control('restart-hub')
    } catch (error) {
      this.log(`re-applying the old values failed too: ${messageOf(error)}`)
    }
    for (const record of records) {
      record.outcome = 'rolled-back'
      await this.audit(record.secret, record.sha256, 'rolled-back')
    }
  }

  private async readOld(name: SecretName): Promise<string | undefined> {
    try {
      return await this.store.read(name)
    } catch {
      // Missing or invalid: nothing worth keeping (rotation is also the way to replace a broken one).
      return undefined
    }
  }

  private async makeDhparam(mode: DhparamMode, bits: number): Promise<string> {
    if (this.deps.makeDhparam) return this.deps.makeDhparam(mode, bits)
    if (mode === 'ffdhe2048') return FFDHE2048_PEM
    this.log(`generating ${bits}-bit DH parameters (this takes a while; --dhparam ffdhe2048 is instant)…`)
    return generateDhparam(bits)
  }

  /** One line per secret and rotation: time, secret, the new value's fingerprint, outcome. */
  private async audit(secret: SecretName, sha256: string, outcome: string): Promise<void> {
    const line = `${new Date(this.clock.now()).toISOString()} secret=${secret} sha256=${sha256} outcome=${outcome} pid=${process.pid}\n`
    try {
      await fs.mkdir(this.layout.logDir, {recursive: true, mode: 0o755})
      await ensureLogFile(this.layout.auditLog)
      const handle = await fs.open(this.layout.auditLog, 'a', 0o640)
      try {
        await handle.writeFile(line)
        await handle.sync()
      } finally {
        await handle.close()
      }
    } catch (error) {
      this.log(`could not write the audit log ${this.layout.auditLog} (${errnoCode(error) ?? messageOf(error)})`)
    }
  }
}

function round(value: number): number {
  return Math.round(value * 100) / 100
}

/** Deletes every API token of the hubctl service but the one given on stdin. Prints how many. */
const REVOKE_SCRIPT = `
import sys
from jupyterhub import orm
token = sys.stdin.readline().strip()
db = orm.new_session_factory(sys.argv[1])()
service = db.query(orm.Service).filter_by(name="hubctl").first()
keep = orm.APIToken.find(db, token)
if keep is None or service is None or keep.service_id != service.id:
    sys.exit("the hub does not know hubctl's new API token yet")
removed = 0
for t in list(service.api_tokens):
    if t.id != keep.id:
        db.delete(t)
        removed += 1
db.commit()
print(removed)
`
