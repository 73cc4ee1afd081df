import {expect} from 'chai'
import {execa} from 'execa'
import type {Dirent} from 'node:fs'
import fs from 'node:fs/promises'
import net from 'node:net'
import os from 'node:os'
import path from 'node:path'
import {fileURLToPath} from 'node:url'

export const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..')
export const BIN = path.join(ROOT, 'bin/run.js')
/** The current JupyterHub from PyPI, in the virtualenv .ci/run makes. */
export const VENV_JUPYTERHUB = process.env.HUBCTL_TEST_VENV_JUPYTERHUB ?? path.join(ROOT, '.venv/bin/jupyterhub')
/** Debian's JupyterHub 3.0. */
export const DEBIAN_JUPYTERHUB = '/usr/bin/jupyterhub'

export interface CliResult {
  exitCode: number
  stdout: string
  stderr: string
}

/** Run the built hubctl (npm test builds first) as a real process. */
export async function hubctl(
  args: string[],
  options: {
    env?: Record<string, string>
    input?: string
    timeoutMs?: number
    /** Told the process's pid as soon as it is started (to watch it while it runs). */
    onSpawn?: (pid: number) => void
  } = {},
): Promise<CliResult> {
  const subprocess = execa(process.execPath, [BIN, ...args], {
    reject: false,
    env: {...options.env},
    input: options.input,
    stdin: options.input === undefined ? 'ignore' : undefined,
    timeout: options.timeoutMs ?? 300_000,
  })
  if (subprocess.pid !== undefined) options.onSpawn?.(subprocess.pid)
  const result = await subprocess
  return {exitCode: result.exitCode ?? -1, stdout: String(result.stdout), stderr: String(result.stderr)}
}

export async function tempPrefix(label = 'hubctl'): Promise<string> {
  return fs.mkdtemp(path.join(os.tmpdir(), `${label}-`))
}

/** Test ports: below hubctl's user server ports (settings.ts SERVER_PORTS, 20000-32767) and the kernel's ephemeral range. */
const TEST_PORTS = {first: 10_000, end: 20_000}
let portCursor: number | undefined

/**
 * This process's block of TEST_PORTS. test/run.ts gives each mocha it runs at once a block of its
 * own (HUBCTL_TEST_PORT_BLOCK of HUBCTL_TEST_PORT_BLOCKS): two lanes never hand out the same port.
 * A mocha run by hand takes one by its pid.
 */
function portBlock(): {first: number; size: number} {
  const blocks = Math.max(1, Number(process.env.HUBCTL_TEST_PORT_BLOCKS) || 8)
  const given = Number(process.env.HUBCTL_TEST_PORT_BLOCK)
  const index = Number.isInteger(given) && given >= 0 && given < blocks ? given : process.pid % blocks
  const size = Math.floor((TEST_PORTS.end - TEST_PORTS.first) / blocks)
  return {first: TEST_PORTS.first + index * size, size}
}

function bindable(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const server = net.createServer()
    server.once('error', () => resolve(false))
    server.listen(port, '0.0.0.0', () => server.close(() => resolve(true)))
  })
}

/**
 * A TCP port nobody listens on right now, for a test to give a program that binds it later, maybe
 * minutes later (init writes it into the configs; start binds it). Not one the kernel picks (a
 * listen on port 0): the kernel hands out the ephemeral range, the same ports it gives as the local
 * port of every outgoing connection and to another lane's listen(0), so a port picked that way was
 * taken by someone else before the program bound it (CI at 2495938, 82c52ca and 277803d: init
 * refused "port N (--proxy-api-port) is already in use"). These come from this process's block
 * below that range, in turn: not the same one twice in a run of a few thousand.
 */
export async function freePort(): Promise<number> {
  const {first, size} = portBlock()
  portCursor ??= Math.floor(Math.random() * size)
  for (let tried = 0; tried < size; tried++) {
    const port = first + (portCursor++ % size)
    if (await bindable(port)) return port
  }
  throw new Error(`no free port left in this test process's block ${first}-${first + size - 1}`)
}

