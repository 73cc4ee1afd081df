import {randomBytes} from 'node:crypto'
import fs from 'node:fs/promises'
import http from 'node:http'
import os from 'node:os'

import {
  ensureDir,
  ensureLogFile,
  exists,
  readIfExists,
  symlinkAtomic,
  writeFileAtomic,
  writeFileAtomicIfChanged,
} from '../files/atomic.js'
import {HubctlError, acmeError, preflightError, runtimeError, validationError} from '../errors.js'
import {childPids, processAlive} from '../processes.js'
import {Layout} from './layout.js'
import {renderTemplate} from './render.js'
import {Runner, which} from '../runner.js'
import {renderChallengeSite} from './site.js'

export interface NginxInstall {
  executable: string
  version: string
  /** nginx 1.25.1 replaced `listen ... http2` with the `http2 on;` directive. */
  http2Directive: boolean
  /** `ssl_reject_handshake` (nginx 1.19.4): a TLS default server that needs no certificate. */
  rejectHandshake: boolean
}

export async function detectNginx(runner: Runner, executable = 'nginx'): Promise<NginxInstall> {
  const found = await which(executable)
  if (!found)
    throw preflightError('nginx was not found', 'install it (apt-get install nginx) or pass its path with --nginx')
  const result = await runner.run(found, ['-v'])
  const match = /nginx\/(\d+)\.(\d+)\.(\d+)/.exec(`${result.stderr}${result.stdout}`)
  if (!match)
    throw preflightError(
      `"${found} -v" did not print a version`,
      'check the nginx installation (apt-get install --reinstall nginx)',
    )
  const [major, minor, patch] = match.slice(1).map(Number)
  const atLeast = (m: number, p: number) => major > 1 || minor > m || (minor === m && patch >= p)
  return {
    executable: found,
    version: `${major}.${minor}.${patch}`,
    http2Directive: atLeast(25, 1),
    rejectHandshake: atLeast(19, 4),
  }
}

/**
 * The nginx a configured hub uses (hubctl.json's, else the one on PATH), ready to test and reload:
 * the one way commands get it.
 */
export async function nginxFor(
  layout: Layout,
  settings: {executables: {nginx?: string}},
  runner: Runner,
): Promise<Nginx> {
  return new Nginx(layout, await detectNginx(runner, settings.executables.nginx ?? 'nginx'), runner)
}

/** The arguments that select hubctl's nginx configuration (none at prefix `/`: the system's own). */
export function nginxConfigArgs(layout: Layout, mainConf = layout.nginxMainConf): string[] {
  if (layout.isSystem) return []
  return ['-p', `${layout.prefix}/`, '-c', mainConf, '-e', layout.nginxErrorLog]
}

/**
 * nginx as hubctl drives it. With prefix `/` this is the system's nginx (its own nginx.conf,
 * run as a service). With any other prefix, the prefix's own nginx.conf, so that the site runs
 * alone: `nginx -p PREFIX/ -c PREFIX/etc/nginx/nginx.conf`.
 */
export class Nginx {
  constructor(
    readonly layout: Layout,
    readonly install: NginxInstall,
    readonly runner: Runner,
  ) {}

  /** The arguments that select the configuration (and keep nginx's own error log inside the prefix). */
  configArgs(mainConf = this.layout.nginxMainConf): string[] {
    return nginxConfigArgs(this.layout, mainConf)
  }

  async test(mainConf?: string): Promise<{ok: boolean; output: string}> {
    const result = await this.runner.run(this.install.executable, ['-t', ...this.configArgs(mainConf)])
    return {ok: result.exitCode === 0, output: `${result.stderr}\n${result.stdout}`.trim()}
  }

  /** The prefix's main nginx.conf (only when the prefix is not `/`). */
  /** Returns whether the file was written (false: the system's nginx.conf, or the same content). */
  async writeMainConf(): Promise<boolean> {
    if (this.layout.isSystem) return false
    await this.ensureDirs()
    return writeFileAtomicIfChanged(
      this.layout.nginxMainConf,
      await this.renderMainConf(this.layout.nginxSitesEnabled),
      {mode: 0o644},
    )
  }

