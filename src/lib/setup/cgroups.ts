import fs from 'node:fs/promises'

/**
 * Whether the kernel enforces a memory limit on a process: read from the cgroup it is in, not from
 * the properties of its unit (systemd accepts MemoryMax= whatever the kernel can do with it).
 * cgroup v1: the memory hierarchy's memory.limit_in_bytes; cgroup v2: memory.max, which exists only
 * where the memory controller is enabled for the group (cgroup.subtree_control of its parent).
 */
export interface MemoryEnforcement {
  enforced: boolean
  /** The limit the kernel applies, in bytes (when enforced). */
  limitBytes?: number
  /** The cgroup read, e.g. /system.slice/jupyter-alice-singleuser.service (v2). */
  cgroup?: string
  version?: 1 | 2
  /** Why the kernel does not enforce one, in words. */
  reason?: string
}

/** At or above this a v1 limit_in_bytes means none (the kernel's "unlimited" is 2^63 rounded down to a page). */
const V1_UNLIMITED = 2 ** 62

async function read(file: string): Promise<string | undefined> {
  try {
    return (await fs.readFile(file, 'utf8')).trim()
  } catch {
    return undefined
  }
}

/** `root`: where cgroups are mounted (/sys/fs/cgroup); `procRoot`: /proc (tests pass their own trees). */
export async function memoryEnforcement(
  pid: number,
  root = '/sys/fs/cgroup',
  procRoot = '/proc',
): Promise<MemoryEnforcement> {
  const text = await read(`${procRoot}/${pid}/cgroup`)
  if (text === undefined) return {enforced: false, reason: `process ${pid} is gone`}
  const lines = text.split('\n').map((line) => line.split(':'))
  const v1 = lines.find(([, controllers]) => controllers?.split(',').includes('memory'))
  if (v1) {
    const cgroup = v1.slice(2).join(':')
    const limit = await read(`${root}/memory${cgroup}/memory.limit_in_bytes`)
    if (limit === undefined)
      return {enforced: false, cgroup, version: 1, reason: `cgroup v1 has no memory.limit_in_bytes for ${cgroup}`}
    const bytes = Number(limit)
    if (!(bytes < V1_UNLIMITED))
      return {enforced: false, cgroup, version: 1, reason: `its cgroup v1 memory group ${cgroup} has no limit`}
    return {enforced: true, limitBytes: bytes, cgroup, version: 1}
  }
  const v2 = lines.find(([id, controllers]) => id === '0' && controllers === '')
  if (!v2) return {enforced: false, reason: 'the process is in no memory cgroup (neither v1 nor v2)'}
  const cgroup = v2.slice(2).join(':')
  const v2root = (await read(`${root}/cgroup.controllers`)) !== undefined ? root : `${root}/unified`
  const controllers = (await read(`${v2root}/cgroup.controllers`)) ?? ''
  if (!controllers.split(/\s+/).includes('memory'))
    return {
      enforced: false,
      cgroup,
      version: 2,
      reason: `the cgroup v2 memory controller is not available (${v2root}/cgroup.controllers: ${controllers || 'none'}): the kernel accounts no memory per group here`,
    }
  const max = await read(`${v2root}${cgroup}/memory.max`)
  if (max === undefined)
    return {
      enforced: false,
      cgroup,
      version: 2,
      reason: `the cgroup v2 memory controller is not enabled for ${cgroup} (no memory.max: memory is not in its parent's cgroup.subtree_control)`,
    }
  if (max === 'max') return {enforced: false, cgroup, version: 2, reason: `memory.max of ${cgroup} is "max" (no limit)`}
  return {enforced: true, limitBytes: Number(max), cgroup, version: 2}
}