/**
 * Hold these ports (a listener on 127.0.0.1 each) from now until `release()`: between a hubctl
 * init that wrote them into the configs and the start that binds them, no other program (another
 * suite's freePort()) is given them. Release right before the command that binds them.
 */
export async function holdPorts(ports: Iterable<number>): Promise<{release(): Promise<void>}> {
  const servers: net.Server[] = []
  const release = async () => {
    await Promise.all(servers.splice(0).map((server) => new Promise((resolve) => server.close(resolve))))
  }
  try {
    for (const port of ports) {
      const server = net.createServer()
      await new Promise<void>((resolve, reject) => {
        server.once('error', reject)
        server.listen(port, '127.0.0.1', () => resolve())
      })
      servers.push(server)
    }
  } catch (error) {
    await release()
    throw new Error(`could not hold the test's ports (${(error as Error).message}): another program took one`)
  }
  return {release}
}

/** Seven distinct free ports as init flags. */
export async function portFlags(): Promise<{
  flags: string[]
  ports: {
    http: number
    https: number
    proxy: number
    proxyApi: number
    hub: number
    proxyStandby: number
    proxyStandbyApi: number
  }
}> {
  const ports = {http: 0, https: 0, proxy: 0, proxyApi: 0, hub: 0, proxyStandby: 0, proxyStandbyApi: 0}
  const taken = new Set<number>()
  for (const key of Object.keys(ports) as Array<keyof typeof ports>) {
    let port = await freePort()
    while (taken.has(port)) port = await freePort()
    taken.add(port)
    ports[key] = port
  }
  return {
    ports,
    flags: [
      '--http-port',
      String(ports.http),
      '--https-port',
      String(ports.https),
      '--proxy-port',
      String(ports.proxy),
      '--proxy-api-port',
      String(ports.proxyApi),
      '--hub-port',
      String(ports.hub),
      '--proxy-standby-port',
      String(ports.proxyStandby),
      '--proxy-standby-api-port',
      String(ports.proxyStandbyApi),
    ],
  }
}

export type TestHubPorts = Awaited<ReturnType<typeof portFlags>>['ports']

export interface TestHubOptions {
  /** The hub's admin (and its only user unless allowUsers says more); local mode may leave it to init. */
  admin?: string
  /** The jupyterhub executable (VENV_JUPYTERHUB or DEBIAN_JUPYTERHUB). */
  jupyterhub: string
  allowUsers?: string[]
  /** More init flags (an authenticator, a spawner, --cull-idle, …). */
  extra?: string[]
  /** Run init's last step, a user's server started and stopped (off: --no-server-check). */
  serverCheck?: boolean
  /** Local mode (init --local: no domain, TLS or DH flags; init picks them). */
  local?: boolean
  /** The TLS flags (default `--tls self-signed`), e.g. `--tls letsencrypt` and the ACME server's. */
  tls?: string[]
  /** Write the systemd unit (off: --no-systemd). */
  systemd?: boolean
  /** Write the renewal schedule (off: --no-schedule). */
  schedule?: boolean
}

/**
 * The flags of a throwaway test hub's init, without the prefix and ports: self-signed TLS for
 * localhost (or local mode), ffdhe2048 (no DH parameters to generate), no systemd unit or
 * schedule, no user's server started by init (each costs 4-9 s; init's and doctor's own tests run
 * that check). Each option turns one of these back to what a server's init does.
 */
