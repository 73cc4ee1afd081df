import fs from 'node:fs/promises'

import {ExitCode, HubctlError} from '../errors.js'
import {hasControlChar} from '../validate.js'

/** The languages hubctl renders; each has its own escaping (mustache's HTML escaping is wrong for all). */
export type TemplateLanguage = 'python' | 'nginx' | 'plain' | 'systemd' | 'cron' | 'logrotate'

/** The folder of mustache templates shipped with hubctl (beside src/ and dist/). */
export const TEMPLATES_DIR = new URL('../../../templates/', import.meta.url)

export class RenderError extends HubctlError {
  constructor(message: string, fix: string) {
    super(message, {exitCode: ExitCode.USAGE, fix})
  }
}

/**
 * A Python literal for the value: strings become a double-quoted literal in which every quote,
 * backslash, newline and control character is escaped (JSON's string syntax is a subset of
 * Python's), numbers stay numbers, booleans become True/False.
 */
export function pythonLiteral(value: unknown): string {
  if (typeof value === 'number') {
    if (!Number.isFinite(value))
      throw new RenderError(`cannot write the number ${value} into Python`, 'give a finite number')
    return String(value)
  }
  if (typeof value === 'boolean') return value ? 'True' : 'False'
  if (typeof value === 'string') return JSON.stringify(value)
  throw new RenderError(`cannot write a ${typeof value} into Python`, 'report this as a hubctl bug')
}

const NGINX_SAFE = /^[A-Za-z0-9._~:/@+=,%-]+$/
const NGINX_QUOTABLE = /^[A-Za-z0-9._~:/@+=,% -]+$/

/**
 * An nginx token for the value. nginx has no escape for `$` (variables) and treats `;`, `{`, `}`,
 * `#` and quotes as syntax, so a value holding any of those cannot be written safely and is
 * refused; a value with spaces is written inside double quotes.
 */
export function nginxToken(value: unknown): string {
  if (typeof value === 'number' && Number.isInteger(value)) return String(value)
  const text = String(value)
  if (NGINX_SAFE.test(text)) return text
  if (NGINX_QUOTABLE.test(text)) return `"${text}"`
  throw new RenderError(
    `the value ${JSON.stringify(text)} cannot be written safely into the nginx configuration`,
    'use a value (a path, a name) without quotes, backslashes, $, ;, {, }, #, control or non-ASCII characters',
  )
}

function plain(value: unknown): string {
  const text = String(value)
  if (/[\n\r]/.test(text) || text.includes(String.fromCharCode(0)))
    throw new RenderError(`the value ${JSON.stringify(text)} holds a line break`, 'use a value on one line')
  return text
}

function oneLine(value: unknown): string {
  const text = String(value)
  if (hasControlChar(text))
    throw new RenderError(
      `the value ${JSON.stringify(text)} holds a line break or a control character`,
      'use a value (a path) on one line, without control characters',
    )
  return text
}

const WORD_SAFE = /^[A-Za-z0-9_@+=:,./-]+$/

/**
 * One word of a systemd command line (ExecStart=): systemd first replaces `%` specifiers (`%%` is
 * a `%`), then splits on whitespace, removing quotes and C escapes, and at run time replaces
 * `$NAME` (`$$` is a `$`). A value that needs it is written in double quotes with `\` and `"`
 * escaped.
 */
export function systemdWord(value: unknown): string {
  const text = oneLine(value)
  if (WORD_SAFE.test(text)) return text
  return `"${text
    .replaceAll(/[\\"]/g, (c) => `\\${c}`)
    .replaceAll('%', '%%')
    .replaceAll('$', '$$$$')}"`
}

/**
 * One word of a cron command: cron makes every unescaped `%` a newline (the rest becomes standard
 * input) and turns `\%` into `%`, then gives the line to `sh -c`. So: a shell word in single quotes,
 * each `%` as `\%`; a backslash right before a `%` is closed off first (`'\''\%`), or cron would read
 * the pair `\\` and leave the `%` bare.
 */
export function cronWord(value: unknown): string {
  const text = oneLine(value)
  if (WORD_SAFE.test(text)) return text
  const quoted = `'${text.replaceAll("'", `'\\''`)}'`
  return quoted.replaceAll(/(\\?)%/g, (_, backslash: string) => (backslash ? `\\''\\%` : '\\%'))
}

const LOGROTATE_SAFE = /^[A-Za-z0-9_@+=:,.%/ -]+$/

/**
 * A path in a logrotate configuration, as it is or in double quotes when it has a space (quotes
 * that logrotate and, in its scripts, sh read alike): a value with quotes, `$`, backslashes, globs,
 * or control characters is refused.
 */
export function logrotatePath(value: unknown): string {
  const text = oneLine(value)
  if (!LOGROTATE_SAFE.test(text))
    throw new RenderError(
      `the path ${JSON.stringify(text)} cannot be written safely into the logrotate configuration`,
      'use a --prefix without quotes, $, backslashes, *, ?, [ or non-ASCII characters',
    )
  return WORD_SAFE.test(text) ? text : `"${text}"`
}

const ESCAPERS: Record<TemplateLanguage, (value: unknown) => string> = {
  python: pythonLiteral,
  nginx: nginxToken,
  plain,
  systemd: systemdWord,
  cron: cronWord,
  logrotate: logrotatePath,
}

/** Render a template text with every `{{value}}` escaped for `language`. Throws RenderError on an unsafe value. */
export async function renderText(template: string, view: object, language: TemplateLanguage): Promise<string> {
  const {default: Mustache} = await import('mustache')
  return Mustache.render(template, view, {}, {escape: ESCAPERS[language]})
}

/** Render `templates/<name>.mustache`. */
export async function renderTemplate(name: string, view: object, language: TemplateLanguage): Promise<string> {
  const template = await fs.readFile(new URL(`${name}.mustache`, TEMPLATES_DIR), 'utf8')
  return renderText(template, view, language)
}
