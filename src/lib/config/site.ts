import os from 'node:os'

import type {NginxInstall} from './nginx.js'
import {Layout} from './layout.js'
import {renderTemplate} from './render.js'
import {LOGIN_BURST, type Settings} from './settings.js'
import {HUBCTL_VERSION} from '../version.js'

/**
 * Request body limits and the login form's rate limit. 1m for the hub's pages and API (forms, JSON
 * calls); 16k for the login form (its body is a few hundred bytes); 1g under /user/, where notebooks
 * are saved whole and JupyterLab's upload chunks (1 MiB, base64 in JSON: about 1.4 MB) go.
 * 30 login POSTs a minute per address, bursts of 100 answered at once (init's --login-burst): a
 * class behind one address (a school's NAT) logs in together; a guesser gets about 43,000 tries a
 * day instead of thousands a second.
 */
export const SITE_LIMITS = {
  clientMaxBodySize: '1m',
  loginMaxBodySize: '16k',
  userMaxBodySize: '1g',
  loginRate: '30r/m',
  loginBurst: LOGIN_BURST.default,
} as const

/** The nginx site for these settings (values escaped as nginx tokens; an unsafe one is refused). */
export async function renderSite(layout: Layout, settings: Settings, nginx: NginxInstall): Promise<string> {
  return renderTemplate(
    'nginx-site.conf',
    {
      hubctlVersion: HUBCTL_VERSION,
      nginxVersion: nginx.version,
      domains: settings.domains,
      httpPort: settings.ports.http,
      httpsPort: settings.ports.https,
      // The https URL's port, left out on 443 (a section: an empty value is no nginx token).
      httpsPortInUrl: settings.ports.https === 443 ? false : settings.ports.https,
      proxyPort: settings.ports.proxy,
      proxyStandbyPort: settings.ports.proxyStandby,
      webroot: layout.acmeWebroot,
      fullchain: layout.fullchain,
      privkey: layout.privkey,
      dhparam: layout.dhparam,
      ...SITE_LIMITS,
      loginBurst: settings.loginBurst ?? SITE_LIMITS.loginBurst,
      http2Listen: !nginx.http2Directive,
      http2Directive: nginx.http2Directive,
      ipv6: hasIpv6(),
    },
    'nginx',
  )
}

/** Whether this machine has IPv6 (nginx cannot listen on [::] without it). */
export function hasIpv6(): boolean {
  return Object.values(os.networkInterfaces())
    .flat()
    .some((i) => i?.family === 'IPv6' && i.address === '::1')
}

/** The site that answers http-01 for `names` during one order, while nginx holds the HTTP port (nginx.ts). */
export async function renderChallengeSite(layout: Layout, port: number, names: string[]): Promise<string> {
  return renderTemplate(
    'nginx-acme-challenge.conf',
    {hubctlVersion: HUBCTL_VERSION, httpPort: port, domains: names, webroot: layout.acmeWebroot, ipv6: hasIpv6()},
    'nginx',
  )
}
