import {randomBytes} from 'node:crypto'
import {constants as fsConstants} from 'node:fs'
import fs from 'node:fs/promises'
import path from 'node:path'
import {fileURLToPath} from 'node:url'

import {Layout} from '../config/layout.js'
import {Settings, SettingsStore} from '../config/settings.js'
import {detectJupyterHub, interpreterProblem} from '../config/jupyterhub.js'
import {ensureDir, exists, fsyncDir} from '../files/atomic.js'
import {acquireLock} from '../files/lock.js'
import {errnoCode, preflightError, runtimeError, usageError} from '../errors.js'
import {type Runner, which} from '../runner.js'
import {HUBCTL_VERSION} from '../version.js'
import {ARCHIVE_NAME} from './archives.js'
import {UnixAccounts, UsersRecordStore} from '../users/accounts.js'
import {
  AccountEntry,
  BACKUP_FORMAT,
  BACKUP_FORMAT_VERSION,
  FileEntry,
  HomeEntry,
  MANIFEST,
  Manifest,
  sha256File,
} from './manifest.js'

/** How many archives `hubctl backup` keeps in its default directory unless --keep says otherwise. */
export const DEFAULT_KEEP = 7

const CONSTRAINTS_FILE = new URL('../../../python/constraints.txt', import.meta.url)

/**
 * The hub's database, copied online and consistent with SQLite's backup API, by the hub's own
 * Python (-I): pages are copied under SQLite's locks while the hub keeps writing. Paths on argv
 * (not secrets); the source opened read-only.
 */
const SQLITE_BACKUP = `
import sqlite3, sys
src = sqlite3.connect("file:" + sys.argv[1] + "?mode=ro", uri=True, timeout=60)
dst = sqlite3.connect(sys.argv[2])
with dst:
    src.backup(dst)
check = dst.execute("PRAGMA integrity_check").fetchone()[0]
dst.close()
src.close()
if check != "ok":
    sys.exit("integrity_check: " + check)
`

/** The installed distributions of the hub's Python, one `name==version` a line (sorted). */
const PACKAGES = `
import importlib.metadata as m
print("\\n".join(sorted({"%s==%s" % (d.metadata["Name"], d.version) for d in m.distributions() if d.metadata["Name"]})))
`

export interface BackupOptions {
  output?: string
  includeHomes?: boolean
  keep?: number
  /** The archive's time stamp (tests); else now. */
  now?: Date
}

export interface BackupResult {
  archive: string
  bytes: number
  seconds: number
  files: number
  homes: string[]
  accounts: string[]
  hubctl: string
  jupyterhub: string
  /** Older archives removed from the default directory (--keep). */
  pruned: string[]
}

export interface BackupDeps {
  layout: Layout
  runner: Runner
  log?: (line: string) => void
}

/** `hubctl status`: the backup schedule hubctl.json holds, and the newest archive in the default directory. */

/** Stamp for file names: 20261207T121314Z. */
export function stampOf(date: Date): string {
  return date
    .toISOString()
    .replace(/[-:]/g, '')
    .replace(/\.\d+Z$/, 'Z')
}

/**
 * `hubctl backup`: the whole hub in one archive (see manifest.ts), written atomically with mode
 * 0600: the members are gathered in a 0700 staging directory inside srv/jupyterhub/backup, tar
 * writes them into a temp file beside the archive, which is fsynced and renamed into place.
 */
export class BackupService {
  constructor(private readonly deps: BackupDeps) {}

  private log(line: string): void {
    this.deps.log?.(line)
  }

