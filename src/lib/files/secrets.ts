import {randomBytes} from 'node:crypto'
import {constants as fsConstants} from 'node:fs'
import fs from 'node:fs/promises'

import {ensureDir, exists, writeFileAtomic} from './atomic.js'
import {dhparamBits} from '../tls/dhparam.js'
import {ExitCode, HubctlError, checkFailedError, errnoCode, fsError, usageError} from '../errors.js'
import {Layout} from '../config/layout.js'
import {oauthSecretProblem} from '../config/oauth.js'

export const SECRET_NAMES = ['cookieSecret', 'proxyAuthToken', 'apiToken', 'dhparam'] as const
export type SecretName = (typeof SECRET_NAMES)[number]

/** The flag each secret answers to (`hubctl secrets rotate --cookie-secret`). */
export const SECRET_FLAGS: Record<SecretName, string> = {
  cookieSecret: 'cookie-secret',
  proxyAuthToken: 'proxy-token',
  apiToken: 'api-token',
  dhparam: 'dhparam',
}

export const SECRET_LABELS: Record<SecretName, string> = {
  cookieSecret: 'cookie secret',
  proxyAuthToken: 'proxy auth token',
  apiToken: 'hubctl API token',
  dhparam: 'DH parameters',
}

const HEX_SECRET = /^[0-9a-f]{64}\n?$/
const MAX_SECRET_SIZE = 64 * 1024
export const SECRET_FILE_MODE = 0o600
export const SECRET_DIR_MODE = 0o700

export interface SecretProblem {
  /** The secret, or the directory that holds them. */
  subject: SecretName | 'directory' | 'loginPassword' | 'oauthClientSecret'
  file: string
  problem: string
  fix: string
}

export interface SecretStoreOptions {
  /** The owner every secret must have: the service user (root on a server, you in local mode). */
  uid?: number
  gid?: number
  random?: (bytes: number) => Buffer
}

/**
 * The hub's secret files: made from a CSPRNG, written atomically at 0600 in a 0700 directory,
 * read without following links, checked more strictly than JupyterHub does.
 */
export class SecretStore {
  readonly uid: number
  readonly gid: number
  private readonly random: (bytes: number) => Buffer

  constructor(
    readonly layout: Layout,
    options: SecretStoreOptions = {},
  ) {
    this.uid = options.uid ?? process.getuid?.() ?? 0
    this.gid = options.gid ?? process.getgid?.() ?? 0
    this.random = options.random ?? randomBytes
  }

  file(name: SecretName): string {
    return this.layout.secretFiles[name]
  }

  /** A fresh value for a token secret (the dhparam is made by dhparam.ts). */
  newToken(): string {
    return this.random(32).toString('hex')
  }

  /** Every problem with the secrets and their directory; empty when all is well. */
  async check(names: readonly SecretName[] = SECRET_NAMES): Promise<SecretProblem[]> {
    const problems = await this.checkDirectory()
    if (problems.some((problem) => problem.problem.includes('missing'))) {
      return [...problems, ...names.map((name) => this.missing(name))]
    }
    for (const name of names) problems.push(...(await this.checkOne(name)))
    if (names === SECRET_NAMES) problems.push(...(await this.checkLoginPassword()))
    return problems
  }

  /**
   * Local mode's generated login, when there is one: a regular file of the service user's, 0600,
   * like every other secret (its content is the operator's business: init replaces one it does not
   * recognise).
   */
  async checkLoginPassword(): Promise<SecretProblem[]> {
    const file = this.layout.loginPassword
    const stat = await lstatOrUndefined(file)
    if (!stat) return []
    const replace = `move ${file} away, then run \`hubctl init\` again (it makes a new login password)`
    if (stat.isSymbolicLink())
      return [
        {
          subject: 'loginPassword',
          file,
          problem: `the login password ${file} is a symbolic link, which hubctl never follows`,
          fix: replace,
        },
      ]
    if (!stat.isFile())
      return [
        {subject: 'loginPassword', file, problem: `the login password ${file} is not a regular file`, fix: replace},
      ]
    const problems: SecretProblem[] = []
    if (stat.uid !== this.uid)
      problems.push({
        subject: 'loginPassword',
        file,
        problem: `the login password ${file} belongs to uid ${stat.uid}, not ${this.uid}`,
        fix: `chown ${this.uid}:${this.gid} ${file}`,
      })
    if ((stat.mode & 0o777) !== SECRET_FILE_MODE)
      problems.push({
        subject: 'loginPassword',
        file,
        problem: `the login password ${file} has mode ${octal(stat.mode)}, not 0600`,
        fix: `chmod 600 ${file}`,
      })
    return problems
  }

