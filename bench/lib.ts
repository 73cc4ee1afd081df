/**
 * Small helpers shared by the certificate and supervision bench rows.
 */
import {execa} from 'execa'
import fs from 'node:fs/promises'
import os from 'node:os'
import path from 'node:path'

import {BIN, VENV_JUPYTERHUB} from '../test/helpers/cli.js'

/** One line of the table: hubctl's times and the alternative's (ms). */
export interface BenchRow {
  name: string
  hubctl: number[]
  other?: {name: string; times: number[]}
}

export async function timed(fn: () => Promise<unknown>): Promise<number> {
  const start = process.hrtime.bigint()
  await fn()
  return Number(process.hrtime.bigint() - start) / 1e6
}

export const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms))

/** Run a program: its standard output and error, or an error with both when it fails. */
export async function run(
  command: string,
  args: string[],
  options: {env?: Record<string, string>; cwd?: string} = {},
): Promise<{stdout: string; stderr: string}> {
  const result = await execa(command, args, {reject: false, stdin: 'ignore', env: options.env, cwd: options.cwd})
  if (result.exitCode !== 0)
    throw new Error(
      `${command} ${args.join(' ')} failed (exit ${result.exitCode}): ${result.stderr}\n${result.stdout}`.slice(
        0,
        4000,
      ),
    )
  return {stdout: String(result.stdout), stderr: String(result.stderr)}
}

/** The built hubctl: its standard output. */
export async function hubctl(args: string[], env?: Record<string, string>): Promise<string> {
  return (await run(process.execPath, [BIN, ...args], {env})).stdout
}

export async function tempDir(label: string): Promise<string> {
  return fs.mkdtemp(path.join(os.tmpdir(), `hubctl-bench-${label}-`))
}

/** Poll until fn() answers truthy or `capMs` passes; the elapsed time, or undefined at the cap. */
export async function until(fn: () => Promise<boolean>, capMs: number, everyMs = 50): Promise<number | undefined> {
  const start = process.hrtime.bigint()
  const elapsed = () => Number(process.hrtime.bigint() - start) / 1e6
  while (elapsed() < capMs) {
    if (await fn().catch(() => false)) return elapsed()
    await sleep(everyMs)
  }
  return undefined
}

/** A GET with a short timeout: its status, 0 when nothing answers. */
export async function status(url: string, timeoutMs = 2000): Promise<{status: number; body: string}> {
  try {
    const response = await fetch(url, {redirect: 'manual', signal: AbortSignal.timeout(timeoutMs)})
    return {status: response.status, body: await response.text()}
  } catch {
    return {status: 0, body: ''}
  }
}

export function alive(pid: number): boolean {
  try {
    process.kill(pid, 0)
    return true
  } catch {
    return false
  }
}

/** SIGKILL what is still alive among these pids (cleanup after a row). */
export function killAll(pids: Iterable<number>): void {
  for (const pid of pids) {
    if (pid > 0 && pid !== process.pid && alive(pid)) {
      try {
        process.kill(pid, 'SIGKILL')
      } catch {
        // gone meanwhile
      }
    }
  }
}

/**
 * What hubctl removes from its environment (python/unused.txt) installed apart, for PYTHONPATH: a
 * hub or server given it imports them as it would from a plain `pip install jupyterhub jupyterlab`.
 * The spawner passes PYTHONPATH on to each server (Spawner.env_keep).
 */
export async function stockSitePackages(): Promise<string> {
  const site = '/tmp/hubctl-bench-stock-site'
  if (!(await fs.stat(path.join(site, 'rfc3987_syntax')).catch(() => undefined))) {
    const pip = path.join(path.dirname(VENV_JUPYTERHUB), 'pip')
    const constraints = path.join(import.meta.dirname, '../python/constraints.txt')
    const unused = path.join(import.meta.dirname, '../python/unused.txt')
    await execa(pip, ['install', '-q', '--target', site, '-c', constraints, '-r', unused])
  }
  return site
}