  async backup(options: BackupOptions = {}): Promise<BackupResult> {
    const {layout} = this.deps
    const started = Date.now()
    if (!(await exists(layout.settings)))
      throw usageError(
        `there is no hub under ${layout.prefix} to back up (${layout.settings} is missing)`,
        'give the --prefix of the hub, or set one up with `hubctl init`',
      )
    const keep = options.keep ?? DEFAULT_KEEP
    if (!Number.isInteger(keep) || keep < 1 || keep > 1000)
      throw usageError(`--keep ${keep} is not a whole number from 1 to 1000`, 'give --keep 7, say')
    const settings = await new SettingsStore(layout).load()
    const stamp = stampOf(options.now ?? new Date())
    const archive = path.resolve(options.output ?? layout.hubBackup(stamp))
    if (await exists(archive))
      throw usageError(`${archive} exists already`, 'give another --output, or move the old file away')
    await ensureDir(layout.backupDir, 0o700)
    if (!options.output) await ensureDir(path.dirname(archive), 0o700)
    const lock = await acquireLock(layout.lockFile, 'backup', {waitMs: 10_000})
    const staging = layout.backupStaging(randomBytes(6).toString('hex'))
    try {
      await this.removeStale(archive)
      await fs.mkdir(staging, {mode: 0o700})
      const manifest = await this.gather(settings, staging, Boolean(options.includeHomes))
      await fs.writeFile(layout.stagedMember(staging, MANIFEST), `${JSON.stringify(manifest, null, 2)}\n`, {
        mode: 0o600,
      })
      const bytes = await this.writeArchive(staging, archive)
      const pruned = options.output ? [] : await this.prune(keep)
      return {
        archive,
        bytes,
        seconds: Math.round((Date.now() - started) / 100) / 10,
        files: manifest.files.filter((f) => f.type === 'file').length,
        homes: manifest.homes.map((h) => h.user),
        accounts: manifest.accounts.map((a) => a.name),
        hubctl: manifest.hubctl,
        jupyterhub: manifest.jupyterhub,
        pruned,
      }
    } finally {
      await fs.rm(staging, {recursive: true, force: true})
      await lock.release()
    }
  }

  /**
   * What a killed backup left (under the lock, so no running backup's): its staging directories
   * and its archives' temp files, in the default directory and beside this archive.
   */
  private async removeStale(archive: string): Promise<void> {
    const {layout} = this.deps
    const staging = path.basename(layout.backupStaging(''))
    // writeArchive's temp file: `.NAME.<12 hex>.tmp`, NAME this archive's or one of the default directory's.
    const archiveOf = (name: string) => /^\.(.+)\.[0-9a-f]{12}\.tmp$/.exec(name)?.[1]
    for (const dir of new Set([layout.backupDir, path.dirname(archive)]))
      for (const name of await fs.readdir(dir).catch(() => [] as string[])) {
        const of = archiveOf(name)
        const stale =
          (dir === layout.backupDir && (name.startsWith(staging) || (of !== undefined && ARCHIVE_NAME.test(of)))) ||
          of === path.basename(archive)
        if (stale) await fs.rm(path.join(dir, name), {recursive: true, force: true})
      }
  }

