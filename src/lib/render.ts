import fs from 'node:fs/promises'

import {ExitCode, HubctlError} from './errors.js'

/** The languages hubctl renders; each has its own escaping (mustache's HTML escaping is wrong for all). */
export type TemplateLanguage = 'python' | 'nginx' | 'plain'

/** The folder of mustache templates shipped with hubctl (beside src/ and dist/). */
export const TEMPLATES_DIR = new URL('../../templates/', import.meta.url)

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
    if (!Number.isFinite(value)) throw new RenderError(`cannot write the number ${value} into Python`, 'give a finite number')
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
  if (/[\n\r\u0000]/.test(text)) throw new RenderError(`the value ${JSON.stringify(text)} holds a line break`, 'use a value on one line')
  return text
}

const ESCAPERS: Record<TemplateLanguage, (value: unknown) => string> = {python: pythonLiteral, nginx: nginxToken, plain}

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
