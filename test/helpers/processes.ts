import {ChildProcess, spawn} from 'node:child_process'
import fs from 'node:fs'

/** Poll until fn() is truthy, at most `tries` times `everyMs` apart (bounded; no timed assertion). */
export async function waitFor<T>(fn: () => Promise<T | undefined | false>, what: string, tries = 300, everyMs = 200): Promise<T> {
  let last: unknown
  for (let i = 0; i < tries; i++) {
    try {
      const value = await fn()
      if (value) return value
    } catch (error) {
      last = error
    }
    await new Promise((resolve) => setTimeout(resolve, everyMs))
  }
  throw new Error(`gave up waiting for ${what}${last ? `: ${String(last)}` : ''}`)
}

/**
 * Poll `check` until it returns a value other than undefined (errors count as "not yet"); a
 * bounded number of tries, no timing asserted. The error names what was awaited and the last error.
 */
export async function waitUntil<T>(what: string, check: () => Promise<T | undefined>, tries = 600, intervalMs = 100): Promise<T> {
  let last: unknown
  for (let i = 0; i < tries; i++) {
    try {
      const value = await check()
      if (value !== undefined) return value
    } catch (error) {
      last = error
    }
    await new Promise((resolve) => setTimeout(resolve, intervalMs))
  }
  throw new Error(`gave up waiting for ${what}${last ? ` (last error: ${(last as Error).message})` : ''}`)
}

/** Spawn a long-running program with its output to a log file; the test kills it in after(). */
export function spawnLogged(command: string, args: string[], options: {env?: NodeJS.ProcessEnv; cwd?: string; log: string}): ChildProcess {
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
