import fs from 'node:fs/promises'

import {ensureDir, exists} from '../files/atomic.js'
import {CertStore, CertificateInfo, inspectPair} from '../tls/certstore.js'
import {shouldRenew} from '../tls/policy.js'
import {FFDHE2048_PEM, generateDhparam} from '../tls/dhparam.js'
import {messageOf, runtimeError, usageError} from '../errors.js'
import {installHubConfig, renderHubConfig} from '../config/hubconfig.js'
import type {InitRequest} from './init-request.js'
import {HubEnvPlan, HubEnvService, canMakeVenv, systemPython} from './hubenv.js'
import {
  JupyterHubInstall,
  SpawnerConfig,
  UserInterface,
  checkOAuthenticator,
  defaultUrlFor,
  detectJupyterHub,
  detectUserInterface,
  vulnerabilityWarning,
} from '../config/jupyterhub.js'
import {Layout} from '../config/layout.js'
import {OAuthProvider, isOAuthProvider, oauthCallbackUrl} from '../config/oauth.js'
import {acquireLock} from '../files/lock.js'
import {UsersService} from '../users/users.js'
import {Nginx, NginxInstall, detectNginx} from '../config/nginx.js'
import {DefaultServerPlan, planDefaultServers, renderSite} from '../config/site.js'
import {runningSupervisor} from '../stack/state.js'
import {checkDns, checkPorts, checkPrivileges} from './preflight.js'
import {assertSubdomainsSupported} from '../config/subdomains.js'
import {Runner, which} from '../runner.js'
import {MissingPackage, PackagePlan, installPackages, packagesError, planPackages} from './syspkgs.js'
import {assertTrusted, assertTrustedFile} from './trust.js'
import {assertServerHomes, formerServerHomes, makeServerHomes, serverHomeUsers} from './homes.js'
import {CullingSummary, cullingOn, cullingSummary, importsIdleCuller} from '../config/culler.js'
import {SecretName, SecretStore, problemsError} from '../files/secrets.js'
import {proxyExecutable} from '../stack/proxy.js'
import {type ServerTrial, type UserServerCheck, checkUserServer} from './userserver.js'
import {realTrial} from './userserver-trial.js'
import {makeSelfSigned} from '../tls/selfsigned.js'
import {
  AcmeSettings,
  PORT_FLAGS,
  PORT_NAMES,
  Ports,
  Settings,
  SettingsStore,
  SETTINGS_VERSION,
} from '../config/settings.js'
import {
  PlannedFile,
  UnitContext,
  enableUnits,
  planLogrotate,
  planRenewalSchedule,
  planServiceUnit,
  systemdRuns,
  writePlanned,
} from '../config/units.js'

/** How init shows its steps: a live list on a terminal, plain lines otherwise, nothing with --json. */
export interface Reporter {
  start(step: string): void
  progress(step: string, text: string): void
  done(step: string, detail: string): void
  warn(text: string): void
}

export const silentReporter: Reporter = {start() {}, progress() {}, done() {}, warn() {}}

export interface InitDeps {
  layout: Layout
  runner: Runner
  reporter?: Reporter
  units: UnitContext
  /** Install the systemd unit and the schedule (off with --no-systemd / --no-schedule). */
  systemd?: boolean
  schedule?: boolean
  /** false: no user's server is started at the end (--no-server-check); doctor still checks it. */
  serverCheck?: boolean
  dryRun?: boolean
  /** Resolves DNS names (tests pass a fake). */
  lookup?: (name: string) => Promise<string[]>
  /** Makes fresh DH parameters (tests may pass a faster one). */
  makeDhparam?: (bits: number, onProgress: (text: string) => void) => Promise<string>
  /** Issues a Let's Encrypt certificate (provided by the certificates module). */
  obtainCertificate?: (settings: Settings) => Promise<CertificateInfo>
  /** With --tls letsencrypt: the ACME settings from the flags, kept in hubctl.json even when the current certificate is kept. */
  acme?: AcmeSettings
  /** --yes: agree to installing missing system packages without asking. */
  yes?: boolean
  /** Asks yes or no on a terminal (absent without one). */
  confirm?: (message: string) => Promise<boolean>
  /** Updates the ACME account's contact when --email changed and no certificate is ordered (an order does it itself). */
  updateAccountContact?: (settings: Settings) => Promise<{message?: string; warning: boolean}>
  /** --create-users: with PAM, make the system account of an admin or allowed user who has none (as `hubctl users add`). */
  createUsers?: boolean
  /** Starts a user's server for the last step (tests pass a fake; default: the real one). */
  trial?: ServerTrial
}

