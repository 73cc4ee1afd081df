import fs from 'node:fs/promises'
import net from 'node:net'

import {readIfExists} from '../files/atomic.js'
import type {Layout} from '../config/layout.js'
import {parentPid, parentsByPid, processAlive} from '../processes.js'

/*
 * Who listens on a loopback port (Linux). hubctl sends a token, or takes a health answer, only
 * from a listener it has verified is the process it started: any local user may bind a port the
 * moment it is free (a restart of the hub, a stopped stack), and would then be sent hubctl's API
 * token, the proxy's token, or be taken for a healthy hub.
 *
 * The kernel lists listening sockets in /proc/net/tcp and tcp6 with their inode and owner's uid;
 * /proc/PID/fd of the process (and its descendants) holds `socket:[INODE]` for each socket it has.
 * A port is the process's when every socket listening on it where a connection to 127.0.0.1 could
 * land (127.0.0.1, 0.0.0.0, ::, ::ffff:127.0.0.1) is one of the process tree's.
 */

export interface PortOwner {
  /** Every socket reachable at 127.0.0.1:port belongs to the process tree (and at least one listens). */
  owned: boolean
  /** Why not, in words (never a secret). */
  problem?: string
}

const LISTEN = '0A'
/** Local addresses whose listener a connection to 127.0.0.1 can reach, as /proc/net/tcp{,6} spell them. */
const REACHABLE = new Set([
  '0100007F',
  '00000000',
  '00000000000000000000000000000000',
  '0000000000000000FFFF00000100007F',
])

interface Listener {
  inode: string
  uid: number
}

/** Sockets listening on `port` that a connection to 127.0.0.1:port could reach. */
export async function listenersOn(port: number): Promise<Listener[]> {
  const found: Listener[] = []
  const portHex = port.toString(16).toUpperCase().padStart(4, '0')
  for (const table of ['/proc/net/tcp', '/proc/net/tcp6']) {
    const text = await fs.readFile(table, 'utf8').catch(() => '')
    for (const line of text.split('\n').slice(1)) {
      const fields = line.trim().split(/\s+/)
      if (fields.length < 10 || fields[3] !== LISTEN) continue
      const [address, localPort] = fields[1].split(':')
      if (localPort !== portHex || !REACHABLE.has(address)) continue
      found.push({inode: fields[9], uid: Number(fields[7])})
    }
  }
  return found
}

/** The socket inodes `pid` holds open. */
async function socketInodes(pid: number): Promise<Set<string>> {
  const inodes = new Set<string>()
  const fdDir = `/proc/${pid}/fd`
  const fds = await fs.readdir(fdDir).catch(() => [] as string[])
  await Promise.all(
    fds.map(async (fd) => {
      const target = await fs.readlink(`${fdDir}/${fd}`).catch(() => '')
      const inode = /^socket:\[(\d+)\]$/.exec(target)?.[1]
      if (inode) inodes.add(inode)
    }),
  )
  return inodes
}

/** Every process whose parent chain leads to `pid`. */
async function descendants(pid: number): Promise<number[]> {
  const parents = new Map<number, number[]>()
  for (const [child, ppid] of await parentsByPid()) parents.set(ppid, [...(parents.get(ppid) ?? []), child])
  const out: number[] = []
  const queue = [...(parents.get(pid) ?? [])]
  for (let next = queue.shift(); next !== undefined; next = queue.shift()) {
    out.push(next)
    queue.push(...(parents.get(next) ?? []))
  }
  return out
}

/** Who holds a socket inode (root sees every process; others their own): pid, for an error message. */
async function holderOf(inode: string): Promise<number | undefined> {
  const entries = (await fs.readdir('/proc').catch(() => [] as string[])).filter((name) => /^\d+$/.test(name))
  for (const name of entries) {
    if ((await socketInodes(Number(name))).has(inode)) return Number(name)
  }
  return undefined
}

/** Whether something accepts TCP connections on 127.0.0.1:port. */
export function portAnswers(port: number, timeoutMs = 1000): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = net.connect({host: '127.0.0.1', port})
    const done = (answer: boolean) => {
      socket.destroy()
      resolve(answer)
    }
    socket.setTimeout(timeoutMs, () => done(false))
    socket.once('connect', () => done(true))
    socket.once('error', () => done(false))
  })
}

/** Whether `pid` (or a process it started) is what listens on 127.0.0.1:port; `whose` names that process in the problem. */
export async function portOwnedBy(
  port: number,
  pid: number | null | undefined,
  whose = 'the process hubctl started',
): Promise<PortOwner> {
  const listeners = await listenersOn(port)
  if (listeners.length === 0) return {owned: false, problem: `nothing listens on port ${port}`}
  if (!pid)
    return {
      owned: false,
      problem: `port ${port} is held by ${await describe(listeners[0])}, not by a process hubctl started`,
    }
  let ours = await socketInodes(pid)
  if (!listeners.every((listener) => ours.has(listener.inode))) {
    const tree = await descendants(pid)
    ours = new Set([...ours, ...(await Promise.all(tree.map(socketInodes))).flatMap((set) => [...set])])
  }
  const foreign = listeners.find((listener) => !ours.has(listener.inode))
  if (foreign)
    return {
      owned: false,
      problem: `port ${port} is held by ${await describe(foreign)}, not by ${whose} (pid ${pid})`,
    }
  return {owned: true}
}

