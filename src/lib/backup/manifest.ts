import {createHash} from 'node:crypto'
import {createReadStream} from 'node:fs'
import path from 'node:path'

import {usageError} from '../errors.js'

/*
 * What a hubctl backup holds, and how its integrity is told: a plain tar whose first member is
 * manifest.json, then `files/<path under the prefix>` (regular files only; directories and links are
 * described in the manifest, never unpacked as links) and `homes/<user>.tar.gz` (each user's home,
 * tar --numeric-owner). Every member's SHA-256 and size are in the manifest.
 */

export const MANIFEST = 'manifest.json'
export const BACKUP_FORMAT = 'hubctl-backup'
export const BACKUP_FORMAT_VERSION = 1

/** One entry under the prefix: a file (its member in the archive), a directory, or a link. */
export interface FileEntry {
  /** The path relative to the prefix (`srv/jupyterhub/jupyterhub_cookie_secret`). */
  path: string
  type: 'file' | 'dir' | 'link'
  mode: number
  uid: number
  gid: number
  /** A file: its member (`files/<path>`), size and SHA-256. */
  member?: string
  size?: number
  sha256?: string
  /** A link: its target, as readlink gives it. */
  target?: string
}

/** A user's home (with --include-homes): a tar.gz member, and who owned it. */
export interface HomeEntry {
  user: string
  home: string
  uid: number
  gid: number
  member: string
  size: number
  sha256: string
}

/** A system account hubctl made (users.json), with its shadow password hash (so that passwords survive). */
export interface AccountEntry {
  name: string
  uid: number
  gid: number
  home: string
  shell: string
  /** The password field of /etc/shadow (a hash, or `!`): restored with `chpasswd -e` on its standard input. */
  shadow?: string
}

export interface Manifest {
  format: typeof BACKUP_FORMAT
  version: typeof BACKUP_FORMAT_VERSION
  createdAt: string
  hubctl: string
  jupyterhub: string
  prefix: string
  includeHomes: boolean
  files: FileEntry[]
  homes: HomeEntry[]
  accounts: AccountEntry[]
  /** Informational (not restored): the pinned constraints and what the hub's Python has installed. */
  environment: Array<{member: string; size: number; sha256: string}>
}

export async function sha256File(file: string): Promise<{sha256: string; size: number}> {
  const hash = createHash('sha256')
  let size = 0
  for await (const chunk of createReadStream(file)) {
    hash.update(chunk as Buffer)
    size += (chunk as Buffer).length
  }
  return {sha256: hash.digest('hex'), size}
}

/** A member name as the archive may hold it: relative, normalized, under files/, homes/ or env/. */
export function safeMember(name: unknown): name is string {
  return (
    typeof name === 'string' &&
    name.length > 0 &&
    !path.isAbsolute(name) &&
    path.posix.normalize(name) === name &&
    !name.split('/').includes('..') &&
    /^(files|homes|env)\//.test(name)
  )
}

function refused(problem: string): never {
  throw usageError(
    `the archive is not a complete hubctl backup: ${problem}; nothing was changed`,
    'use another backup (`ls srv/jupyterhub/backup/`), or make a new one with `hubctl backup`',
  )
}

/** The manifest's text parsed and checked for shape (not yet against the members). */
export function parseManifest(text: string): Manifest {
  let parsed: Manifest
  try {
    parsed = JSON.parse(text) as Manifest
  } catch {
    refused('manifest.json is not JSON')
  }
  if (parsed?.format !== BACKUP_FORMAT) refused('manifest.json is not a hubctl backup manifest')
  if (parsed.version !== BACKUP_FORMAT_VERSION)
    refused(`its format version is ${String(parsed.version)}, this hubctl reads ${BACKUP_FORMAT_VERSION}`)
  if (
    !Array.isArray(parsed.files) ||
    !Array.isArray(parsed.homes) ||
    !Array.isArray(parsed.accounts) ||
    !Array.isArray(parsed.environment)
  )
    refused('manifest.json lacks its lists of files, homes and accounts')
  for (const entry of parsed.files) {
    if (typeof entry.path !== 'string' || path.isAbsolute(entry.path) || entry.path.split('/').includes('..'))
      refused(`a path in the manifest leaves the prefix: ${JSON.stringify(entry.path)}`)
    if (!['file', 'dir', 'link'].includes(entry.type)) refused(`${entry.path} has an unknown type`)
    if (entry.type === 'file' && (!safeMember(entry.member) || typeof entry.sha256 !== 'string'))
      refused(`${entry.path} has no member or hash`)
    if (entry.type === 'link' && typeof entry.target !== 'string') refused(`${entry.path} has no link target`)
  }
  for (const home of parsed.homes) {
    if (!safeMember(home.member) || typeof home.sha256 !== 'string' || !path.isAbsolute(home.home))
      refused(`the home of ${String(home.user)} has no member, hash or absolute path`)
  }
  for (const member of parsed.environment)
    if (!safeMember(member.member) || typeof member.sha256 !== 'string') refused('an environment member has no hash')
  return parsed
}

/** Compare two dotted versions (1.2.3); a non-numeric part counts as 0. */
export function compareVersions(a: string, b: string): number {
  const parts = (v: string) => v.split(/[.+-]/).map((p) => Number.parseInt(p, 10) || 0)
  const [x, y] = [parts(a), parts(b)]
  for (let i = 0; i < Math.max(x.length, y.length); i++) {
    const d = (x[i] ?? 0) - (y[i] ?? 0)
    if (d !== 0) return Math.sign(d)
  }
  return 0
}