export interface InitResult {
  dryRun: boolean
  prefix: string
  jupyterhub: {executable: string; version: string}
  nginx: {executable: string; version: string}
  /** What init installed: system packages, and hubctl's JupyterHub environment (when --jupyterhub is not given). */
  software: {
    packagesInstalled: string[]
    environment?: {dir: string; versions: {jupyterhub: string; jupyterlab: string}; built: boolean}
  }
  secrets: {created: SecretName[]; kept: SecretName[]}
  certificate?: {
    mode: string
    subject: string
    issuer: string
    notAfter: string
    serial: string
    reused: boolean
    accountContact?: string
  }
  files: Array<{file: string; action: 'written' | 'unchanged' | 'would write'}>
  /** --create-users: the system accounts init made for admins and allowed users (PAM). */
  usersCreated?: string[]
  /** --authenticator github|google|oauth: the callback URL to register with the provider (the secret is never here). */
  oauth?: {
    provider: OAuthProvider
    clientId: string
    callbackUrl: string
    clientSecret: 'written' | 'kept' | 'would write'
  }
  /** Local mode's generated login, shown once: only on the run that created it. */
  login?: {url: string; user: string; password: string}
  commands: string[]
  warnings: string[]
  next: string[]
  /** Who stops idle servers, and after how long. */
  culling?: CullingSummary
  /**
   * Requests for names the hub does not serve: the hub's ports where its site closes them, Debian's
   * stock default site whose link init removed (the file stays), and other sites that answer them.
   */
  unknownNames: {
    closedOn: number[]
    disabledSite?: {link: string; file: string}
    answeredBy: Array<{port: number; file: string}>
  }
  /** The last step: a user's server started as the spawner would start it (doctor's `user server` check). */
  userServer?: UserServerCheck
}

interface SoftwarePlan {
  nginxInstall: NginxInstall
  /** nginx is installed (false: apt-get installs it). */
  nginxFound: boolean
  /** The JupyterHub to use: found, or as hubctl's environment will have it. */
  jupyterhub: JupyterHubInstall
  /** hubctl's own environment, when --jupyterhub is not given. */
  hubEnv?: HubEnvPlan
  packages: PackagePlan
  /** What will be installed, in words (empty when nothing). */
  steps: string[]
}

export const INIT_STEPS = [
  'preflight',
  'software',
  'secrets',
  'certificate',
  'render',
  'install',
  'user server',
] as const

/**
 * `hubctl init`: preflight → secrets → certificate → render and validate → install → a user's
 * server starts → summary.
 * Everything that can be refused is refused before the first write; a second run changes no secret.
 */
export class InitService {
  private readonly reporter: Reporter

  constructor(private readonly deps: InitDeps) {
    this.reporter = deps.reporter ?? silentReporter
  }

