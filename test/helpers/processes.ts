import {AssertionError, expect} from 'chai'
import {execa} from 'execa'
import {ChildProcess, spawn} from 'node:child_process'
import fs from 'node:fs'
import path from 'node:path'
import {AssertionError as NodeAssertionError} from 'node:assert'

import {BIN, ROOT} from './cli.js'

/** How often and how many times to poll: bounded, no timing asserted. */
export interface Pace {
  tries?: number
  intervalMs?: number
  /**
   * A bound on the whole wait, from its start: a generous one for what must happen "soon" (a
   * crashed proxy's route back), proving the mechanism and not its speed. Past it, the wait fails
   * saying so, whatever tries are left.
   */
  withinMs?: number
}

/**
 * Poll `check` until it returns a value other than undefined or false; at most `tries` times,
 * `intervalMs` apart (60 s by default). Any other error thrown counts as "not yet" and is named in
 * the final error; a failed assertion (chai's or node:assert's AssertionError) is not a "not yet":
 * it fails the wait at once, as it would outside a poll.
 */
export async function waitUntil<T>(
  what: string,
  check: () => Promise<T | undefined | false>,
  pace: Pace = {},
): Promise<T> {
  const {tries = 600, intervalMs = 100, withinMs} = pace
  const deadline = withinMs === undefined ? Infinity : Date.now() + withinMs
  let last: unknown
  for (let i = 0; i < tries; i++) {
    if (Date.now() > deadline) {
      throw new Error(
        `${what} did not happen within ${withinMs! / 1000}s${last ? ` (last error: ${(last as Error).message})` : ''}`,
      )
    }
    try {
      const value = await check()
      if (value !== undefined && value !== false) return value
    } catch (error) {
      if (error instanceof AssertionError || error instanceof NodeAssertionError) throw error
      last = error
    }
    await new Promise((resolve) => setTimeout(resolve, intervalMs))
  }
  throw new Error(`gave up waiting for ${what}${last ? ` (last error: ${(last as Error).message})` : ''}`)
}

/** Spawn a long-running program with its output to a log file; the test kills it in after(). */
export function spawnLogged(
  command: string,
  args: string[],
  options: {env?: NodeJS.ProcessEnv; cwd?: string; log: string},
): ChildProcess {
  const out = fs.openSync(options.log, 'a')
  const child = spawn(command, args, {env: options.env, cwd: options.cwd, stdio: ['ignore', out, out], detached: true})
  fs.closeSync(out)
  return child
}

export async function stopProcess(child: ChildProcess | undefined): Promise<void> {
  if (!child || child.exitCode !== null || child.signalCode !== null) return
  const exited = new Promise((resolve) => child.once('exit', resolve))
  try {
    process.kill(-child.pid!, 'SIGTERM')
  } catch {
    return
  }
  const timer = setTimeout(() => {
    try {
      process.kill(-child.pid!, 'SIGKILL')
    } catch {
      // gone
    }
  }, 10_000)
  await exited
  clearTimeout(timer)
}

export async function httpStatus(url: string, init?: RequestInit): Promise<number> {
  const response = await fetch(url, {redirect: 'manual', ...init})
  await response.arrayBuffer()
  return response.status
}

/* Processes as /proc shows them (the tests run as root: every process can be read). */

export interface ProcInfo {
  pid: number
  uid: number
  /** The state letter of /proc/PID/stat: R, S, D, Z (zombie), X (dead), … */
  state: string
  cmdline: string[]
}

/** What /proc says of this process, whatever its state; undefined once it is gone. */
export async function procInfo(pid: number): Promise<ProcInfo | undefined> {
  try {
    const stat = await fs.promises.readFile(`/proc/${pid}/stat`, 'utf8')
    const status = await fs.promises.readFile(`/proc/${pid}/status`, 'utf8')
    const cmdline = (await fs.promises.readFile(`/proc/${pid}/cmdline`, 'utf8')).split('\0').filter(Boolean)
    const uid = Number(/^Uid:\s+(\d+)/m.exec(status)?.[1])
    return {pid, uid, state: stat.slice(stat.lastIndexOf(')') + 2).split(' ')[0], cmdline}
  } catch {
    return undefined
  }
}

/** A process that runs: there, and neither a zombie nor dead. */
export function isLive(info: ProcInfo | undefined): info is ProcInfo {
  return info !== undefined && info.state !== 'Z' && info.state !== 'X'
}

