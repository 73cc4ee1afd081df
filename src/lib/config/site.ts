import {createHash} from 'node:crypto'
import fs from 'node:fs/promises'
import os from 'node:os'
import path from 'node:path'

import type {NginxInstall} from './nginx.js'
import {symlinkAtomic, writeFileAtomic} from '../files/atomic.js'
import {Layout} from './layout.js'
import {renderTemplate} from './render.js'
import {LOGIN_BURST, type Settings} from './settings.js'
import {isWildcard} from './subdomains.js'
import {HUBCTL_VERSION} from '../version.js'

/**
 * Request body limits and the login form's rate limit. 1m for the hub's pages and API (forms, JSON
 * calls); 16k for the login form (its body is a few hundred bytes); 1g under /user/, where notebooks
 * are saved whole and JupyterLab's upload chunks (1 MiB, base64 in JSON: about 1.4 MB) go.
 * 30 login POSTs a minute per address, bursts of 100 answered at once (init's --login-burst): a
 * class behind one address (a school's NAT) logs in together; a guesser gets about 43,000 tries a
 * day instead of thousands a second. And at most 8 login POSTs of one address in the hub at once
 * (limit_conn; more get the same 429): a wrong password holds one of the hub's PAM threads for the
 * 2-4 s of PAM's fail delay, so an address that sends 60 at once (under the burst) would otherwise
 * keep every login of everyone else waiting behind its own. 8 is half of the PAM threads hubctl
 * gives a JupyterHub that has the setting (PAM_THREADS, hubconfig.ts): one address never takes
 * them all. Correct logins take a fraction of a second, so a class behind one address rarely has 8
 * in the hub at the same instant.
 */
export const SITE_LIMITS = {
  clientMaxBodySize: '1m',
  loginMaxBodySize: '16k',
  userMaxBodySize: '1g',
  loginRate: '30r/m',
  loginBurst: LOGIN_BURST.default,
  loginConcurrent: 8,
} as const

/** Mozilla's "intermediate" ciphers (TLS 1.2; TLS 1.3's are OpenSSL's defaults). */
const SSL_CIPHERS =
  'ECDHE-ECDSA-AES128-GCM-SHA256:ECDHE-RSA-AES128-GCM-SHA256:ECDHE-ECDSA-AES256-GCM-SHA384:ECDHE-RSA-AES256-GCM-SHA384:ECDHE-ECDSA-CHACHA20-POLY1305:ECDHE-RSA-CHACHA20-POLY1305:DHE-RSA-AES128-GCM-SHA256:DHE-RSA-AES256-GCM-SHA384:DHE-RSA-CHACHA20-POLY1305'

/**
 * Who answers requests for names the hub does not serve (a forged Host header, a bare address, a
 * scanner) on the hub's http and https ports. hubctl's site does, with a closed connection, on
 * every port where no other enabled site declares `default_server`: nginx refuses two on one port
 * ("duplicate default server"), and hubctl never breaks another site. One exception: Debian's
 * stock default site (sites-enabled/default, a link to sites-available/default as nginx-common
 * ships it, its md5 the one dpkg recorded) is disabled, its link removed and the file kept.
 */
export interface DefaultServerPlan {
  /** The hub's ports on which its site closes connections for unknown names. */
  ports: number[]
  /** Debian's stock default site, unchanged, which held default_server on a hub port: its link is removed. */
  disable?: {link: string; file: string}
  /** Another enabled site that answers unknown names on a hub port (hubctl adds no default server there). */
  others: Array<{port: number; file: string}>
}