  async run(request: InitRequest): Promise<InitResult> {
    const {layout, runner} = this.deps
    const r = this.reporter
    const files: InitResult['files'] = []
    const commands: string[] = []
    const warnings: string[] = []
    let spawner: SpawnerConfig | undefined
    let spawnerError: string | undefined

    // 1. preflight: nothing written yet.
    r.start('preflight')
    // Nothing root would load may be someone else's (checked before any program runs or directory is made).
    await assertTrusted(layout, request.jupyterhub)
    await checkPrivileges(layout, undefined, {create: !this.deps.dryRun})
    const software = await this.planSoftware(request)
    let {jupyterhub, nginxInstall} = software
    const nginx = () => new Nginx(layout, nginxInstall, runner)
    const nginxRunning = software.nginxFound && (await nginx().runningPid()) !== undefined
    const previous = await new SettingsStore(layout).loadIfExists()
    const stackRunning = (await runningSupervisor(layout)) !== undefined
    // A port may already be held by nginx (http, https) or by this hub's own running stack (the
    // standby proxy runs as long as the stack does).
    const heldBy: Record<keyof Ports, boolean> = {
      http: nginxRunning,
      https: nginxRunning,
      proxy: stackRunning,
      proxyApi: stackRunning,
      hub: stackRunning,
      proxyStandby: stackRunning,
      proxyStandbyApi: stackRunning,
    }
    warnings.push(
      ...(await checkPorts(
        PORT_NAMES.map((name) => ({flag: PORT_FLAGS[name].flag, port: request.ports[name], heldOk: heldBy[name]})),
      )),
    )
    if (request.subdomains) assertSubdomainsSupported(jupyterhub)
    for (const domain of request.domains) {
      const warning = await checkDns(domain, this.deps.lookup)
      if (warning) warnings.push(warning)
    }
    if (request.cert)
      inspectPair(
        {fullchain: request.cert.fullchain, privkey: request.cert.privkey},
        {cert: `--cert ${request.cert.certFile}`, key: `--key ${request.cert.keyFile}`},
      )
    // Idle servers: jupyterhub-idle-culler with a Python that has it (hubctl's environment has it).
    let idleCuller = await this.idleCullerPython(software)
    if (idleCuller.warning && cullingOn({...request.cull, by: 'hubctl'})) warnings.push(idleCuller.warning)
    let settings = this.settingsFor(request, jupyterhub, nginxInstall.executable, previous, idleCuller.python)
    if (request.oauth) await this.checkOAuthPreflight(request, jupyterhub, Boolean(software.hubEnv))
    // Servers run as the hub's user (--spawner simple): a home of theirs that exists and is not hubctl's is refused.
    const homeUsers = serverHomeUsers(settings)
    await assertServerHomes(layout, homeUsers)
    if (previous?.spawner === 'simple')
      for (const former of await formerServerHomes(homeUsers))
        warnings.push(
          `${former.dir} (JupyterHub's default home, which any local user could make first) is no longer used: the server's home is now ${layout.serverHome(former.user)}; copy what you want from ${former.dir} into it, after looking at what it holds`,
        )
    // Rendering checks every value can be written safely, before anything is (software still to
    // be installed is rendered with the paths and versions it will have, and rendered again after).
    let ui: UserInterface = software.hubEnv ? 'lab' : await detectUserInterface(runner, jupyterhub)
    let hubConfig = await renderHubConfig(layout, settings, jupyterhub, defaultUrlFor(ui))
    let defaults = await planDefaultServers(layout, settings.ports)
    let site = await renderSite(layout, settings, nginxInstall, defaults)
    const unitFiles = await this.plannedUnits()
    if (software.packages.missing.length > 0 && !this.deps.dryRun) await this.consentToPackages(software.packages)
    r.done(
      'preflight',
      software.nginxFound && !software.hubEnv
        ? `JupyterHub ${jupyterhub.version}, nginx ${nginxInstall.version}`
        : `to install: ${software.steps.join('; ')}`,
    )

    const result: InitResult = {
      dryRun: Boolean(this.deps.dryRun),
      prefix: layout.prefix,
      jupyterhub: {executable: jupyterhub.executable, version: jupyterhub.version},
      nginx: {executable: nginxInstall.executable, version: nginxInstall.version},
      software: {
        packagesInstalled: [],
        environment: software.hubEnv
          ? {dir: software.hubEnv.dir, versions: software.hubEnv.versions, built: false}
          : undefined,
      },
      secrets: {created: [], kept: []},
      oauth:
        request.oauth && isOAuthProvider(settings.authenticator)
          ? {
              provider: settings.authenticator,
              clientId: request.oauth.clientId,
              callbackUrl: oauthCallbackUrl(settings),
              clientSecret: this.deps.dryRun && request.oauth.clientSecret !== undefined ? 'would write' : 'kept',
            }
          : undefined,
      files,
      commands,
      warnings,
      next: [],
      unknownNames: {closedOn: [], answeredBy: []},
    }
    if (this.deps.dryRun) {
      this.reportDefaults(result, defaults, true)
      for (const user of homeUsers)
        if (!(await exists(layout.serverHome(user)))) files.push({file: layout.serverHome(user), action: 'would write'})
      return this.dryRun(result, settings, unitFiles, nginxRunning, software)
    }

    const lock = await acquireLock(layout.lockFile, 'init')
    const abort = new AbortController()
    try {
      // 2. software: system packages (apt-get), then hubctl's JupyterHub and JupyterLab.
      if (software.packages.missing.length > 0 || software.hubEnv) {
        r.start('software')
        if (software.packages.missing.length > 0) {
          commands.push(...(await installPackages(runner, software.packages, (text) => r.progress('software', text))))
          result.software.packagesInstalled = software.packages.missing.map((m) => m.name)
          nginxInstall = await detectNginx(runner, request.nginx ?? 'nginx')
        }
        if (software.hubEnv) {
          const env = new HubEnvService({layout, runner, onProgress: (text) => r.progress('software', text)})
          const plan = await env.plan(await systemPython())
          const {built} = await env.build(plan)
          jupyterhub = await detectJupyterHub(runner, plan.jupyterhub)
          await assertTrusted(layout, plan.jupyterhub)
          // The environment's id counts on the Python's build: the apt-get above may have upgraded
          // Python (python3-venv pulls the current python3.11), and the one built is then not the
          // one planned. The culler runs with the Python of the environment built.
          idleCuller = {python: layout.hubEnvPython(plan.id)}
          result.software.environment = {dir: plan.dir, versions: plan.versions, built}
        }
        ui = await detectUserInterface(runner, jupyterhub)
        if (request.oauth) await checkOAuthenticator(runner, jupyterhub, settings.authenticator)
        settings = this.settingsFor(request, jupyterhub, nginxInstall.executable, previous, idleCuller.python)
        hubConfig = await renderHubConfig(layout, settings, jupyterhub, defaultUrlFor(ui))
        // apt-get's nginx comes with Debian's default site enabled.
        defaults = await planDefaultServers(layout, settings.ports)
        site = await renderSite(layout, settings, nginxInstall, defaults)
        result.jupyterhub = {executable: jupyterhub.executable, version: jupyterhub.version}
        result.nginx = {executable: nginxInstall.executable, version: nginxInstall.version}
        const env = result.software.environment
        r.done(
          'software',
          [
            result.software.packagesInstalled.length > 0
              ? `installed ${result.software.packagesInstalled.join(', ')}`
              : '',
            env
              ? `JupyterHub ${env.versions.jupyterhub}, JupyterLab ${env.versions.jupyterlab} in ${env.dir}${env.built ? '' : ' (already there)'}`
              : '',
          ]
            .filter(Boolean)
            .join('; '),
        )
      }
      if (ui === 'none')
        warnings.push(
          `the user servers' Python (${jupyterhub.singleuser}) has neither JupyterLab nor the classic notebook: users will get no interface; install jupyterlab beside it, or run init without --jupyterhub to use hubctl's own`,
        )
      const vulnerable = vulnerabilityWarning(jupyterhub)
      if (vulnerable)
        warnings.push(
          `${vulnerable}; run init without --jupyterhub to use hubctl's JupyterHub (${HubEnvService.pinned(await new HubEnvService({layout, runner}).constraints()).jupyterhub}), or upgrade this one`,
        )

      // 3. secrets; fresh DH parameters are searched for by worker threads while the next steps go on.
      r.start('secrets')
      const secrets = new SecretStore(layout)
      const dhProblems = await secrets.checkOne('dhparam')
      const dhMissing = dhProblems.length === 1 && dhProblems[0].problem.endsWith('is missing')
      if (dhProblems.length > 0 && !dhMissing) throw problemsError(dhProblems)
      const tokens = await secrets.generateMissing(
        () => Promise.reject(new Error('unused')),
        ['cookieSecret', 'proxyAuthToken', 'apiToken'],
      )
      const dhWrite = dhMissing
        ? this.dhparamSource(request, abort.signal).then((pem) => secrets.write('dhparam', pem))
        : Promise.resolve()
      dhWrite.catch(() => {}) // awaited below; no unhandled rejection meanwhile
      result.secrets = {
        created: [...tokens.created, ...(dhMissing ? ['dhparam' as const] : [])],
        kept: [...tokens.kept, ...(dhMissing ? [] : ['dhparam' as const])],
      }
      if (request.oauth?.clientSecret !== undefined && result.oauth) {
        const {changed} = await secrets.writeOAuthClientSecret(request.oauth.clientSecret)
        result.oauth.clientSecret = changed ? 'written' : 'kept'
      }
      if (settings.authenticator === 'dummy' || settings.authenticator === 'shared-password') {
        const login = await secrets.ensureLoginPassword()
        if (login.created) result.login = {url: this.url(settings), user: settings.admins[0], password: login.password}
      }
      r.done(
        'secrets',
        tokens.created.length > 0
          ? `created ${tokens.created.join(', ')}${dhMissing ? '; DH parameters under way' : ''}`
          : `tokens present, none changed${dhMissing ? '; DH parameters under way' : ''}`,
      )

      // 4. certificate
      r.start('certificate')
      result.certificate = await this.certificate(request, settings)
      if (
        result.certificate.reused &&
        request.tls === 'letsencrypt' &&
        settings.email &&
        settings.email !== previous?.email &&
        this.deps.updateAccountContact
      ) {
        try {
          const contact = await this.deps.updateAccountContact(settings)
          if (contact.warning && contact.message) warnings.push(contact.message)
          else if (contact.message) result.certificate.accountContact = contact.message
        } catch (error) {
          warnings.push(
            `the ACME account's contact was not changed to ${settings.email}: ${messageOf(error)}; the next renewal changes it`,
          )
        }
      }
      r.done(
        'certificate',
        `${result.certificate.reused ? 'kept' : 'installed'} ${result.certificate.mode} certificate for ${request.domains.join(', ')}, valid until ${result.certificate.notAfter}`,
      )

      // 5. render and validate: the hub config is loaded by the JupyterHub it is for; nginx -t runs on the site.
      r.start('render')
      await ensureDir(layout.etcDir, 0o755)
      await fs.mkdir(layout.hubConfigD, {recursive: true, mode: 0o755})
      await fs.mkdir(layout.logDir, {recursive: true, mode: 0o755})
      for (const home of await makeServerHomes(layout, homeUsers)) files.push({file: home, action: 'written'})
      const installed = await installHubConfig(layout, runner, hubConfig, jupyterhub)
      spawner = installed.spawner
      spawnerError = installed.spawnerError
      files.push({file: installed.file, action: installed.action})
      if (dhMissing) r.progress('render', 'waiting for the DH parameters')
      await dhWrite
      const mainConfWritten = await nginx().writeMainConf()
      await nginx().ensureAcmeWebroot()
      const siteResult = await nginx().installSite(site, {disable: defaults.disable?.link})
      files.push({file: layout.nginxSite, action: siteResult.changed ? 'written' : 'unchanged'})
      this.reportDefaults(result, defaults, false)
      if (!layout.isSystem) files.push({file: layout.nginxMainConf, action: mainConfWritten ? 'written' : 'unchanged'})
      const settingsWritten = await new SettingsStore(layout).save(settings)
      files.push({file: layout.settings, action: settingsWritten ? 'written' : 'unchanged'})
      r.done('render', 'jupyterhub_config.py loaded by JupyterHub, nginx -t passed')

      // 6. install
      r.start('install')
      const unitsWritten = await writePlanned(unitFiles)
      files.push(
        ...unitFiles.map((planned) => ({
          file: planned.file,
          action: unitsWritten.includes(planned.file) ? ('written' as const) : ('unchanged' as const),
        })),
      )
      if (layout.isSystem && (await systemdRuns()) && unitFiles.length > 0) {
        commands.push(
          ...(await enableUnits(
            runner,
            this.deps.systemd === false ? [] : ['jupyterhub.service'],
            unitFiles.some((f) => f.file === layout.renewTimer) ? ['hubctl-renew.timer'] : [],
          )),
        )
      }
      // nginx may have started since preflight (apt-get starts Debian's): reload whichever runs now.
      if (await nginx().reloadIfRunning()) commands.push('nginx -s reload')
      else if (layout.isSystem) commands.push(...(await this.startSystemNginx(warnings)))
      r.done('install', commands.length > 0 ? commands.join('; ') : 'files in place')
    } finally {
      abort.abort()
      await lock.release()
    }
    result.next = this.nextSteps(settings)
    result.culling = cullingSummary(settings)
    await this.checkUserAccounts(settings, result)
    if (this.deps.serverCheck !== false)
      await this.checkUserServer(settings, {spawner, spawnerError}, jupyterhub.version, result)
    return result
  }