export function testHubFlags(options: TestHubOptions): string[] {
  return [
    '--yes',
    ...(options.local ? ['--local'] : ['--domain', 'localhost']),
    ...(options.admin === undefined ? [] : ['--admin', options.admin]),
    ...(options.allowUsers ?? []).flatMap((user) => ['--allow-user', user]),
    ...(options.local ? [] : [...(options.tls ?? ['--tls', 'self-signed']), '--dhparam', 'ffdhe2048']),
    '--jupyterhub',
    options.jupyterhub,
    ...(options.systemd ? [] : ['--no-systemd']),
    ...(options.schedule ? [] : ['--no-schedule']),
    ...(options.serverCheck ? [] : ['--no-server-check']),
    ...(options.extra ?? []),
  ]
}

/** The init command line of a throwaway test hub (testHubFlags) under `prefix`, on the ports in `portFlagList`. */
export function testHubInitArgs(prefix: string, options: TestHubOptions, portFlagList: string[]): string[] {
  return ['init', '--prefix', prefix, ...testHubFlags(options), ...portFlagList]
}

/** `hubctl init` of that test hub on free ports; fails the test (with init's stderr) when init fails. */
export async function initTestHub(prefix: string, options: TestHubOptions): Promise<TestHubPorts> {
  const portInfo = await portFlags()
  const init = await hubctl(testHubInitArgs(prefix, options, portInfo.flags))
  if (init.exitCode !== 0) throw new Error(`hubctl init exited ${init.exitCode}: ${init.stderr}`)
  return portInfo.ports
}

/**
 * hubctl.json's serverWatchSeconds (an operator's hand edit, kept by init), before `start`: the
 * supervisor checks the user servers every `seconds` instead of 30, so a test that waits for one
 * of its checks ends at that check, without up to 30 s of polling `hubctl status` first.
 */
export async function checkServersEvery(settingsFile: string, seconds: number): Promise<void> {
  const settings = JSON.parse(await fs.readFile(settingsFile, 'utf8')) as Record<string, unknown>
  await fs.writeFile(settingsFile, `${JSON.stringify({...settings, serverWatchSeconds: seconds}, null, 2)}\n`)
}

export async function modeOf(file: string): Promise<number> {
  return (await fs.stat(file)).mode & 0o777
}

/**
 * Every entry under `dir`, depth first; links are never followed and an unreadable directory is
 * left out. `visit` returning false leaves the entry's content (a directory's) out.
 */
export async function walkTree(
  dir: string,
  visit: (full: string, relative: string, entry: Dirent) => Promise<boolean | void>,
): Promise<void> {
  const walk = async (current: string): Promise<void> => {
    let entries: Dirent[]
    try {
      entries = await fs.readdir(current, {withFileTypes: true})
    } catch {
      return
    }
    for (const entry of entries) {
      const full = path.join(current, entry.name)
      if ((await visit(full, path.relative(dir, full), entry)) === false) continue
      if (entry.isDirectory()) await walk(full)
    }
  }
  await walk(dir)
}

/** Every file's content under a directory (for "nothing changed" assertions). */
export async function snapshot(dir: string): Promise<Record<string, string>> {
  const out: Record<string, string> = {}
  await walkTree(dir, async (full, relative, entry) => {
    if (entry.isSymbolicLink()) out[relative] = `-> ${await fs.readlink(full)}`
    else if (entry.isFile()) out[relative] = await fs.readFile(full, 'utf8')
  })
  return out
}

/** One entry of a tree as `snapshotTree` keeps it: what it holds, its mode and its owner. */
export interface TreeEntry {
  /** A file's content (base64 when it is not UTF-8), a link's target after `-> `, '' for a directory. */
  content: string
  mode: number
  uid: number
  gid: number
}

/**
 * Every entry under `dir` (files, directories, links; never followed) with its content, mode and
 * owner: for "nothing changed at all" assertions, where `snapshot` compares contents only.
 */
export async function snapshotTree(dir: string): Promise<Record<string, TreeEntry>> {
  const out: Record<string, TreeEntry> = {}
  await walkTree(dir, async (full, relative, entry) => {
    const stat = await fs.lstat(full)
    let content = ''
    if (entry.isSymbolicLink()) content = `-> ${await fs.readlink(full)}`
    else if (entry.isFile()) {
      const bytes = await fs.readFile(full)
      const text = bytes.toString('utf8')
      content = Buffer.from(text, 'utf8').equals(bytes) ? text : `base64:${bytes.toString('base64')}`
    }
    out[relative] = {content, mode: stat.mode & 0o7777, uid: stat.uid, gid: stat.gid}
  })
  return out
}

