import {execa} from 'execa'
import {ChildProcess, spawn} from 'node:child_process'
import {X509Certificate} from 'node:crypto'
import fs from 'node:fs/promises'
import fsSync from 'node:fs'
import path from 'node:path'

import {CliResult, ROOT} from './cli.js'
import {waitUntil} from './processes.js'

/*
 * A Debian 12 machine with systemd as PID 1, as a system container: systemd-nspawn --boot on a
 * copy of a root filesystem debootstrap made once per machine (test/helpers/build-rootfs.sh, in
 * /var/lib/hubctl-test, never in the checkout). It shares this machine's network (no private
 * network): what listens inside listens on this machine's loopback, so Pebble and Chromium here
 * reach it, and it reaches them. Commands run inside with nsenter, in a clean root environment
 * (as on a root shell of a server, none of this process's variables). powerOff() and boot() again
 * reboot the same machine; destroy() kills it and removes its copy, whatever state it is in.
 */

export const ROOTFS = process.env.HUBCTL_TEST_ROOTFS ?? '/var/lib/hubctl-test/bookworm-base'
const RUNS = path.join(path.dirname(ROOTFS), 'runs')
const BUILD_ROOTFS = path.join(ROOT, 'test/helpers/build-rootfs.sh')
const PATH_INSIDE = '/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin'

/** Why this machine cannot run system containers (a missing program, not root), or undefined when it can. */
export async function containerPrerequisites(): Promise<string | undefined> {
  if (process.getuid?.() !== 0) return 'the tests do not run as root (systemd-nspawn needs root)'
  for (const [tool, pkg] of [
    ['systemd-nspawn', 'systemd-container'],
    ['debootstrap', 'debootstrap'],
    ['nsenter', 'util-linux'],
    ['flock', 'util-linux'],
  ]) {
    if ((await execa('sh', ['-c', `command -v ${tool}`], {reject: false})).exitCode !== 0)
      return `${tool} is not installed (apt-get install ${pkg}; .ci/run installs it)`
  }
  return undefined
}

/** The root filesystem, built when missing (about 2 minutes); returns how long that took, 0 when it was there. */
export async function ensureRootfs(): Promise<number> {
  const start = Date.now()
  const built = await execa('bash', [BUILD_ROOTFS, ROOTFS], {reject: false, stdin: 'ignore', timeout: 900_000})
  if (built.exitCode !== 0)
    throw new Error(`could not build the Debian 12 root filesystem in ${ROOTFS}: ${built.stderr.trim()}`)
  return built.stdout.includes('build-rootfs:') ? Date.now() - start : 0
}

export interface ExecOptions {
  env?: Record<string, string>
  input?: string
  cwd?: string
  timeoutMs?: number
}

export class SystemContainer {
  /** The init process (systemd, PID 1 inside), as this machine numbers it. */
  init = 0
  private nspawn: ChildProcess | undefined
  private exited: Promise<void> | undefined
  private boots = 0
  private readonly killOnExit = () => this.killNow()

  private constructor(
    /** The container's root directory, on this machine. */
    readonly dir: string,
    readonly name: string,
  ) {}