  /**
   * 7. A user's server starts, as doctor's `user server` check starts it (after the accounts
   * --create-users made): init does not call a hub ready that no user can use. A failure is exit 7
   * with the fix; the files stay written, and `hubctl doctor` checks again once it is fixed.
   */
  private async checkUserServer(
    settings: Settings,
    {spawner, spawnerError}: {spawner?: SpawnerConfig; spawnerError?: string},
    hubVersion: string,
    result: InitResult,
  ): Promise<void> {
    const r = this.reporter
    r.start('user server')
    const check = await checkUserServer(
      {layout: this.deps.layout, runner: this.deps.runner, trial: this.deps.trial ?? realTrial},
      settings,
      spawner,
      hubVersion,
      spawnerError,
    )
    if (check.status === 'fail')
      throw runtimeError(
        `hubctl init wrote the hub's files, but ${check.message}`,
        `${check.fix ?? 'fix it'}, then \`hubctl doctor${this.prefixFlag()}\` (or init again) checks it`,
      )
    if (check.status === 'warn') result.warnings.push(`${check.message}; ${check.fix ?? ''}`)
    result.userServer = check
    r.done('user server', check.message)
  }

  /**
   * With PAM every admin and allowed user logs in with a system account: a missing one is made
   * (--create-users, or yes on a terminal) as `hubctl users add` makes it, or named in a warning
   * with that command. After the lock is released: the users service takes it itself.
   */
  private async checkUserAccounts(settings: Settings, result: InitResult): Promise<void> {
    if (settings.authenticator !== 'pam' || settings.local) return
    const users = new UsersService({layout: this.deps.layout, runner: this.deps.runner})
    const names = [...new Set([...settings.admins, ...settings.allowedUsers])]
    const plan = await users.planAdd(names, false)
    const missing = plan.account.map((entry) => entry.name)
    if (missing.length === 0) return
    const question = `${missing.join(', ')} ${missing.length === 1 ? 'has' : 'have'} no system account, so nobody can log in as ${missing.length === 1 ? 'that user' : 'them'}. Create ${missing.length === 1 ? 'it' : 'them'} now (no password until \`hubctl users passwd\`)?`
    if (this.deps.createUsers || (this.deps.confirm && (await this.deps.confirm(question)))) {
      await users.apply(plan)
      result.usersCreated = missing
      result.next.unshift(...missing.map((name) => `hubctl users passwd ${name}${this.prefixFlag()}`))
      return
    }
    for (const name of missing)
      result.warnings.push(
        `${name} has no system account: with PAM nobody can log in as ${name}; create it with \`hubctl users add ${name}${this.prefixFlag()}\` (or init --create-users --yes)`,
      )
  }

