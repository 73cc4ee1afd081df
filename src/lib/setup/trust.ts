import fs from 'node:fs/promises'

import {errnoCode, preflightError} from '../errors.js'
import {Layout, besideFile, pathChain} from '../config/layout.js'
import {which} from '../runner.js'

/**
 * What root may load code or config from. hubctl runs as root, and JupyterHub, run by it, executes
 * jupyterhub_config.py and every jupyterhub_config.d/*.py; hubctl.json holds the deploy hooks run
 * by `sh`. A file, or any directory above it, that another user owns or that its group or others
 * may write lets that user run code as root. So each one must belong to root (or to the user
 * running hubctl) and be writable by its owner only. A sticky directory of root's above them (/tmp,
 * mode 1777) is fine: nobody but its owner can replace an entry in it. The config imports hubctl_hub
 * (config/hubpython.ts) from beside it: those files are checked the same way. Enforced only as root: in
 * local mode a user runs hubctl on files of their own.
 */
export interface TrustProblem {
  path: string
  problem: string
  /** The exact command that fixes it. */
  fix: string
}

/** The files and directories root loads code or config from, for this layout and JupyterHub executable. */
export async function trustedPaths(layout: Layout, jupyterhub?: string): Promise<string[]> {
  const paths = [layout.srvDir, layout.etcDir, layout.hubConfig, layout.settings, layout.hubConfigD]
  const extras = await fs.readdir(layout.hubConfigD).catch(() => [] as string[])
  paths.push(...extras.sort().map((name) => layout.hubConfigDFile(name)))
  // hubctl_hub, which the config imports: every entry of its directory, not only the modules hubctl wrote.
  paths.push(layout.hubPythonPath, layout.hubPythonPackage)
  const modules = await fs.readdir(layout.hubPythonPackage).catch(() => [] as string[])
  paths.push(...modules.sort().map((name) => layout.hubPythonFile(name)))
  if (jupyterhub) paths.push(...(await executablePaths(jupyterhub)))
  return paths
}

/** The JupyterHub executable as it resolves, the folder it is in and the one above (a virtualenv), its singleuser, its Python. */
async function executablePaths(jupyterhub: string): Promise<string[]> {
  const found = await which(jupyterhub)
  if (!found) return []
  const real = await fs.realpath(found).catch(() => found)
  // Each path's directories above it are checked too: the virtualenv and its bin/ among them.
  const paths = [found, real, besideFile(real, 'jupyterhub-singleuser')]
  const python = await shebangInterpreter(real)
  const pythonFound = python && (await which(python))
  if (pythonFound) paths.push(pythonFound, await fs.realpath(pythonFound).catch(() => pythonFound))
  return paths
}

/** The interpreter named by a script's `#!` line (through /usr/bin/env too), without running anything. */
async function shebangInterpreter(file: string): Promise<string | undefined> {
  const handle = await fs.open(file, 'r').catch(() => undefined)
  if (!handle) return undefined
  try {
    const {buffer, bytesRead} = await handle.read(Buffer.alloc(256), 0, 256, 0)
    const match = /^#!\s*(\S+)(?:\s+(\S+))?/.exec(buffer.subarray(0, bytesRead).toString('utf8'))
    if (!match) return undefined
    return match[1].endsWith('/env') ? match[2] : match[1]
  } finally {
    await handle.close()
  }
}

/** Every problem with `paths` and each directory above them, from `/` down; none unless running as root. */
export async function trustProblems(paths: string[], uid = process.getuid?.() ?? 0): Promise<TrustProblem[]> {
  if (uid !== 0) return []
  const problems: TrustProblem[] = []
  const seen = new Set<string>()
  const targets = new Set(paths)
  const check = async (file: string): Promise<boolean> => {
    if (seen.has(file)) return true
    seen.add(file)
    let stat
    try {
      stat = await fs.lstat(file)
    } catch (error) {
      if (errnoCode(error) === 'ENOENT' || errnoCode(error) === 'ENOTDIR') return false
      throw error
    }
    if (stat.isSymbolicLink()) {
      // A link cannot be changed, only replaced in its directory (checked); where it leads is checked too.
      const real = await fs.realpath(file).catch(() => undefined)
      if (real) for (const entry of pathChain(real)) if (!(await check(entry))) break
      return true
    }
    if (stat.uid !== 0 && stat.uid !== uid) {
      problems.push({
        path: file,
        problem: `${file} belongs to uid ${stat.uid}, not root, and hubctl (as root) loads what it holds: that user could run code as root`,
        fix: `chown root:root ${file}`,
      })
    }
    const stickyRootDir = stat.isDirectory() && (stat.mode & 0o1000) !== 0 && stat.uid === 0 && !targets.has(file)
    const writable = [(stat.mode & 0o020) !== 0 ? 'its group' : '', (stat.mode & 0o002) !== 0 ? 'others' : ''].filter(
      Boolean,
    )
    if (writable.length > 0 && !stickyRootDir) {
      problems.push({
        path: file,
        problem: `${file} is writable by ${writable.join(' and ')}, and hubctl (as root) loads what it holds: they could run code as root`,
        fix: `chmod go-w ${file}`,
      })
    }
    return true
  }
  for (const target of paths) {
    for (const entry of pathChain(target)) if (!(await check(entry))) break
  }
  return problems
}

/** Refuse (exit 3) to use one file (and the directories above it) that someone else can change; `consequence` says what was not done. */
export async function assertTrustedFile(
  file: string,
  consequence: string,
  uid = process.getuid?.() ?? 0,
): Promise<void> {
  const [first] = await trustProblems([file], uid)
  if (first) throw preflightError(`${first.problem}; ${consequence}`, `${first.fix}, then run the command again`)
}

/** Refuse (exit 3) when root would load code or config that someone else can change. */
export async function assertTrusted(layout: Layout, jupyterhub?: string, uid = process.getuid?.() ?? 0): Promise<void> {
  if (uid !== 0) return
  const [first] = await trustProblems(await trustedPaths(layout, jupyterhub), uid)
  if (first) throw preflightError(first.problem, `${first.fix} (or move it away), then run the command again`)
}
