import {constants as fsConstants} from 'node:fs'
import fs from 'node:fs/promises'
import net from 'node:net'
import os from 'node:os'

import {HubctlError, errnoCode, preflightError, validationError} from '../errors.js'
import {Layout, pathChain} from '../config/layout.js'
import {nginxFor} from '../config/nginx.js'
import {checkSchemaBeforeStart} from '../config/dbschema.js'
import {Runner, which} from '../runner.js'
import {SecretStore, problemsError} from '../files/secrets.js'
import type {Settings} from '../config/settings.js'
import {assertTrusted, assertTrustedFile} from './trust.js'
import {assertNoRootServers} from '../config/hubconfig.js'
import {finishInterruptedRestore} from '../backup/journal.js'
import {isWildcard, wildcardProbeName} from '../config/subdomains.js'

/**
 * Root for the real system; for any other prefix, a directory we can create and write. With
 * `create: false` (--dry-run) nothing is made: the prefix, or the nearest directory above it that
 * exists, must be writable.
 */
export async function checkPrivileges(
  layout: Layout,
  uid = process.getuid?.() ?? 0,
  options: {create?: boolean} = {},
): Promise<void> {
  if (layout.isSystem) {
    if (uid !== 0)
      throw preflightError(
        'hubctl must run as root to set up JupyterHub under /',
        'run it with sudo, or give --prefix a directory of your own (tests, local mode)',
      )
    return
  }
  try {
    if (options.create === false) {
      const existing = pathChain(layout.prefix).reverse()
      let found: string | undefined
      for (const dir of existing) {
        if (
          await fs.stat(dir).then(
            () => true,
            () => false,
          )
        ) {
          found = dir
          break
        }
      }
      await fs.access(found ?? '/', fsConstants.W_OK)
      return
    }
    await fs.mkdir(layout.prefix, {recursive: true})
    await fs.access(layout.prefix, fsConstants.W_OK)
  } catch (error) {
    throw preflightError(
      `cannot write to --prefix ${layout.prefix} (${errnoCode(error)})`,
      'choose a directory you can write, or run as root',
    )
  }
}

/** Whether something listens on the port (tries to bind it on all addresses). */
export async function portInUse(port: number, host = '0.0.0.0'): Promise<boolean> {
  return new Promise((resolve, reject) => {
    const server = net.createServer()
    server.once('error', (error) => {
      const code = errnoCode(error)
      if (code === 'EADDRINUSE') resolve(true)
      else if (code === 'EACCES')
        resolve(false) // privileged port as non-root: nginx binds it, not us
      else reject(error)
    })
    server.listen({port, host, exclusive: true}, () => server.close(() => resolve(false)))
  })
}

export interface PortCheck {
  flag: string
  port: number
  /** Who may already hold it without it being a problem (nginx on 80/443, our own running stack). */
  heldOk: boolean
}

export async function checkPorts(checks: PortCheck[]): Promise<string[]> {
  const notes: string[] = []
  for (const check of checks) {
    if (!(await portInUse(check.port))) continue
    if (check.heldOk) {
      notes.push(`port ${check.port} (${check.flag}) is held by the running stack`)
      continue
    }
    throw preflightError(
      `port ${check.port} (${check.flag}) is already in use by another program`,
      `stop that program (ss -ltnp 'sport = :${check.port}' names it) or choose another ${check.flag}`,
    )
  }
  return notes
}

/**
 * The domain must resolve, and should resolve to this machine (a NAT address is not on any
 * interface, so that is only a warning). localhost needs no DNS.
 */
export async function checkDns(
  domain: string,
  lookup: (name: string) => Promise<string[]> = defaultLookup,
  probeName: (wildcard: string) => string = wildcardProbeName,
): Promise<string | undefined> {
  if (domain === 'localhost' || domain.endsWith('.localhost')) return undefined
  // *.DOMAIN (--subdomains): a name under it that nobody made on purpose must resolve here too.
  const name = isWildcard(domain) ? probeName(domain) : domain
  const shown = name === domain ? domain : `${name} (a name under ${domain})`
  let addresses: string[]
  try {
    addresses = await lookup(name)
  } catch {
    throw preflightError(
      `${shown} does not resolve in DNS`,
      `create an A (and AAAA) record for ${domain} pointing at this machine, wait for it to propagate, then run the command again`,
    )
  }
  const local = new Set(
    Object.values(os.networkInterfaces())
      .flat()
      .map((i) => i?.address)
      .filter(Boolean),
  )
  if (!addresses.some((address) => local.has(address))) {
    return `${shown} resolves to ${addresses.join(', ')}, which is not an address of this machine (fine behind NAT; otherwise fix the DNS record before asking for a certificate)`
  }
  return undefined
}

