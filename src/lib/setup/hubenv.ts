import {createHash} from 'node:crypto'
import fs from 'node:fs/promises'
import {fileURLToPath} from 'node:url'

import {ensureDir, exists, readIfExists, symlinkAtomic, writeFileAtomic} from '../files/atomic.js'
import {HubctlError, internalError, preflightError} from '../errors.js'
import {Layout} from '../config/layout.js'
import {Runner, which} from '../runner.js'

/**
 * hubctl's own JupyterHub: a virtualenv of the current JupyterHub and JupyterLab from PyPI, at the
 * exact versions hubctl is tested with (python/constraints.txt, shipped in the package).
 *
 * Where: `opt/jupyterhub` under the prefix (`/opt/jupyterhub` on a server), 0755 and root's, so
 * every system user whose server runs from it can read and execute it. Each environment is built
 * in `envs/<id>` (id: a hash of the constraints and the Python), marked complete as its last step,
 * and only then made live by swapping the `current` link, the way certificates are swapped: a
 * failed or interrupted build is never what `current` names, and is removed before the next try.
 * A virtualenv cannot be moved after it is built (its scripts name their interpreter by absolute
 * path), so the swap is of a link, not a rename of the directory.
 */

/** What hubctl installs; every version, theirs and their dependencies', comes from the constraints. */
// jupyterhub-idle-culler runs as a service of the hub (init --cull-idle); oauthenticator for --authenticator github|google|oauth;
// batchspawner for --spawner slurm;
// nbgitpuller for the assignment links (hubctl link);
// jupyterhub-systemdspawner for init --mem-limit, --cpu-limit, --tasks-limit.
export const HUB_PACKAGES = [
  'jupyterhub',
  'jupyterlab',
  'jupyterhub-idle-culler',
  'oauthenticator',
  'batchspawner',
  'nbgitpuller',
  'jupyterhub-systemdspawner',
] as const
export const CONSTRAINTS_FILE = new URL('../../../python/constraints.txt', import.meta.url)
/** Packages pip brings that no hub or server uses and that cost every start (the file says which and why). */
export const UNUSED_FILE = new URL('../../../python/unused.txt', import.meta.url)

export interface HubEnvPlan {
  id: string
  dir: string
  /** The jupyterhub executable the environment has (or will have). */
  jupyterhub: string
  /** The pinned versions, from the constraints. */
  versions: {jupyterhub: string; jupyterlab: string}
  /** ready: built and live; build: to be built (or made live). */
  action: 'ready' | 'build'
  python: string
}

export interface HubEnvDeps {
  layout: Layout
  runner: Runner
  /** Where the constraints come from (tests may pass their own). */
  constraintsFile?: URL | string
  /** The Python that builds the environment (default: /usr/bin/python3, else python3 on PATH). */
  python?: string
  onProgress?: (text: string) => void
}

/** The system's Python: Debian's /usr/bin/python3 (readable by every user), else the first python3 on PATH. */
export async function systemPython(): Promise<string | undefined> {
  return (await which('/usr/bin/python3')) ?? which('python3')
}

/** Whether `python` can make a virtualenv with pip in it (Debian splits ensurepip into python3-venv). */
export async function canMakeVenv(runner: Runner, python: string): Promise<boolean> {
  const result = await runner.run(python, ['-I', '-c', 'import venv, ensurepip'], {cwd: '/', timeoutMs: 60_000})
  return result.exitCode === 0
}

export class HubEnvService {
  constructor(private readonly deps: HubEnvDeps) {}

  async constraints(): Promise<string> {
    return fs.readFile(this.deps.constraintsFile ?? CONSTRAINTS_FILE, 'utf8')
  }

  /** The pinned version of each package hubctl installs. */
  static pinned(constraints: string): {jupyterhub: string; jupyterlab: string} {
    const pin = (name: string) => {
      const match = new RegExp(`^${name}==(\\S+)\\s*$`, 'm').exec(constraints)
      if (!match)
        throw internalError(`the constraints shipped with hubctl pin no version of ${name}`, 'reinstall hubctl')
      return match[1]
    }
    return {jupyterhub: pin('jupyterhub'), jupyterlab: pin('jupyterlab')}
  }