  /**
   * At prefix `/` hubctl never runs nginx itself (the system's service does): a stopped one is
   * enabled and started under systemd, or named in a warning elsewhere.
   */
  private async startSystemNginx(warnings: string[]): Promise<string[]> {
    if (await systemdRuns()) {
      const started = await this.deps.runner.run('systemctl', ['enable', '--now', 'nginx.service'])
      if (started.exitCode === 0) return ['systemctl enable --now nginx.service']
      warnings.push(
        `nginx did not start (systemctl enable --now nginx.service: ${started.stderr.trim().split('\n').pop()}); look at \`journalctl -u nginx\`, fix it, then \`systemctl start nginx\``,
      )
      return []
    }
    warnings.push(
      'nginx is not running, and the hub answers only through it: start it (`nginx`, or your service manager)',
    )
    return []
  }

  /** Who answers names the hub does not serve, in the result: what init did, and a warning for each other site. */
  private reportDefaults(result: InitResult, defaults: DefaultServerPlan, dryRun: boolean): void {
    result.unknownNames = {closedOn: defaults.ports, disabledSite: defaults.disable, answeredBy: defaults.others}
    if (dryRun && defaults.disable) result.commands.push(`rm ${defaults.disable.link}`)
    for (const other of defaults.others)
      result.warnings.push(
        `${other.file} answers requests for names the hub does not serve on port ${other.port} (its default_server): hubctl adds no default server there, so a forged Host header reaches that site instead of a closed connection; to have the hub close them, remove default_server from that file and run init again`,
      )
  }

