import https from 'node:https'
import type {TLSSocket} from 'node:tls'

import type {Layout} from '../config/layout.js'
import type {Settings} from '../config/settings.js'
import {runtimeError} from '../errors.js'
import {exists} from '../files/atomic.js'
import type {Runner} from '../runner.js'
import {browserOrigin} from '../stack/browserpath.js'
import {startDetached, stopStack} from '../stack/control.js'
import {HubApi, checkHealth, hubHealthUrl} from '../stack/hubapi.js'
import {CertStore} from '../tls/certstore.js'
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
      // nginx must present hubctl's live certificate: the check talks to nothing else.
      const live = await new CertStore(layout).currentInfo().catch(() => undefined)
      const status = await loginPage(settings, live?.fingerprint256)
      if (status === WRONG_CERTIFICATE)
        throw runtimeError(
          `nginx presented another certificate than hubctl's live one on https://${browserOrigin(settings).host}/`,
          `\`hubctl cert status\` and \`hubctl doctor\` name the certificate nginx serves; run \`hubctl init\` again to install the hub's site`,
        )
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

/** loginPage's answer when nginx presents a certificate other than the pinned one. */
const WRONG_CERTIFICATE = -1

/**
 * GET /hub/login through nginx on loopback, with the Host a browser sends; no credential is sent.
 * The certificate is pinned by its SHA-256 (hubctl's live one), not checked against a CA: it may
 * be Pebble's or self-signed, and a name on loopback is what is asked.
 */
function loginPage(settings: Settings, fingerprint256?: string): Promise<number> {
  const {host} = browserOrigin(settings)
  return new Promise((resolve) => {
    const request = https.get(
      {
        host: '127.0.0.1',
        port: settings.ports.https,
        path: '/hub/login',
        servername: settings.domains[0],
        headers: {Host: host},
        // Pinned below, by fingerprint.
        rejectUnauthorized: false,
        timeout: 15_000,
      },
      (response) => {
        response.resume()
        const seen = (response.socket as TLSSocket).getPeerCertificate().fingerprint256
        resolve(
          fingerprint256 !== undefined && seen !== fingerprint256 ? WRONG_CERTIFICATE : (response.statusCode ?? 0),
        )
      },
    )
    request.on('timeout', () => request.destroy())
    request.on('error', () => resolve(0))
  })
}
