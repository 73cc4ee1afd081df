import type {SlurmSettings} from '../../config/slurm.js'
import type {CertificateInfo} from '../../tls/certstore.js'
import type {JupyterHubInstall, SpawnerConfig, UserInterface} from '../../config/jupyterhub.js'
import type {Layout} from '../../config/layout.js'
import {type OAuthProvider, isOAuthProvider, oauthCallbackUrl} from '../../config/oauth.js'
import type {NginxInstall} from '../../config/nginx.js'
import type {DefaultServerPlan} from '../../config/site.js'
import type {Runner} from '../../runner.js'
import type {PackagePlan} from '../syspkgs.js'
import type {HubEnvPlan} from '../hubenv.js'
import type {CullingSummary} from '../../config/culler.js'
import type {SecretName} from '../../files/secrets.js'
import type {ServerTrial, UserServerCheck} from '../userserver.js'
import type {SlurmCheckOutcome} from '../slurmcheck.js'
import type {AcmeSettings, Settings} from '../../config/settings.js'
import type {PlannedFile, UnitContext} from '../../config/units.js'
import type {InitRequest} from '../init-request.js'

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
  /** The time the certificate step judges the kept certificate by (tests pass a fixed one). */
  clock?: () => Date
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
  /** hubctl's bin/run.js: a running hub moved to or from subdomains is started again with it (`start --detach`). */
  bin?: string
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
    /** The users' environment (opt/jupyterhub/users/current): built now from the hub's or --jupyterhub's, or kept. */
    usersEnvironment?: {current: string; built: boolean}
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
  files: Array<{file: string; action: 'written' | 'unchanged' | 'would write' | 'removed' | 'would remove'}>
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
  /** --spawner slurm: --check-submit's test job (preflight) and the jobs' programs checked on a node with srun (init/slurmnodes.ts). */
  slurmChecks?: {submit?: SlurmCheckOutcome; nodePaths?: SlurmCheckOutcome}
  /** A running hub moved between one origin and per-user subdomains (init/move.ts): what restarted. */
  moved?: {to: 'subdomains' | 'one origin'; serversRestarted: string[]; notice: string}
}

/** What the software step will install, and the nginx and JupyterHub init uses. */
export interface SoftwarePlan {
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

/** The one render: the settings, and the hub config and nginx site rendered from them. */
export interface Rendered {
  settings: Settings
  ui: UserInterface
  hubConfig: string
  defaults: DefaultServerPlan
  site: string
  /** What each text was rendered from: the same inputs again reuse the text. */
  keys: {hubConfig: string; site: string}
}

/**
 * What preflight decided, before anything is written. The software step updates the software
 * found (nginx, JupyterHub, the culler's Python) and the render after installing.
 */
export interface InitPlan {
  software: SoftwarePlan
  nginxInstall: NginxInstall
  jupyterhub: JupyterHubInstall
  nginxRunning: boolean
  /** hubctl.json of an earlier init. */
  previous?: Settings
  /** The Python that runs jupyterhub-idle-culler (none: hubctl's supervisor culls). */
  idleCullerPython?: string
  /** --spawner slurm: the jobs' settings, as preflight checked them against the cluster. */
  slurm?: SlurmSettings
  /** Users whose servers run as the hub's user, each with a home hubctl makes. */
  homeUsers: string[]
  rendered: Rendered
  units: PlannedFile[]
}

/** What one step hands to a later one while init runs. */
export interface InitHandoff {
  /** Cancels the DH parameter search when init stops early. */
  signal: AbortSignal
  /** The secrets step's fresh DH parameters, still being searched for; the render step waits for them. */
  dhWrite?: Promise<void>
  /** The spawner as JupyterHub loaded it from the installed config (render), for the user server step. */
  spawner?: SpawnerConfig
  spawnerError?: string
}

/** What every step takes: the request and the machine, what preflight planned, and the result so far. */
export interface InitContext {
  readonly request: InitRequest
  readonly deps: InitDeps
  readonly layout: Layout
  readonly runner: Runner
  readonly reporter: Reporter
  readonly clock: () => Date
  readonly dryRun: boolean
  plan: InitPlan
  result: InitResult
  handoff: InitHandoff
}

/** The context's settings: the render's (the software step renders again with what it installed). */
export function settingsOf(ctx: InitContext): Settings {
  return ctx.plan.rendered.settings
}

/** ` --prefix DIR` for commands init names, '' at prefix `/`. */
export function prefixFlag(layout: Layout): string {
  return layout.isSystem ? '' : ` --prefix ${layout.prefix}`
}

export function hubUrl(settings: Settings): string {
  return `https://${settings.domains[0]}${settings.ports.https === 443 ? '' : `:${settings.ports.https}`}/`
}

/** What to do after init, in order. */
export function nextSteps(layout: Layout, settings: Settings): string[] {
  const start = layout.isSystem
    ? 'systemctl start jupyterhub (or: hubctl start)'
    : `hubctl start --prefix ${layout.prefix}`
  return [
    ...(isOAuthProvider(settings.authenticator)
      ? [`register ${oauthCallbackUrl(settings)} as the OAuth app's callback URL with the provider`]
      : []),
    start,
    `open ${hubUrl(settings)} and log in as ${settings.admins[0]}`,
    `hubctl secrets check --prefix ${layout.prefix}`,
  ]
}

/** One step of init after preflight. */
export interface InitStep {
  /** The name the reporter shows (one of INIT_STEPS), or a name of its own for a step that shows none. */
  readonly name: string
  /** --dry-run: adds what the step would write and run to the result; writes nothing and runs nothing that does. */
  plan?(ctx: InitContext): Promise<void> | void
  /** Does the step's work; idempotent: what is already in place and valid is kept. */
  run(ctx: InitContext): Promise<void>
}