  /**
   * The OAuth app's client secret (--authenticator github|google|oauth): a regular file of the
   * service user's, 0600, one line of printable ASCII. Its value is never part of a problem.
   */
  async checkOAuthClientSecret(): Promise<SecretProblem[]> {
    const file = this.layout.oauthClientSecret
    const label = `the OAuth client secret ${file}`
    const replace = `run \`hubctl init\` again with --oauth-client-secret-file FILE or --oauth-client-secret-stdin (it replaces ${file})`
    const stat = await lstatOrUndefined(file)
    if (!stat) return [{subject: 'oauthClientSecret', file, problem: `${label} is missing`, fix: replace}]
    if (stat.isSymbolicLink())
      return [
        {
          subject: 'oauthClientSecret',
          file,
          problem: `${label} is a symbolic link, which hubctl never follows`,
          fix: `remove the link, then ${replace}`,
        },
      ]
    if (!stat.isFile())
      return [{subject: 'oauthClientSecret', file, problem: `${label} is not a regular file`, fix: replace}]
    const problems: SecretProblem[] = []
    if (stat.uid !== this.uid)
      problems.push({
        subject: 'oauthClientSecret',
        file,
        problem: `${label} belongs to uid ${stat.uid}, not ${this.uid}`,
        fix: `chown ${this.uid}:${this.gid} ${file}`,
      })
    if ((stat.mode & 0o777) !== SECRET_FILE_MODE)
      problems.push({
        subject: 'oauthClientSecret',
        file,
        problem: `${label} has mode ${octal(stat.mode)}, not 0600`,
        fix: `chmod 600 ${file}`,
      })
    const formatProblem = oauthSecretProblem(await readNoFollow(file))
    if (formatProblem)
      problems.push({subject: 'oauthClientSecret', file, problem: `${label} ${formatProblem}`, fix: replace})
    return problems
  }

  /**
   * Keep the OAuth app's client secret, atomically at 0600 (a file hubctl would not follow or
   * trust is refused first). An unchanged secret is not rewritten.
   */
  async writeOAuthClientSecret(value: string): Promise<{changed: boolean}> {
    const secret = value.replace(/\r?\n$/, '')
    const problem = oauthSecretProblem(secret)
    if (problem)
      throw usageError(
        `the OAuth client secret given ${problem}`,
        'give the client secret exactly as the provider shows it, on one line',
      )
    const current = await this.checkOAuthClientSecret()
    const missing = current.length === 1 && current[0].problem.endsWith('is missing')
    const unsafe = current.filter((p) => /symbolic link|not a regular file|belongs to uid/.test(p.problem))
    if (unsafe.length > 0) throw problemsError(unsafe)
    if (!missing && current.length === 0 && (await readNoFollow(this.layout.oauthClientSecret)).trim() === secret)
      return {changed: false}
    await this.ensureDirectories()
    try {
      await writeFileAtomic(this.layout.oauthClientSecret, `${secret}\n`, {mode: SECRET_FILE_MODE, ...this.owner()})
    } catch (error) {
      throw fsError(error, this.layout.oauthClientSecret)
    }
    return {changed: true}
  }

  async checkDirectory(): Promise<SecretProblem[]> {
    const problems: SecretProblem[] = []
    for (const dir of [this.layout.srvDir, this.layout.sslDir]) {
      const stat = await lstatOrUndefined(dir)
      if (!stat) {
        if (dir === this.layout.srvDir)
          problems.push({
            subject: 'directory',
            file: dir,
            problem: `${dir} is missing`,
            fix: 'run `hubctl secrets generate`',
          })
        continue
      }
      if (!stat.isDirectory() || stat.isSymbolicLink()) {
        problems.push({
          subject: 'directory',
          file: dir,
          problem: `${dir} is not a directory`,
          fix: `move it away, then run \`hubctl secrets generate\``,
        })
        continue
      }
      if (stat.uid !== this.uid)
        problems.push({
          subject: 'directory',
          file: dir,
          problem: `${dir} belongs to uid ${stat.uid}, not ${this.uid}`,
          fix: `chown ${this.uid}:${this.gid} ${dir}`,
        })
      if ((stat.mode & 0o777) !== SECRET_DIR_MODE)
        problems.push({
          subject: 'directory',
          file: dir,
          problem: `${dir} has mode ${octal(stat.mode)}, not 0700`,
          fix: `chmod 700 ${dir}`,
        })
    }
    return problems
  }

