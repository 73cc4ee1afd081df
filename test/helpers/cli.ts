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

/** A TCP port nobody listens on right now (the kernel picks it). */
export async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = net.createServer()
    server.once('error', reject)
    server.listen(0, '127.0.0.1', () => {
      const {port} = server.address() as net.AddressInfo
      server.close(() => resolve(port))
    })
  })
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
