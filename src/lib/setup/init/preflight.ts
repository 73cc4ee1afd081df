import {exists} from '../../files/atomic.js'
import {inspectPair} from '../../tls/certstore.js'
import {preflightError, usageError} from '../../errors.js'
import {
  type JupyterHubInstall,
  type UserInterface,
  checkOAuthenticator,
  detectUserInterface,
} from '../../config/jupyterhub.js'
import {isOAuthProvider, oauthCallbackUrl} from '../../config/oauth.js'
import {Nginx} from '../../config/nginx.js'
import {cullingOn} from '../../config/culler.js'
import {SecretStore, problemsError} from '../../files/secrets.js'
import {PORT_FLAGS, PORT_NAMES, type Ports, SettingsStore} from '../../config/settings.js'
import {runningSupervisor} from '../../stack/state.js'
import {checkDns, checkPorts, checkPrivileges} from '../preflight.js'
import {assertTrusted} from '../trust.js'
import {assertServerHomes, formerServerHomes, serverHomeUsers} from '../homes.js'
import type {InitRequest} from '../init-request.js'
import {type InitContext, type InitDeps, type InitResult, silentReporter} from './context.js'
import {consentToPackages, idleCullerPython, planSoftware} from './software.js'
import {renderConfigs, reportDefaults, settingsFor} from './render.js'
import {plannedUnits} from './install.js'
import {checkSlurmRequest} from '../slurm.js'
import {CHECK_SUBMIT_TIMEOUT, type SlurmCheckOutcome, checkSubmit} from '../slurmcheck.js'
import {systemClock} from '../../stack/clock.js'
import {assertSubdomainsSupported} from '../../config/subdomains.js'

/**
 * Before anything is written: the hub's Python has oauthenticator (hubctl's own environment
 * pins it; a --jupyterhub one is asked), and the client secret is given or already kept, in a
 * file hubctl may replace.
 */
