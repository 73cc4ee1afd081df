import fs from 'node:fs/promises'

import {exists} from '../../files/atomic.js'
import {UsersEnvService} from '../../env/userenv.js'
import {
  JupyterHubInstall,
  checkOAuthenticator,
  detectJupyterHub,
  detectUserInterface,
  vulnerabilityWarning,
} from '../../config/jupyterhub.js'
import {detectNginx, type NginxInstall} from '../../config/nginx.js'
import {importsIdleCuller} from '../../config/culler.js'
import {type Layout, besideFile} from '../../config/layout.js'
import {type Runner, which} from '../../runner.js'
import {HubEnvService, canMakeVenv, systemPython} from '../hubenv.js'
import type {InitRequest} from '../init-request.js'
import {MissingPackage, PackagePlan, installPackages, packagesError, planPackages} from '../syspkgs.js'
import {assertTrusted, assertTrustedFile} from '../trust.js'
import type {InitDeps, InitStep, SoftwarePlan} from './context.js'
import {renderAgain} from './render.js'

/**
 * Which nginx and JupyterHub init uses, and what must be installed first: nginx (apt) when none
 * is on PATH and --nginx is not given; without --jupyterhub, hubctl's own environment of the
 * pinned JupyterHub and JupyterLab (and python3-venv for it). Installs nothing.
 */
export async function planSoftware(layout: Layout, runner: Runner, request: InitRequest): Promise<SoftwarePlan> {
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
export async function idleCullerPython(
  layout: Layout,
  runner: Runner,
  software: SoftwarePlan,
): Promise<{python?: string; warning?: string}> {
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
export async function consentToPackages(deps: Pick<InitDeps, 'yes' | 'confirm'>, plan: PackagePlan): Promise<void> {
  if (!plan.canInstall) {
    throw packagesError(
      plan,
      (process.getuid?.() ?? 0) !== 0
        ? 'hubctl installs system packages only as root'
        : 'hubctl installs system packages only with apt-get (Debian, Ubuntu)',
    )
  }
  if (deps.yes) return
  const question = `Install ${plan.missing.map((m) => m.name).join(', ')} with \`${plan.command}\`?`
  if (deps.confirm && (await deps.confirm(question))) return
  throw packagesError(plan, deps.confirm ? 'you declined to install them' : 'no terminal to ask on, and no --yes')
}

/**
 * 2. software: system packages (apt-get), then hubctl's JupyterHub and JupyterLab; the configs are
 * rendered again with what was installed. Kept when present: apt-get installs only what is
 * missing, and an environment already built is reused.
 */
export const software: InitStep = {
  name: 'software',

  plan(ctx) {
    const {layout, result} = ctx
    const {packages, hubEnv} = ctx.plan.software
    if (packages.missing.length > 0) result.commands.push('apt-get update', packages.command)
    if (hubEnv?.action === 'build') {
      result.commands.push(
        `${hubEnv.python} -m venv ${hubEnv.dir}`,
        `${layout.hubEnvPython(hubEnv.id)} -m pip install -c <hubctl>/python/constraints.txt jupyterhub==${hubEnv.versions.jupyterhub} jupyterlab==${hubEnv.versions.jupyterlab}`,
        `${layout.hubEnvPython(hubEnv.id)} -m pip uninstall --yes -r <hubctl>/python/unused.txt`,
      )
      result.files.push({file: hubEnv.dir, action: 'would write'}, {file: layout.hubEnvCurrent, action: 'would write'})
    }
    if (ctx.plan.rendered.settings.usersEnv) {
      result.commands.push(
        `cp -al ${hubEnv ? hubEnv.dir : 'the virtualenv of --jupyterhub'} ${layout.usersEnvsDir}/<id>; pip install -c <hubctl>/python/constraints.txt -r <hubctl>/python/userenv.txt (unless ${layout.usersEnvCurrent} is there)`,
      )
    }
  },

  async run(ctx) {
    const {layout, runner, request, result, plan, reporter: r} = ctx
    const planned = plan.software
    if (planned.packages.missing.length > 0 || planned.hubEnv) {
      r.start('software')
      if (planned.packages.missing.length > 0) {
        result.commands.push(
          ...(await installPackages(runner, planned.packages, (text) => r.progress('software', text))),
        )
        result.software.packagesInstalled = planned.packages.missing.map((m) => m.name)
        plan.nginxInstall = await detectNginx(runner, request.nginx ?? 'nginx')
      }
      if (planned.hubEnv) {
        const env = new HubEnvService({layout, runner, onProgress: (text) => r.progress('software', text)})
        const built = await env.plan(await systemPython())
        const {built: wasBuilt} = await env.build(built)
        plan.jupyterhub = await detectJupyterHub(runner, built.jupyterhub)
        await assertTrusted(layout, built.jupyterhub)
        // The environment's id counts on the Python's build: the apt-get above may have upgraded
        // Python (python3-venv pulls the current python3.11), and the one built is then not the
        // one planned. The culler runs with the Python of the environment built.
        plan.idleCullerPython = layout.hubEnvPython(built.id)
        result.software.environment = {dir: built.dir, versions: built.versions, built: wasBuilt}
      }
      const ui = await detectUserInterface(runner, plan.jupyterhub)
      if (request.oauth) await checkOAuthenticator(runner, plan.jupyterhub, plan.rendered.settings.authenticator)
      // apt-get's nginx comes with Debian's default site enabled: the defaults are planned again too.
      plan.rendered = await renderAgain(ctx, ui)
      result.jupyterhub = {executable: plan.jupyterhub.executable, version: plan.jupyterhub.version}
      result.nginx = {executable: plan.nginxInstall.executable, version: plan.nginxInstall.version}
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
    // Built from the hub's environment, or from the virtualenv of --jupyterhub.
    if (plan.rendered.settings.usersEnv && (planned.hubEnv || request.jupyterhub !== undefined)) {
      // The users' environment, apart from the hub's: a copy (hard links) of the hub's environment,
      // or of the virtualenv --jupyterhub is in, plus python/userenv.txt. Kept when there.
      r.start('software')
      const users = new UsersEnvService({
        layout,
        runner,
        lock: false,
        onProgress: (text) => r.progress('software', text),
      })
      const source = result.software.environment?.dir ?? besideFile(await fs.realpath(plan.jupyterhub.singleuser), '..')
      const made = await users.ensure(source)
      const current = (await users.list()).current ?? ''
      result.software.usersEnvironment = {current, built: made !== undefined}
      r.done('software', `users' environment ${layout.usersEnv(current)}${made ? '' : ' (already there)'}`)
    }
    const {jupyterhub} = plan
    if (plan.rendered.ui === 'none')
      result.warnings.push(
        `the user servers' Python (${jupyterhub.singleuser}) has neither JupyterLab nor the classic notebook: users will get no interface; install jupyterlab beside it, or run init without --jupyterhub to use hubctl's own`,
      )
    const vulnerable = vulnerabilityWarning(jupyterhub)
    if (vulnerable)
      result.warnings.push(
        `${vulnerable}; run init without --jupyterhub to use hubctl's JupyterHub (${HubEnvService.pinned(await new HubEnvService({layout, runner}).constraints()).jupyterhub}), or upgrade this one`,
      )
  },
}
