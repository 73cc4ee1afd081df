import fs from 'node:fs/promises'

import {readIfExists, writeFileAtomic} from '../files/atomic.js'
import {type JupyterHubInstall, type SpawnerConfig, validateHubConfig} from './jupyterhub.js'
import {cullerService, supervisorCulling} from './culler.js'
import {installHubPython} from './hubpython.js'
import {HOME_SHARED_DIR, Layout, SERVER_HOME_MARKER} from './layout.js'
import {OAUTH_PROVIDER_INFO, OAuthProvider, isOAuthProvider, oauthAllowAll, oauthCallbackUrl} from './oauth.js'
import {OOM_SCORE_ADJ} from './limits.js'
import {renderTemplate} from './render.js'
import {slurmView} from './slurm.js'
import {SERVER_PORTS, type Settings} from './settings.js'
import {assertSubdomainsSupported, subdomainHost} from './subdomains.js'
import {usageError} from '../errors.js'
import type {Runner} from '../runner.js'
import {proxyApiUrl} from '../stack/hubapi.js'
import {HUBCTL_VERSION} from '../version.js'

/** The hub's database as SQLAlchemy names it (c.JupyterHub.db_url). */
export function databaseUrl(layout: Layout): string {
  return `sqlite:///${layout.database}`
}

/** The scopes of hubctl's own service: restore routes, follow, start and stop user servers, manage users. Nothing more. */
export const HUBCTL_SERVICE_SCOPES = [
  'proxy',
  'list:users',
  'read:users:activity',
  'read:servers',
  'servers',
  // `hubctl users`: delete a removed user from the hub's database, grant and revoke admin at once.
  'admin:users',
]

const AUTHENTICATORS: Record<string, {className: string; minMajor?: number; minMinor?: number}> = {
  pam: {className: 'pam'},
  dummy: {className: 'dummy'},
  'shared-password': {className: 'shared-password', minMajor: 5, minMinor: 1},
  // oauthenticator's classes: whether this JupyterHub's Python has the package is checked by init (checkOAuthenticator).
  github: {className: OAUTH_PROVIDER_INFO.github.className},
  google: {className: OAUTH_PROVIDER_INFO.google.className},
  oauth: {className: OAUTH_PROVIDER_INFO.oauth.className},
}

const SPAWNERS = {
  local: 'jupyterhub.spawner.LocalProcessSpawner',
  simple: 'jupyterhub.spawner.SimpleLocalProcessSpawner',
  slurm: 'batchspawner.SlurmSpawner',
} as const

/** The Python value of `authenticator_class` for an --authenticator choice, refusing what this JupyterHub lacks. */
export function authenticatorClass(
  choice: string,
  install: Pick<JupyterHubInstall, 'major' | 'minor' | 'version'>,
): string {
  const known = AUTHENTICATORS[choice]
  if (known) {
    const [major, minor] = [known.minMajor ?? 0, known.minMinor ?? 0]
    if (install.major < major || (install.major === major && install.minor < minor)) {
      throw usageError(
        `--authenticator ${choice} needs JupyterHub ${major}.${minor} or later, and this one is ${install.version}`,
        'choose pam or dummy, or a newer JupyterHub with --jupyterhub',
      )
    }
    return known.className
  }
  if (/^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)+$/.test(choice)) return choice
  throw usageError(
    `--authenticator ${JSON.stringify(choice)} is not one hubctl knows`,
    `give ${Object.keys(AUTHENTICATORS).join(', ')}, or a Python class such as oauthenticator.GitHubOAuthenticator`,
  )
}

/** The authenticators whose one login is hubctl's generated password (0600, shown once to whoever ran init). */
const GENERATED_LOGIN = new Set(['dummy', 'shared-password'])

/**
 * SimpleLocalProcessSpawner runs every server as the user running the hub: as root (with
 * --allow-root), whoever logs in gets a server and a terminal as root. That is allowed only when
 * the one who can log in is the operator: exactly one hub user, with hubctl's generated login (the
 * quick start run by root: `init --local`). Anything else is refused (exit 2): --spawner local runs
 * each user's server as their own system user.
 */
