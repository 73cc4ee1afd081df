import fs from 'node:fs/promises'

import {errnoCode} from './errors.js'

/** The kernel start time of a process (Linux), or undefined when it does not exist or is a zombie. */
export async function procStartTime(pid: number): Promise<string | undefined> {
  try {
    const stat = await fs.readFile(`/proc/${pid}/stat`, 'utf8')
    // The command name (field 2) may hold spaces and parentheses: split after the last ')'.
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ')
    if (fields[0] === 'Z' || fields[0] === 'X') return undefined
    return fields[19]
  } catch {
    return undefined
  }
}

/** Whether `pid` runs (and, when `startTime` is known, is still the same process). */
export async function processAlive(pid: number | null | undefined, startTime?: string | null): Promise<boolean> {
  if (!pid || pid <= 0) return false
  try {
    process.kill(pid, 0)
  } catch (error) {
    if (errnoCode(error) !== 'EPERM') return false
  }
  const now = await procStartTime(pid)
  if (now === undefined) {
    // No /proc (not Linux): trust kill(0). On Linux a missing entry means it is gone or a zombie.
    return !(await hasProc())
  }
  return !startTime || startTime === now
}

let procChecked: boolean | undefined
export async function hasProc(): Promise<boolean> {
  if (procChecked === undefined)
    procChecked = await fs.access('/proc/self/stat').then(
      () => true,
      () => false,
    )
  return procChecked
}

/** The pids whose parent is `pid` (from /proc), e.g. an nginx master's workers. */
export async function childPids(pid: number): Promise<number[]> {
  const entries = (await fs.readdir('/proc').catch(() => [] as string[])).filter((name) => /^\d+$/.test(name))
  const children: number[] = []
  await Promise.all(
    entries.map(async (name) => {
      const stat = await fs.readFile(`/proc/${name}/stat`, 'utf8').catch(() => '')
      if (Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[1]) === pid) children.push(Number(name))
    }),
  )
  return children.sort((a, b) => a - b)
}
