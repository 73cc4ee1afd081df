import {readFileSync} from 'node:fs'

/** hubctl's version, from package.json (read once, synchronously: it is tiny). */
export const HUBCTL_VERSION: string = (
  JSON.parse(readFileSync(new URL('../../package.json', import.meta.url), 'utf8')) as {version: string}
).version
