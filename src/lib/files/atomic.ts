import {randomBytes} from 'node:crypto'
import {constants as fsConstants} from 'node:fs'
import fs from 'node:fs/promises'
import path from 'node:path'

import {errnoCode} from '../errors.js'

export interface AtomicWriteOptions {
  /** The final mode, set on the temp file before the rename (umask does not apply). */
  mode: number
  /** Owner to set before the rename (root only). */
  uid?: number
  gid?: number
}

/** Test seam: lets fault tests make a write fail half way (a full disk) without a real one. */
export interface WriteFaults {
  beforeRename?: (tempPath: string) => Promise<void> | void
  /** A step that is not a write (a rename of a journal, a program running): kill tests hold the process there. */
  atStep?: (what: string) => Promise<void> | void
}

let faults: WriteFaults = {}
export function setWriteFaults(next: WriteFaults): void {
  faults = next
}

/** Test seam (WriteFaults.atStep): a point between two steps where a kill test may hold, then kill, the process. */
export async function faultPoint(what: string): Promise<void> {
  await faults.atStep?.(what)
}

/**
 * Write a file so that a reader, or a crash at any moment, sees the old content or the new,
 * never an empty or partial file: temp file in the same directory (created with the final mode),
 * write, fsync, rename over the target, fsync the directory.
 */
export async function writeFileAtomic(
  file: string,
  data: string | Uint8Array,
  options: AtomicWriteOptions,
): Promise<void> {
  const dir = path.dirname(file)
  const temp = path.join(dir, `.${path.basename(file)}.${randomBytes(6).toString('hex')}.tmp`)
  const handle = await fs.open(
    temp,
    fsConstants.O_CREAT | fsConstants.O_EXCL | fsConstants.O_WRONLY | fsConstants.O_NOFOLLOW,
    options.mode,
  )
  try {
    try {
      await handle.writeFile(data)
      await handle.chmod(options.mode)
      if (options.uid !== undefined && options.gid !== undefined) await handle.chown(options.uid, options.gid)
      await handle.sync()
    } finally {
      await handle.close()
    }
    await faults.beforeRename?.(temp)
    await fs.rename(temp, file)
  } catch (error) {
    await fs.rm(temp, {force: true})
    // A FileHandle's write error (ENOSPC) carries no path: name the file it was for.
    if (error instanceof Error && 'code' in error && !('path' in error)) Object.assign(error, {path: file})
    throw error
  }
  await fsyncDir(dir)
}

/**
 * writeFileAtomic, unless the file already holds exactly this content with this mode (and owner,
 * when given): then nothing is written, so that a command run again changes nothing. Returns
 * whether it wrote.
 */
export async function writeFileAtomicIfChanged(
  file: string,
  data: string | Uint8Array,
  options: AtomicWriteOptions,
): Promise<boolean> {
  try {
    const stat = await fs.lstat(file)
    if (
      stat.isFile() &&
      (stat.mode & 0o7777) === options.mode &&
      (options.uid === undefined || stat.uid === options.uid) &&
      (options.gid === undefined || stat.gid === options.gid) &&
      (await fs.readFile(file)).equals(typeof data === 'string' ? Buffer.from(data, 'utf8') : data)
    )
      return false
  } catch (error) {
    if (errnoCode(error) !== 'ENOENT') throw error
  }
  await writeFileAtomic(file, data, options)
  return true
}

export async function fsyncDir(dir: string): Promise<void> {
  const handle = await fs.open(dir, fsConstants.O_RDONLY | fsConstants.O_DIRECTORY)
  try {
    await handle.sync()
  } finally {
    await handle.close()
  }
}

/** Create a directory (and parents) and force its mode, even if it existed with another. */
export async function ensureDir(dir: string, mode: number): Promise<void> {
  await fs.mkdir(dir, {recursive: true, mode})
  const stat = await fs.lstat(dir)
  if (!stat.isDirectory()) throw new Error(`${dir} is not a directory`)
  if ((stat.mode & 0o7777) !== mode) await fs.chmod(dir, mode)
}

/** Atomically point `link` at `target` (symlink to temp name, rename over). */
export async function symlinkAtomic(target: string, link: string): Promise<void> {
  const temp = path.join(path.dirname(link), `.${path.basename(link)}.${randomBytes(6).toString('hex')}.tmp`)
  await fs.symlink(target, temp)
  try {
    await fs.rename(temp, link)
  } catch (error) {
    await fs.rm(temp, {force: true})
    throw error
  }
  await fsyncDir(path.dirname(link))
}

/** Read a file, or undefined when it does not exist. */
export async function readIfExists(file: string): Promise<string | undefined> {
  try {
    return await fs.readFile(file, 'utf8')
  } catch (error) {
    if (errnoCode(error) === 'ENOENT') return undefined
    throw error
  }
}

export async function exists(file: string): Promise<boolean> {
  try {
    await fs.lstat(file)
    return true
  } catch (error) {
    if (errnoCode(error) === 'ENOENT') return false
    throw error
  }
}

/**
 * A log file, 0640 or tighter: created empty with that mode when missing (before a program such
 * as nginx creates it with its own, 0644), an existing one made no more open than that. Never
 * through a link.
 */
export async function ensureLogFile(file: string, mode = 0o640): Promise<void> {
  const handle = await fs.open(
    file,
    fsConstants.O_CREAT | fsConstants.O_APPEND | fsConstants.O_WRONLY | fsConstants.O_NOFOLLOW,
    mode,
  )
  try {
    const current = (await handle.stat()).mode & 0o7777
    if ((current & ~mode) !== 0) await handle.chmod(current & mode)
  } finally {
    await handle.close()
  }
}
