import fs from 'node:fs/promises'

import {procStartTime} from '../processes.js'

/*
 * The hub starts its managed services (jupyterhub-idle-culler) in sessions of their own, so that
 * when the hub dies without stopping them (SIGKILL, the OOM killer) they live on, re-parented, and
 * the restarted hub starts another of each: two cullers, then three. The supervisor ends them when
 * it starts a hub: a service of this hub (the hub's API URL and JUPYTERHUB_SERVICE_NAME in its
 * environment, which the hub sets for services and not for user servers) whose parent is not the
 * hub now running was left by one that is gone.
 */

export interface OrphanQuery {
  /** The hub's API URL as the hub gives it to services: http://127.0.0.1:PORT/hub/api. */
  apiUrl: string
  /** The hub running now: its services are not orphans. */
  hubPid: number
  /** Whose processes (the hub's user): nobody else's are looked at. */
  uid: number
}

export interface Orphan {
  pid: number
  service: string
  startTime?: string
}

/** The services a gone hub of this API URL left running. */
export async function orphanedServices(query: OrphanQuery, procDir = '/proc'): Promise<Orphan[]> {
  const names = (await fs.readdir(procDir).catch(() => [] as string[])).filter((name) => /^\d+$/.test(name))
  const found = await Promise.all(
    names.map(async (name): Promise<Orphan | undefined> => {
      const pid = Number(name)
      if (pid === query.hubPid || pid === process.pid) return undefined
      const status = await fs.readFile(`${procDir}/${name}/status`, 'utf8').catch(() => '')
      const uid = Number(/^Uid:\s+(\d+)/m.exec(status)?.[1])
      const ppid = Number(/^PPid:\s+(\d+)/m.exec(status)?.[1])
      if (uid !== query.uid || ppid === query.hubPid) return undefined
      const environ = (await fs.readFile(`${procDir}/${name}/environ`, 'utf8').catch(() => '')).split('\0')
      if (!environ.includes(`JUPYTERHUB_API_URL=${query.apiUrl}`)) return undefined
      const service = environ.find((entry) => entry.startsWith('JUPYTERHUB_SERVICE_NAME='))?.slice(24)
      if (!service) return undefined
      return {pid, service, startTime: await procStartTime(pid)}
    }),
  )
  return found.filter((orphan): orphan is Orphan => orphan !== undefined)
}

/** SIGTERM to each, SIGKILL to those still there (the same process) after `graceMs`. */
export async function endOrphans(
  orphans: Orphan[],
  graceMs = 5000,
  sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms).unref()),
): Promise<void> {
  const signal = (pid: number, sig: NodeJS.Signals) => {
    try {
      process.kill(pid, sig)
    } catch {
      /* gone */
    }
  }
  for (const orphan of orphans) signal(orphan.pid, 'SIGTERM')
  if (orphans.length === 0) return
  await sleep(graceMs)
  for (const orphan of orphans) {
    const now = await procStartTime(orphan.pid)
    if (now !== undefined && now === orphan.startTime) signal(orphan.pid, 'SIGKILL')
  }
}
