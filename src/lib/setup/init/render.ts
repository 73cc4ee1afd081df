import fs from 'node:fs/promises'

import {ensureDir} from '../../files/atomic.js'
import {installHubConfig, renderHubConfig} from '../../config/hubconfig.js'
import {type JupyterHubInstall, type UserInterface, defaultUrlFor} from '../../config/jupyterhub.js'
import type {Layout} from '../../config/layout.js'
import {Nginx, type NginxInstall} from '../../config/nginx.js'
import {type DefaultServerPlan, planDefaultServers, recordDisabledDefault, renderSite} from '../../config/site.js'
import {type Settings, SettingsStore, SETTINGS_VERSION} from '../../config/settings.js'
import {proxyExecutable} from '../../stack/proxy.js'
import {makeServerHomes} from '../homes.js'
import type {InitRequest} from '../init-request.js'
import type {SlurmSettings} from '../../config/slurm.js'
import type {InitContext, InitDeps, InitResult, InitStep, Rendered} from './context.js'

/** hubctl.json as this init writes it: the request, with what an earlier init or `hubctl users` kept. */
export function settingsFor(
  deps: Pick<InitDeps, 'layout' | 'acme'>,
  request: InitRequest,
  jupyterhub: JupyterHubInstall,
  nginx: NginxInstall,
  previous?: Settings,
  idleCuller?: string,
  slurm?: SlurmSettings,
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
    ...(request.spawner === 'slurm' && slurm ? {slurm} : {}),
    tls: {mode: request.tls, acme: deps.acme ?? previous?.tls.acme},
    ports: request.ports,
    dhparam: {mode: request.dhparam, bits: request.dhparamBits},
    executables: {
      jupyterhub: jupyterhub.executable,
      singleuser: jupyterhub.singleuser,
      nginx: nginx.executable,
      node: process.execPath,
      proxy: proxyExecutable(),
      ...(idleCuller ? {idleCuller} : {}),
    },
    jupyterhubVersion: jupyterhub.version,
    // Without --jupyterhub, or with --users-env, or kept from an earlier init: servers run the users' environment.
    ...(request.jupyterhub === undefined || request.usersEnv || previous?.usersEnv ? {usersEnv: true} : {}),
    nginxSupervised: !deps.layout.isSystem,
    proxyTls: false,
    local: request.local,
    spawn: request.spawn,
    loginBurst: request.loginBurst ?? previous?.loginBurst,
    // Kept from hubctl.json unless --schedule-backup says otherwise (off: none).
    backupSchedule: request.backupSchedule === 'off' ? undefined : (request.backupSchedule ?? previous?.backupSchedule),
    cull: {...request.cull, by: idleCuller ? 'jupyterhub-idle-culler' : 'hubctl'},
    serverPorts: request.serverPorts,
    limits: request.limits,
    // Set by hand in hubctl.json (no init flag): kept.
    ...(previous?.serverWatchSeconds === undefined ? {} : {serverWatchSeconds: previous.serverWatchSeconds}),
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
 * The one render of init: jupyterhub_config.py and the nginx site, from the settings. Preflight
 * renders them (every value is checked before anything is written, software still to be installed
 * with the paths and versions it will have); the render step installs that text. After the
 * software step installed something, it asks again with what was installed: a text whose inputs
 * are unchanged is reused, not rendered again. The hub's default servers are always planned anew
 * (apt-get's nginx comes with Debian's default site enabled).
 */
export async function renderConfigs(
  layout: Layout,
  settings: Settings,
  jupyterhub: JupyterHubInstall,
  nginx: NginxInstall,
  ui: UserInterface,
  earlier?: Rendered,
): Promise<Rendered> {
  const hubKey = JSON.stringify([settings, jupyterhub, ui])
  const hubConfig =
    earlier && earlier.keys.hubConfig === hubKey
      ? earlier.hubConfig
      : await renderHubConfig(layout, settings, jupyterhub, defaultUrlFor(ui))
  const defaults = await planDefaultServers(layout, settings.ports)
  const siteKey = JSON.stringify([settings, nginx, defaults.ports])
  const site =
    earlier && earlier.keys.site === siteKey ? earlier.site : await renderSite(layout, settings, nginx, defaults)
  return {settings, ui, hubConfig, defaults, site, keys: {hubConfig: hubKey, site: siteKey}}
}

/** The render of the context again, with the software the software step installed. */
export function renderAgain(ctx: InitContext, ui: UserInterface): Promise<Rendered> {
  const {plan} = ctx
  const settings = settingsFor(
    ctx.deps,
    ctx.request,
    plan.jupyterhub,
    plan.nginxInstall,
    plan.previous,
    plan.idleCullerPython,
    plan.slurm,
  )
  return renderConfigs(ctx.layout, settings, plan.jupyterhub, plan.nginxInstall, ui, plan.rendered)
}

/** Who answers names the hub does not serve, in the result: what init did, and a warning for each other site. */
export function reportDefaults(result: InitResult, defaults: DefaultServerPlan, dryRun: boolean): void {
  result.unknownNames = {closedOn: defaults.ports, disabledSite: defaults.disable, answeredBy: defaults.others}
  if (dryRun && defaults.disable) result.commands.push(`rm ${defaults.disable.link}`)
  for (const other of defaults.others)
    result.warnings.push(
      `${other.file} answers requests for names the hub does not serve on port ${other.port} (its default_server): hubctl adds no default server there, so a forged Host header reaches that site instead of a closed connection; to have the hub close them, remove default_server from that file and run init again`,
    )
}

/**
 * 5. render and validate: the directories and the server homes are made, the hub config is loaded
 * by the JupyterHub it is for and the nginx site passes nginx -t before either replaces the one in
 * place; then hubctl.json. An unchanged file is left alone.
 */
export const render: InitStep = {
  name: 'render',

  plan(ctx) {
    const {layout, result} = ctx
    const settings = ctx.plan.rendered.settings
    result.files.push(
      ...[
        layout.hubConfig,
        layout.nginxSite,
        layout.nginxSiteLink,
        ...(layout.isSystem ? [] : [layout.nginxMainConf]),
      ].map((file) => ({file, action: 'would write' as const})),
      {file: layout.settings, action: 'would write'},
    )
    result.commands.push(
      `${settings.executables.jupyterhub} (load ${layout.hubConfig})`,
      `${settings.executables.nginx} -t`,
    )
  },

  async run(ctx) {
    const {layout, runner, result, plan, handoff, reporter: r} = ctx
    const {files} = result
    const nginx = new Nginx(layout, plan.nginxInstall, runner)
    r.start('render')
    await ensureDir(layout.etcDir, 0o755)
    await fs.mkdir(layout.hubConfigD, {recursive: true, mode: 0o755})
    await fs.mkdir(layout.logDir, {recursive: true, mode: 0o755})
    for (const home of await makeServerHomes(layout, plan.homeUsers)) files.push({file: home, action: 'written'})
    const installed = await installHubConfig(layout, runner, plan.rendered.hubConfig, plan.jupyterhub)
    handoff.spawner = installed.spawner
    handoff.spawnerError = installed.spawnerError
    files.push({file: installed.file, action: installed.action})
    if (handoff.dhWrite) {
      r.progress('render', 'waiting for the DH parameters')
      await handoff.dhWrite
    }
    const mainConfWritten = await nginx.writeMainConf()
    await nginx.ensureAcmeWebroot()
    const siteResult = await nginx.installSite(plan.rendered.site, {disable: plan.rendered.defaults.disable?.link})
    files.push({file: layout.nginxSite, action: siteResult.changed ? 'written' : 'unchanged'})
    if (siteResult.disabled !== undefined) await recordDisabledDefault(layout, siteResult.disabled)
    reportDefaults(result, plan.rendered.defaults, false)
    if (!layout.isSystem) files.push({file: layout.nginxMainConf, action: mainConfWritten ? 'written' : 'unchanged'})
    const settingsWritten = await new SettingsStore(layout).save(plan.rendered.settings)
    files.push({file: layout.settings, action: settingsWritten ? 'written' : 'unchanged'})
    r.done('render', 'jupyterhub_config.py loaded by JupyterHub, nginx -t passed')
  },
}
