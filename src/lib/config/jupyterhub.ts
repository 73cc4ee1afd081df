import fs from 'node:fs/promises'
import path from 'node:path'

import {preflightError, validationError} from '../errors.js'
import {besideFile} from './layout.js'
import {MIN_OAUTHENTICATOR_MAJOR} from './oauth.js'
import {Runner, which} from '../runner.js'

export const MIN_JUPYTERHUB = [3, 0] as const

/**
 * How long a Python that imports JupyterHub may take (its --version, the config's load, which
 * interface the servers have): about 3 s of CPU, but over 60 s of wall time on a machine as busy
 * as CI's (load 20 on 2 cores: `jupyterhub --version` took 64-83 s). A bound for a hung program,
 * not a measure of a slow one.
 */
export const PYTHON_TIMEOUT_MS = 240_000

export interface JupyterHubInstall {
  executable: string
  version: string
  major: number
  minor: number
  /** jupyterhub-singleuser beside the executable. */
  singleuser: string
  /** The Python interpreter of the executable's shebang (the one that has the jupyterhub package). */
  python: string
}

/** pip's console script for jupyterhub.app:main, or Debian's easy-install entry script of the jupyterhub distribution. */
const STANDARD_SCRIPT =
  /^from jupyterhub\.app import main$|^# EASY-INSTALL-ENTRY-SCRIPT: 'jupyterhub==[^']+','console_scripts','jupyterhub'$/m

/** What `jupyterhub --version` prints (jupyterhub._version.__version__), without importing the app. */
const VERSION_PROBE = `
import importlib.util
from jupyterhub._version import __version__
if importlib.util.find_spec("jupyterhub.app") is None:
    raise SystemExit("ModuleNotFoundError: No module named 'jupyterhub.app'")
print(__version__)
`

/** Find the JupyterHub executable, its version, its singleuser and its Python; refuse what hubctl cannot configure. */
export async function detectJupyterHub(runner: Runner, executable = 'jupyterhub'): Promise<JupyterHubInstall> {
  const onPath = await which(executable)
  // The real path: a virtualenv reached through a link resolves to where its files live.
  const found = onPath && (await fs.realpath(onPath))
  if (!found) {
    throw preflightError(
      `the JupyterHub executable "${executable}" was not found`,
      'install JupyterHub (apt-get install jupyterhub, or pip install jupyterhub in a virtualenv) and pass its path with --jupyterhub',
    )
  }
  // A Python script is run by its own Python with -I, as every Python hubctl runs: nothing from
  // PYTHONPATH or root's user site-packages is imported. (A wrapper in another language runs as itself.)
  const python = await shebangPython(found)
  const isPython = /^python[\d.]*$/.test(path.basename(python))
  // A standard console script of jupyterhub.app:main (pip's or Debian's) prints the package's
  // version after importing the whole app (about 3 s of CPU); its own Python reads the same version
  // from jupyterhub._version in a few milliseconds, and checks that jupyterhub.app is there. A
  // broken app import is still refused before anything is installed: the config's load imports it.
  // Any other executable (a wrapper, a script of another shape) is asked --version.
  const [command, args] =
    isPython && STANDARD_SCRIPT.test(await fs.readFile(found, 'utf8'))
      ? [python, ['-I', '-c', VERSION_PROBE]]
      : isPython
        ? [python, ['-I', found, '--version']]
        : [found, ['--version']]
  const result = await runner.run(command, args, {timeoutMs: PYTHON_TIMEOUT_MS, cwd: '/'})
  const version = /(\d+)\.(\d+)\.(\d+)\S*/.exec(result.stdout.trim())
  if (result.timedOut)
    throw preflightError(
      `"${found} --version" did not answer within ${PYTHON_TIMEOUT_MS / 1000}s`,
      'run the command again when the machine is less busy, or check that --jupyterhub names a JupyterHub that does not hang',
    )
  if (result.notFound || result.exitCode !== 0 || !version) {
    throw preflightError(
      `"${found} --version" failed${result.stderr ? `: ${lastLine(result.stderr)}` : ''}`,
      'check that --jupyterhub names a working JupyterHub executable',
    )
  }
  const [major, minor] = [Number(version[1]), Number(version[2])]
  if (major < MIN_JUPYTERHUB[0]) {
    throw preflightError(
      `JupyterHub ${version[0]} at ${found} is too old (hubctl supports ${MIN_JUPYTERHUB.join('.')} and later)`,
      'upgrade JupyterHub, or pass a newer one with --jupyterhub',
    )
  }
  const singleuser = path.join(path.dirname(found), 'jupyterhub-singleuser')
  try {
    await fs.access(singleuser)
  } catch {
    throw preflightError(
      `jupyterhub-singleuser is not beside ${found}`,
      'install JupyterHub completely (the singleuser server comes with it) or pass another --jupyterhub',
    )
  }
  return {executable: found, version: version[0], major, minor, singleuser, python}
}