  /** The prefix's main nginx.conf as writeMainConf writes it (a restore elsewhere stages it). */
  async renderMainConf(sitesEnabled: string): Promise<string> {
    return renderTemplate(
      'nginx-main.conf',
      {
        prefix: this.layout.prefix,
        mainConf: this.layout.nginxMainConf,
        pidFile: this.layout.nginxPid,
        errorLog: this.layout.nginxErrorLog,
        accessLog: this.layout.nginxAccessLog,
        tempDir: this.layout.nginxRunDir,
        confD: this.layout.nginxConfD,
        sitesEnabled,
      },
      'nginx',
    )
  }

  private async ensureDirs(): Promise<void> {
    for (const dir of [
      this.layout.nginxSitesAvailable,
      this.layout.nginxSitesEnabled,
      this.layout.logDir,
      this.layout.nginxRunDir,
      this.layout.acmeChallengeDir,
    ]) {
      await fs.mkdir(dir, {recursive: true, mode: 0o755})
    }
    await this.ensureLogs()
  }

  /** The prefix nginx's logs, made 0640 before nginx (even `nginx -t`) creates them with its own 0644. */
  async ensureLogs(): Promise<void> {
    if (this.layout.isSystem) return
    await fs.mkdir(this.layout.logDir, {recursive: true, mode: 0o755})
    for (const file of [this.layout.nginxAccessLog, this.layout.nginxErrorLog]) await ensureLogFile(file)
  }

  /**
   * Install the site so that a broken one never replaces a working one: first `nginx -t` on the
   * candidate alone (nothing installed yet), then install it and `nginx -t` the whole
   * configuration, putting the previous site back if that fails. `disable`: a link in
   * sites-enabled to remove with it (Debian's stock default site, see site.ts), put back on failure.
   */
  async installSite(content: string, options: {disable?: string} = {}): Promise<{changed: boolean; disabled?: string}> {
    await this.ensureDirs()
    // A challenge site left by an interrupted order: the hub's site answers the challenges now.
    await fs.rm(this.layout.nginxChallengeSite, {force: true})
    const previous = await readIfExists(this.layout.nginxSite)
    await this.testAlone(content)
    const disabledTarget = options.disable ? await readLinkIfExists(options.disable) : undefined
    if (previous === content && (await exists(this.layout.nginxSiteLink)) && disabledTarget === undefined)
      return {changed: false}
    await writeFileAtomic(this.layout.nginxSite, content, {mode: 0o644})
    const linked = await exists(this.layout.nginxSiteLink)
    if (!linked) await symlinkAtomic(this.layout.nginxSite, this.layout.nginxSiteLink)
    if (options.disable && disabledTarget !== undefined) await fs.rm(options.disable)
    const whole = await this.test()
    if (!whole.ok) {
      if (previous === undefined) {
        await fs.rm(this.layout.nginxSite, {force: true})
      } else {
        await writeFileAtomic(this.layout.nginxSite, previous, {mode: 0o644})
      }
      if (!linked) await fs.rm(this.layout.nginxSiteLink, {force: true})
      if (options.disable && disabledTarget !== undefined) await symlinkAtomic(disabledTarget, options.disable)
      throw nginxRejected(whole.output, 'the nginx configuration with the new site')
    }
    return {changed: true, disabled: options.disable ? disabledTarget : undefined}
  }