  /** Every member into the staging directory, and the manifest that describes them. */
  private async gather(settings: Settings, staging: string, includeHomes: boolean): Promise<Manifest> {
    const {layout, runner} = this.deps
    // The hub's Python gone (an OS upgrade; `hubctl upgrade --rebuild` backs up first): the system's
    // python3 copies the database (sqlite3 is in its standard library), the version is hubctl.json's.
    const gone = await interpreterProblem(runner, settings.executables.jupyterhub, {run: false})
    const hub = gone
      ? {version: settings.jupyterhubVersion, python: (await which('/usr/bin/python3')) ?? 'python3'}
      : await detectJupyterHub(runner, settings.executables.jupyterhub)
    const files: FileEntry[] = []
    const addFile = async (source: string, relative: string, stat: {mode: number; uid: number; gid: number}) => {
      const member = `files/${relative}`
      const target = layout.stagedMember(staging, member)
      await fs.mkdir(path.dirname(target), {recursive: true, mode: 0o700})
      await fs.copyFile(source, target, fsConstants.COPYFILE_EXCL)
      files.push(await fileEntry(relative, stat, member, target))
    }
    // Walk a file or a directory without following links; the database is copied apart (below).
    const skip = new Set([
      layout.database,
      ...layout.databaseSidecars,
      layout.lockFile,
      layout.hubConfigCandidate,
      layout.backupDir,
      layout.homeArchiveDir,
      layout.runDir,
      layout.restoreJournal,
      ...(includeHomes ? [] : [layout.serverHomesDir]),
    ])
    const walk = async (file: string): Promise<void> => {
      if (skip.has(file)) return
      let stat
      try {
        stat = await fs.lstat(file)
      } catch (error) {
        if (errnoCode(error) === 'ENOENT') return
        throw error
      }
      const relative = layout.relativeToPrefix(file)
      const base = {path: relative, mode: stat.mode & 0o7777, uid: stat.uid, gid: stat.gid}
      if (stat.isSymbolicLink()) files.push({...base, type: 'link', target: await fs.readlink(file)})
      else if (stat.isFile()) await addFile(file, relative, stat)
      else if (stat.isDirectory()) {
        files.push({...base, type: 'dir'})
        for (const name of (await fs.readdir(file)).sort()) await walk(path.join(file, name))
      }
    }
    this.log('gathering the secrets, certificates, settings and configs')
    // srv/jupyterhub itself (its mode), then what is in it.
    await walk(layout.srvDir)
    await walk(layout.etcDir)
    await this.walkOnly(walk, [
      ...(layout.isSystem ? [] : [layout.nginxMainConf]),
      layout.nginxSite,
      layout.nginxSiteLink,
      layout.systemdUnit,
      layout.renewService,
      layout.renewTimer,
      layout.cronFile,
      layout.backupService,
      layout.backupTimer,
      layout.backupCronFile,
      layout.logrotateConf,
    ])
    // The database, online.
    if (await exists(layout.database)) {
      this.log(`copying the hub's database online (${layout.database})`)
      const member = `files/${layout.relativeToPrefix(layout.database)}`
      const target = layout.stagedMember(staging, member)
      await fs.mkdir(path.dirname(target), {recursive: true, mode: 0o700})
      const copy = await runner.run(hub.python, ['-I', '-c', SQLITE_BACKUP, layout.database, target], {
        cwd: '/',
        timeoutMs: 600_000,
      })
      if (copy.exitCode !== 0)
        throw runtimeError(
          `could not copy the hub's database with SQLite's backup API: ${copy.stderr.trim().split('\n').pop() ?? ''}`,
          `check ${layout.database} (the hub's log: ${layout.hubLog}), then run \`hubctl backup\` again`,
        )
      const stat = await fs.lstat(layout.database)
      files.push(await fileEntry(layout.relativeToPrefix(layout.database), stat, member, target))
    }
    // The environment: the pinned constraints and what the hub's Python has installed (for the record).
    const envDir = layout.stagedMember(staging, 'env')
    await fs.mkdir(envDir, {mode: 0o700})
    await fs.copyFile(fileURLToPath(CONSTRAINTS_FILE), path.join(envDir, 'constraints.txt'))
    const packages = gone
      ? {stdout: `# ${gone}`}
      : await runner.run(hub.python, ['-I', '-c', PACKAGES], {cwd: '/', timeoutMs: 120_000})
    await fs.writeFile(path.join(envDir, 'packages.txt'), `${packages.stdout.trim()}\n`, {mode: 0o600})
    const environment = []
    for (const name of ['constraints.txt', 'packages.txt'])
      environment.push({member: `env/${name}`, ...(await sha256File(path.join(envDir, name)))})
    // The accounts hubctl made, with their shadow entries; their homes with --include-homes.
    const {accounts, homes} = await this.accounts(staging, includeHomes)
    return {
      format: BACKUP_FORMAT,
      version: BACKUP_FORMAT_VERSION,
      createdAt: new Date().toISOString(),
      hubctl: HUBCTL_VERSION,
      jupyterhub: hub.version,
      prefix: layout.prefix,
      includeHomes,
      files,
      homes,
      accounts,
      environment,
    }
  }

  private async walkOnly(walk: (file: string) => Promise<void>, files: string[]): Promise<void> {
    for (const file of files) await walk(file)
  }