async function defaultLookup(name: string): Promise<string[]> {
  const dns = await import('node:dns/promises')
  return (await dns.lookup(name, {all: true})).map((entry) => entry.address)
}

export {hasIpv6} from '../config/site.js'

/**
 * What `hubctl start` checks before it runs anything: every secret as `hubctl secrets check` wants
 * it (JupyterHub would otherwise exit on a group-readable cookie secret and the supervisor only
 * see it crash), and, when hubctl runs nginx itself, `nginx -t` on the whole configuration (a
 * broken site elsewhere would otherwise make nginx crash-loop behind a hub that reports ready).
 */
export async function checkBeforeStart(layout: Layout, settings: Settings, runner: Runner): Promise<void> {
  // A `hubctl restore` killed during its renames: finished first, so the hub that starts is the restored one, whole.
  await finishInterruptedRestore(layout, runner)
  // Nothing root runs or loads may be someone else's (first: `nginx -t` loads the configuration,
  // and its modules, as root); no server of another user runs as root.
  await assertTrusted(layout, settings.executables.jupyterhub)
  // The hub runs jupyterhub-idle-culler with this Python, as the hub's user.
  if (settings.executables.idleCuller)
    await assertTrustedFile(settings.executables.idleCuller, 'the hub would run jupyterhub-idle-culler with it')
  assertNoRootServers(settings)
  // The rest do not depend on each other: run together, the first problem (in this order) is named.
  const checks = await Promise.allSettled([
    new SecretStore(layout).check().then((problems) => {
      if (problems.length > 0) throw problemsError(problems)
    }),
    checkJupyterHubExecutable(layout, settings).then(() =>
      // A database older than the JupyterHub installed (an upgraded package, another init): exit 7
      // naming `hubctl upgrade`, before JupyterHub refuses it and the service restarts it forever.
      checkSchemaBeforeStart(layout, runner, settings.executables.jupyterhub),
    ),
    settings.nginxSupervised ? checkNginxConfig(layout, settings, runner) : Promise.resolve(),
  ])
  const failed = checks.find((check): check is PromiseRejectedResult => check.status === 'rejected')
  if (failed) throw failed.reason
}

/** The JupyterHub init found, gone since (an upgrade, a removed virtualenv): named here, not met as five failed restarts. */
async function checkJupyterHubExecutable(layout: Layout, settings: Settings): Promise<void> {
  if (settings.executables.jupyterhub && !(await which(settings.executables.jupyterhub))) {
    throw preflightError(
      `the JupyterHub executable ${settings.executables.jupyterhub} recorded in ${layout.settings} is missing or not executable`,
      'reinstall it, or run `hubctl init --jupyterhub PATH` again to record where it is now',
    )
  }
}

/** `nginx -t` on the configuration hubctl start runs nginx with. */
async function checkNginxConfig(layout: Layout, settings: Settings, runner: Runner): Promise<void> {
  const nginx = await nginxFor(layout, settings, runner).catch((error: HubctlError) => {
    throw preflightError(
      `${error.message} (hubctl.json names ${settings.executables.nginx ?? 'nginx'})`,
      'reinstall nginx (apt-get install nginx), or run `hubctl init --nginx PATH` again to record where it is now',
    )
  })
  const result = await nginx.test()
  if (!result.ok) {
    const line =
      result.output.split('\n').find((l) => /\[emerg\]|\[error\]|failed/.test(l)) ?? result.output.split('\n')[0]
    throw validationError(
      `nginx -t rejects the configuration under ${layout.prefix}: ${line.replace(/^nginx: /, '').trim()}`,
      'fix what nginx names (another site in sites-enabled, a certificate, a port), then run `hubctl start` again; nothing was started',
    )
  }
}