  /**
   * What init will do, writing nothing: refuses an opt/jupyterhub that is not hubctl's. `python`
   * may be undefined when the system has none yet (init installs it first); the id then counts on
   * the Python the system package brings.
   */
  async plan(python?: string): Promise<HubEnvPlan> {
    const {layout} = this.deps
    await this.assertOurs()
    const constraints = await this.constraints()
    const pythonVersion = python ? await this.pythonVersion(python) : 'system python3'
    const unused = await fs.readFile(UNUSED_FILE, 'utf8')
    const id = createHash('sha256')
      .update(`${HUB_PACKAGES.join(' ')}\n${pythonVersion}\n${constraints}\n${unused}`)
      .digest('hex')
      .slice(0, 16)
    const complete = await exists(layout.hubEnvComplete(id))
    const live = (await fs.readlink(layout.hubEnvCurrent).catch(() => undefined)) === layout.hubEnvLinkTarget(id)
    return {
      id,
      dir: layout.hubEnv(id),
      jupyterhub: layout.hubEnvJupyterhub(id),
      versions: HubEnvService.pinned(constraints),
      action: complete && live ? 'ready' : 'build',
      python: python ?? '/usr/bin/python3',
    }
  }

  /** opt/jupyterhub is hubctl's when it holds hubctl's marker, or is missing or empty. */
  private async assertOurs(): Promise<void> {
    const {layout} = this.deps
    let entries: string[]
    try {
      const stat = await fs.lstat(layout.hubEnvRoot)
      if (!stat.isDirectory()) throw notOurs(layout, 'is not a directory')
      entries = await fs.readdir(layout.hubEnvRoot)
    } catch (error) {
      if (error instanceof HubctlError) throw error
      if ((error as NodeJS.ErrnoException).code === 'ENOENT') return
      throw error
    }
    if (entries.length > 0 && !entries.includes('.hubctl-env'))
      throw notOurs(layout, "exists and is not hubctl's (it has no .hubctl-env)")
  }

  private async pythonVersion(python: string): Promise<string> {
    const result = await this.deps.runner.run(python, ['-I', '-c', 'import sys; print(sys.version)'], {
      cwd: '/',
      timeoutMs: 60_000,
    })
    if (result.exitCode !== 0)
      throw preflightError(
        `${python} does not run (${result.stderr.trim().split('\n').pop() ?? 'no output'})`,
        'reinstall Python 3 (apt-get install --reinstall python3 python3-venv)',
      )
    return `${python} ${result.stdout.trim()}`
  }

  /**
   * Build the planned environment (when it is not already built), then make it live. Every
   * failure leaves `current` as it was and removes the half-built environment.
   */
  async build(plan: HubEnvPlan, options: {live?: boolean} = {}): Promise<{built: boolean}> {
    const {layout, runner} = this.deps
    const progress = this.deps.onProgress ?? (() => {})
    await ensureDir(layout.hubEnvRoot, 0o755)
    await fs.chmod(layout.hubEnvRoot, 0o755)
    if ((await readIfExists(layout.hubEnvMarker)) === undefined) {
      await writeFileAtomic(
        layout.hubEnvMarker,
        'This directory is managed by hubctl: its JupyterHub and JupyterLab environments (hubctl init).\n',
        {mode: 0o644},
      )
    }
    await ensureDir(layout.hubEnvsDir, 0o755)
    await fs.chmod(layout.hubEnvsDir, 0o755)
    let built = false
    if (!(await exists(layout.hubEnvComplete(plan.id)))) {
      // A build that was interrupted (killed, disk full) left this behind: never used, removed.
      await fs.rm(plan.dir, {recursive: true, force: true})
      try {
        progress(`creating a virtualenv with ${plan.python}`)
        await this.step(plan, 'create the virtualenv', plan.python, ['-I', '-m', 'venv', plan.dir])
        progress(
          `installing JupyterHub ${plan.versions.jupyterhub} and JupyterLab ${plan.versions.jupyterlab} from PyPI (pinned)`,
        )
        const constraintsPath =
          typeof this.deps.constraintsFile === 'string'
            ? this.deps.constraintsFile
            : new URL(this.deps.constraintsFile ?? CONSTRAINTS_FILE).pathname
        await this.step(plan, 'install JupyterHub and JupyterLab', layout.hubEnvPython(plan.id), [
          '-I',
          '-m',
          'pip',
          'install',
          '--disable-pip-version-check',
          '--no-input',
          '--no-warn-script-location',
          '-c',
          constraintsPath,
          ...HUB_PACKAGES,
        ])
        await this.step(plan, 'remove what no hub or server uses', layout.hubEnvPython(plan.id), [
          '-I',
          '-m',
          'pip',
          'uninstall',
          '--disable-pip-version-check',
          '--yes',
          '-r',
          fileURLToPath(UNUSED_FILE),
        ])
        const version = await runner.run(layout.hubEnvPython(plan.id), ['-I', plan.jupyterhub, '--version'], {
          cwd: '/',
          timeoutMs: 120_000,
        })
        if (version.exitCode !== 0 || version.stdout.trim() !== plan.versions.jupyterhub) {
          throw preflightError(
            `the new environment's jupyterhub --version printed ${JSON.stringify(version.stdout.trim() || version.stderr.trim().split('\n').pop())}, not ${plan.versions.jupyterhub}`,
            `run init again; if it fails the same way, remove ${plan.dir} and report it`,
          )
        }
        await writeFileAtomic(
          layout.hubEnvComplete(plan.id),
          `${JSON.stringify({packages: HUB_PACKAGES, versions: plan.versions, python: plan.python})}\n`,
          {mode: 0o644},
        )
        built = true
      } catch (error) {
        await fs.rm(plan.dir, {recursive: true, force: true}).catch(() => {})
        throw error
      }
    }
    // `hubctl upgrade` builds beside the live one ({live: false}) and makes it live only at its switch.
    if (options.live !== false) await this.makeLive(plan.id)
    return {built}
  }