export function assertNoRootServers(
  settings: Pick<Settings, 'spawner' | 'authenticator' | 'admins' | 'allowedUsers'>,
  uid = process.getuid?.() ?? 0,
): void {
  if (settings.spawner !== 'simple' || uid !== 0) return
  const users = [...new Set([...settings.admins, ...settings.allowedUsers])]
  if (GENERATED_LOGIN.has(settings.authenticator) && users.length === 1) return
  const who = GENERATED_LOGIN.has(settings.authenticator)
    ? users.join(', ')
    : `${users.join(', ')} and whoever --authenticator ${settings.authenticator} lets in`
  throw usageError(
    `--spawner simple with hubctl run as root gives every user who logs in (${who}) a server and a terminal running as root`,
    "use --spawner local, which runs each user's server as their own system user (or, alone on the hub, init --local without --allow-user)",
  )
}

/**
 * Arguments for JupyterLab single-user servers (JupyterHub passes c.Spawner.args on their command
 * line, where they override any config file): what a server does at start that hub users do not
 * need. Unknown to a server without these classes or traits, they are ignored, never an error;
 * servers of the classic notebook (/tree) do not get them. Measured with `npm run bench -- spawn`.
 */
export const LAB_SERVER_ARGS = [
  // jupyter-lsp: `npm prefix -g` (a node process) and a probe for each known language server.
  '--LanguageServerManager.autodetect=False',
  // The news feed (jupyter.org) and the update check (PyPI) each server would fetch for its users.
  '--LabApp.news_url=None',
  '--LabApp.check_for_updates_class=jupyterlab.NeverCheckForUpdate',
]

/** The template's view of an OAuth login (undefined for the other authenticators). */
function oauthView(layout: Layout, settings: Settings): object | undefined {
  const provider = settings.authenticator
  if (!isOAuthProvider(provider)) return undefined
  const oauth = settings.oauth
  if (!oauth)
    throw usageError(
      `--authenticator ${provider} needs the OAuth app's settings, and ${layout.settings} has none`,
      `run \`hubctl init --authenticator ${provider} --oauth-client-id ID --oauth-client-secret-file FILE\` again`,
    )
  const section = (name: OAuthProvider) => (provider === name ? {} : undefined)
  return {
    label: OAUTH_PROVIDER_INFO[provider].label,
    clientId: oauth.clientId,
    clientSecretFile: layout.oauthClientSecret,
    callbackUrl: oauthCallbackUrl(settings),
    allowAll: oauthAllowAll(provider, oauth),
    scopes: oauth.scopes.length > 0 ? {list: oauth.scopes} : undefined,
    generic: section('oauth') && {
      authorizeUrl: oauth.authorizeUrl,
      tokenUrl: oauth.tokenUrl,
      userdataUrl: oauth.userdataUrl,
      usernameClaim: oauth.usernameClaim,
    },
    github: section('github') && (oauth.allowedOrgs.length > 0 ? {orgs: oauth.allowedOrgs} : undefined),
    google: section('google') && (oauth.allowedDomains.length > 0 ? {domains: oauth.allowedDomains} : undefined),
  }
}

/**
 * PAM logins run in the hub's own thread pool, and a wrong password holds a thread for PAM's fail
 * delay (2-4 s: pam_unix, pam_faildelay): with JupyterHub's 4 threads (1 before 5.2, and no setting
 * there: the config gives PAMAuthenticator's subclass a larger pool), 60 wrong passwords at once
 * kept every other login waiting for 43 s. The threads mostly sleep, so many cost little; nginx
 * lets one address have at most half of them busy (SITE_LIMITS.loginConcurrent, site.ts).
 */
export const PAM_THREADS = 16

/** Whether this JupyterHub has PAMAuthenticator.executor_threads (5.2). */
function hasPamThreads(install: Pick<JupyterHubInstall, 'major' | 'minor'>): boolean {
  return install.major > 5 || (install.major === 5 && install.minor >= 2)
}

