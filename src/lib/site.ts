import type {NginxInstall} from './nginx.js'
import {Layout} from './layout.js'
import {hasIpv6} from './preflight.js'
import {renderTemplate} from './render.js'
import type {Settings} from './settings.js'
import {HUBCTL_VERSION} from './version.js'

/** The nginx site for these settings (values escaped as nginx tokens; an unsafe one is refused). */
export async function renderSite(layout: Layout, settings: Settings, nginx: NginxInstall): Promise<string> {
  return renderTemplate('nginx-site.conf', {
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
    clientMaxBodySize: '1g',
    http2Listen: !nginx.http2Directive,
    http2Directive: nginx.http2Directive,
    ipv6: hasIpv6(),
  }, 'nginx')
}
