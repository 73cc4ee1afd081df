import fs from 'node:fs/promises'

import {ensureDir, writeFileAtomicIfChanged} from '../files/atomic.js'
import type {Layout} from './layout.js'

/** hubctl_hub, the hub's Python that jupyterhub_config.py imports, as shipped with hubctl (beside src/ and dist/). */
export const HUB_PYTHON_SOURCE = new URL('../../../python/hubctl_hub/', import.meta.url)

/** The modules of hubctl_hub shipped with hubctl, by file name. */
export async function hubPythonModules(): Promise<string[]> {
  return (await fs.readdir(HUB_PYTHON_SOURCE)).filter((name) => name.endsWith('.py')).sort()
}

/**
 * Install hubctl_hub where the rendered config imports it from (layout.hubPythonPath, which the
 * config puts first on sys.path): one place for any JupyterHub's Python, hubctl's virtualenv or
 * Debian's, beside the config, 0755/0644 and root's when root runs hubctl (checked with the config
 * by setup/trust). Each module is written atomically and only when it changed; anything else in the
 * package directory (a module of an older hubctl, bytecode) is removed: the hub imports only what
 * this hubctl ships.
 */
export async function installHubPython(layout: Layout): Promise<{written: string[]; removed: string[]}> {
  await ensureDir(layout.hubPythonPath, 0o755)
  await ensureDir(layout.hubPythonPackage, 0o755)
  const modules = await hubPythonModules()
  const written: string[] = []
  for (const name of modules) {
    const content = await fs.readFile(new URL(name, HUB_PYTHON_SOURCE))
    if (await writeFileAtomicIfChanged(layout.hubPythonFile(name), content, {mode: 0o644}))
      written.push(layout.hubPythonFile(name))
  }
  const removed: string[] = []
  for (const name of (await fs.readdir(layout.hubPythonPackage)).sort()) {
    if (modules.includes(name)) continue
    await fs.rm(layout.hubPythonFile(name), {recursive: true, force: true})
    removed.push(layout.hubPythonFile(name))
  }
  return {written, removed}
}