  async checkOne(name: SecretName): Promise<SecretProblem[]> {
    const file = this.file(name)
    const stat = await lstatOrUndefined(file)
    if (!stat) return [this.missing(name)]
    const replace = `move ${file} away, then run \`hubctl secrets generate\` (on a running hub: \`hubctl secrets rotate --${SECRET_FLAGS[name]}\`)`
    if (stat.isSymbolicLink())
      return [
        {
          subject: name,
          file,
          problem: `the ${SECRET_LABELS[name]} ${file} is a symbolic link, which hubctl never follows`,
          fix: replace,
        },
      ]
    if (!stat.isFile())
      return [{subject: name, file, problem: `the ${SECRET_LABELS[name]} ${file} is not a regular file`, fix: replace}]
    const problems: SecretProblem[] = []
    if (stat.uid !== this.uid)
      problems.push({
        subject: name,
        file,
        problem: `the ${SECRET_LABELS[name]} ${file} belongs to uid ${stat.uid}, not ${this.uid}`,
        fix: `chown ${this.uid}:${this.gid} ${file}`,
      })
    if ((stat.mode & 0o777) !== SECRET_FILE_MODE)
      problems.push({
        subject: name,
        file,
        problem: `the ${SECRET_LABELS[name]} ${file} has mode ${octal(stat.mode)}, not 0600`,
        fix: `chmod 600 ${file}`,
      })
    const content = await readNoFollow(file)
    const formatProblem = validateSecret(name, content)
    if (formatProblem)
      problems.push({subject: name, file, problem: `the ${SECRET_LABELS[name]} ${file} ${formatProblem}`, fix: replace})
    return problems
  }

  /** The secret's value, checked; throws a HubctlError naming the fix otherwise. */
  async read(name: SecretName): Promise<string> {
    const problems = await this.checkOne(name)
    if (problems.length > 0) throw problemsError(problems)
    const content = await readNoFollow(this.file(name))
    return secretValue(name, content)
  }

  /** Replace a secret atomically (0600, owned by the service user). */
  async write(name: SecretName, value: string): Promise<void> {
    const problem = validateSecret(name, canonicalSecret(name, value))
    if (problem)
      throw new HubctlError(`refusing to write an invalid ${SECRET_LABELS[name]}: it ${problem}`, {
        exitCode: ExitCode.INTERNAL,
      })
    await this.ensureDirectories()
    // The forms the hub's readers expect: the cookie secret file ends with a newline, the tokens do not.
    const data = name === 'proxyAuthToken' || name === 'apiToken' ? value.trim() : canonicalSecret(name, value)
    try {
      await writeFileAtomic(this.file(name), data, {mode: SECRET_FILE_MODE, ...this.owner()})
    } catch (error) {
      throw fsError(error, this.file(name))
    }
  }

  async ensureDirectories(): Promise<void> {
    try {
      await ensureDir(this.layout.srvDir, SECRET_DIR_MODE)
      await ensureDir(this.layout.sslDir, SECRET_DIR_MODE)
    } catch (error) {
      throw fsError(error, this.layout.srvDir)
    }
  }

  /**
   * Create every missing secret; keep every valid one (running init twice changes none). An
   * existing but invalid file is never overwritten: that is reported before anything is written.
   */
  async generateMissing(
    makeDhparam: () => Promise<string>,
    names: readonly SecretName[] = SECRET_NAMES,
  ): Promise<{created: SecretName[]; kept: SecretName[]}> {
    const dirProblems = (await this.checkDirectory()).filter(
      (problem) => !problem.problem.includes('missing') && !problem.problem.includes('has mode'),
    )
    if (dirProblems.length > 0) throw problemsError(dirProblems)
    const missing: SecretName[] = []
    const invalid: SecretProblem[] = []
    for (const name of names) {
      const problems = await this.checkOne(name)
      if (problems.length === 1 && problems[0].problem.endsWith('is missing')) missing.push(name)
      else invalid.push(...problems)
    }
    if (invalid.length > 0) throw problemsError(invalid)
    await this.ensureDirectories()
    const dhparam = missing.includes('dhparam') ? makeDhparam() : undefined
    for (const name of missing) {
      await this.write(name, name === 'dhparam' ? await (dhparam as Promise<string>) : this.newToken())
    }
    return {created: missing, kept: names.filter((name) => !missing.includes(name))}
  }

  /**
   * Local mode's login password (32 hex characters: SharedPasswordAuthenticator wants at least
   * 32 for admins), 0600 beside the other secrets. Kept when it exists.
   */
  async ensureLoginPassword(): Promise<{password: string; created: boolean}> {
    const file = this.layout.loginPassword
    // One another user could read (or a link to anywhere) is refused, never used or silently kept.
    const problems = await this.checkLoginPassword()
    if (problems.length > 0) throw problemsError(problems)
    if (await exists(file)) {
      const existing = (await readNoFollow(file)).trim()
      if (/^[0-9a-f]{32}$/.test(existing)) return {password: existing, created: false}
    }
    const password = this.random(16).toString('hex')
    await this.ensureDirectories()
    await writeFileAtomic(file, `${password}\n`, {mode: SECRET_FILE_MODE, ...this.owner()})
    return {password, created: true}
  }

