import {formatDuration, parseDuration} from '../duration.js'
import {Runner} from '../runner.js'
import type {CullSettings, Settings} from './settings.js'

/*
 * Idle user servers are stopped by jupyterhub-idle-culler (PyPI, the JupyterHub team's; pinned in
 * python/constraints.txt and installed in hubctl's virtualenv), run by the hub as a managed service
 * (c.JupyterHub.services with a `command`: the hub starts it, gives it its token and the API URL in
 * its environment, and starts it again if it exits). This module knows its flags, scopes and command
 * line; the supervisor keeps only what the culler does not do (servers whose process is gone), and
 * culls itself only when no Python with the culler was found (`by: 'hubctl'`).
 */

/** init's defaults: idle for an hour (as The Littlest JupyterHub and Zero to JupyterHub), no maximum age. */
export const CULL_DEFAULTS = {idle: '1h', maxAge: 'off'} as const

/**
 * What the culler needs, and nothing more: list the users and their servers with their activity,
 * and stop a server. Not `admin:users` (only --cull-users and --remove-named-servers need it,
 * neither of which hubctl passes) nor `admin:server_state`.
 */
export const CULLER_SCOPES = ['list:users', 'read:users:activity', 'read:servers', 'delete:servers']

/** The culler's service name in the hub (its log lines and its API token's owner). */
export const CULLER_SERVICE = 'idle-culler'

/** A --cull-idle or --cull-max-age value: `off` → null, else whole seconds (at least 1). Exit 2 when bad. */
export function parseCullDuration(text: string, flag: string): number | null {
  if (text.trim().toLowerCase() === 'off') return null
  return Math.max(1, Math.round(parseDuration(text, flag) / 1000))
}

/**
 * How often the culler looks: a tenth of the shorter limit, between 1 s and 10 minutes (an hour's
 * idle time: every 6 minutes, near the 5 minutes at which the hub records activity; 20 s: every 2 s).
 */
export function cullEverySeconds(cull: Pick<CullSettings, 'idleSeconds' | 'maxAgeSeconds'>): number {
  const limits = [cull.idleSeconds, cull.maxAgeSeconds].filter((value): value is number => value !== null)
  const shortest = limits.length > 0 ? Math.min(...limits) : 3600
  return Math.min(600, Math.max(1, Math.floor(shortest / 10)))
}

/** Whether culling is on at all. */
export function cullingOn(cull: CullSettings | undefined): cull is CullSettings {
  return cull !== undefined && (cull.idleSeconds !== null || cull.maxAgeSeconds !== null)
}

/**
 * The culler's command line. `-I`: nothing from the working directory, PYTHONPATH or user
 * site-packages (the hub runs it as root); `--config=`: no idle_culler_config.py read from the
 * working directory either. Without an idle limit (only --cull-max-age), the idle timeout is set
 * beyond the longest age hubctl takes, so that only age culls.
 */
export function cullerCommand(python: string, cull: CullSettings): string[] {
  return [
    python,
    '-I',
    '-m',
    'jupyterhub_idle_culler',
    '--config=',
    `--timeout=${cull.idleSeconds ?? 10 * 365 * 86_400}`,
    `--cull-every=${cullEverySeconds(cull)}`,
    ...(cull.maxAgeSeconds === null ? [] : [`--max-age=${cull.maxAgeSeconds}`]),
  ]
}

/** The culler's service in the hub's config, when jupyterhub-idle-culler culls. */
export function cullerService(
  settings: Pick<Settings, 'cull' | 'executables'>,
): {command: string[]; scopes: string[]; name: string} | undefined {
  const cull = settings.cull
  if (!cullingOn(cull) || cull.by !== 'jupyterhub-idle-culler' || !settings.executables.idleCuller) return undefined
  return {name: CULLER_SERVICE, command: cullerCommand(settings.executables.idleCuller, cull), scopes: CULLER_SCOPES}
}

/** What the supervisor culls itself: only when the culler could not be used. */
export function supervisorCulling(settings: Pick<Settings, 'cull'>): {idleMs?: number; maxAgeMs?: number} {
  const cull = settings.cull
  if (!cullingOn(cull) || cull.by !== 'hubctl') return {}
  return {
    ...(cull.idleSeconds === null ? {} : {idleMs: cull.idleSeconds * 1000}),
    ...(cull.maxAgeSeconds === null ? {} : {maxAgeMs: cull.maxAgeSeconds * 1000}),
  }
}

/** Culling as `status` and `doctor` show it. */
export interface CullingSummary {
  /** false: no culling (off, or a hubctl.json of an older hubctl that had none). */
  on: boolean
  idle: string | null
  maxAge: string | null
  by: CullSettings['by'] | null
  /** The Python running jupyterhub-idle-culler. */
  python?: string
  /** hubctl.json has no culling settings (written by an older hubctl). */
  unset?: boolean
}

export function cullingSummary(settings: Pick<Settings, 'cull' | 'executables'>): CullingSummary {
  const cull = settings.cull
  if (!cull) return {on: false, idle: null, maxAge: null, by: null, unset: true}
  const on = cullingOn(cull)
  return {
    on,
    idle: cull.idleSeconds === null ? null : formatDuration(cull.idleSeconds * 1000),
    maxAge: cull.maxAgeSeconds === null ? null : formatDuration(cull.maxAgeSeconds * 1000),
    by: on ? cull.by : null,
    ...(on && cull.by === 'jupyterhub-idle-culler' && settings.executables.idleCuller
      ? {python: settings.executables.idleCuller}
      : {}),
  }
}

/** One line: "idle servers stopped after 1h (and any after 8h) by jupyterhub-idle-culler". */
export function describeCulling(summary: CullingSummary): string {
  if (summary.unset) return 'no idle culling (hubctl.json predates it; run `hubctl init` again to turn it on)'
  if (!summary.on) return 'no idle culling (--cull-idle off)'
  const parts = [
    summary.idle ? `idle servers stopped after ${summary.idle}` : '',
    summary.maxAge ? `${summary.idle ? 'and ' : ''}servers running longer than ${summary.maxAge} stopped` : '',
  ].filter(Boolean)
  return `${parts.join(' ')} by ${summary.by === 'hubctl' ? "hubctl's supervisor" : 'jupyterhub-idle-culler'}`
}

/** Whether `python` imports jupyterhub_idle_culler (isolated, from /). */
export async function importsIdleCuller(runner: Runner, python: string): Promise<boolean> {
  const result = await runner.run(python, ['-I', '-c', 'import jupyterhub_idle_culler'], {cwd: '/', timeoutMs: 60_000})
  return !result.notFound && result.exitCode === 0
}