/**
 * What differs between two `snapshotTree`s, one line per entry: added, removed, or which of
 * content (from the first differing character), mode and owner changed. [] when nothing did.
 */
export function treeChanges(before: Record<string, TreeEntry>, after: Record<string, TreeEntry>): string[] {
  const changes: string[] = []
  for (const name of [...new Set([...Object.keys(before), ...Object.keys(after)])].sort()) {
    const [a, b] = [before[name], after[name]]
    if (!a) changes.push(`${name}: added`)
    else if (!b) changes.push(`${name}: removed`)
    else {
      if (a.content !== b.content) {
        let i = 0
        while (a.content[i] === b.content[i]) i++
        const around = (text: string) => JSON.stringify(text.slice(Math.max(0, i - 40), i + 40))
        changes.push(`${name}: content ${around(a.content)} became ${around(b.content)}`)
      }
      if (a.mode !== b.mode) changes.push(`${name}: mode ${a.mode.toString(8)} became ${b.mode.toString(8)}`)
      if (a.uid !== b.uid || a.gid !== b.gid) changes.push(`${name}: owner ${a.uid}:${a.gid} became ${b.uid}:${b.gid}`)
    }
  }
  return changes
}

/**
 * A hubctl command's --json document as the tests read it: each test asserts the shape it needs
 * (chai), so the fields are reached without a declared type. The one `any` of the test suite.
 */
// eslint-disable-next-line @typescript-eslint/no-explicit-any
export type CommandJson = Record<string, any>

/** The command's --json output, or an error that shows what it printed instead. */
export function jsonOf(result: CliResult): CommandJson {
  try {
    return JSON.parse(result.stdout)
  } catch {
    throw new Error(`not JSON (exit ${result.exitCode}): ${result.stdout}\n${result.stderr}`)
  }
}

/** hubctl exited 0 (its output in the message when not). */
export function ok(result: CliResult): void {
  expect(result.exitCode, `${result.stdout}\n${result.stderr}`).to.equal(0)
}

/** A failure: this exit code, and hubctl's last line on stderr is `hubctl: <problem>. Fix: <fix>` matching `pattern`. */
export function failed(result: CliResult, exitCode: number, pattern: RegExp): string {
  expect(result.exitCode, `${result.stdout}\n${result.stderr}`).to.equal(exitCode)
  const line = result.stderr.trim().split('\n').pop() ?? ''
  expect(line).to.match(/^hubctl: .+\. Fix: .+/)
  expect(line).to.match(pattern)
  return line
}

/**
 * The test's own grant, in the hub's jupyterhub_config.d (90-NAME.py, read at the next start): hubctl's
 * service may issue these users tokens for their servers. JupyterHub 3.0 refuses the filtered
 * `tokens!user=` for a service: `unfilteredTokens` grants `tokens` there.
 */
export async function grantHubctlTokens(
  hubConfigD: string,
  name: string,
  users: string[],
  options: {unfilteredTokens?: boolean} = {},
): Promise<void> {
  const scopes = users.flatMap((user) => [
    options.unfilteredTokens ? 'tokens' : `tokens!user=${user}`,
    `access:servers!user=${user}`,
  ])
  const role = {name, scopes: [...new Set(scopes)], services: ['hubctl']}
  await fs.writeFile(
    path.join(hubConfigD, `90-${name}.py`),
    `# hubctl e2e test: lets the hubctl service issue tokens for ${users.join(', ')}.\nc.JupyterHub.load_roles.append(${JSON.stringify(role)})\n`,
    {mode: 0o644},
  )
}
