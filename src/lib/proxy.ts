import {createRequire} from 'node:module'

/** configurable-http-proxy's entry point: the npm package hubctl depends on, run with hubctl's own Node. */
export function proxyExecutable(): string {
  return createRequire(import.meta.url).resolve('configurable-http-proxy/bin/configurable-http-proxy')
}
