import {usageError} from '../errors.js'
import {hasControlChar, parseUserName} from '../validate.js'

/**
 * Who may use the hub, as `hubctl users` sees it: names, admin flags, and the rules a name must
 * follow. Pure: no file, no process (the service in users.ts does those).
 */

/** One user of a roster (`users sync FILE`) or of a command line (`users add`). */
export interface RosterEntry {
  name: string
  admin: boolean
  email?: string
  /** The roster's line, for messages. */
  line?: number
}

/** Names a hub user may never have, whatever uid they have here. */
export const RESERVED_NAMES = new Set([
  'root',
  'daemon',
  'bin',
  'sys',
  'sync',
  'games',
  'man',
  'lp',
  'mail',
  'news',
  'uucp',
  'proxy',
  'www-data',
  'backup',
  'list',
  'irc',
  'gnats',
  'nobody',
  'nogroup',
  'systemd-network',
  'systemd-resolve',
  'messagebus',
  'sshd',
  'jupyterhub',
])

/** A portable Unix login name (useradd's default rule on Debian, without the trailing $ of machine accounts). */
const UNIX_NAME = /^[a-z_][a-z0-9_-]{0,31}$/

/**
 * A user name for this hub: a valid JupyterHub name (validate.ts), not a reserved one and, when the
 * hub logs users in with their Unix accounts (PAM), a portable Unix name. Throws naming the fix.
 */
export function checkUserName(input: string, options: {pam: boolean; where?: string}): string {
  const where = options.where ?? 'user name'
  const name = parseUserName(input, where)
  if (RESERVED_NAMES.has(name))
    throw usageError(
      `${where} ${JSON.stringify(name)} is a reserved system account`,
      'choose a personal name for the user (system accounts never log in to the hub)',
    )
  if (options.pam && !UNIX_NAME.test(name))
    throw usageError(
      `${where} ${JSON.stringify(name)} is not a valid Unix user name, which PAM logins need`,
      'use at most 32 characters from a-z, 0-9, _ and -, starting with a letter or _',
    )
  return name
}

/** The yes/no of a roster's admin column. */
function parseFlag(value: string, where: string): boolean {
  const v = value.trim().toLowerCase()
  if (['', '0', 'no', 'n', 'false', 'f'].includes(v)) return false
  if (['1', 'yes', 'y', 'true', 't', 'x', 'admin'].includes(v)) return true
  throw usageError(
    `${where}: admin is ${JSON.stringify(value)}, neither yes nor no`,
    'write yes/no, true/false or 1/0 (empty is no)',
  )
}

/** RFC 4180 records: quoted fields may hold commas, quotes ("") and line breaks. */
export function parseCsv(text: string, file: string): string[][] {
  return parseCsvLines(text, file).map((row) => row.cells)
}

/** The records, each with the line it starts on. */
function parseCsvLines(text: string, file: string): Array<{cells: string[]; line: number}> {
  const rows: Array<{cells: string[]; line: number}> = []
  let start = 1
  let row: string[] = []
  let field = ''
  let quoted = false
  let atStart = true
  let line = 1
  for (let i = 0; i < text.length; i++) {
    const c = text[i]
    if (quoted) {
      if (c === '"') {
        if (text[i + 1] === '"') {
          field += '"'
          i++
        } else quoted = false
      } else {
        if (c === '\n') line++
        field += c
      }
      continue
    }
    if (c === '"' && atStart) {
      quoted = true
      atStart = false
    } else if (c === '"') {
      throw usageError(
        `${file} line ${line}: a quote inside a field that does not start with one`,
        'quote the whole field ("...") and double the quotes inside it ("")',
      )
    } else if (c === ',') {
      row.push(field)
      field = ''
      atStart = true
    } else if (c === '\n' || c === '\r') {
      if (c === '\r' && text[i + 1] === '\n') i++
      row.push(field)
      rows.push({cells: row, line: start})
      row = []
      field = ''
      atStart = true
      line++
      start = line
    } else {
      field += c
      atStart = false
    }
  }
  if (quoted) throw usageError(`${file}: a quoted field is never closed`, 'close the quote ("), then run again')
  if (field !== '' || row.length > 0) {
    row.push(field)
    rows.push({cells: row, line: start})
  }
  return rows
}

/**
 * A roster: CSV with a header naming `username` and, optionally, `admin` and `email` (other
 * columns are refused, so a misspelled one is not silently ignored). Every problem of the file is
 * found before any change: the first is thrown, naming its line and the fix.
 */
