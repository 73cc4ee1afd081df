import {messageOf, runtimeError} from '../../errors.js'
import type {Settings} from '../../config/settings.js'
import type {Layout} from '../../config/layout.js'
import type {Runner} from '../../runner.js'
import {HubApi, type ServerInfo, checkHealth, hubHealthUrl} from '../../stack/hubapi.js'
import {startDetached, stopStack, systemdUnitOf} from '../../stack/control.js'
import {runningSupervisor} from '../../stack/state.js'
import {checkBeforeStart} from '../preflight.js'
import {type InitContext, type InitStep} from './context.js'

/*
 * `hubctl init --subdomains` on a hub that serves one origin (or `--no-subdomains` on one with
 * subdomains) moves it (issue 27). The files are init's as for any change (jupyterhub_config.py's
 * subdomain_host and __Host- cookies, the nginx site's *.DOMAIN, the certificate's names, which the
 * certificate step reissues when the wildcard is missing); what runs must follow them:
 *   - the proxy routes by host with subdomains (--host-routing), an argument it starts with;
 *   - the hub reads subdomain_host and its cookie names only when it starts;
 *   - each running user's server was started with its URLs (JUPYTERHUB_SERVICE_URL, its OAuth
 *     callback, the hub's cookie names) and must start again to get the new ones.
 * So a running hub is stopped whole (its users' servers first, through the hub), started again
 * from the new files, and the servers that ran are started again. Their files stay; open notebook
 * pages must be opened at the new address, and kernels restart. A stopped hub just starts moved.
 */

/** Each user's server's address in a mode, in words. */
function serverAddress(settings: Pick<Settings, 'domains' | 'subdomains'>): string {
  const domain = settings.domains[0]
  return settings.subdomains ? `https://NAME.${domain}/` : `https://${domain}/user/NAME/`
}

/** Whether this init moves the hub between one origin and per-user subdomains. */
export function moves(previous: Settings | undefined, settings: Settings): boolean {
  return previous !== undefined && Boolean(previous.subdomains) !== Boolean(settings.subdomains)
}

/** What the move restarts and what users notice (said before it acts, and in the result). */
export function moveNotice(settings: Pick<Settings, 'domains' | 'subdomains'>, servers: readonly string[]): string {
  const to = settings.subdomains ? 'per-user subdomains' : 'one origin'
  const restarted =
    servers.length > 0
      ? ` and the running servers of ${servers.join(', ')} (their files stay; open notebooks must be opened again at the new address, their kernels restart)`
      : ''
  return `the hub moved to ${to} (each user's server at ${serverAddress(settings)}): the proxy and the hub were restarted${restarted}`
}

const SERVER_READY_MS = 180_000

/** The servers that ran, started again through the hub; a server that does not come back is named. */
async function startAgain(api: HubApi, servers: readonly ServerInfo[], warnings: string[]): Promise<void> {
  await Promise.all(
    servers.map(async (server) => {
      const label = `${server.user}${server.name ? `/${server.name}` : ''}`
      try {
        await api.startServer(server.user, server.name)
        const deadline = Date.now() + SERVER_READY_MS
        for (;;) {
          const now = (await api.userServers(server.user)).find((s) => s.name === server.name)
          if (now?.ready) return
          if (!now?.pending || Date.now() > deadline) break
          await new Promise((resolve) => setTimeout(resolve, 500))
        }
        warnings.push(
          `the server of ${label} did not start again after the move; ${server.user} starts it from the hub's home page`,
        )
      } catch (error) {
        warnings.push(
          `the server of ${label} did not start again after the move (${messageOf(error)}); ${server.user} starts it from the hub's home page`,
        )
      }
    }),
  )
}

/** The hub started again from the new files: systemd's unit when it runs it, else `start --detach`. */
async function startHub(layout: Layout, settings: Settings, runner: Runner, bin: string, unit: boolean): Promise<void> {
  if (unit) {
    const started = await runner.run('systemctl', ['start', 'jupyterhub.service'])
    if (started.exitCode !== 0)
      throw runtimeError(
        `the hub was stopped to move it, and systemctl start jupyterhub failed: ${started.stderr.trim()}`,
        'read `journalctl -u jupyterhub`, fix the cause, then `systemctl start jupyterhub`',
      )
    for (let i = 0; i < 240 && !(await checkHealth(hubHealthUrl(settings, 'proxy'))); i++)
      await new Promise((resolve) => setTimeout(resolve, 500))
    return
  }
  await startDetached(layout, {
    bin,
    args: ['--checked-by-parent'],
    checks: () => checkBeforeStart(layout, settings, runner),
  })
}

/**
 * After the files are in place (and the lock released: stop and start take what they need): a
 * running hub that changes between one origin and subdomains is restarted whole, its users'
 * running servers with it.
 */
export const move: InitStep = {
  name: 'move',

  async plan(ctx) {
    const {previous, rendered} = ctx.plan
    if (!moves(previous, rendered.settings) || !(await runningSupervisor(ctx.layout))) return
    ctx.result.warnings.push(
      `the hub runs: it would be moved to ${rendered.settings.subdomains ? 'per-user subdomains' : 'one origin'} (each user's server at ${serverAddress(rendered.settings)}), restarting the proxy, the hub and every running user's server`,
    )
  },

  async run(ctx: InitContext) {
    const {layout, runner, result, deps, reporter: r} = ctx
    const {previous, rendered} = ctx.plan
    const settings = rendered.settings
    if (!previous || !moves(previous, settings)) return
    const supervisor = await runningSupervisor(layout)
    if (!supervisor) {
      result.next.unshift(
        `the hub is not running: it starts at its new addresses (each user's server at ${serverAddress(settings)})`,
      )
      return
    }
    if (!deps.bin) {
      result.warnings.push(
        `the hub runs with its old addresses: stop and start it (\`hubctl stop\`, then \`hubctl start --detach\`) to move it`,
      )
      return
    }
    r.start('move')
    const old = HubApi.forLayout(layout, previous, {timeoutMs: 60_000})
    const servers = await old.listServers().catch(() => [] as ServerInfo[])
    const names = servers.map((s) => `${s.user}${s.name ? `/${s.name}` : ''}`).sort()
    r.progress(
      'move',
      `stopping ${names.length > 0 ? `the servers of ${names.join(', ')}, ` : ''}the hub and the proxy to move them`,
    )
    const unit = (await systemdUnitOf(supervisor.pid, layout)) !== undefined
    const stopped = await stopStack(layout, previous)
    result.warnings.push(...stopped.warnings)
    r.progress('move', 'starting the hub again from the new files')
    await startHub(layout, settings, runner, deps.bin, unit)
    if (servers.length > 0) {
      r.progress('move', `starting again the servers of ${names.join(', ')}`)
      await startAgain(HubApi.forLayout(layout, settings, {timeoutMs: 60_000}), servers, result.warnings)
    }
    const notice = moveNotice(settings, names)
    result.moved = {to: settings.subdomains ? 'subdomains' : 'one origin', serversRestarted: names, notice}
    r.done('move', notice)
  },
}