  private prefixFlag(): string {
    return this.deps.layout.isSystem ? '' : ` --prefix ${this.deps.layout.prefix}`
  }

  /**
   * Which nginx and JupyterHub init uses, and what must be installed first: nginx (apt) when none
   * is on PATH and --nginx is not given; without --jupyterhub, hubctl's own environment of the
   * pinned JupyterHub and JupyterLab (and python3-venv for it). Installs nothing.
   */
  private async planSoftware(request: InitRequest): Promise<SoftwarePlan> {
    const {layout, runner} = this.deps
    const missing: MissingPackage[] = []
    let nginxInstall: NginxInstall
    let nginxFound = true
    if (request.nginx === undefined && !(await which('nginx'))) {
      nginxFound = false
      missing.push({name: 'nginx', why: 'the web server in front of the hub'})
      nginxInstall = {
        executable: '/usr/sbin/nginx',
        version: 'to be installed',
        http2Directive: false,
        rejectHandshake: true,
      }
    } else {
      nginxInstall = await detectNginx(runner, request.nginx ?? 'nginx')
    }
    if (request.jupyterhub !== undefined) {
      return {
        nginxInstall,
        nginxFound,
        jupyterhub: await detectJupyterHub(runner, request.jupyterhub),
        packages: await planPackages(missing),
        steps: missing.map((m) => `apt-get install ${m.name}`),
      }
    }
    const python = await systemPython()
    if (!python) missing.push({name: 'python3', why: 'the Python JupyterHub runs on'})
    if (!python || !(await canMakeVenv(runner, python)))
      missing.push({name: 'python3-venv', why: 'to make the virtualenv of JupyterHub and JupyterLab'})
    const hubEnv = await new HubEnvService({layout, runner}).plan(python)
    const [major, minor] = hubEnv.versions.jupyterhub.split('.').map(Number)
    const jupyterhub: JupyterHubInstall = {
      executable: hubEnv.jupyterhub,
      version: hubEnv.versions.jupyterhub,
      major,
      minor,
      singleuser: layout.hubEnvSingleuser(hubEnv.id),
      python: layout.hubEnvPython(hubEnv.id),
    }
    const steps = [
      ...(missing.length > 0 ? [`apt-get install ${[...new Set(missing.map((m) => m.name))].join(' ')}`] : []),
      ...(hubEnv.action === 'build'
        ? [`JupyterHub ${hubEnv.versions.jupyterhub} and JupyterLab ${hubEnv.versions.jupyterlab} into ${hubEnv.dir}`]
        : []),
    ]
    return {nginxInstall, nginxFound, jupyterhub, hubEnv, packages: await planPackages(missing), steps}
  }

  /**
   * The Python that runs jupyterhub-idle-culler: hubctl's environment's (it installs the culler), else
   * the given JupyterHub's own Python, else the environment of an earlier init (opt/jupyterhub/current),
   * whichever imports it. None found: hubctl's supervisor culls instead, and init says why.
   */
  private async idleCullerPython(software: SoftwarePlan): Promise<{python?: string; warning?: string}> {
    const {layout, runner} = this.deps
    if (software.hubEnv) return {python: layout.hubEnvPython(software.hubEnv.id)}
    const candidates = [software.jupyterhub.python, layout.hubEnvCurrentPython]
    for (const python of candidates) {
      if (!python.startsWith('/') || !(await exists(python))) continue
      await assertTrustedFile(python, 'jupyterhub-idle-culler was not looked for with it')
      if (await importsIdleCuller(runner, python)) return {python}
    }
    return {
      warning: `no Python with jupyterhub-idle-culler was found (tried ${candidates.join(', ')}): hubctl's supervisor stops idle servers itself instead; to use the culler, install jupyterhub-idle-culler beside ${software.jupyterhub.executable} (or run init once without --jupyterhub, which builds hubctl's environment with it), then run init again`,
    }
  }