/** What a user's server shows: JupyterLab, the classic notebook (/tree), or neither. */
export type UserInterface = 'lab' | 'notebook' | 'none'

/**
 * Which interface the user servers' own Python has (the interpreter of jupyterhub-singleuser):
 * JupyterLab serves /lab; without it, the classic notebook (or nbclassic / notebook 7) serves /tree.
 */
export async function detectUserInterface(
  runner: Runner,
  install: Pick<JupyterHubInstall, 'singleuser'>,
): Promise<UserInterface> {
  const python = await shebangPython(install.singleuser)
  const code =
    'import importlib.util as u\nprint("lab" if u.find_spec("jupyterlab") else "notebook" if (u.find_spec("notebook") or u.find_spec("nbclassic")) else "none")'
  const result = await runner.run(python, ['-I', '-c', code], {cwd: '/', timeoutMs: PYTHON_TIMEOUT_MS})
  const answer = result.stdout.trim()
  return answer === 'lab' || answer === 'notebook' ? answer : 'none'
}

/** The page each user lands on: one that exists in their server. */
export function defaultUrlFor(ui: UserInterface): string {
  return ui === 'lab' ? '/lab' : '/tree'
}

/** JupyterHub versions with a known vulnerability a hub admin must hear about (CVE-2024-28233, fixed in 4.1.0). */
export function vulnerabilityWarning(
  install: Pick<JupyterHubInstall, 'major' | 'minor' | 'version' | 'executable'>,
): string | undefined {
  if (install.major > 4 || (install.major === 4 && install.minor >= 1)) return undefined
  return `JupyterHub ${install.version} (${install.executable}) is affected by CVE-2024-28233 (GHSA-7r3h-4ph8-w38g, High: one user's page can run script as another user), fixed in JupyterHub 4.1.0`
}

/** The Python a JupyterHub executable runs with (its shebang's), or undefined when it is not found. */
export async function jupyterhubPython(executable: string): Promise<string | undefined> {
  const onPath = await which(executable)
  return onPath && shebangPython(await fs.realpath(onPath))
}

/**
 * Whether the Python a JupyterHub's script names (a virtualenv's bin/python3) still exists and
 * runs. After an OS upgrade (Debian's python3.11 replaced by 3.12) a virtualenv's bin/python3 is a
 * link to an interpreter that is gone: the link is there, what it names is not. Undefined: it
 * runs; else what is wrong, naming the missing interpreter (from the link and pyvenv.cfg's `home`).
 * run: false checks only that it exists (no Python started: `hubctl start`'s check).
 */