  /**
   * A fresh copy of the root filesystem, made a machine like an operator's Debian server: a hosts
   * file (localhost and `hosts` on 127.0.0.1, as DNS would resolve them), this machine's apt
   * sources, CA certificates and pip settings. Not booted yet.
   */
  static async create(label: string, hosts: string[] = []): Promise<SystemContainer> {
    await fs.mkdir(RUNS, {recursive: true})
    // Copies left by a run that was killed before its cleanup (no nspawn runs on them any more).
    for (const old of await fs.readdir(RUNS)) {
      const pid = Number(await fs.readFile(path.join(RUNS, old, '.hubctl-nspawn-pid'), 'utf8').catch(() => '0'))
      if (pid > 0 && fsSync.existsSync(`/proc/${pid}`)) continue
      await fs.rm(path.join(RUNS, old), {recursive: true, force: true})
    }
    const name = `${label}-${process.pid}`
    const dir = path.join(RUNS, name)
    await execa('cp', ['-a', '--reflink=auto', ROOTFS, dir])
    const container = new SystemContainer(dir, name)
    await container.writeFile(
      '/etc/hosts',
      [
        '127.0.0.1 localhost',
        '::1 localhost ip6-localhost ip6-loopback',
        ...hosts.map((h) => `127.0.0.1 ${h}`),
        '',
      ].join('\n'),
    )
    await container.writeFile('/etc/hostname', `${name}\n`)
    // The apt sources of Debian's archive this machine uses (other sources need keys it lacks).
    if (fsSync.existsSync('/etc/apt/sources.list.d/debian.sources')) {
      await container.copyIn('/etc/apt/sources.list.d/debian.sources', '/etc/apt/sources.list.d/debian.sources')
      await fs.rm(container.path('/etc/apt/sources.list'), {force: true})
    } else await container.copyIn('/etc/apt/sources.list', '/etc/apt/sources.list')
    // This machine's CA bundle; the certificates Debian's bundle lacks also go where
    // update-ca-certificates keeps them, so that a package's trigger inside does not drop them.
    const bundle = '/etc/ssl/certs/ca-certificates.crt'
    const pem = (text: string) => text.match(/-----BEGIN CERTIFICATE-----[\s\S]+?-----END CERTIFICATE-----/g) ?? []
    const debian = new Set(pem(await fs.readFile(container.path(bundle), 'utf8')))
    for (const [i, cert] of pem(await fs.readFile(bundle, 'utf8'))
      .filter((c) => !debian.has(c))
      .entries()) {
      await container.writeFile(`/usr/local/share/ca-certificates/host-${i}.crt`, `${cert}\n`)
      new X509Certificate(cert) // a certificate, not something else between the markers
    }
    await container.copyIn(bundle, bundle)
    if (fsSync.existsSync('/etc/pip.conf')) await container.copyIn('/etc/pip.conf', '/etc/pip.conf')
    return container
  }

  /** The path on this machine of a path inside. */
  path(inside: string): string {
    return path.join(this.dir, inside)
  }

  async writeFile(inside: string, content: string, mode = 0o644): Promise<void> {
    await fs.mkdir(path.dirname(this.path(inside)), {recursive: true})
    await fs.writeFile(this.path(inside), content, {mode})
  }

  async copyIn(from: string, inside: string): Promise<void> {
    await fs.mkdir(path.dirname(this.path(inside)), {recursive: true})
    await execa('cp', ['-a', '--', from, this.path(inside)])
  }

  /**
   * This machine's Node (20; it links only against libraries Debian 12 has) as /usr/bin/node, and
   * this checkout, built, with its node_modules, as `inside` (the README: "in this checkout").
   */
  async installCheckout(inside: string): Promise<void> {
    await this.copyIn(process.execPath, '/usr/bin/node')
    await fs.mkdir(this.path(inside), {recursive: true})
    const excluded = ['.git', '.venv', 'test-output', 'hubctl-local', 'local', 'tmp'].map((e) => `--exclude=./${e}`)
    await execa('sh', ['-c', `tar -c -C "$1" ${excluded.join(' ')} . | tar -x -C "$2"`, 'sh', ROOT, this.path(inside)])
  }

  /** Boot: systemd as PID 1, until `systemctl is-system-running` says running (or degraded: the failed units are named). */
  async boot(): Promise<{state: string; failed: string}> {
    const log = path.join(RUNS, `${this.name}.boot${++this.boots}.log`)
    const out = fsSync.openSync(log, 'w')
    // --keep-unit: this machine's PID 1 is not systemd (no scope to register); --register=no: no machined.
    const nspawn = spawn(
      'systemd-nspawn',
      ['-D', this.dir, '-M', this.name, '--boot', '--register=no', '--keep-unit', '--console=passive'],
      {stdio: ['ignore', out, out], detached: true},
    )
    fsSync.closeSync(out)
    this.nspawn = nspawn
    this.exited = new Promise((resolve) => nspawn.once('exit', () => resolve()))
    process.off('exit', this.killOnExit)
    process.on('exit', this.killOnExit)
    await fs.writeFile(path.join(this.dir, '.hubctl-nspawn-pid'), String(nspawn.pid))
    const why = async () =>
      `systemd-nspawn ${nspawn.exitCode === null ? 'runs' : `exited (${nspawn.exitCode ?? nspawn.signalCode})`}; its output (${log}):\n${(await fs.readFile(log, 'utf8').catch(() => '')).slice(-3000)}`
    try {
      this.init = await waitUntil(
        'the container to start its init',
        async () => {
          if (nspawn.exitCode !== null || nspawn.signalCode !== null) throw new Error(await why())
          return initOf(nspawn.pid!)
        },
        {tries: 600, intervalMs: 100, withinMs: 60_000},
      )
      const state = await waitUntil(
        'systemd in the container to finish booting',
        async () => {
          if (nspawn.exitCode !== null || nspawn.signalCode !== null) throw new Error(await why())
          const s = (await this.exec(['systemctl', 'is-system-running'])).stdout.trim()
          return ['running', 'degraded'].includes(s) ? s : undefined
        },
        {tries: 1200, intervalMs: 250, withinMs: 180_000},
      )
      const failed = state === 'degraded' ? (await this.exec(['systemctl', '--failed', '--no-legend'])).stdout : ''
      return {state, failed}
    } catch (error) {
      throw new Error(
        `the Debian 12 container did not boot with systemd as PID 1: ${(error as Error).message}\n${await why()}`,
      )
    }
  }