/** A live process (not a zombie) with this pid. */
export async function alive(pid: number): Promise<boolean> {
  return isLive(await procInfo(pid))
}

/** Every live process (zombies and those that end while /proc is read are left out). */
export async function liveProcesses(): Promise<ProcInfo[]> {
  const pids = (await fs.promises.readdir('/proc')).filter((name) => /^\d+$/.test(name)).map(Number)
  return (await Promise.all(pids.map(procInfo))).filter(isLive)
}

/** A process's environment, one NAME=value a line; undefined once it is gone. */
export async function environOf(pid: number): Promise<string[] | undefined> {
  return fs.promises.readFile(`/proc/${pid}/environ`, 'utf8').then(
    (text) => text.split('\0'),
    () => undefined,
  )
}

/**
 * Which live processes to find; every criterion given must hold. `uid`: run by this uid.
 * `program`: one of its arguments ends with this name (a script's path, as the interpreter runs
 * it). `environ`: its environment holds every one of these NAME=value entries.
 */
export interface PidQuery {
  uid?: number
  program?: string
  environ?: string[]
}

export async function pidsWhere(query: PidQuery): Promise<number[]> {
  const pids: number[] = []
  for (const info of await liveProcesses()) {
    if (query.uid !== undefined && info.uid !== query.uid) continue
    if (query.program !== undefined && !info.cmdline.some((arg) => arg.endsWith(query.program!))) continue
    if (query.environ) {
      const environ = await environOf(info.pid)
      if (!environ || !query.environ.every((entry) => environ.includes(entry))) continue
    }
    pids.push(info.pid)
  }
  return pids
}

/** Every live process of this uid. */
export function userPids(uid: number): Promise<number[]> {
  return pidsWhere({uid})
}

/**
 * The user servers that run: a system user's (LocalProcessSpawner), by its uid and the program
 * jupyterhub-singleuser; or, when every server runs as the same uid (SimpleLocalProcessSpawner), a
 * hub user's, by the environment the hub gave it (its user and this hub's API URL).
 */
export function serverPids(of: {uid: number} | {user: string; hubPort: number}): Promise<number[]> {
  if ('uid' in of) return pidsWhere({uid: of.uid, program: 'jupyterhub-singleuser'})
  return pidsWhere({
    environ: [`JUPYTERHUB_USER=${of.user}`, `JUPYTERHUB_API_URL=http://127.0.0.1:${of.hubPort}/hub/api`],
  })
}

/** The pids of a process's children (every thread's, from /proc/PID/task/TID/children); [] once it is gone. */
export async function childPids(pid: number): Promise<number[]> {
  const tasks = await fs.promises.readdir(`/proc/${pid}/task`).catch(() => [] as string[])
  const children: number[] = []
  for (const task of tasks) {
    const text = await fs.promises.readFile(`/proc/${pid}/task/${task}/children`, 'utf8').catch(() => '')
    children.push(...text.split(' ').filter(Boolean).map(Number))
  }
  return children.sort((a, b) => a - b)
}

/** SIGKILL each pid; one already gone is no error. */
export function killPids(pids: Iterable<number>): void {
  for (const pid of pids) {
    try {
      process.kill(pid, 'SIGKILL')
    } catch {
      // already gone
    }
  }
}

/* A hubctl process killed inside one of its writes (test/helpers/pause-writes.js). */

/** Preloaded into the killed init: numbers its atomic writes and holds the one asked for (atomic.ts's fault hook). */
const PAUSE_WRITES = path.join(ROOT, 'test/helpers/pause-writes.js')

/** Every atomic write a hubctl command makes, in order (the temp file of each), run to the end. */
export async function writesOf(args: string[], log: string): Promise<string[]> {
  await fs.promises.rm(log, {force: true})
  const result = await execa(process.execPath, ['--import', PAUSE_WRITES, BIN, ...args], {
    reject: false,
    stdin: 'ignore',
    env: {HUBCTL_TEST_WRITES_LOG: log},
  })
  expect(result.exitCode, result.stderr).to.equal(0)
  return (await fs.promises.readFile(log, 'utf8'))
    .trim()
    .split('\n')
    .map((line) => line.split('\t')[1])
}

