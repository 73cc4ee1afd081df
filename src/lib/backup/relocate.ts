import path from 'node:path'

import {Layout} from '../config/layout.js'
import {PORT_FLAGS, PORT_NAMES, Ports, Settings} from '../config/settings.js'
import {renderHubConfig} from '../config/hubconfig.js'
import {JupyterHubInstall, defaultUrlFor, detectUserInterface} from '../config/jupyterhub.js'
import {Nginx, detectNginx} from '../config/nginx.js'
import {planDefaultServers, renderSite} from '../config/site.js'
import {
  PlannedFile,
  UnitContext,
  planBackupSchedule,
  planLogrotate,
  planRenewalSchedule,
  planServiceUnit,
} from '../config/units.js'
import {assertDistinctPorts, parsePort} from '../validate.js'
import type {Runner} from '../runner.js'
import {proxyExecutable} from '../stack/proxy.js'

/*
 * A hub restored elsewhere: under another prefix (the new VM's, chosen by --prefix) and on ports
 * the operator chooses (restore's port flags; by default the archive's, as a new VM wants them).
 * hubctl.json gets this prefix's paths and those ports, hubctl's own programs (node, the proxy)
 * as this machine has them, and the files rendered from it are rendered again for this machine as
 * init renders them: the hub's config and the nginx site (they name the prefix's paths and the
 * ports), the prefix nginx's main conf, the units, timers, cron lines and logrotate's file (they
 * name the prefix and this machine's node and hubctl). Everything else is the archive's, byte for byte.
 */

/** The port flags of a restore, as given (strings from the command line): each checked, all distinct. */
export type PortChoice = Partial<Record<keyof Ports, string | number>>

/** The hub's own directories under a prefix: what moves with it when the prefix is `/`. */
function hubRoots(layout: Layout): string[] {
  return [layout.srvDir, layout.etcDir, layout.hubEnvRoot, layout.logDir, layout.acmeWebroot]
}

/**
 * A path of the hub under `from` as it is under `to`'s prefix; anything else as it is. From `/`,
 * only the hub's own directories move (every absolute path is under `/`).
 */
export function movedPath(file: string, from: string, to: Layout): string {
  if (!path.isAbsolute(file)) return file
  const old = new Layout(from)
  if (old.prefix === to.prefix) return file
  const relative = path.relative(old.prefix, file)
  if (relative.startsWith('..') || path.isAbsolute(relative)) return file
  if (old.isSystem && !hubRoots(old).some((root) => file === root || file.startsWith(`${root}/`))) return file
  return path.join(to.prefix, relative)
}

/** Every string of a JSON value that is an absolute path of the hub, moved (movedPath). */
function movePaths<T>(value: T, from: string, to: Layout): T {
  if (typeof value === 'string') return movedPath(value, from, to) as T
  if (Array.isArray(value)) return value.map((item: unknown) => movePaths(item, from, to)) as T
  if (value && typeof value === 'object')
    return Object.fromEntries(Object.entries(value).map(([key, item]) => [key, movePaths(item, from, to)])) as T
  return value
}

/** The ports a restore gives the hub: the archive's, each one the operator chose replaced (checked, distinct). */
export function chosenPorts(archived: Ports, choice: PortChoice = {}): Ports {
  const ports = {...archived}
  for (const name of PORT_NAMES) {
    const given = choice[name]
    if (given !== undefined) ports[name] = parsePort(given, PORT_FLAGS[name].flag)
  }
  assertDistinctPorts(Object.fromEntries(PORT_NAMES.map((name) => [PORT_FLAGS[name].flag, ports[name]])))
  return ports
}

/**
 * hubctl.json as the restored hub has it here: the archive's, its paths under the archive's prefix
 * moved under this one, the chosen ports, and this hubctl's node and configurable-http-proxy.
 */
export function relocatedSettings(archived: Settings, from: string, layout: Layout, choice?: PortChoice): Settings {
  const moved = movePaths(archived, from, layout)
  return {
    ...moved,
    ports: chosenPorts(archived.ports, choice),
    executables: {...moved.executables, node: process.execPath, proxy: proxyExecutable()},
  }
}

/** Whether the hub's config and site must be rendered again: another prefix, or other ports. */
export function isRelocated(archived: Settings, from: string, layout: Layout, settings: Settings): boolean {
  return (
    new Layout(from).prefix !== layout.prefix ||
    PORT_NAMES.some((name) => archived.ports[name] !== settings.ports[name])
  )
}

export interface RenderInputs {
  layout: Layout
  runner: Runner
  settings: Settings
  install: JupyterHubInstall
  units: UnitContext
  /** The archive's cron lines (their random times are kept). */
  archivedCron?: string
  archivedBackupCron?: string
  /** Render the hub's config and the nginx site too (a relocated hub). */
  relocated: boolean
}

/**
 * The files a restore renders for this machine instead of taking the archive's: the units,
 * timer, cron line and logrotate's file always (they name this machine's node and hubctl); with
 * `relocated`, the hub's config, the nginx site and the prefix nginx's main conf too. Only those
 * `present` in the archive are returned (a hub without systemd units gets none).
 */
export async function renderedForHere(inputs: RenderInputs, present: Set<string>): Promise<PlannedFile[]> {
  const {layout, runner, settings, install, units, relocated} = inputs
  const planned: PlannedFile[] = []
  if (present.has(layout.systemdUnit)) planned.push(await planServiceUnit(layout, units))
  if (present.has(layout.renewTimer) || present.has(layout.cronFile))
    planned.push(...(await planRenewalSchedule(layout, units, present.has(layout.renewTimer), inputs.archivedCron)))
  if (settings.backupSchedule && (present.has(layout.backupTimer) || present.has(layout.backupCronFile)))
    planned.push(
      ...(await planBackupSchedule(
        layout,
        units,
        present.has(layout.backupTimer),
        settings.backupSchedule,
        inputs.archivedBackupCron,
      )),
    )
  if (present.has(layout.logrotateConf)) planned.push(await planLogrotate(layout))
  if (relocated) {
    const ui = await detectUserInterface(runner, install)
    planned.push({
      file: layout.hubConfig,
      content: await renderHubConfig(layout, settings, install, defaultUrlFor(ui)),
      mode: 0o644,
    })
    const nginxInstall = await detectNginx(runner, settings.executables.nginx ?? 'nginx')
    const defaults = await planDefaultServers(layout, settings.ports)
    planned.push({
      file: layout.nginxSite,
      content: await renderSite(layout, settings, nginxInstall, defaults),
      mode: 0o644,
    })
    if (!layout.isSystem)
      planned.push({
        file: layout.nginxMainConf,
        content: await new Nginx(layout, nginxInstall, runner).renderMainConf(layout.nginxSitesEnabled),
        mode: 0o644,
      })
  }
  return planned.filter((file) => present.has(file.file))
}