  /** Keep `value` as a 0600 backup in the 0700 backup directory, named by secret and time; returns its path. */
  async backup(name: SecretName, value: string, at: Date = new Date()): Promise<string> {
    await ensureDir(this.layout.backupDir, SECRET_DIR_MODE)
    // Time first (they sort by it), then a random tail: two backups in the same millisecond both stay.
    const file = this.layout.backupFile(
      `${name}.${at.toISOString().replace(/[:.]/g, '-')}.${randomBytes(3).toString('hex')}`,
    )
    await writeFileAtomic(file, canonicalSecret(name, value), {mode: SECRET_FILE_MODE, ...this.owner()})
    return file
  }

  /** The backups of one secret, oldest first. */
  async backups(name: SecretName): Promise<string[]> {
    const entries = await fs.readdir(this.layout.backupDir).catch(() => [] as string[])
    return entries
      .filter((entry) => entry.startsWith(`${name}.`) && !entry.includes('.tmp'))
      .sort()
      .map((entry) => this.layout.backupFile(entry))
  }

  /** The newest backup's value, if any is valid. */
  async latestBackup(name: SecretName): Promise<string | undefined> {
    const file = (await this.backups(name)).at(-1)
    if (!file) return undefined
    try {
      const content = await readNoFollow(file)
      return validateSecret(name, canonicalSecret(name, content)) ? undefined : secretValue(name, content)
    } catch {
      return undefined
    }
  }

  /** Delete all but the newest `keep` backups of a secret. */
  async pruneBackups(name: SecretName, keep: number): Promise<void> {
    const files = await this.backups(name)
    for (const stale of files.slice(0, Math.max(0, files.length - keep))) await fs.rm(stale, {force: true})
  }

  private missing(name: SecretName): SecretProblem {
    return {
      subject: name,
      file: this.file(name),
      problem: `the ${SECRET_LABELS[name]} ${this.file(name)} is missing`,
      fix: 'run `hubctl secrets generate`',
    }
  }

  private owner(): {uid?: number; gid?: number} {
    return process.getuid?.() === 0 ? {uid: this.uid, gid: this.gid} : {}
  }
}

/** A secret as validateSecret() checks it: DH parameters as they are, a token as one line with its newline. */
function canonicalSecret(name: SecretName, value: string): string {
  return name === 'dhparam' ? value : `${value.trim()}\n`
}

/** A secret's value from its file's content. */
function secretValue(name: SecretName, content: string): string {
  return name === 'dhparam' ? content : content.trim()
}

/** Why `content` is not a valid value for the secret, or undefined when it is. Never quotes the value. */
export function validateSecret(name: SecretName, content: string): string | undefined {
  if (content.length === 0) return 'is empty'
  if (name === 'dhparam') {
    const bits = dhparamBits(content)
    if (bits === undefined) return 'is not a PEM "BEGIN DH PARAMETERS" block'
    if (bits < 2048) return `holds ${bits}-bit parameters, fewer than 2048`
    return undefined
  }
  if (!HEX_SECRET.test(content)) {
    const trimmed = content.trim()
    if (/^[0-9a-f]{64}$/.test(trimmed))
      return 'has spaces or line ends around its 64 hex characters (only one final newline is allowed)'
    if (/^[0-9a-fA-F]{64}$/.test(trimmed)) return 'is upper-case hex (hubctl writes 64 lower-case hex characters)'
    if (/^[0-9a-fA-F]*$/.test(trimmed)) return `holds ${trimmed.length} hex characters, not 64 (truncated?)`
    return 'is not 64 lowercase hex characters'
  }
  return undefined
}

export function problemsError(problems: SecretProblem[]): HubctlError {
  const [first, ...rest] = problems
  const more =
    rest.length > 0
      ? ` (and ${rest.length} more problem${rest.length > 1 ? 's' : ''}: run \`hubctl secrets check\`)`
      : ''
  return checkFailedError(`${first.problem}${more}`, first.fix)
}

async function lstatOrUndefined(file: string) {
  try {
    return await fs.lstat(file)
  } catch (error) {
    if (errnoCode(error) === 'ENOENT' || errnoCode(error) === 'ENOTDIR') return undefined
    throw fsError(error, file)
  }
}

/** Read a small file without following a symbolic link. */
export async function readNoFollow(file: string): Promise<string> {
  let handle
  try {
    handle = await fs.open(file, fsConstants.O_RDONLY | fsConstants.O_NOFOLLOW)
    const stat = await handle.stat()
    if (stat.size > MAX_SECRET_SIZE) return '\0too large'
    return await handle.readFile('utf8')
  } catch (error) {
    throw fsError(error, file)
  } finally {
    await handle?.close()
  }
}

function octal(mode: number): string {
  return `0${(mode & 0o777).toString(8)}`
}