async function describe(listener: Listener): Promise<string> {
  const pid = await holderOf(listener.inode)
  return `another program (${pid ? `pid ${pid}, ` : ''}uid ${listener.uid})`
}

/**
 * For commands other than the supervisor: the child `name` recorded in the supervisor's
 * state.json runs (same pid and start time) and is what listens on `port`. Undefined when so;
 * otherwise the problem, in words.
 */
export async function verifyRecordedListener(
  layout: Layout,
  name: 'hub' | 'proxy',
  port: number,
): Promise<string | undefined> {
  const child = await recordedChild(layout, name)
  if (!child) return `hubctl runs no ${name} under ${layout.prefix}`
  const owner = await portOwnedBy(port, child.pid)
  return owner.owned ? undefined : owner.problem
}

/** The running child `name` of the supervisor's state.json (state.json is read here, not through supervisor.ts, which imports this module's users). */
export async function recordedChild(
  layout: Layout,
  name: 'hub' | 'proxy',
): Promise<{pid: number; startTime: string | null} | undefined> {
  let child: {pid?: unknown; startTime?: unknown} | undefined
  try {
    const state = JSON.parse((await readIfExists(layout.stateFile)) ?? 'null') as Record<
      string,
      {pid?: unknown; startTime?: unknown}
    > | null
    child = state?.[name]
  } catch {
    return undefined
  }
  const pid = Number(child?.pid)
  if (!Number.isInteger(pid) || pid <= 0) return undefined
  const startTime = typeof child?.startTime === 'string' ? child.startTime : null
  return (await processAlive(pid, startTime)) ? {pid, startTime} : undefined
}

/** Who holds a listening socket on a port: for naming it in a message (not a proof of ownership). */
export interface PortHolder {
  uid: number
  /** Undefined when no process shows the socket (another namespace, or not root). */
  pid?: number
  ppid?: number
  /** The program's name (/proc/PID/comm), e.g. nginx, apache2, node. */
  name?: string
}

/** The process behind the first socket listening on `port` that 127.0.0.1 reaches; undefined when none listens. */
export async function portHolder(port: number): Promise<PortHolder | undefined> {
  const [listener] = await listenersOn(port)
  if (!listener) return undefined
  const pid = await holderOf(listener.inode)
  if (pid === undefined) return {uid: listener.uid}
  const ppid = await parentPid(pid)
  const name = (await fs.readFile(`/proc/${pid}/comm`, 'utf8').catch(() => '')).trim() || undefined
  return {uid: listener.uid, pid, ...(ppid !== undefined ? {ppid} : {}), ...(name ? {name} : {})}
}

/** What the hub's config records for a user server it found up: the process the spawner started (layout.serverProcesses). */
export interface ServerProcess {
  pid: number
  startTime: string | null
  port: number
}

/** The hub's records of its servers' processes, by `user/server name`; {} when there are none. */
export async function readServerProcesses(layout: Layout): Promise<Record<string, ServerProcess>> {
  try {
    const records = JSON.parse((await readIfExists(layout.serverProcesses)) ?? '{}') as unknown
    return records && typeof records === 'object' ? (records as Record<string, ServerProcess>) : {}
  } catch {
    return {}
  }
}

/**
 * For the supervisor's route check of a user server: the listener at its route's target is the
 * process the hub started for it (recorded by the hub's config, same pid and start time), as the
 * hub itself required before it took the server for up. Another local user can bind the port the
 * moment the server's process is gone, and answer as a Jupyter server would. Undefined when it is
 * the server's own; otherwise the problem, in words.
 */
export async function verifyServerListener(
  layout: Layout,
  server: {user: string; name: string},
  target: string,
): Promise<string | undefined> {
  let url: URL
  try {
    url = new URL(target)
  } catch {
    return `its route's target ${target} is not a URL`
  }
  if (!['127.0.0.1', 'localhost', '[::1]'].includes(url.hostname))
    return `its route's target ${target} is not on this machine: hubctl cannot tell who listens there`
  const port = Number(url.port || (url.protocol === 'https:' ? 443 : 80))
  const record = (await readServerProcesses(layout))[`${server.user}/${server.name}`]
  const pid = Number(record?.pid)
  if (!record || !Number.isInteger(pid) || pid <= 0)
    return `the hub recorded no process for this server in ${layout.serverProcesses}: who listens on port ${port} cannot be told (stop and start the server)`
  if (!(await processAlive(pid, typeof record.startTime === 'string' ? record.startTime : null))) {
    const holder = await portOwnedBy(port, null)
    return `the server's process (pid ${pid}) is gone${holder.problem ? `; ${holder.problem}` : ''}`
  }
  const owner = await portOwnedBy(port, pid, "the server's process")
  return owner.owned ? undefined : owner.problem
}