  /** `nginx -t` of the site by itself, from a temporary directory: touches nothing installed. */
  private async testAlone(content: string): Promise<void> {
    const dir = await fs.mkdtemp(`${os.tmpdir()}/hubctl-nginx-`)
    try {
      const alone = new Layout(dir)
      await fs.mkdir(alone.nginxSitesEnabled, {recursive: true})
      await fs.mkdir(alone.logDir, {recursive: true})
      await fs.mkdir(alone.nginxRunDir, {recursive: true})
      await fs.writeFile(alone.nginxSiteLink, content)
      const main = await new Nginx(alone, this.install, this.runner).renderMainConf(alone.nginxSitesEnabled)
      await fs.writeFile(alone.nginxMainConf, main)
      const result = await this.runner.run(this.install.executable, [
        '-t',
        '-p',
        `${dir}/`,
        '-c',
        alone.nginxMainConf,
        '-e',
        alone.nginxErrorLog,
      ])
      // Ports held by the running nginx do not matter for -t; anything else does.
      if (result.exitCode !== 0)
        throw nginxRejected(`${result.stderr}\n${result.stdout}`.replaceAll(dir, '<candidate>'), 'the new nginx site')
    } finally {
      await fs.rm(dir, {recursive: true, force: true})
    }
  }

  /** The pid of the running nginx master for this configuration, if any. */
  async runningPid(): Promise<number | undefined> {
    const text = await readIfExists(this.layout.nginxPid)
    const pid = Number(text?.trim())
    return (await processAlive(pid)) ? pid : undefined
  }

  /** Reload when running (after a passing `nginx -t`); returns whether a reload was sent. */
  async reloadIfRunning(): Promise<boolean> {
    if ((await this.runningPid()) === undefined) return false
    const check = await this.test()
    if (!check.ok) throw nginxRejected(check.output, 'the nginx configuration')
    const result = await this.runner.run(this.install.executable, [...this.configArgs(), '-s', 'reload'])
    if (result.exitCode !== 0)
      throw runtimeError(
        `nginx -s reload failed: ${result.stderr.trim().split('\n').pop()}`,
        'look at the nginx error log, fix the cause, then run `nginx -s reload`',
      )
    return true
  }

  async ensureAcmeWebroot(): Promise<void> {
    await ensureDir(this.layout.acmeChallengeDir, 0o755)
  }

  /** The names the installed, enabled hub site answers on its HTTP port (none before the first install). */
  async hubSiteNames(): Promise<string[]> {
    if (!(await exists(this.layout.nginxSiteLink))) return []
    const site = (await readIfExists(this.layout.nginxSite)) ?? ''
    return /^\s*server_name\s+([^;]+);/m.exec(site)?.[1].trim().split(/\s+/) ?? []
  }

  /**
   * For an ACME order while this nginx holds the HTTP port: the names of `domains` that the hub's
   * site does not answer yet (all of them before the first certificate, when the system's nginx
   * answers with its default site) get a server block of their own that serves the webroot, until
   * `close()`. Nothing else changes: no default_server, other sites keep their names. A name that
   * another site already claims on that port is refused, naming the site, before the CA is asked.
   */
  async openChallengeSite(domains: string[], port: number): Promise<{names: string[]; close(): Promise<void>}> {
    const served = await this.hubSiteNames()
    const names = domains.filter((domain) => !served.includes(domain))
    if (names.length === 0) return {names, close: async () => {}}
    await this.ensureAcmeWebroot()
    const content = await renderChallengeSite(this.layout, port, names)
    await ensureDir(this.layout.nginxSitesEnabled, 0o755)
    await writeFileAtomic(this.layout.nginxChallengeSite, content, {mode: 0o644})
    const close = async () => {
      await fs.rm(this.layout.nginxChallengeSite, {force: true})
      await this.reloadIfRunning().catch(() => false)
    }
    try {
      const check = await this.test()
      if (!check.ok) throw nginxRejected(check.output, 'the temporary ACME challenge site')
      const conflict = names.find(
        (name) => check.output.includes(`conflicting server name "${name}" on `) && check.output.includes(`:${port}`),
      )
      if (conflict) {
        const file = await this.fileServing(conflict)
        throw acmeError(
          `another nginx site${file ? ` (${file})` : ''} already answers ${conflict} on port ${port}, so the CA's http-01 request would not reach hubctl's token`,
          `remove ${conflict} from that site's server_name or disable the site (hubctl's own site will answer it), then run again`,
        )
      }
      await this.reloadAndSettle()
      await this.waitForWebroot(names[0], port)
    } catch (error) {
      await close()
      throw error
    }
    return {names, close}
  }