  /** Missing system packages are installed only with consent: --yes, or yes on a terminal. */
  private async consentToPackages(plan: PackagePlan): Promise<void> {
    if (!plan.canInstall) {
      throw packagesError(
        plan,
        (process.getuid?.() ?? 0) !== 0
          ? 'hubctl installs system packages only as root'
          : 'hubctl installs system packages only with apt-get (Debian, Ubuntu)',
      )
    }
    if (this.deps.yes) return
    const question = `Install ${plan.missing.map((m) => m.name).join(', ')} with \`${plan.command}\`?`
    if (this.deps.confirm && (await this.deps.confirm(question))) return
    throw packagesError(
      plan,
      this.deps.confirm ? 'you declined to install them' : 'no terminal to ask on, and no --yes',
    )
  }

  private settingsFor(
    request: InitRequest,
    jupyterhub: JupyterHubInstall,
    nginx: string,
    previous?: Settings,
    idleCuller?: string,
  ): Settings {
    const root = (process.getuid?.() ?? 0) === 0
    return {
      version: SETTINGS_VERSION,
      domains: request.domains,
      ...(request.subdomains ? {subdomains: true} : {}),
      email: request.email,
      admins: request.admins,
      // Users added since (`hubctl users add`, `users sync`) stay: only `hubctl users remove` removes one.
      allowedUsers: [...new Set([...(previous?.allowedUsers ?? []), ...request.allowedUsers])],
      authenticator:
        request.authenticator ??
        (request.local
          ? jupyterhub.major > 5 || (jupyterhub.major === 5 && jupyterhub.minor >= 1)
            ? 'shared-password'
            : 'dummy'
          : 'pam'),
      spawner: request.spawner ?? (root ? 'local' : 'simple'),
      tls: {mode: request.tls, acme: this.deps.acme ?? previous?.tls.acme},
      ports: request.ports,
      dhparam: {mode: request.dhparam, bits: request.dhparamBits},
      executables: {
        jupyterhub: jupyterhub.executable,
        singleuser: jupyterhub.singleuser,
        nginx,
        node: process.execPath,
        proxy: proxyExecutable(),
        ...(idleCuller ? {idleCuller} : {}),
      },
      jupyterhubVersion: jupyterhub.version,
      nginxSupervised: !this.deps.layout.isSystem,
      proxyTls: false,
      local: request.local,
      spawn: request.spawn,
      loginBurst: request.loginBurst ?? previous?.loginBurst,
      cull: {...request.cull, by: idleCuller ? 'jupyterhub-idle-culler' : 'hubctl'},
      serverPorts: request.serverPorts,
      oauth: request.oauth && {
        clientId: request.oauth.clientId,
        authorizeUrl: request.oauth.authorizeUrl,
        tokenUrl: request.oauth.tokenUrl,
        userdataUrl: request.oauth.userdataUrl,
        usernameClaim: request.oauth.usernameClaim,
        scopes: request.oauth.scopes,
        allowedOrgs: request.oauth.allowedOrgs,
        allowedDomains: request.oauth.allowedDomains,
      },
    }
  }

  /**
   * Before anything is written: the hub's Python has oauthenticator (hubctl's own environment
   * pins it; a --jupyterhub one is asked), and the client secret is given or already kept, in a
   * file hubctl may replace.
   */
  private async checkOAuthPreflight(
    request: InitRequest,
    jupyterhub: JupyterHubInstall,
    ownEnv: boolean,
  ): Promise<void> {
    const authenticator = request.authenticator ?? ''
    if (!ownEnv) await checkOAuthenticator(this.deps.runner, jupyterhub, authenticator)
    const problems = await new SecretStore(this.deps.layout).checkOAuthClientSecret()
    const missing = problems.length === 1 && problems[0].problem.endsWith('is missing')
    if (request.oauth?.clientSecret === undefined) {
      if (missing)
        throw usageError(
          `--authenticator ${authenticator} needs the OAuth app's client secret, and none is kept yet`,
          'give --oauth-client-secret-file FILE (a file only you can read) or --oauth-client-secret-stdin; never put it on the command line',
        )
      if (problems.length > 0) throw problemsError(problems)
    } else {
      const unsafe = problems.filter((p) => /symbolic link|not a regular file|belongs to uid/.test(p.problem))
      if (unsafe.length > 0) throw problemsError(unsafe)
    }
  }

