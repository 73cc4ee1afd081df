import type {JupyterHubInstall} from '../../../../src/lib/config/jupyterhub.js'
import {Layout} from '../../../../src/lib/config/layout.js'
import type {NginxInstall} from '../../../../src/lib/config/nginx.js'
import type {PlannedFile} from '../../../../src/lib/config/units.js'
import type {RunResult, Runner} from '../../../../src/lib/runner.js'
import type {InitContext, InitDeps, Reporter} from '../../../../src/lib/setup/init/context.js'
import {renderConfigs, settingsFor} from '../../../../src/lib/setup/init/render.js'
import {type RawInitFlags, resolveInitRequest} from '../../../../src/lib/setup/init-request.js'

export const JUPYTERHUB: JupyterHubInstall = {
  executable: '/x/bin/jupyterhub',
  version: '5.4.3',
  major: 5,
  minor: 4,
  singleuser: '/x/bin/jupyterhub-singleuser',
  python: '/x/bin/python3',
}
export const NGINX: NginxInstall = {
  executable: '/x/sbin/nginx',
  version: '1.22.1',
  http2Directive: false,
  rejectHandshake: true,
}

/** A reporter that keeps every call, as `start step`, `done step: detail`, `progress step: text`, `warn text`. */
export function recordingReporter(): Reporter & {lines: string[]} {
  const lines: string[] = []
  return {
    lines,
    start: (step) => lines.push(`start ${step}`),
    progress: (step, text) => lines.push(`progress ${step}: ${text}`),
    done: (step, detail) => lines.push(`done ${step}: ${detail}`),
    warn: (text) => lines.push(`warn ${text}`),
  }
}

/** A runner that runs nothing: every call is kept and fails. */
export function refusingRunner(): Runner & {calls: string[][]} {
  const calls: string[][] = []
  const failed: RunResult = {exitCode: 1, stdout: '', stderr: 'not run in unit tests', notFound: false}
  return {calls, run: async (command, args) => (calls.push([command, ...args]), failed)}
}

/**
 * An init context as preflight makes it, for a prefix of the test's, without running preflight: the
 * request from `flags` (self-signed, ffdhe2048 by default), JUPYTERHUB and NGINX found, nothing to
 * install, and the configs rendered.
 */
export async function initContext(
  prefix: string,
  options: {flags?: RawInitFlags; deps?: Partial<InitDeps>; units?: PlannedFile[]; nginxRunning?: boolean} = {},
): Promise<InitContext & {reporter: ReturnType<typeof recordingReporter>; runner: ReturnType<typeof refusingRunner>}> {
  const layout = new Layout(prefix)
  const runner = refusingRunner()
  const reporter = recordingReporter()
  const deps: InitDeps = {layout, runner, reporter, units: {node: '/x/node', hubctl: '/x/hubctl'}, ...options.deps}
  const request = await resolveInitRequest(
    {domain: ['hub.localhost'], admin: ['initstep-admin'], tls: 'self-signed', dhparam: 'ffdhe2048', ...options.flags},
    undefined,
    {cores: 2},
  )
  const settings = settingsFor(deps, request, JUPYTERHUB, NGINX)
  return {
    request,
    deps,
    layout,
    runner,
    reporter,
    clock: deps.clock ?? (() => new Date()),
    dryRun: Boolean(deps.dryRun),
    plan: {
      software: {
        nginxInstall: NGINX,
        nginxFound: true,
        jupyterhub: JUPYTERHUB,
        packages: {missing: [], canInstall: true, command: ''},
        steps: [],
      },
      nginxInstall: NGINX,
      jupyterhub: JUPYTERHUB,
      nginxRunning: options.nginxRunning ?? false,
      homeUsers: [],
      rendered: await renderConfigs(layout, settings, JUPYTERHUB, NGINX, 'lab'),
      units: options.units ?? [],
    },
    result: {
      dryRun: Boolean(deps.dryRun),
      prefix,
      jupyterhub: {executable: JUPYTERHUB.executable, version: JUPYTERHUB.version},
      nginx: {executable: NGINX.executable, version: NGINX.version},
      software: {packagesInstalled: []},
      secrets: {created: [], kept: []},
      files: [],
      commands: [],
      warnings: [],
      next: [],
      unknownNames: {closedOn: [], answeredBy: []},
    },
    handoff: {signal: new AbortController().signal},
  }
}