export async function interpreterProblem(
  runner: Runner,
  executable: string,
  options: {run?: boolean} = {},
): Promise<string | undefined> {
  const onPath = await which(executable)
  const found = onPath && (await fs.realpath(onPath).catch(() => undefined))
  if (!found) return `${executable} is missing`
  const python = await shebangPython(found)
  if (!path.isAbsolute(python) || !/^python[\d.]*$/.test(path.basename(python))) return undefined
  const cfg = await fs.readFile(besideFile(path.dirname(python), 'pyvenv.cfg'), 'utf8').catch(() => '')
  const home = /^home\s*=\s*(.+)$/m.exec(cfg)?.[1].trim()
  const target = await fs.realpath(python).catch(() => undefined)
  if (!target) {
    const chain = await readLinkChain(python)
    const missing = chain.at(-1)!
    return `the Python of ${path.dirname(path.dirname(python))} is gone: ${missing} does not exist${chain.length > 1 ? ` (${chain.join(' → ')})` : ''}${home ? `; pyvenv.cfg's home = ${home}` : ''} (an OS upgrade removed that Python?)`
  }
  if (options.run === false) return undefined
  const run = await runner.run(python, ['-I', '-c', 'import encodings, sqlite3, ssl'], {
    cwd: '/',
    timeoutMs: PYTHON_TIMEOUT_MS,
  })
  if (run.exitCode === 0) return undefined
  return `the Python of ${executable} (${target}) does not run: ${lastLine(run.stderr || run.stdout) || `exit ${run.exitCode}`} (an OS upgrade that removed its standard library?)`
}

/** `file` and each link's target after it, to what it finally names. */
async function readLinkChain(file: string): Promise<string[]> {
  const chain = [file]
  let current = file
  for (let i = 0; i < 16; i++) {
    const next = await fs.readlink(current).catch(() => undefined)
    if (next === undefined) break
    current = path.resolve(path.dirname(current), next)
    chain.push(current)
  }
  return chain
}

async function shebangPython(executable: string): Promise<string> {
  const head = (await fs.readFile(executable, 'utf8')).slice(0, 256)
  const match = /^#!\s*(\S+)(?:\s+(\S+))?/.exec(head)
  if (!match) return 'python3'
  if (match[1].endsWith('/env')) return match[2] ?? 'python3'
  return match[1]
}

/*
 * Loads the file itself, whatever its name: Application.load_config_file() strips the extension
 * and looks for NAME.py, so the candidate (.jupyterhub_config.py.candidate) was never read.
 * update_config() sets the hub's traits, so a class that cannot be imported or is not an
 * Authenticator / Spawner fails here too, not at start. Then the spawner as this config makes it
 * (its class, command, arguments and environment, the operator's jupyterhub_config.d included):
 * what the user-server check starts.
 */
const LOAD_CONFIG = `
import json
import os
import sys
from traitlets.config.loader import PyFileConfigLoader
from jupyterhub.app import JupyterHub
app = JupyterHub()
app.raise_config_file_errors = True
path = os.path.abspath(sys.argv[1])
loader = PyFileConfigLoader(os.path.basename(path), os.path.dirname(path), log=app.log)
app.update_config(loader.load_config())
print("ok")
try:
    cls = app.spawner_class
    s = cls(config=app.config)
    print("spawner " + json.dumps({
        "class": getattr(cls, "_hubctl_base", cls.__module__ + "." + cls.__name__),
        "cmd": list(s.cmd),
        "args": list(s.args),
        "envKeep": list(s.env_keep),
        "environment": {k: v for k, v in s.environment.items() if isinstance(v, str)},
        "defaultUrl": s.default_url or "",
        "notebookDir": s.notebook_dir or "",
        "shellCmd": list(getattr(s, "shell_cmd", None) or []),
        "homeDirTemplate": getattr(s, "home_dir_template", None),
    }))
except Exception as e:
    print("spawner-error " + json.dumps(repr(e)))
`