  /**
   * Reload, then wait until every worker of the old configuration has gone: until it is told to quit,
   * a new connection may still land on an old worker, which knows nothing of the challenge site. A
   * worker kept by long connections (users' websockets) stops accepting at once when told; after
   * `settleMs` the wait ends anyway.
   */
  private async reloadAndSettle(settleMs = 2_000): Promise<void> {
    const master = await this.runningPid()
    const old = master === undefined ? [] : await childPids(master)
    await this.reloadIfRunning()
    const deadline = Date.now() + settleMs
    while (Date.now() < deadline && (await Promise.all(old.map((pid) => processAlive(pid)))).some(Boolean))
      await new Promise((resolve) => setTimeout(resolve, 50))
  }

  /** The configuration file, other than hubctl's challenge site, whose server_name has `name` (nginx -T). */
  private async fileServing(name: string): Promise<string | undefined> {
    const dump = await this.runner.run(this.install.executable, ['-T', ...this.configArgs()])
    let file: string | undefined
    for (const line of dump.stdout.split('\n')) {
      const header = /^# configuration file (.+):$/.exec(line)
      if (header) file = header[1]
      else if (
        file !== this.layout.nginxChallengeSite &&
        /^\s*server_name\s/.test(line) &&
        line.replace(/;.*$/, '').trim().split(/\s+/).includes(name)
      )
        return file
    }
    return undefined
  }

  /**
   * nginx -s reload returns before the new workers run: wait (bounded) until a probe file in the
   * webroot is served for `name`, so that the token fetched next is answered by the new configuration.
   */
  private async waitForWebroot(name: string, port: number, timeoutMs = 10_000): Promise<void> {
    const probe = `hubctl-probe-${randomBytes(8).toString('hex')}`
    const file = this.layout.acmeChallengeFile(probe)
    await writeFileAtomic(file, probe, {mode: 0o644})
    try {
      const deadline = Date.now() + timeoutMs
      for (;;) {
        if ((await fetchLocal(port, name, `/.well-known/acme-challenge/${probe}`)) === probe) return
        if (Date.now() > deadline)
          throw runtimeError(
            `nginx did not serve hubctl's webroot for ${name} on port ${port} after a reload`,
            `look at nginx's error log; check that its configuration includes ${this.layout.nginxSitesEnabled}`,
          )
        await new Promise((resolve) => setTimeout(resolve, 50))
      }
    } finally {
      await fs.rm(file, {force: true})
    }
  }
}

/** GET http://127.0.0.1:port/path with this Host: the body on 200, else undefined. */
function fetchLocal(port: number, host: string, path: string): Promise<string | undefined> {
  return new Promise((resolve) => {
    const request = http.get({host: '127.0.0.1', port, path, headers: {Host: host}, timeout: 2000}, (response) => {
      const chunks: Buffer[] = []
      response.on('data', (chunk: Buffer) => chunks.push(chunk))
      response.on('end', () =>
        resolve(response.statusCode === 200 ? Buffer.concat(chunks).toString('utf8') : undefined),
      )
      response.on('error', () => resolve(undefined))
    })
    request.on('timeout', () => request.destroy())
    request.on('error', () => resolve(undefined))
  })
}

/** A symbolic link's target, or undefined when there is no such link. */
async function readLinkIfExists(link: string): Promise<string | undefined> {
  try {
    return await fs.readlink(link)
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'ENOENT') return undefined
    throw error
  }
}

/** nginx -t's own line, as a validation failure (exit 4). */
function nginxRejected(output: string, what: string): HubctlError {
  const line = output.split('\n').find((l) => /\[emerg\]|\[error\]|failed/.test(l)) ?? output.split('\n')[0]
  return validationError(
    `nginx -t rejected ${what}: ${line.replace(/^nginx: /, '').trim()}`,
    'the previous site is still installed; fix what nginx names (a port, a file, another site), then run the command again',
  )
}
