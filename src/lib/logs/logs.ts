import fs from 'node:fs/promises'

import {Layout} from '../config/layout.js'
import {usageError} from '../errors.js'
import {parseUserName} from '../validate.js'

/*
 * `hubctl logs`: the files the stack writes under var/log/jupyterhub, read back in order. Each
 * program writes its own file (the supervisor hands each child its log: children.ts), so a source
 * is one or two files; a file's previous week, kept uncompressed by logrotate (`delaycompress`) as
 * FILE.1, comes before it. Several files are shown one after the other under `==> FILE <==`
 * headers, as `tail` does: the proxy's lines carry no date and a traceback none at all, so a merge
 * by time would interleave guesses. Each line's time (for --since) is read from the program's own
 * format; a line without one (a traceback, a continued message) belongs to the line before it.
 */

export const LOG_SOURCES = ['hub', 'proxy', 'nginx', 'hubctl'] as const
export type LogSource = (typeof LOG_SOURCES)[number]
export type LogChoice = LogSource | 'all'

export interface LogFile {
  source: LogSource
  file: string
}

export interface LogLine {
  source: LogSource
  file: string
  /** ISO time read from the line (or the line it continues); null when none could be read. */
  at: string | null
  text: string
}

export interface LogsRequest {
  source: LogChoice
  /** Only lines at or after this time (ms since the epoch). */
  sinceMs?: number
  /** The last N lines of each file (after the other filters). */
  lines?: number
  /** Only lines of the hub (and hubctl's) naming this user: spawns, stops, culls, errors. */
  user?: string
  /** The current time (ms), for the proxy's lines that have a time of day but no date. */
  now?: number
}

export interface LogsResult {
  source: LogChoice
  files: Array<LogFile & {exists: boolean}>
  lines: LogLine[]
}

/** --lines when neither --lines nor --since is given. */
export const DEFAULT_LINES = 50

/** The files of a source, in the order shown. `all`: hubctl's events, then the proxy, the hub and nginx. */
export function logFiles(layout: Layout, source: LogChoice): LogFile[] {
  const bySource: Record<LogSource, string[]> = {
    hubctl: [layout.supervisorLog, layout.auditLog],
    proxy: [layout.proxyLog],
    hub: [layout.hubLog],
    nginx: [layout.nginxErrorLog, layout.nginxAccessLog],
  }
  const order: LogSource[] = source === 'all' ? ['hubctl', 'proxy', 'hub', 'nginx'] : [source]
  return order.flatMap((name) => bySource[name].map((file) => ({source: name, file})))
}

/** The positional argument: a source name or `all`; anything else is exit 2. */
export function parseLogChoice(text: string | undefined): LogChoice {
  const value = (text ?? 'all').toLowerCase()
  if (value === 'all' || (LOG_SOURCES as readonly string[]).includes(value)) return value as LogChoice
  throw usageError(`there is no log "${text}"`, `give one of ${[...LOG_SOURCES, 'all'].join(', ')}`)
}

/** --lines: a whole number, 1 or more. */
export function parseLines(text: string | undefined): number | undefined {
  if (text === undefined) return undefined
  if (!/^\d+$/.test(text.trim()) || Number(text) < 1)
    throw usageError(
      `--lines ${JSON.stringify(text)} is not a number of lines`,
      'give a whole number, e.g. --lines 100',
    )
  return Number(text)
}

/** Check the request's combination; the user name as JupyterHub would have it. */
export function checkLogsRequest(request: LogsRequest): LogsRequest {
  if (request.user !== undefined) {
    parseUserName(request.user, '--user')
    if (request.source !== 'all' && request.source !== 'hub' && request.source !== 'hubctl')
      throw usageError(
        `--user reads the hub's and hubctl's logs, not ${request.source}'s`,
        `drop ${request.source} (or give hub), e.g. hubctl logs --user ${request.user}`,
      )
  }
  return request
}

const MONTHS: Record<string, number> = {
  Jan: 0,
  Feb: 1,
  Mar: 2,
  Apr: 3,
  May: 4,
  Jun: 5,
  Jul: 6,
  Aug: 7,
  Sep: 8,
  Oct: 9,
  Nov: 10,
  Dec: 11,
}