/** jupyterhub_config.py for these settings and this JupyterHub version (allow rules changed in 5.0). */
export async function renderHubConfig(
  layout: Layout,
  settings: Settings,
  install: JupyterHubInstall,
  defaultUrl: string,
): Promise<string> {
  assertNoRootServers(settings)
  if (settings.subdomains) assertSubdomainsSupported(install)
  const allowed = [...new Set([...settings.admins, ...settings.allowedUsers])]
  return renderTemplate(
    'jupyterhub_config.py',
    {
      hubctlVersion: HUBCTL_VERSION,
      jupyterhubVersion: install.version,
      configD: layout.hubConfigD,
      srvDir: layout.srvDir,
      hubPythonPath: layout.hubPythonPath,
      hubPort: settings.ports.hub,
      bindUrl: `http://127.0.0.1:${settings.ports.proxy}`,
      cookieSecretFile: layout.cookieSecret,
      dbUrl: databaseUrl(layout),
      proxyApiUrl: proxyApiUrl(settings.ports),
      proxyTokenFile: layout.proxyAuthToken,
      authenticatorClass: authenticatorClass(settings.authenticator, install),
      admins: settings.admins,
      allowedUsers: allowed,
      allowAllKnown: install.major >= 5,
      // The generated login of local mode lives in its own 0600 file.
      dummyPasswordFile: settings.authenticator === 'dummy' ? layout.loginPassword : undefined,
      sharedPasswordFile: settings.authenticator === 'shared-password' ? layout.loginPassword : undefined,
      pamThreads: settings.authenticator === 'pam' ? PAM_THREADS : undefined,
      executorThreads: hasPamThreads(install),
      spawnerClass: SPAWNERS[settings.spawner],
      serverOomScoreAdj: OOM_SCORE_ADJ.server,
      serverOomScoreAdjText: String(OOM_SCORE_ADJ.server),
      hubOomScoreAdj: OOM_SCORE_ADJ.hub,
      limits: settings.limits && {
        memoryBytes: settings.limits.memoryBytes,
        cpu: settings.limits.cpu,
        tasks: settings.limits.tasks === undefined ? undefined : String(settings.limits.tasks),
      },
      // The users' environment through its `current` link: `hubctl env` switches it without a restart of the hub.
      singleuser: settings.usersEnv ? layout.usersEnvCurrentSingleuser : install.singleuser,
      defaultUrl,
      allowRoot: settings.spawner === 'simple' && (process.getuid?.() ?? 0) === 0,
      // Servers run as the hub's user: their homes are hubctl's, under the prefix (not /tmp/NAME).
      serverHomes:
        settings.spawner === 'simple'
          ? {dir: layout.serverHomesDir, template: layout.serverHomeTemplate, marker: SERVER_HOME_MARKER}
          : undefined,
      slurm:
        settings.spawner === 'slurm' && settings.slurm
          ? slurmView(settings.slurm, {singleuser: install.singleuser})
          : undefined,
      labServer: defaultUrl === '/lab',
      labServerArgs: LAB_SERVER_ARGS,
      spawn: settings.spawn,
      serverPortFirst: (settings.serverPorts ?? SERVER_PORTS).first,
      serverPortLast: (settings.serverPorts ?? SERVER_PORTS).last,
      serverProcesses: layout.serverProcesses,
      sharesRecord: layout.sharesRecord,
      sharedRoot: layout.sharedRoot,
      sharedLinkDir: HOME_SHARED_DIR,
      apiTokenFile: layout.apiToken,
      serviceScopes: HUBCTL_SERVICE_SCOPES,
      culler: cullerService(settings),
      supervisorCulls: Object.keys(supervisorCulling(settings)).length > 0,
      oauth: oauthView(layout, settings),
      subdomainHost: settings.subdomains ? subdomainHost(settings) : undefined,
    },
    'python',
  )
}

/**
 * Install a rendered jupyterhub_config.py: write the candidate, have JupyterHub load it, then move
 * it into place; a failing one never replaces a working one (init, `hubctl users`). The hub's
 * Python it imports (hubctl_hub) is installed first, so that the config is loaded with the modules
 * of this hubctl. Also returns the spawner the installed config makes (validateHubConfig).
 */
export async function installHubConfig(
  layout: Layout,
  runner: Runner,
  content: string,
  jupyterhub: JupyterHubInstall,
): Promise<{file: string; action: 'written' | 'unchanged'; spawner?: SpawnerConfig; spawnerError?: string}> {
  await installHubPython(layout)
  if ((await readIfExists(layout.hubConfig)) === content) {
    const loaded = await validateHubConfig(runner, jupyterhub, layout.hubConfig)
    return {file: layout.hubConfig, action: 'unchanged', ...loaded}
  }
  await writeFileAtomic(layout.hubConfigCandidate, content, {mode: 0o644})
  let loaded: Awaited<ReturnType<typeof validateHubConfig>>
  try {
    loaded = await validateHubConfig(runner, jupyterhub, layout.hubConfigCandidate)
    await fs.rename(layout.hubConfigCandidate, layout.hubConfig)
  } finally {
    await fs.rm(layout.hubConfigCandidate, {force: true})
  }
  return {file: layout.hubConfig, action: 'written', ...loaded}
}
