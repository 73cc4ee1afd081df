import fs from 'node:fs/promises'
import path from 'node:path'

import {PORT_FLAGS, PORT_NAMES} from '../../src/lib/config/settings.js'
import {portInUse} from '../../src/lib/setup/preflight.js'
import {ROOT, portFlags} from './cli.js'

/** README.md, whose commands the tests run as a person types them. */
export const README = await fs.readFile(path.join(ROOT, 'README.md'), 'utf8')

/** The README's command for a server with a domain, whole: `./bin/run.js init --domain … && systemctl start jupyterhub`. */
export function readmeDomainCommand(): string {
  const match = /`(\.\/bin\/run\.js init --domain [^`]*? && systemctl start jupyterhub)`/.exec(README)
  if (!match)
    throw new Error('README.md has no domain command `./bin/run.js init --domain … && systemctl start jupyterhub`')
  return match[1]
}

/** The README's loopback-internal port defaults, moved (with their flags) only when taken on this machine. */
export async function movedInternalPorts(): Promise<string[]> {
  const flags: string[] = []
  const fresh = (await portFlags()).ports
  for (const name of PORT_NAMES) {
    if (name === 'http' || name === 'https') continue
    if (await portInUse(PORT_FLAGS[name].default)) flags.push(PORT_FLAGS[name].flag, String(fresh[name]))
  }
  return flags
}
