import {createHash, randomBytes} from 'node:crypto'
import {constants as fsConstants} from 'node:fs'
import fs from 'node:fs/promises'
import path from 'node:path'

import {ExitCode, HubctlError, checkFailedError, errnoCode, lockedError} from '../errors.js'
import {processAlive} from '../processes.js'

export interface Lock {
  release(): Promise<void>
}

/**
 * One writer at a time under a prefix (init, cert renew, secrets rotate). The lock file holds the
 * owner's pid and command; a lock whose process is gone is taken over, atomically: see takeOver().
 */
export async function acquireLock(
  file: string,
  what: string,
  options: {waitMs?: number; pollMs?: number} = {},
): Promise<Lock> {
  const deadline = Date.now() + (options.waitMs ?? 0)
  // srv/jupyterhub replaced by a file, or by a link to somewhere else: never create the lock through it.
  const dir = await fs.lstat(path.dirname(file)).catch(() => undefined)
  if (dir && !dir.isDirectory()) {
    throw checkFailedError(`${path.dirname(file)} is not a directory`, 'move it away, then run the command again')
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
      return {
        release: async () => {
          await fs.rm(file, {force: true})
        },
      }
    } catch (error) {
      if (errnoCode(error) !== 'EEXIST') throw error
    }
    const seen = await identify(file)
    // Released meanwhile: try again at once (something else in its place, a link, is never taken over).
    if (
      !seen &&
      !(await fs.lstat(file).then(
        () => true,
        () => false,
      ))
    )
      continue
    const holder = seen && parseHolder(seen.content)
    if (seen && (holder ? !(await processAlive(holder.pid)) : await unreadableAndOld(file))) {
      // The holder died (kill -9, even before it wrote its pid): take the lock over.
      const taken = await takeOver(file, what, seen)
      if (taken !== 'busy') {
        if (taken) return taken
        continue
      }
      // Another hubctl is taking it over right now: it wins or leaves it; look again shortly.
      if (Date.now() < deadline + 15_000) {
        await new Promise((resolve) => setTimeout(resolve, 20))
        continue
      }
    }
    if (Date.now() >= deadline) {
      throw lockedError(
        `another hubctl (${holder ? `pid ${holder.pid}, ${holder.what}` : 'starting'}) is changing this hub`,
        'wait for it to finish and run the command again',
      )
    }
    await new Promise((resolve) => setTimeout(resolve, options.pollMs ?? 200))
  }
}

/** The lock file as it is now: its inode and content, read through one descriptor (never through a link). */
async function identify(file: string): Promise<{ino: number; content: string} | undefined> {
  let handle
  try {
    handle = await fs.open(file, fsConstants.O_RDONLY | fsConstants.O_NOFOLLOW)
  } catch {
    return undefined
  }
  try {
    const [stat, content] = [await handle.stat(), await handle.readFile('utf8')]
    return {ino: stat.ino, content}
  } finally {
    await handle.close()
  }
}

/**
 * Take over the lock left by a dead holder, as one writer of many that may try at once. Removing
 * the stale file and creating a new one is not atomic: two writers could each remove the other's
 * fresh lock. So a takeover of the lock as it was seen (inode and content) happens under a guard
 * named after exactly that version, a lock itself (a guard left by a taker that died is taken
 * over the same way); under it the file is checked to be still that version, then replaced in one
 * rename by a file already holding the new owner: the lock's name is never free, and a version is
 * taken over once. Returns the lock, undefined when the file changed meanwhile (look again), or
 * 'busy' while another writer holds the guard.
 */
async function takeOver(
  file: string,
  what: string,
  seen: {ino: number; content: string},
): Promise<Lock | 'busy' | undefined> {
  const version = createHash('sha256').update(`${seen.ino}:${seen.content}`).digest('hex').slice(0, 16)
  let guard: Lock
  try {
    guard = await acquireLock(`${file}.takeover-${version}`, `taking over ${file}`)
  } catch (error) {
    if (error instanceof HubctlError && error.exitCode === ExitCode.LOCKED) return 'busy'
    throw error
  }
  try {
    const now = await identify(file)
    if (!now || now.ino !== seen.ino || now.content !== seen.content) return undefined
    const temp = `${file}.${process.pid}.${randomBytes(6).toString('hex')}`
    const handle = await fs.open(
      temp,
      fsConstants.O_CREAT | fsConstants.O_EXCL | fsConstants.O_WRONLY | fsConstants.O_NOFOLLOW,
      0o600,
    )
    try {
      await handle.writeFile(JSON.stringify({pid: process.pid, what, since: new Date().toISOString()}))
      await handle.close()
      await fs.rename(temp, file)
    } catch (error) {
      await handle.close().catch(() => {})
      await fs.rm(temp, {force: true})
      if (error instanceof Error && !('path' in error)) Object.assign(error, {path: file})
      throw error
    }
    return {
      release: async () => {
        await fs.rm(file, {force: true})
      },
    }
  } finally {
    await guard.release()
  }
}

function parseHolder(content: string): {pid: number; what: string} | undefined {
  try {
    const parsed = JSON.parse(content) as {pid: number; what: string}
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