export function parseRoster(text: string, file: string, options: {pam: boolean}): RosterEntry[] {
  if (text.includes('\0') || hasControlChar(text.replace(/[\r\n\t]/g, '')))
    throw usageError(
      `${file} is not a CSV text file (it holds binary data)`,
      'give a CSV file with a header line: username,admin,email',
    )
  const body = text.replace(/^\uFEFF/, '')
  if (body.trim() === '')
    throw usageError(`${file} is empty`, 'write a header line "username,admin,email", then one line per user')
  const firstLine = body.split(/\r?\n/)[0]
  const headerProblem = () =>
    usageError(
      `${file} does not start with a CSV header naming the columns username, admin, email (its first line is ${JSON.stringify(firstLine.slice(0, 80))})`,
      'make the first line "username" or "username,admin,email" (in any order), then one line per user',
    )
  if (!/^(?:[^,]*,)*\s*"?username"?\s*(?:,|$)/i.test(firstLine)) throw headerProblem()
  const rows = parseCsvLines(body, file).filter((row) => !(row.cells.length === 1 && row.cells[0].trim() === ''))
  const header = rows[0].cells.map((cell) => cell.trim().toLowerCase())
  const known = ['username', 'admin', 'email']
  const unknown = header.filter((cell) => !known.includes(cell))
  if (!header.includes('username') || unknown.length > 0) throw headerProblem()
  const duplicateColumn = header.find((cell, i) => header.indexOf(cell) !== i)
  if (duplicateColumn) throw usageError(`${file}: the header names ${duplicateColumn} twice`, 'keep one such column')
  const column = (name: string) => header.indexOf(name)
  const entries: RosterEntry[] = []
  const seen = new Map<string, number>()
  rows.slice(1).forEach(({cells: row, line}) => {
    const where = `${file} line ${line}`
    if (row.length !== header.length)
      throw usageError(
        `${where} has ${row.length} field(s) where the header has ${header.length}`,
        'give every line the same columns as the header (an empty field is fine)',
      )
    const name = checkUserName(row[column('username')].trim(), {pam: options.pam, where: `${where}: username`})
    const first = seen.get(name)
    if (first !== undefined)
      throw usageError(`${where}: ${name} is listed twice (also line ${first})`, 'keep one line per user')
    seen.set(name, line)
    const admin = column('admin') >= 0 ? parseFlag(row[column('admin')], where) : false
    const email = column('email') >= 0 ? row[column('email')].trim() || undefined : undefined
    if (email !== undefined && !/^[^\s@,]+@[^\s@,]+\.[^\s@,]+$/.test(email))
      throw usageError(
        `${where}: ${JSON.stringify(email)} is not an e-mail address`,
        'give an address such as ada@example.org, or leave it empty',
      )
    entries.push({name, admin, email, line})
  })
  return entries
}

/** The users hubctl.json lets in: admins and allowed users. */
export interface CurrentUsers {
  admins: string[]
  allowedUsers: string[]
}

export interface UserPlan {
  add: RosterEntry[]
  remove: string[]
  /** Admin flag changes of users who stay. */
  change: Array<{name: string; admin: boolean}>
  /** Users the roster names that hubctl.json already has, unchanged. */
  keep: string[]
  /** Users hubctl.json has already who lack the system account a PAM login needs: it is made (filled by the service). */
  account: RosterEntry[]
}

/** Whether the plan changes nothing. */
export function emptyPlan(plan: UserPlan): boolean {
  return plan.add.length === 0 && plan.remove.length === 0 && plan.change.length === 0 && plan.account.length === 0
}

/**
 * What `users sync` does to make hubctl.json match the roster: who to add, who to remove (only
 * with removeMissing), whose admin flag changes. Refuses a plan that would leave no admin.
 */
export function planSync(current: CurrentUsers, roster: RosterEntry[], options: {removeMissing: boolean}): UserPlan {
  const admins = new Set(current.admins)
  const existing = new Set([...current.admins, ...current.allowedUsers])
  const wanted = new Map(roster.map((entry) => [entry.name, entry]))
  const plan: UserPlan = {add: [], remove: [], change: [], keep: [], account: []}
  for (const entry of roster) {
    if (!existing.has(entry.name)) plan.add.push(entry)
    else if (admins.has(entry.name) !== entry.admin) plan.change.push({name: entry.name, admin: entry.admin})
    else plan.keep.push(entry.name)
  }
  if (options.removeMissing) plan.remove = [...existing].filter((name) => !wanted.has(name)).sort()
  const after = applyPlan(current, plan)
  if (after.admins.length === 0)
    throw usageError(
      'the roster would leave the hub without an admin',
      'mark at least one user admin (a column admin with yes), or run without --remove-missing',
    )
  return plan
}

/** hubctl.json's two lists after a plan: every user stays in allowedUsers, admins also in admins. */
export function applyPlan(current: CurrentUsers, plan: UserPlan): CurrentUsers {
  const admins = new Set(current.admins)
  const allowed = new Set([...current.allowedUsers, ...current.admins])
  for (const entry of plan.add) {
    allowed.add(entry.name)
    if (entry.admin) admins.add(entry.name)
  }
  for (const {name, admin} of plan.change) {
    allowed.add(name)
    if (admin) admins.add(name)
    else admins.delete(name)
  }
  for (const name of plan.remove) {
    allowed.delete(name)
    admins.delete(name)
  }
  return {admins: [...admins].sort(), allowedUsers: [...allowed].sort()}
}
