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

/** The parent of `pid` (field 4 of /proc/PID/stat), or undefined when it cannot be read. */
export async function parentPid(pid: number): Promise<number | undefined> {
  const stat = await fs.readFile(`/proc/${pid}/stat`, 'utf8').catch(() => '')
  // The command name (field 2) may hold spaces and parentheses: split after the last ')'.
  const ppid = Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[1])
  return stat && Number.isInteger(ppid) ? ppid : undefined
}

/** Every process's parent, from one walk of /proc: pid → ppid. */
export async function parentsByPid(): Promise<Map<number, number>> {
  const pids = (await fs.readdir('/proc').catch(() => [] as string[])).filter((name) => /^\d+$/.test(name)).map(Number)
  const parents = new Map<number, number>()
  await Promise.all(
    pids.map(async (pid) => {
      const ppid = await parentPid(pid)
      if (ppid !== undefined) parents.set(pid, ppid)
    }),
  )
  return parents
}

/** The pids whose parent is `pid` (from /proc), e.g. an nginx master's workers. */
export async function childPids(pid: number): Promise<number[]> {
  return [...(await parentsByPid())]
    .filter(([, ppid]) => ppid === pid)
    .map(([child]) => child)
    .sort((a, b) => a - b)
}

/** A live process (zombies left out) as /proc/PID/status shows it: its real, effective and saved uids, its groups. */
interface LiveStatus {
  pid: number
  uids: number[]
  state: string
  groups: number[]
}

/** Every live process's status, as /proc shows it now; one that ends while /proc is read is left out. */
async function* liveStatuses(procDir: string): AsyncGenerator<LiveStatus> {
  for (const name of await fs.readdir(procDir).catch(() => [] as string[])) {
    if (!/^\d+$/.test(name)) continue
    let status: string
    try {
      status = await fs.readFile(`${procDir}/${name}/status`, 'utf8')
    } catch {
      continue // gone while /proc was read
    }
    const uids = /^Uid:\s+(\d+)\s+(\d+)\s+(\d+)/m.exec(status)
    if (!uids) continue
    const state = /^State:\s+(\S)/m.exec(status)?.[1] ?? '?'
    if (state === 'Z' || state === 'X') continue
    const groups = (/^Groups:[ \t]*([\d \t]*)$/m.exec(status)?.[1] ?? '')
      .trim()
      .split(/\s+/)
      .filter(Boolean)
      .map(Number)
    yield {pid: Number(name), uids: uids.slice(1, 4).map(Number), state, groups}
  }
}

/**
 * Which of these uids have a live process whose supplementary groups include `gid` (the Groups line
 * of /proc/PID/status, by the process's real uid), as /proc shows them now. A process keeps the
 * groups it started with: after its user leaves a group, what the user started before still has it.
 */
export async function uidsHoldingGroup(uids: number[], gid: number, procDir = '/proc'): Promise<Set<number>> {
  const wanted = new Set(uids)
  const found = new Set<number>()
  if (wanted.size === 0) return found
  for await (const process of liveStatuses(procDir))
    if (wanted.has(process.uids[0]) && process.groups.includes(gid)) found.add(process.uids[0])
  return found
}

export interface ProcessOfUid {
  pid: number
  /** The state letter of /proc/PID/stat: R, S, D (blocked in the kernel), T, … */
  state: string
}

/**
 * The live processes (zombies left out) whose real, effective or saved uid is `uid`, as /proc shows
 * them now. A process that forks and exits in a loop can be missing from one walk: use this to see
 * what is left after the uid's processes were signalled all at once, never to find them.
 */
export async function processesOfUid(uid: number, procDir = '/proc'): Promise<ProcessOfUid[]> {
  const found: ProcessOfUid[] = []
  for await (const process of liveStatuses(procDir))
    if (process.uids.includes(uid)) found.push({pid: process.pid, state: process.state})
  return found
}