  private async step(plan: HubEnvPlan, what: string, command: string, args: string[]): Promise<void> {
    // umask 022: the environment must be readable by every user whose server runs from it,
    // whatever root's umask is on this machine. Run from / so nothing is imported from the caller's directory.
    const result = await this.deps.runner.run('/bin/sh', ['-c', 'umask 022 && exec "$0" "$@"', command, ...args], {
      cwd: '/',
      timeoutMs: 1_800_000,
    })
    if (result.exitCode === 0) return
    const output = `${result.stderr}\n${result.stdout}`
    const lines = output
      .trim()
      .split('\n')
      .map((l) => l.trim())
      .filter((l) => l && !/^(WARNING|Retrying|\[notice\])/.test(l))
    const last = (lines.find((l) => l.startsWith('ERROR:')) ?? lines.pop() ?? 'no output')
      .replace(/^ERROR:\s*/, '')
      .replace(/\.+$/, '')
    // venv's ensurepip hides its child's ENOSPC: the free space tells.
    const free = await fs.statfs(this.deps.layout.hubEnvRoot).then(
      (s) => s.bavail * s.bsize,
      () => Number.POSITIVE_INFINITY,
    )
    if (/No space left on device|ENOSPC|Disk quota exceeded/i.test(output) || free < 64 * 1024 * 1024) {
      throw preflightError(
        `the disk is full${Number.isFinite(free) ? ` (${Math.floor(free / 1024 / 1024)} MB free)` : ''}: hubctl could not ${what} in ${plan.dir}`,
        `free space on the file system of ${this.deps.layout.hubEnvRoot} (JupyterHub and JupyterLab need about 500 MB), then run the command again; nothing was installed`,
      )
    }
    if (
      /NewConnectionError|Failed to establish a new connection|Max retries exceeded|Temporary failure in name resolution|Name or service not known|Network is unreachable|Connection refused|Could not fetch URL|ProxyError|SSLError|timed out|No matching distribution found|Could not find a version that satisfies|ResolutionImpossible/i.test(
        output,
      )
    ) {
      // With every version pinned, pip finding no way to install them means the index served none
      // of them: PyPI unreachable (pip then says only that), or a mirror without these versions.
      throw preflightError(
        `PyPI could not be reached to ${what}, or did not serve the pinned versions (${last})`,
        'let this machine reach PyPI (or set PIP_INDEX_URL to a mirror, PIP_PROXY / https_proxy for a proxy), then run the command again; or pass --jupyterhub PATH of an installed JupyterHub; nothing was installed',
      )
    }
    throw preflightError(
      `hubctl could not ${what}: ${last}`,
      `fix what the message names, then run the command again; nothing was installed (or pass --jupyterhub PATH of an installed JupyterHub)`,
    )
  }

  /** current → envs/<id> (previous → what current was); environments neither names are removed. */
  async makeLive(id: string): Promise<void> {
    const {layout} = this.deps
    const target = layout.hubEnvLinkTarget(id)
    const old = await fs.readlink(layout.hubEnvCurrent).catch(() => undefined)
    if (old !== target) {
      if (old) await symlinkAtomic(old, layout.hubEnvPrevious)
      await symlinkAtomic(target, layout.hubEnvCurrent)
    }
    const keep = new Set(
      [target, old ?? '', (await fs.readlink(layout.hubEnvPrevious).catch(() => '')) ?? ''].map((t) =>
        t.replace(/^envs\//, ''),
      ),
    )
    for (const name of await fs.readdir(layout.hubEnvsDir)) {
      if (!keep.has(name)) await fs.rm(layout.hubEnv(name), {recursive: true, force: true})
    }
  }
}

function notOurs(layout: Layout, what: string): HubctlError {
  return preflightError(
    `${layout.hubEnvRoot} ${what}`,
    `move it away (mv ${layout.hubEnvRoot} ${layout.hubEnvRoot}.old) so that hubctl can install its own JupyterHub there, or use the JupyterHub in it with --jupyterhub PATH`,
  )
}
