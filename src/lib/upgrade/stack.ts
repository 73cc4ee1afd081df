import https from 'node:https'

import type {Layout} from '../config/layout.js'
import type {Settings} from '../config/settings.js'
import {runtimeError} from '../errors.js'
import {exists} from '../files/atomic.js'
import type {Runner} from '../runner.js'
import {browserOrigin} from '../stack/browserpath.js'
import {startDetached, stopStack} from '../stack/control.js'
import {HubApi, checkHealth, hubHealthUrl} from '../stack/hubapi.js'
import {runningSupervisor} from '../stack/state.js'
import type {HubControl} from './upgrade.js'

/**
 * How `hubctl upgrade` stops, starts and checks the hub: through systemd when its unit is installed
 * at prefix `/` (KillMode=process: the user servers keep running), else the supervisor directly
 * (`hubctl stop` keeping the servers, `hubctl start --detach`), as restore does.
 */
export function hubControl(layout: Layout, runner: Runner, bin: string, log: (line: string) => void): HubControl {
  const underSystemd = async () => layout.isSystem && (await exists(layout.systemdUnit))
  return {
    async running() {
      return (await runningSupervisor(layout)) !== undefined
    },

    async stop(settings) {
      if (await underSystemd()) {
        const stopped = await runner.run('systemctl', ['stop', 'jupyterhub.service'])
        if (stopped.exitCode === 0 || !stopped.notFound) return
      }
      const result = await stopStack(layout, settings, {keepServers: true, log})
      for (const warning of result.warnings) log(`  ${warning}`)
    },

    async start(settings) {
      if (await underSystemd()) {
        const started = await runner.run('systemctl', ['start', 'jupyterhub.service'])
        if (!started.notFound) {
          if (started.exitCode !== 0)
            throw runtimeError(
              `systemctl start jupyterhub failed: ${started.stderr.trim()}`,
              'journalctl -u jupyterhub',
            )
          for (let i = 0; i < 240 && !(await checkHealth(hubHealthUrl(settings, 'proxy'))); i++)
            await new Promise((resolve) => setTimeout(resolve, 500))
          return
        }
      }
      const {checkBeforeStart} = await import('../setup/preflight.js')
      await startDetached(layout, {
        bin,
        args: ['--checked-by-parent'],
        checks: () => checkBeforeStart(layout, settings, runner),
      })
    },

    async check(settings) {
      if (!(await checkHealth(hubHealthUrl(settings, 'proxy'), {timeoutMs: 10_000})))
        throw runtimeError('the hub does not answer /hub/health through the proxy', `read ${layout.hubLog}`)
      // The migrated database, read with hubctl's token (a listener verified as the hub's).
      await HubApi.forLayout(layout, settings, {onFallback: false}).listUsers()
      // The page a person logs in on, through nginx, as a browser asks for it.
      const status = await loginPage(settings)
      if (status !== 200)
        throw runtimeError(
          `the login page answered ${status} through nginx (https://${browserOrigin(settings).host}/hub/login)`,
          `read ${layout.hubLog} and nginx's error log`,
        )
    },

    async servers(settings) {
      const users = await HubApi.forLayout(layout, settings, {onFallback: false}).listUsers({active: true})
      return users.flatMap((u) => u.servers.filter((s) => s.ready).map((s) => `${u.name}${s.name ? `/${s.name}` : ''}`))
    },
  }
}

/** GET /hub/login through nginx on loopback, with the Host a browser sends; no credential is sent. */
function loginPage(settings: Settings): Promise<number> {
  const {host} = browserOrigin(settings)
  return new Promise((resolve) => {
    const request = https.get(
      {
        host: '127.0.0.1',
        port: settings.ports.https,
        path: '/hub/login',
        servername: settings.domains[0],
        headers: {Host: host},
        // Only a public page is read: the certificate is nginx's business here (doctor checks it).
        rejectUnauthorized: false,
        timeout: 15_000,
      },
      (response) => {
        response.resume()
        resolve(response.statusCode ?? 0)
      },
    )
    request.on('timeout', () => request.destroy())
    request.on('error', () => resolve(0))
  })
}