  private async accounts(
    staging: string,
    includeHomes: boolean,
  ): Promise<{accounts: AccountEntry[]; homes: HomeEntry[]}> {
    const {layout, runner} = this.deps
    const record = await new UsersRecordStore(layout).load()
    const names = Object.entries(record.accounts)
      .filter(([, entry]) => entry.origin === 'created')
      .map(([name]) => name)
      .sort()
    const found = await new UnixAccounts(runner).lookup(names)
    const accounts: AccountEntry[] = []
    const homes: HomeEntry[] = []
    for (const name of names) {
      const account = found.get(name)
      if (!account) {
        this.log(`warning: ${name} (users.json) has no system account here: not in the backup`)
        continue
      }
      // getent shadow NAME: the password hash, read by root; it goes into the 0600 archive only.
      const shadow = await runner.run('getent', ['shadow', name])
      const hash = shadow.exitCode === 0 ? shadow.stdout.split(':')[1] : undefined
      accounts.push({...account, ...(hash === undefined ? {} : {shadow: hash})})
      if (!includeHomes) continue
      const stat = await fs.lstat(account.home).catch(() => undefined)
      if (!stat?.isDirectory()) {
        this.log(`warning: ${name}'s home ${account.home} is not a directory: not in the backup`)
        continue
      }
      this.log(`archiving ${name}'s home (${account.home})`)
      const member = `homes/${name}.tar.gz`
      const target = layout.stagedMember(staging, member)
      await fs.mkdir(path.dirname(target), {recursive: true, mode: 0o700})
      const tar = await runner.run(
        'tar',
        [
          '--create',
          '--gzip',
          '--numeric-owner',
          '--one-file-system',
          '--file',
          target,
          '--directory',
          account.home,
          '.',
        ],
        {cwd: '/', timeoutMs: 3_600_000},
      )
      // 1: a file changed while it was read (a kernel writing): the archive is complete, that file as it was.
      if (tar.exitCode !== 0 && tar.exitCode !== 1)
        throw runtimeError(
          `tar could not archive ${account.home}: ${tar.stderr.trim().split('\n').pop() ?? ''}`,
          'read the message, fix it, then run `hubctl backup --include-homes` again',
        )
      const {sha256, size} = await sha256File(target)
      homes.push({user: name, home: account.home, uid: stat.uid, gid: stat.gid, member, size, sha256})
    }
    return {accounts, homes}
  }

  /** tar of the staging directory into a 0600 temp file beside the archive, fsync, rename. */
  private async writeArchive(staging: string, archive: string): Promise<number> {
    const dir = path.dirname(archive)
    const temp = path.join(dir, `.${path.basename(archive)}.${randomBytes(6).toString('hex')}.tmp`)
    let handle: fs.FileHandle
    try {
      handle = await fs.open(
        temp,
        fsConstants.O_CREAT | fsConstants.O_EXCL | fsConstants.O_WRONLY | fsConstants.O_NOFOLLOW,
        0o600,
      )
    } catch (error) {
      throw preflightError(
        `cannot write the archive in ${dir}: ${errnoCode(error) ?? String(error)}`,
        'give an --output in a directory root can write',
      )
    }
    try {
      await handle.chmod(0o600)
      const before = await handle.stat()
      const entries = (await fs.readdir(staging)).filter((name) => name !== MANIFEST).sort()
      // manifest.json first, so that a reader finds it before the members.
      const tar = await this.deps.runner.run(
        'tar',
        ['--create', '--format=gnu', '--numeric-owner', '--file', temp, '--directory', staging, MANIFEST, ...entries],
        {cwd: '/', timeoutMs: 3_600_000},
      )
      if (tar.exitCode !== 0)
        throw runtimeError(
          `tar could not write the archive: ${tar.stderr.trim().split('\n').pop() ?? ''}`,
          `check the free space in ${dir}, then run \`hubctl backup\` again`,
        )
      const after = await fs.lstat(temp)
      if (!after.isFile() || after.ino !== before.ino)
        throw runtimeError(`${temp} was replaced while tar wrote it`, `check who else writes in ${dir}`)
      await handle.sync()
      await handle.close()
      await fs.rename(temp, archive)
      await fsyncDir(dir)
      return after.size
    } catch (error) {
      await handle.close().catch(() => {})
      await fs.rm(temp, {force: true})
      throw error
    }
  }

  /** The default directory keeps the last `keep` archives. */
  private async prune(keep: number): Promise<string[]> {
    const {layout} = this.deps
    const names = (await fs.readdir(layout.backupDir)).filter((name) => ARCHIVE_NAME.test(name)).sort()
    const old = names.slice(0, Math.max(0, names.length - keep))
    for (const name of old) await fs.rm(layout.backupFile(name), {force: true})
    return old.map((name) => layout.backupFile(name))
  }
}

/** A regular file's manifest entry: its owner and mode as found, its member's size and SHA-256 (the staged copy). */
async function fileEntry(
  relative: string,
  stat: {mode: number; uid: number; gid: number},
  member: string,
  staged: string,
): Promise<FileEntry> {
  const {sha256, size} = await sha256File(staged)
  return {path: relative, type: 'file', mode: stat.mode & 0o7777, uid: stat.uid, gid: stat.gid, member, size, sha256}
}