/** The ports on which a configuration file declares `listen ... default_server` (comments ignored). */
export function defaultServerPorts(text: string): number[] {
  const code = text.replace(/#[^\n]*/g, '')
  const ports = new Set<number>()
  for (const match of code.matchAll(/(?:^|[\s;{}])listen\s+([^;{}]+);/g)) {
    const [address, ...params] = match[1].trim().split(/\s+/)
    if (!params.includes('default_server') && !params.includes('default')) continue
    if (address.startsWith('unix:')) continue
    const port = /^\d+$/.test(address) ? address : (/:(\d+)$/.exec(address)?.[1] ?? '80')
    ports.add(Number(port))
  }
  return [...ports].sort((a, b) => a - b)
}

/** The md5 dpkg recorded for a conffile of a package (`dpkg-query -W -f='${Conffiles}'`), from its status file. */
export function dpkgConffileMd5(status: string, pkg: string, conffile: string): string | undefined {
  for (const stanza of status.split(/\n\s*\n/)) {
    if (!new RegExp(`^Package: ${pkg.replace(/[.+]/g, '\\$&')}$`, 'm').test(stanza)) continue
    const conffiles = /^Conffiles:\n((?: .*\n?)*)/m.exec(stanza)?.[1] ?? ''
    for (const line of conffiles.split('\n')) {
      const [file, md5] = line.trim().split(/\s+/)
      if (file === conffile) return md5
    }
  }
  return undefined
}

/** Whether the link is Debian's stock default site: a link to sites-available/default, unchanged since nginx-common installed it. */
async function isStockDefault(layout: Layout, link: string): Promise<boolean> {
  if (link !== layout.nginxDefaultSiteLink) return false
  const stat = await fs.lstat(link).catch(() => undefined)
  if (!stat?.isSymbolicLink()) return false
  const target = path.resolve(path.dirname(link), await fs.readlink(link))
  if (target !== layout.nginxDefaultSite) return false
  return isStockDefaultFile(layout)
}

/** Whether sites-available/default is as nginx-common shipped it (its md5 the one dpkg recorded). */
async function isStockDefaultFile(layout: Layout): Promise<boolean> {
  const content = await fs.readFile(layout.nginxDefaultSite).catch(() => undefined)
  const status = await fs.readFile(layout.dpkgStatus, 'utf8').catch(() => undefined)
  if (content === undefined || status === undefined) return false
  const shipped = dpkgConffileMd5(status, 'nginx-common', layout.systemPath(layout.nginxDefaultSite))
  return shipped !== undefined && createHash('md5').update(content).digest('hex') === shipped
}

/** init's record of the stock default site's link it removed (DefaultServerPlan.disable). */
interface DisabledDefaultRecord {
  link: string
  /** The link's target as it was (Debian's: /etc/nginx/sites-available/default). */
  target: string
}

/** init removed the stock default site's link (its target as read): recorded for uninstall (restoreDefaultSite). */
export async function recordDisabledDefault(layout: Layout, target: string): Promise<void> {
  const record: DisabledDefaultRecord = {link: layout.nginxDefaultSiteLink, target}
  await writeFileAtomic(layout.nginxDefaultSiteRecord, `${JSON.stringify(record)}\n`, {mode: 0o644})
}

/**
 * uninstall, once the hub's site is removed: Debian's stock default site enabled again (its link
 * as it was) when init recorded that it disabled it, and only if it is still the stock file, its
 * link was not made again meanwhile, and no other enabled site now declares default_server on the
 * ports it does (nginx would refuse both). Returns the link made, or why not (`skipped`); the
 * record is removed either way. The caller runs `nginx -t` and takes the link away if that fails.
 */
export async function restoreDefaultSite(layout: Layout): Promise<{restored?: string; skipped?: string}> {
  const text = await fs.readFile(layout.nginxDefaultSiteRecord, 'utf8').catch(() => undefined)
  if (text === undefined) return {}
  const done = () => fs.rm(layout.nginxDefaultSiteRecord, {force: true})
  let record: DisabledDefaultRecord
  try {
    record = JSON.parse(text) as DisabledDefaultRecord
    if (record.link !== layout.nginxDefaultSiteLink || typeof record.target !== 'string') throw new Error('unexpected')
  } catch {
    await done()
    return {skipped: `${layout.nginxDefaultSiteRecord} is not init's record`}
  }
  if (await fs.lstat(record.link).catch(() => undefined)) {
    await done()
    return {}
  }
  let skipped: string | undefined
  if (!(await isStockDefaultFile(layout)))
    skipped = `${layout.nginxDefaultSite} is no longer the file nginx-common shipped`
  else {
    const ports = defaultServerPorts(await fs.readFile(layout.nginxDefaultSite, 'utf8'))
    for (const file of await otherConfigFiles(layout)) {
      const text = await fs.readFile(file, 'utf8').catch(() => undefined)
      const taken = text === undefined ? [] : defaultServerPorts(text).filter((port) => ports.includes(port))
      if (taken.length > 0) {
        skipped = `${file} answers unknown names on port ${taken.join(', ')} now (its default_server)`
        break
      }
    }
  }
  if (skipped === undefined) await symlinkAtomic(record.target, record.link)
  await done()
  return skipped === undefined ? {restored: record.link} : {skipped}
}

/** The files nginx loads beside hubctl's site, as Debian's nginx.conf includes them. */
async function otherConfigFiles(layout: Layout): Promise<string[]> {
  const names = async (dir: string) => (await fs.readdir(dir).catch(() => [] as string[])).sort()
  return [
    layout.nginxMainConf,
    ...(await names(layout.nginxConfD)).filter((n) => n.endsWith('.conf')).map((n) => layout.nginxConfDFile(n)),
    ...(await names(layout.nginxSitesEnabled))
      .filter((n) => !n.startsWith('.'))
      .map((n) => layout.nginxEnabledSite(n))
      .filter((file) => file !== layout.nginxSiteLink),
  ]
}

/** Who answers unknown names on the hub's ports: see DefaultServerPlan. Reads files only. */
export async function planDefaultServers(
  layout: Layout,
  ports: Pick<Settings['ports'], 'http' | 'https'>,
): Promise<DefaultServerPlan> {
  const hubPorts = [ports.http, ports.https]
  const plan: DefaultServerPlan = {ports: [], others: []}
  for (const file of await otherConfigFiles(layout)) {
    const text = await fs.readFile(file, 'utf8').catch(() => undefined)
    if (text === undefined) continue
    const taken = defaultServerPorts(text).filter((port) => hubPorts.includes(port))
    if (taken.length === 0) continue
    if (await isStockDefault(layout, file)) plan.disable = {link: file, file: layout.nginxDefaultSite}
    else plan.others.push(...taken.map((port) => ({port, file})))
  }
  plan.ports = hubPorts.filter((port) => !plan.others.some((other) => other.port === port))
  return plan
}

/** The nginx site for these settings (values escaped as nginx tokens; an unsafe one is refused). */
export async function renderSite(
  layout: Layout,
  settings: Settings,
  nginx: NginxInstall,
  defaults: Pick<DefaultServerPlan, 'ports'>,
): Promise<string> {
  return renderTemplate(
    'nginx-site.conf',
    {
      hubctlVersion: HUBCTL_VERSION,
      nginxVersion: nginx.version,
      // *.DOMAIN (--subdomains) is written as `*.` and the name, which is escaped as every other.
      domains: settings.domains.filter((name) => !isWildcard(name)),
      wildcardOf: settings.domains.filter(isWildcard).map((name) => name.slice(2)),
      primaryDomain: settings.domains[0],
      defaultHttp: defaults.ports.includes(settings.ports.http),
      defaultHttps: defaults.ports.includes(settings.ports.https),
      rejectHandshake: nginx.rejectHandshake,
      sslCiphers: SSL_CIPHERS,
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