  private dhparamSource(request: InitRequest, signal: AbortSignal): Promise<string> {
    if (request.dhparam === 'ffdhe2048') return Promise.resolve(FFDHE2048_PEM)
    const make =
      this.deps.makeDhparam ??
      ((bits, onProgress) =>
        generateDhparam(bits, {
          signal,
          onProgress: (p) => onProgress(`searching with ${p.workers} threads, ${Math.round(p.elapsedMs / 1000)}s`),
        }))
    return make(request.dhparamBits, (text) => this.reporter.progress('render', `DH parameters: ${text}`))
  }

  private async certificate(request: InitRequest, settings: Settings): Promise<NonNullable<InitResult['certificate']>> {
    const store = new CertStore(this.deps.layout)
    const current = await store.currentInfo().catch(() => undefined)
    // Kept while it covers every name and the one renewal rule (tls/renewal.ts) does not call it due.
    const covers =
      current &&
      request.domains.every((d) => current.domains.includes(d)) &&
      !shouldRenew({notBefore: new Date(current.notBefore), notAfter: new Date(current.notAfter), now: new Date()}).due
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
    if (!this.deps.obtainCertificate) {
      throw usageError(
        "Let's Encrypt issuance is not available in this build of hubctl",
        'use --tls self-signed, or --tls manual with --cert and --key',
      )
    }
    return summary(await this.deps.obtainCertificate(settings), false)
  }

  private async plannedUnits(): Promise<PlannedFile[]> {
    const {layout, units} = this.deps
    const withSystemd = await systemdRuns()
    const planned: PlannedFile[] = []
    if (this.deps.systemd !== false && withSystemd) planned.push(await planServiceUnit(layout, units))
    if (this.deps.schedule !== false) planned.push(...(await planRenewalSchedule(layout, units, withSystemd)))
    planned.push(await planLogrotate(layout))
    return planned
  }

  private dryRun(
    result: InitResult,
    settings: Settings,
    units: PlannedFile[],
    nginxRunning: boolean,
    software: SoftwarePlan,
  ): InitResult {
    const {layout} = this.deps
    if (software.packages.missing.length > 0) result.commands.push('apt-get update', software.packages.command)
    if (software.hubEnv?.action === 'build') {
      result.commands.push(
        `${software.hubEnv.python} -m venv ${software.hubEnv.dir}`,
        `${layout.hubEnvPython(software.hubEnv.id)} -m pip install -c <hubctl>/python/constraints.txt jupyterhub==${software.hubEnv.versions.jupyterhub} jupyterlab==${software.hubEnv.versions.jupyterlab}`,
        `${layout.hubEnvPython(software.hubEnv.id)} -m pip uninstall --yes -r <hubctl>/python/unused.txt`,
      )
      result.files.push(
        {file: software.hubEnv.dir, action: 'would write'},
        {file: layout.hubEnvCurrent, action: 'would write'},
      )
    }
    const secretFiles = Object.values(layout.secretFiles)
    for (const file of [
      ...secretFiles,
      ...(result.oauth?.clientSecret === 'would write' ? [layout.oauthClientSecret] : []),
      layout.fullchain,
      layout.privkey,
      layout.hubConfig,
      layout.nginxSite,
      layout.nginxSiteLink,
      ...(layout.isSystem ? [] : [layout.nginxMainConf]),
      layout.settings,
      ...units.map((u) => u.file),
    ]) {
      result.files.push({file, action: 'would write'})
    }
    result.commands.push(
      `${settings.executables.jupyterhub} (load ${layout.hubConfig})`,
      `${settings.executables.nginx} -t`,
    )
    if (nginxRunning) result.commands.push(`${settings.executables.nginx} -s reload`)
    if (layout.isSystem && units.length > 0)
      result.commands.push(
        'systemctl daemon-reload',
        'systemctl enable jupyterhub.service',
        'systemctl enable --now hubctl-renew.timer',
      )
    result.next = this.nextSteps(settings)
    return result
  }

  private url(settings: Settings): string {
    return `https://${settings.domains[0]}${settings.ports.https === 443 ? '' : `:${settings.ports.https}`}/`
  }

  private nextSteps(settings: Settings): string[] {
    const {layout} = this.deps
    const start = layout.isSystem
      ? 'systemctl start jupyterhub (or: hubctl start)'
      : `hubctl start --prefix ${layout.prefix}`
    return [
      ...(isOAuthProvider(settings.authenticator)
        ? [`register ${oauthCallbackUrl(settings)} as the OAuth app's callback URL with the provider`]
        : []),
      start,
      `open ${this.url(settings)} and log in as ${settings.admins[0]}`,
      `hubctl secrets check --prefix ${layout.prefix}`,
    ]
  }
}