/**
 * Run a hubctl command (`args`, e.g. init) until its `n`-th atomic write is written to its temp file but not yet renamed, hold it
 * there, then SIGKILL its whole process group (init and whatever it runs: JupyterHub's config
 * check, nginx -t). Asserts the kill is what ended it, and that nothing of the group is left; returns the held write's temp file.
 */
export async function killInsideWrite(
  args: string[],
  n: number,
  log: string,
  env: Record<string, string> = {},
): Promise<string> {
  await fs.promises.rm(log, {force: true})
  const child = spawn(process.execPath, ['--import', PAUSE_WRITES, BIN, ...args], {
    stdio: 'ignore',
    detached: true,
    env: {...process.env, ...env, HUBCTL_TEST_WRITES_LOG: log, HUBCTL_TEST_PAUSE_AT: String(n)},
  })
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()))
  const held = await waitUntil(`hubctl holding write ${n}`, async () => {
    const text = await fs.promises.readFile(log, 'utf8').catch(() => '')
    if (text.includes(`paused\t${n}\n`)) return text.split('\n')[n - 1].split('\t')[1]
    expect(child.exitCode, `hubctl ${args[0]} ended (exit ${child.exitCode}) before its write ${n}`).to.equal(null)
    return undefined
  })
  process.kill(-child.pid!, 'SIGKILL')
  await exited
  expect(child.signalCode, `write ${n}: how hubctl ${args[0]} ended`).to.equal('SIGKILL')
  await waitUntil(`no process left of the killed group (write ${n})`, async () => {
    try {
      process.kill(-child.pid!, 0)
      return false
    } catch (error) {
      expect((error as NodeJS.ErrnoException).code).to.equal('ESRCH')
      return true
    }
  })
  return held
}

/**
 * Run a hubctl command (`args`) to its end, holding it inside each of its atomic writes in turn
 * (with `env` HUBCTL_TEST_PAUSE_STEPS=1, at each fault point between steps too: a journal's
 * renames, each program it runs, held while it runs)
 * (the temp file written and synced, not yet renamed; the whole process frozen), where
 * `atEach(n, temp)` looks at the files: what a SIGKILL there would leave on disk (killInsideWrite
 * kills at one write; this sees every write in one run). Asserts the command then exits 0;
 * returns the temp file of each write, in order.
 */
export async function holdEachWrite(
  args: string[],
  log: string,
  atEach: (n: number, temp: string) => Promise<void>,
  env: Record<string, string> = {},
): Promise<string[]> {
  const go = `${log}.go`
  await fs.promises.rm(log, {force: true})
  await fs.promises.rm(go, {force: true})
  const child = spawn(process.execPath, ['--import', PAUSE_WRITES, BIN, ...args], {
    stdio: ['ignore', 'ignore', 'pipe'],
    detached: true,
    env: {
      ...process.env,
      ...env,
      HUBCTL_TEST_WRITES_LOG: log,
      HUBCTL_TEST_PAUSE_AT: 'each',
      HUBCTL_TEST_WRITES_GO: go,
    },
  })
  let stderr = ''
  child.stderr!.on('data', (chunk: Buffer) => (stderr += chunk.toString('utf8')))
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()))
  const temps: string[] = []
  try {
    for (let n = 1; ; n++) {
      const held = await waitUntil(
        `hubctl ${args[0]} holding write ${n}, or its end`,
        async () => {
          const text = await fs.promises.readFile(log, 'utf8').catch(() => '')
          if (text.includes(`paused\t${n}\n`)) return /^\d+\t(.*)$/m.exec(text.split(`paused\t${n - 1}\n`).pop()!)![1]
          return child.exitCode !== null || child.signalCode !== null ? null : undefined
        },
        {tries: 3000},
      )
      if (held === null) break
      temps.push(held)
      await atEach(n, held)
      await fs.promises.appendFile(go, `go\t${n}\n`)
    }
  } catch (error) {
    // A failed look leaves no held process behind (held for good, it kept mocha from exiting: CI).
    if (child.exitCode === null && child.signalCode === null) {
      try {
        process.kill(-child.pid!, 'SIGKILL')
      } catch {
        // already gone
      }
      await exited
    }
    throw error
  }
  await exited
  expect(child.exitCode, `hubctl ${args[0]} held at each write: ${stderr}`).to.equal(0)
  return temps
}