/**
 * The time a line was written, from each program's own format; undefined when it has none.
 * JupyterHub and its culler (tornado): `[I 2026-11-30 00:14:07.123 JupyterHub app:123] …` (local
 * time); hubctl: ISO with Z; nginx's error log `2026/11/30 00:14:07 [error] …` (local) and access
 * log `[30/Nov/2026:00:14:07 +0000]`; configurable-http-proxy `00:14:07.123 [ConfigProxy] …`
 * (local time of day: the day is today's, or yesterday's when that would be in the future).
 */
export function lineTime(text: string, now: number): number | undefined {
  let m = /^\[[A-Z] (\d{4})-(\d\d)-(\d\d) (\d\d):(\d\d):(\d\d)(?:\.(\d{1,3}))?/.exec(text)
  if (m) return local(m.slice(1, 7).map(Number), Number((m[7] ?? '0').padEnd(3, '0')))
  m = /^(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(?:\.\d+)?Z)/.exec(text)
  if (m) return Date.parse(m[1])
  m = /^(\d{4})\/(\d\d)\/(\d\d) (\d\d):(\d\d):(\d\d) \[/.exec(text)
  if (m) return local(m.slice(1, 7).map(Number), 0)
  m = /\[(\d\d)\/([A-Z][a-z]{2})\/(\d{4}):(\d\d):(\d\d):(\d\d) ([+-])(\d\d)(\d\d)\]/.exec(text)
  if (m && MONTHS[m[2]] !== undefined) {
    const offset = (m[7] === '-' ? -1 : 1) * (Number(m[8]) * 60 + Number(m[9])) * 60_000
    return Date.UTC(Number(m[3]), MONTHS[m[2]], Number(m[1]), Number(m[4]), Number(m[5]), Number(m[6])) - offset
  }
  m = /^(\d\d):(\d\d):(\d\d)\.(\d{3}) \[ConfigProxy\]/.exec(text)
  if (m) {
    const day = new Date(now)
    let at = new Date(day.getFullYear(), day.getMonth(), day.getDate(), +m[1], +m[2], +m[3], +m[4]).getTime()
    if (at > now + 60_000) at -= 86_400_000
    return at
  }
  return undefined
}

function local([year, month, day, hour, minute, second]: number[], ms: number): number {
  return new Date(year, month - 1, day, hour, minute, second, ms).getTime()
}

/** A user's name as a whole word (not part of another name): `User bob took`, `/user/bob/`, `server bob (`. */
function namesUser(text: string, user: string): boolean {
  const escaped = user.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')
  return new RegExp(`(?<![\\w.@-])${escaped}(?![\\w@-]|\\.\\w)`).test(text)
}

/** The hub's request log answering a read (2xx/3xx GET or HEAD): noise for --user, not a spawn, stop or error. */
function isPlainRead(text: string): boolean {
  return /^\[I [^\]]* log:\d+\] [23]\d\d (GET|HEAD) /.test(text)
}

/** The lines of one file's text with their times; continuation lines take the time of the line before. */
export function parseLog(text: string, file: LogFile, now: number): LogLine[] {
  const lines: LogLine[] = []
  let last: number | undefined
  const rows = text.split('\n')
  if (rows.at(-1) === '') rows.pop()
  for (const row of rows) {
    const at = lineTime(row, now)
    if (at !== undefined) last = at
    lines.push({
      source: file.source,
      file: file.file,
      at: last === undefined ? null : new Date(last).toISOString(),
      text: row,
    })
  }
  return lines
}

/** The request's filters on one file's lines: --user (with the lines continuing a kept one), --since, --lines. */
export function selectLines(lines: LogLine[], request: LogsRequest): LogLine[] {
  let kept = lines
  if (request.user !== undefined) {
    const user = request.user
    const out: LogLine[] = []
    let keeping = false
    for (const line of lines) {
      const starts = lineTime(line.text, request.now ?? Date.now()) !== undefined
      if (starts) keeping = namesUser(line.text, user) && !isPlainRead(line.text)
      if (keeping) out.push(line)
    }
    kept = out
  }
  if (request.sinceMs !== undefined) {
    const since = request.sinceMs
    kept = kept.filter((line) => line.at !== null && Date.parse(line.at) >= since)
  }
  const count = request.lines ?? (request.sinceMs === undefined ? DEFAULT_LINES : undefined)
  return count === undefined ? kept : kept.slice(-count)
}

/** The text of a log and of its previous week (FILE.1) before it; undefined when neither exists. */
async function readWithRotated(file: string): Promise<string | undefined> {
  const read = (name: string) =>
    fs.readFile(name, 'utf8').catch((error: NodeJS.ErrnoException) => {
      if (error.code === 'ENOENT') return undefined
      throw error
    })
  const [previous, current] = [await read(`${file}.1`), await read(file)]
  if (previous === undefined && current === undefined) return undefined
  const joined = [previous, current].filter((part): part is string => part !== undefined)
  return joined.map((part) => (part.endsWith('\n') || part === '' ? part : `${part}\n`)).join('')
}

/** Read and filter the request's logs (a file that does not exist is listed, with no lines). */
export async function readLogs(layout: Layout, request: LogsRequest): Promise<LogsResult> {
  checkLogsRequest(request)
  const now = request.now ?? Date.now()
  const files = logFiles(layout, request.source).filter(
    (file) => request.user === undefined || file.source === 'hub' || file.file === layout.supervisorLog,
  )
  const result: LogsResult = {source: request.source, files: [], lines: []}
  for (const file of files) {
    const text = await readWithRotated(file.file)
    result.files.push({...file, exists: text !== undefined})
    if (text !== undefined) result.lines.push(...selectLines(parseLog(text, file, now), {...request, now}))
  }
  return result
}

/** The lines as text: one file's as they are; several under `==> FILE <==` headers, as tail shows them. */
export function formatLogs(result: LogsResult): string {
  const shown = result.files.filter((file) => file.exists)
  if (shown.length <= 1) return result.lines.map((line) => `${line.text}\n`).join('')
  const out: string[] = []
  for (const file of shown) {
    out.push(`${out.length > 0 ? '\n' : ''}==> ${file.file} <==\n`)
    for (const line of result.lines) if (line.file === file.file) out.push(`${line.text}\n`)
  }
  return out.join('')
}

/**
 * `-f`: new lines as they are written, until `signal` aborts. Each file is polled (`intervalMs`)
 * from its end as of the call; a file truncated or replaced (logrotate's copytruncate, or a new
 * file) is read again from its start. Lines pass the request's --user filter; the header of a file
 * is written before its lines when the previous lines were another file's (as `tail -f`).
 */
export async function followLogs(
  layout: Layout,
  request: LogsRequest,
  write: (text: string) => void,
  options: {signal: AbortSignal; intervalMs?: number; headers?: boolean},
): Promise<void> {
  checkLogsRequest(request)
  const files = logFiles(layout, request.source).filter(
    (file) => request.user === undefined || file.source === 'hub' || file.file === layout.supervisorLog,
  )
  const positions = new Map<string, {ino: number; offset: number; partial: string; keeping: boolean}>()
  for (const file of files) {
    const stat = await fs.stat(file.file).catch(() => undefined)
    positions.set(file.file, {ino: stat?.ino ?? -1, offset: stat?.size ?? 0, partial: '', keeping: false})
  }
  let lastFile: string | undefined
  const interval = options.intervalMs ?? 500
  while (!options.signal.aborted) {
    for (const file of files) {
      const position = positions.get(file.file)!
      const stat = await fs.stat(file.file).catch(() => undefined)
      if (!stat) continue
      if (stat.ino !== position.ino || stat.size < position.offset) {
        position.ino = stat.ino
        position.offset = 0
        position.partial = ''
      }
      if (stat.size === position.offset) continue
      const handle = await fs.open(file.file, 'r')
      let chunk: string
      try {
        const buffer = Buffer.alloc(stat.size - position.offset)
        const {bytesRead} = await handle.read(buffer, 0, buffer.length, position.offset)
        position.offset += bytesRead
        chunk = position.partial + buffer.subarray(0, bytesRead).toString('utf8')
      } finally {
        await handle.close()
      }
      const rows = chunk.split('\n')
      position.partial = rows.pop() ?? ''
      const out: string[] = []
      for (const row of rows) {
        if (request.user !== undefined) {
          if (lineTime(row, Date.now()) !== undefined)
            position.keeping = namesUser(row, request.user) && !isPlainRead(row)
          if (!position.keeping) continue
        }
        out.push(`${row}\n`)
      }
      if (out.length === 0) continue
      if (options.headers && lastFile !== file.file)
        write(`${lastFile === undefined ? '' : '\n'}==> ${file.file} <==\n`)
      lastFile = file.file
      write(out.join(''))
    }
    await new Promise<void>((resolve) => {
      const done = () => {
        clearTimeout(timer)
        options.signal.removeEventListener('abort', done)
        resolve()
      }
      const timer = setTimeout(done, interval)
      options.signal.addEventListener('abort', done, {once: true})
    })
  }
}
