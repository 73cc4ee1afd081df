import {createRequire} from 'node:module'
import {fileURLToPath} from 'node:url'

/** configurable-http-proxy's entry point: the npm package hubctl depends on, run with hubctl's own Node. */
export function proxyExecutable(): string {
  return createRequire(import.meta.url).resolve('configurable-http-proxy/bin/configurable-http-proxy')
}

/** The storage backend that starts a proxy with the routes of the one it replaces (CommonJS: CHP require()s it). */
export function seededStoreModule(): string {
  return fileURLToPath(new URL('../../../proxy/seeded-store.cjs', import.meta.url))
}