/** The spawner as the hub's config makes it: what a user's server is started with. */
export interface SpawnerConfig {
  /** Its Python class, e.g. jupyterhub.spawner.LocalProcessSpawner. */
  class: string
  cmd: string[]
  args: string[]
  /** The variables of the hub's own environment a server gets. */
  envKeep: string[]
  /** c.Spawner.environment (its text values; a callable is left out). */
  environment: Record<string, string>
  defaultUrl: string
  notebookDir: string
  /** LocalProcessSpawner.shell_cmd (empty: the command is run directly). */
  shellCmd: string[]
  /** SimpleLocalProcessSpawner's home, e.g. /tmp/{username}; null for other spawners. */
  homeDirTemplate: string | null
}

/**
 * Execute the rendered config with the JupyterHub it was made for: a syntax or runtime error fails
 * here, not at start. Returns the spawner the config makes (or why it cannot be made without a
 * running hub).
 */
export async function validateHubConfig(
  runner: Runner,
  install: JupyterHubInstall,
  configFile: string,
): Promise<{spawner?: SpawnerConfig; spawnerError?: string}> {
  // -I: never import from the working directory, PYTHONPATH or the user's site-packages (root runs this).
  const result = await runner.run(install.python, ['-I', '-c', LOAD_CONFIG, path.resolve(configFile)], {
    timeoutMs: PYTHON_TIMEOUT_MS,
    cwd: '/',
  })
  if (result.exitCode !== 0 || !result.stdout.includes('ok')) {
    const why = (
      result.timedOut
        ? `it did not finish within ${PYTHON_TIMEOUT_MS / 1000}s`
        : lastLine(result.stderr) || 'unknown error'
    ).replace(/\.$/, '')
    const classProblem = /'(authenticator)_class' trait/.exec(why)
    throw validationError(
      `JupyterHub ${install.version} cannot load ${configFile}: ${why}`,
      classProblem
        ? `give --${classProblem[1]} a class this JupyterHub's Python can import (${install.python}), then run the command again; the installed config is unchanged`
        : 'fix the file named in the error (your own additions live in jupyterhub_config.d/), then run the command again',
    )
  }
  const line = /^spawner (\{.*\})$/m.exec(result.stdout)?.[1]
  const error = /^spawner-error (.*)$/m.exec(result.stdout)?.[1]
  try {
    if (line) return {spawner: JSON.parse(line) as SpawnerConfig}
    return {spawnerError: error ? String(JSON.parse(error)) : 'no spawner was printed'}
  } catch {
    return {spawnerError: 'its description could not be read'}
  }
}

function lastLine(text: string): string {
  return text.trim().split('\n').filter(Boolean).pop() ?? ''
}

/**
 * --authenticator github|google|oauth: oauthenticator (16.0 or later) importable by the hub's own
 * Python. Debian's JupyterHub 3.0 has none: refused before anything is written, naming the fix.
 */
export async function checkOAuthenticator(
  runner: Runner,
  install: Pick<JupyterHubInstall, 'python' | 'version' | 'executable'>,
  authenticator: string,
): Promise<string> {
  const code = 'import oauthenticator\nprint(oauthenticator.__version__)'
  const result = await runner.run(install.python, ['-I', '-c', code], {cwd: '/', timeoutMs: 60_000})
  const version = /^(\d+)\.\d+\S*$/m.exec(result.stdout.trim())
  const fix = `run init without --jupyterhub: hubctl's own JupyterHub environment has oauthenticator (python/constraints.txt pins it); or install oauthenticator ${MIN_OAUTHENTICATOR_MAJOR}.0 or later where ${install.python} imports it`
  if (result.exitCode !== 0 || !version)
    throw preflightError(
      `--authenticator ${authenticator} needs the oauthenticator package, which JupyterHub ${install.version}'s Python (${install.python}) cannot import`,
      fix,
    )
  if (Number(version[1]) < MIN_OAUTHENTICATOR_MAJOR)
    throw preflightError(
      `--authenticator ${authenticator} needs oauthenticator ${MIN_OAUTHENTICATOR_MAJOR}.0 or later, and ${install.python} has ${version[0]}`,
      fix,
    )
  return version[0]
}