  /** Run a program inside, as root, in a clean environment (PATH, HOME=/root, LANG, and `env`). */
  async exec(argv: string[], options: ExecOptions = {}): Promise<CliResult> {
    const result = await execa('nsenter', this.nsenterArgs(argv, options), {
      reject: false,
      input: options.input,
      stdin: options.input === undefined ? 'ignore' : undefined,
      timeout: options.timeoutMs ?? 120_000,
    })
    return {exitCode: result.exitCode ?? -1, stdout: String(result.stdout), stderr: String(result.stderr)}
  }

  /** `sh -c script` inside (see exec). */
  sh(script: string, options: ExecOptions = {}): Promise<CliResult> {
    return this.exec(['sh', '-c', script], options)
  }

  /** nsenter's argv for running `argv` inside (for a caller that runs it its own way: on a terminal). */
  nsenterArgs(argv: string[], options: ExecOptions = {}): string[] {
    if (!this.init) throw new Error('the container is not running')
    const env = {PATH: PATH_INSIDE, HOME: '/root', LANG: 'C.UTF-8', USER: 'root', LOGNAME: 'root', ...options.env}
    return [
      '-t',
      String(this.init),
      '-a',
      '--',
      'env',
      '-i',
      ...Object.entries(env).map(([k, v]) => `${k}=${v}`),
      ...(options.cwd ? ['sh', '-c', 'cd "$0" && exec "$@"', options.cwd] : []),
      ...argv,
    ]
  }

  /** `systemctl poweroff` inside, then wait until the container is gone (killed if it does not stop within 3 minutes). */
  async powerOff(): Promise<void> {
    if (!this.nspawn || this.nspawn.exitCode !== null || this.nspawn.signalCode !== null) return
    await this.exec(['systemctl', 'poweroff'])
    const gone = await Promise.race([
      this.exited!.then(() => true),
      new Promise<boolean>((resolve) => setTimeout(() => resolve(false), 180_000).unref()),
    ])
    if (!gone) {
      this.killNow()
      await this.exited
      throw new Error('the container did not power off within 3 minutes (killed)')
    }
    this.init = 0
  }

  /** Kill it now (whatever runs inside), and remove its copy of the root filesystem. */
  async destroy(): Promise<void> {
    this.killNow()
    await this.exited
    process.off('exit', this.killOnExit)
    this.init = 0
    await fs.rm(this.dir, {recursive: true, force: true})
  }

  private killNow(): void {
    for (const pid of [this.init, this.nspawn?.pid ?? 0]) {
      if (pid <= 0) continue
      try {
        process.kill(pid, 'SIGKILL')
      } catch {
        // gone
      }
    }
  }
}

/** The container's init: the child of systemd-nspawn that is PID 1 in its own PID namespace. */
async function initOf(nspawn: number): Promise<number | undefined> {
  for (const entry of await fs.readdir('/proc')) {
    if (!/^\d+$/.test(entry)) continue
    const status = await fs.readFile(`/proc/${entry}/status`, 'utf8').catch(() => '')
    if (Number(/^PPid:\s+(\d+)/m.exec(status)?.[1]) !== nspawn) continue
    const nspid = /^NSpid:\s+(.*)$/m.exec(status)?.[1].trim().split(/\s+/)
    if (nspid && nspid.length > 1 && nspid.at(-1) === '1') return Number(entry)
  }
  return undefined
}
