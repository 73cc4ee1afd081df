import {constants as fsConstants} from 'node:fs'
import fs from 'node:fs/promises'
import path from 'node:path'

import {ExitCode, HubctlError, errnoCode} from './errors.js'
import {processAlive} from './processes.js'

export interface Lock {
  release(): Promise<void>
}

/**
 * One writer at a time under a prefix (init, cert renew, secrets rotate). The lock file holds the
 * owner's pid and command; a lock whose process is gone is taken over.
 */
export async function acquireLock(file: string, what: string, options: {waitMs?: number; pollMs?: number} = {}): Promise<Lock> {
  const deadline = Date.now() + (options.waitMs ?? 0)
  // srv/jupyterhub replaced by a file, or by a link to somewhere else: never create the lock through it.
  const dir = await fs.lstat(path.dirname(file)).catch(() => undefined)
  if (dir && !dir.isDirectory()) {
    throw new HubctlError(`${path.dirname(file)} is not a directory`, {exitCode: ExitCode.CHECK_FAILED, fix: 'move it away, then run the command again'})
  }
  await fs.mkdir(path.dirname(file), {recursive: true, mode: 0o700})
  for (;;) {
    try {
      const handle = await fs.open(file, fsConstants.O_CREAT | fsConstants.O_EXCL | fsConstants.O_WRONLY, 0o600)
      try {
        await handle.writeFile(JSON.stringify({pid: process.pid, what, since: new Date().toISOString()}))
      } catch (error) {
        // A full disk: an empty lock file left behind would lock every later command out.
        await handle.close()
        await fs.rm(file, {force: true})
        if (error instanceof Error && !('path' in error)) Object.assign(error, {path: file})
        throw error
      }
      await handle.close()
      return {release: async () => { await fs.rm(file, {force: true}) }}
    } catch (error) {
      if (errnoCode(error) !== 'EEXIST') throw error
    }
    const holder = await readHolder(file)
    if (holder ? !(await processAlive(holder.pid)) : await unreadableAndOld(file)) {
      // The holder died (kill -9, even before it wrote its pid): take the lock over, atomically, by removing its file.
      await fs.rm(file, {force: true})
      continue
    }
    if (Date.now() >= deadline) {
      throw new HubctlError(`another hubctl (${holder ? `pid ${holder.pid}, ${holder.what}` : 'starting'}) is changing this hub`, {exitCode: ExitCode.LOCKED, fix: 'wait for it to finish and run the command again'})
    }
    await new Promise((resolve) => setTimeout(resolve, options.pollMs ?? 200))
  }
}

async function readHolder(file: string): Promise<{pid: number; what: string} | undefined> {
  try {
    const parsed = JSON.parse(await fs.readFile(file, 'utf8')) as {pid: number; what: string}
    return Number.isInteger(parsed.pid) ? parsed : undefined
  } catch {
    return undefined
  }
}

/** A lock file without a readable holder is being written right now, or was left by a crash: old means the latter. */
async function unreadableAndOld(file: string, maxAgeMs = 10_000): Promise<boolean> {
  try {
    return Date.now() - (await fs.stat(file)).mtimeMs > maxAgeMs
  } catch {
    return false
  }
}