async function checkOAuthPreflight(
  deps: InitDeps,
  request: InitRequest,
  jupyterhub: JupyterHubInstall,
  ownEnv: boolean,
): Promise<void> {
  const authenticator = request.authenticator ?? ''
  if (!ownEnv) await checkOAuthenticator(deps.runner, jupyterhub, authenticator)
  const problems = await new SecretStore(deps.layout).checkOAuthClientSecret()
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

/**
 * 1. preflight, the planning part of init (all --dry-run runs): trust, privileges, the software to
 * use or install, ports, DNS, the given certificate, the culler, OAuth, the server homes, and the one
 * render of the configs. Everything that can be refused is refused here, before the first write;
 * the only thing made is the prefix (not with --dry-run). Returns the context every later step takes.
 */
export async function preflight(deps: InitDeps, request: InitRequest, signal: AbortSignal): Promise<InitContext> {
  const {layout, runner} = deps
  const dryRun = Boolean(deps.dryRun)
  const r = deps.reporter ?? silentReporter
  const files: InitResult['files'] = []
  const commands: string[] = []
  const warnings: string[] = []

  r.start('preflight')
  // Nothing root would load may be someone else's (checked before any program runs or directory is made).
  await assertTrusted(layout, request.jupyterhub)
  await checkPrivileges(layout, undefined, {create: !dryRun})
  // The given certificate and key, read already: refused before any program runs (the Python
  // probes below take seconds each).
  if (request.cert)
    inspectPair(
      {fullchain: request.cert.fullchain, privkey: request.cert.privkey},
      {cert: `--cert ${request.cert.certFile}`, key: `--key ${request.cert.keyFile}`},
    )
  const software = await planSoftware(layout, runner, request)
  const {jupyterhub, nginxInstall} = software
  const nginxRunning = software.nginxFound && (await new Nginx(layout, nginxInstall, runner).runningPid()) !== undefined
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
    const warning = await checkDns(domain, deps.lookup)
    if (warning) warnings.push(warning)
  }
  // Idle servers: jupyterhub-idle-culler with a Python that has it (hubctl's environment has it).
  const idleCuller = await idleCullerPython(layout, runner, software)
  if (idleCuller.warning && cullingOn({...request.cull, by: 'hubctl'})) warnings.push(idleCuller.warning)
  // --spawner slurm: the cluster answers, the partition exists, the resources fit a node (setup/slurm.ts).
  let slurm: Awaited<ReturnType<typeof checkSlurmRequest>> | undefined
  let slurmSubmit: SlurmCheckOutcome | undefined
  if (request.spawner === 'slurm' && request.slurm) {
    slurm = await checkSlurmRequest(runner, request.slurm, jupyterhub, {toBeInstalled: Boolean(software.hubEnv)})
    warnings.push(...slurm.warnings)
    if (request.slurm.checkSubmit) {
      r.progress(
        'preflight',
        `--check-submit ${request.slurm.checkSubmit}: a test job submitted, waiting for it to end`,
      )
      slurmSubmit = await checkSubmit(runner, systemClock, request.slurm, request.slurm.checkSubmit, {
        timeoutSeconds: request.slurm.checkSubmitTimeout ?? CHECK_SUBMIT_TIMEOUT,
      })
      if (slurmSubmit.status === 'fail')
        throw preflightError(slurmSubmit.message, slurmSubmit.fix ?? 'check the cluster')
    }
  }
  const settings = settingsFor(deps, request, jupyterhub, nginxInstall, previous, idleCuller.python, slurm?.settings)
  if (request.oauth) await checkOAuthPreflight(deps, request, jupyterhub, Boolean(software.hubEnv))
  // Servers run as the hub's user (--spawner simple): a home of theirs that exists and is not hubctl's is refused.
  const homeUsers = serverHomeUsers(settings)
  await assertServerHomes(layout, homeUsers)
  if (previous?.spawner === 'simple')
    for (const former of await formerServerHomes(homeUsers))
      warnings.push(
        `${former.dir} (JupyterHub's default home, which any local user could make first) is no longer used: the server's home is now ${layout.serverHome(former.user)}; copy what you want from ${former.dir} into it, after looking at what it holds`,
      )
  // Rendering checks every value can be written safely, before anything is (software still to
  // be installed is rendered with the paths and versions it will have).
  const ui: UserInterface = software.hubEnv ? 'lab' : await detectUserInterface(runner, jupyterhub)
  const rendered = await renderConfigs(layout, settings, jupyterhub, nginxInstall, ui)
  const units = await plannedUnits(deps, settings)
  if (software.packages.missing.length > 0 && !dryRun) await consentToPackages(deps, software.packages)
  r.done(
    'preflight',
    software.nginxFound && !software.hubEnv
      ? `JupyterHub ${jupyterhub.version}, nginx ${nginxInstall.version}`
      : `to install: ${software.steps.join('; ')}`,
  )

  const result: InitResult = {
    dryRun,
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
            clientSecret: dryRun && request.oauth.clientSecret !== undefined ? 'would write' : 'kept',
          }
        : undefined,
    files,
    commands,
    warnings,
    next: [],
    unknownNames: {closedOn: [], answeredBy: []},
    ...(slurmSubmit ? {slurmChecks: {submit: slurmSubmit}} : {}),
  }
  return {
    request,
    deps,
    layout,
    runner,
    reporter: r,
    clock: deps.clock ?? (() => new Date()),
    dryRun,
    plan: {
      software,
      nginxInstall,
      jupyterhub,
      nginxRunning,
      previous,
      idleCullerPython: idleCuller.python,
      slurm: slurm?.settings,
      homeUsers,
      rendered,
      units,
    },
    result,
    handoff: {signal},
  }
}

/**
 * --dry-run: what preflight decided that the steps would write, listed first: the default site whose
 * link would be removed, the server homes that would be made.
 */
export async function planPreflight(ctx: InitContext): Promise<void> {
  const {layout, result, plan} = ctx
  reportDefaults(result, plan.rendered.defaults, true)
  for (const user of plan.homeUsers)
    if (!(await exists(layout.serverHome(user))))
      result.files.push({file: layout.serverHome(user), action: 'would write'})
}
