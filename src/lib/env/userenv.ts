import {spawn} from 'node:child_process'
import {randomBytes} from 'node:crypto'
import fs from 'node:fs/promises'
import {fileURLToPath} from 'node:url'

import {ensureDir, exists, readIfExists, symlinkAtomic, writeFileAtomic} from '../files/atomic.js'
import {acquireLock} from '../files/lock.js'
import {HubctlError, messageOf, preflightError, usageError} from '../errors.js'
import {type Layout, besideFile, inside} from '../config/layout.js'
import {SettingsStore} from '../config/settings.js'
import type {Runner} from '../runner.js'

/**
 * The users' environment: the virtualenv user servers run from (jupyterhub-singleuser, JupyterLab,
 * ipykernel, python/userenv.txt) plus the course's packages, apart from the hub's own environment,
 * so that nothing a course installs can change a package of the hub.
 *
 * Layout (opt/jupyterhub/users, root's, 0755): envs/<id>, each complete only once its state file
 * (.hubctl-users-env.json, the course packages) is written; `current` (what new servers start
 * from: the spawner runs current/bin/jupyterhub-singleuser), `previous` (what `env rollback` goes
 * back to) and `base` (the pinned base without course packages) link to one each.
 *
 * Speed: a new environment is a copy of an existing one made of hard links (`cp -al`, about a
 * second for 400 MB where `cp -a` takes 15), its scripts' interpreter paths rewritten (a virtualenv
 * names its own directory in every script), then pip installs only what changes. Sharing inodes is
 * safe: pip unlinks a file before it writes one, Python writes bytecode by rename, and nothing of
 * hubctl's writes a file in place. Every version pinned in python/constraints.txt stays pinned
 * (pip's `-c`): a package that needs another JupyterLab is refused with pip's reason. `pip check`
 * must pass. Only then is `current` swapped (a link: a rollback takes milliseconds). Servers that
 * run keep their environment (their Python is envs/<id>/bin/python3, named by the script's first
 * line), and an environment a running process uses is never removed.
 */

export const BASE_FILE = new URL('../../../python/userenv.txt', import.meta.url)
export const CONSTRAINTS_FILE = new URL('../../../python/constraints.txt', import.meta.url)
/** What the hub's environment leaves out (setup/hubenv.ts reads it too). */
const UNUSED_FILE = new URL('../../../python/unused.txt', import.meta.url)

export interface UsersEnvState {
  id: string
  /** The course's packages, as given (requirement specifiers), in the order added. */
  packages: string[]
  base: boolean
  created: string
  /** The environment it was copied from. */
  from: string
}

/** The users' environment's links (their targets, envs/<id>). */
export interface UsersEnvLinks {
  current?: string
  previous?: string
  base?: string
}

export interface EnvServer {
  pid: number
  user: string
}

export interface EnvEntry extends UsersEnvState {
  current: boolean
  previous: boolean
  servers: EnvServer[]
}

export interface EnvListResult {
  /** What new servers run. */
  spawner: string
  current?: string
  previous?: string
  base?: string
  envs: EnvEntry[]
  /** Servers running from no users' environment of hubctl's (started before it existed). */
  otherServers: Array<EnvServer & {python: string}>
}

export interface EnvChangeResult {
  action: 'add' | 'remove' | 'sync' | 'rollback' | 'base'
  /** The environment now live, and the one it replaced. */
  current: string
  previous?: string
  packages: string[]
  /** Seconds: the build (copy, pip install, pip check), and the switch. */
  seconds: {build: number; switch: number}
  /** Seconds of the build's steps (copy, paths, install, check): where its time goes. */
  phases?: Record<string, number>
  /** What pip installed (its "Successfully installed" line). */
  installed: string[]
}

export interface UsersEnvDeps {
  layout: Layout
  runner: Runner
  /** Where /proc is (tests pass a fake one). */
  procDir?: string
  constraintsFile?: string
  baseFile?: string
  now?: () => Date
  onProgress?: (text: string) => void
  /** How environments nothing uses are deleted (default: a detached rm -rf). */
  removeInBackground?: (dirs: string[]) => void
  /** false: the caller (init) holds the prefix's lock already. */
  lock?: boolean
}

/** A requirement specifier pip takes as one (name, extras, versions); never an option, a path or a URL. */
const SPEC =
  /^[A-Za-z0-9](?:[A-Za-z0-9._-]*[A-Za-z0-9])?(?:\[[A-Za-z0-9._,-]+\])?(?:(?:===?|~=|!=|<=?|>=?)[A-Za-z0-9.*+!_-]+(?:,(?:===?|~=|!=|<=?|>=?)[A-Za-z0-9.*+!_-]+)*)?$/

/** PEP 503's name of a requirement: lowercase, runs of -_. as one -. */
export function packageName(spec: string): string {
  return /^[A-Za-z0-9._-]+/
    .exec(spec)![0]
    .toLowerCase()
    .replace(/[-_.]+/g, '-')
}

export function checkSpecs(specs: string[], where = 'the command line'): string[] {
  if (specs.length === 0) throw usageError(`no package given on ${where}`, 'name one or more packages, e.g. pandas')
  for (const spec of specs) {
    if (!SPEC.test(spec))
      throw usageError(
        `${JSON.stringify(spec)} (${where}) is not a package requirement hubctl passes to pip`,
        'give names with optional versions (pandas, scikit-learn==1.5.2, matplotlib>=3.8); options, paths and URLs are refused',
      )
  }
  return specs
}

/** A requirements file's lines: requirement specifiers only (comments and blank lines skipped). */
export function parseRequirements(text: string, file: string): string[] {
  const specs: string[] = []
  text.split('\n').forEach((raw, index) => {
    const line = raw.replace(/(^|\s)#.*$/, '').trim()
    if (line) specs.push(...checkSpecs([line], `line ${index + 1} of ${file}`))
  })
  return specs
}

/** The specs with `added` replacing any of the same name. */
export function mergeSpecs(packages: string[], added: string[]): string[] {
  const names = new Set(added.map(packageName))
  const kept = packages.filter((p) => !names.has(packageName(p)))
  const seen = new Set<string>()
  const unique = added.filter((p) => !seen.has(packageName(p)) && seen.add(packageName(p)))
  return [...kept, ...unique]
}

const NETWORK =
  /NewConnectionError|Failed to establish a new connection|Max retries exceeded|Temporary failure in name resolution|Name or service not known|Network is unreachable|Connection refused|Could not fetch URL|ProxyError|SSLError|timed out/i

export class UsersEnvService {
  constructor(private readonly deps: UsersEnvDeps) {}

  private get layout(): Layout {
    return this.deps.layout
  }

  private progress(text: string): void {
    this.deps.onProgress?.(text)
  }

  private constraints(): string {
    return this.deps.constraintsFile ?? fileURLToPath(CONSTRAINTS_FILE)
  }

  /**
   * init: the users' environment exists (current names a complete one), else is built from
   * `source`, a virtualenv (hubctl's hub environment, or the one of --jupyterhub), plus
   * python/userenv.txt. Returns undefined when it existed.
   */
  async ensure(source: string): Promise<EnvChangeResult | undefined> {
    const current = await this.linkId(this.layout.usersEnvCurrent)
    if (current && (await this.state(current))) return undefined
    const began = Date.now()
    const baseText = await fs.readFile(this.deps.baseFile ?? fileURLToPath(BASE_FILE), 'utf8')
    const wanted = parseRequirements(baseText, 'python/userenv.txt')
    // Only what the source lacks: pip resolving the whole of JupyterLab again costs a minute.
    const missing = await this.missing(inside(source, 'bin/python3'), wanted)
    const state = await this.build({from: source, install: missing, packages: [], base: true, sourceChecked: false})
    return this.switchTo(state, 'base', began)
  }

  /**
   * What `hubctl upgrade` decides from (upgrade/usersenv.ts): the live users' environment's versions
   * of the base's packages (python/userenv.txt), whether its Python runs, and the pinned versions.
   * undefined: servers do not run from a users' environment of hubctl's.
   */
  async baseFacts(): Promise<
    | {pythonRuns: boolean; installed: Record<string, string | undefined>; pinned: Record<string, string | undefined>}
    | undefined
  > {
    const settings = await new SettingsStore(this.layout).loadIfExists()
    const id = await this.linkId(this.layout.usersEnvCurrent)
    if (!settings?.usersEnv || !id || !(await this.state(id))) return undefined
    const names = parseRequirements(
      await fs.readFile(this.deps.baseFile ?? fileURLToPath(BASE_FILE), 'utf8'),
      'python/userenv.txt',
    ).map(packageName)
    const constraints = await fs.readFile(this.constraints(), 'utf8')
    const pins = new Map<string, string>()
    for (const line of constraints.split('\n')) {
      const match = /^\s*([A-Za-z0-9._-]+)==(\S+)/.exec(line)
      if (match) pins.set(packageName(match[1]), match[2])
    }
    const script =
      'import sys, importlib.metadata as m\nfor n in sys.argv[1:]:\n  try: print(n, m.version(n))\n  except m.PackageNotFoundError: print(n, "-")'
    const result = await this.deps.runner.run(this.layout.usersEnvPython(id), ['-I', '-c', script, ...names], {
      cwd: '/',
      timeoutMs: 120_000,
    })
    const found = new Map(
      result.stdout
        .split('\n')
        .filter(Boolean)
        .map((l) => l.split(' ') as [string, string]),
    )
    const pythonRuns = result.exitCode === 0 && !result.notFound
    return {
      pythonRuns,
      installed: Object.fromEntries(names.map((n) => [n, found.get(n) === '-' ? undefined : found.get(n)])),
      pinned: Object.fromEntries(names.map((n) => [n, pins.get(n)])),
    }
  }

  /**
   * `hubctl upgrade`: a new base built from `source` (the hub's new environment) plus
   * python/userenv.txt, the course's packages installed on top, pip check; only then are `current`
   * and `base` switched. On any failure both new environments are removed and the live one is untouched.
   */
  async rebase(source: string): Promise<EnvChangeResult> {
    return this.locked("upgrade of the users' environment", async () => {
      const live = await this.live()
      const began = Date.now()
      const {base, current} = await this.buildFrom(source, live.packages)
      if (current === base) return this.switchTo(base, 'base', began)
      return this.switchTo(current, 'base', began, base.id)
    })
  }

  async add(specs: string[]): Promise<EnvChangeResult> {
    checkSpecs(specs)
    return this.locked('env add', async () => {
      const live = await this.live()
      const began = Date.now()
      const state = await this.build({
        from: this.layout.usersEnv(live.id),
        install: specs,
        packages: mergeSpecs(live.packages, specs),
        base: false,
        sourceChecked: true,
      })
      return this.switchTo(state, 'add', began)
    })
  }

  async remove(names: string[]): Promise<EnvChangeResult> {
    checkSpecs(names)
    return this.locked('env remove', async () => {
      const live = await this.live()
      const drop = new Set(names.map(packageName))
      const missing = [...drop].filter((n) => !live.packages.some((p) => packageName(p) === n))
      if (missing.length > 0)
        throw usageError(
          `${missing.join(', ')} ${missing.length === 1 ? 'is' : 'are'} not among the course's packages (${live.packages.join(', ') || 'none'})`,
          'remove only what `hubctl env add` added (`hubctl env list` shows it); the base (JupyterLab, ipykernel) stays; nothing was changed',
        )
      return this.rebuild(
        'remove',
        live.packages.filter((p) => !drop.has(packageName(p))),
      )
    })
  }

  async sync(file: string): Promise<EnvChangeResult> {
    const text = await readIfExists(file)
    if (text === undefined)
      throw usageError(`${file} does not exist`, 'give the path of a requirements file (one package a line)')
    const specs = parseRequirements(text, file)
    return this.locked('env sync', async () => {
      await this.live()
      return this.rebuild('sync', mergeSpecs([], specs))
    })
  }

  /** current ↔ previous: two link swaps, nothing built. */
  async rollback(): Promise<EnvChangeResult> {
    return this.locked('env rollback', async () => {
      const began = Date.now()
      const current = await this.linkId(this.layout.usersEnvCurrent)
      const previous = await this.linkId(this.layout.usersEnvPrevious)
      const state = previous ? await this.state(previous) : undefined
      if (!current || !previous || !state)
        throw usageError(
          "there is no previous users' environment to go back to",
          '`hubctl env list` shows the environments; `hubctl env add` or `env sync` builds a new one; nothing was changed',
        )
      await symlinkAtomic(this.layout.usersEnvLinkTarget(previous), this.layout.usersEnvCurrent)
      await symlinkAtomic(this.layout.usersEnvLinkTarget(current), this.layout.usersEnvPrevious)
      return {
        action: 'rollback',
        current: previous,
        previous: current,
        packages: state.packages,
        seconds: {build: 0, switch: (Date.now() - began) / 1000},
        installed: [],
      }
    })
  }

  async list(): Promise<EnvListResult> {
    const current = await this.linkId(this.layout.usersEnvCurrent)
    const previous = await this.linkId(this.layout.usersEnvPrevious)
    const base = await this.linkId(this.layout.usersEnvBase)
    const settings = await new SettingsStore(this.layout).loadIfExists()
    const servers = await this.servers()
    const envs: EnvEntry[] = []
    for (const id of (await fs.readdir(this.layout.usersEnvsDir).catch(() => [] as string[])).sort()) {
      const state = await this.state(id)
      if (!state) continue
      envs.push({
        ...state,
        current: id === current,
        previous: id === previous,
        servers: servers.filter((s) => s.env === id).map(({pid, user}) => ({pid, user})),
      })
    }
    return {
      spawner: settings?.usersEnv ? this.layout.usersEnvCurrentSingleuser : (settings?.executables.singleuser ?? ''),
      ...(current ? {current} : {}),
      ...(previous ? {previous} : {}),
      ...(base ? {base} : {}),
      envs,
      otherServers: servers
        // This hub's: the API URL they were given names its port (other hubs may run on the machine).
        .filter(
          (s) => s.env === undefined && s.singleuser && settings && new RegExp(`:${settings.ports.hub}/`).test(s.api),
        )
        .map(({pid, user, python}) => ({pid, user, python})),
    }
  }

  /**
   * A new base from `source` (a hub environment) plus python/userenv.txt, then `packages` on top
   * (current is base when there are none). Nothing is switched; on any failure nothing built is left.
   */
  private async buildFrom(
    source: string,
    packages: string[],
  ): Promise<{
    base: Awaited<ReturnType<UsersEnvService['build']>>
    current: Awaited<ReturnType<UsersEnvService['build']>>
  }> {
    const baseText = await fs.readFile(this.deps.baseFile ?? fileURLToPath(BASE_FILE), 'utf8')
    const missing = await this.missing(inside(source, 'bin/python3'), parseRequirements(baseText, 'python/userenv.txt'))
    const base = await this.build({from: source, install: missing, packages: [], base: true, sourceChecked: false})
    if (packages.length === 0) return {base, current: base}
    try {
      const current = await this.build({
        from: this.layout.usersEnv(base.id),
        install: packages,
        packages,
        base: false,
        sourceChecked: true,
      })
      return {base, current}
    } catch (error) {
      await fs.rm(this.layout.usersEnv(base.id), {recursive: true, force: true}).catch(() => {})
      throw error
    }
  }

  /**
   * `hubctl upgrade --rebuild`: the users' environment built again from `source` (the new hub
   * environment, of this machine's Python): the base, then the live one's course packages on it.
   * Nothing is switched (setLinks does that, at the upgrade's switch); a failure removes what it built.
   */
  async rebuildFrom(source: string): Promise<{links: UsersEnvLinks; packages: string[]}> {
    const liveId = await this.linkId(this.layout.usersEnvCurrent)
    const packages = (liveId ? await this.state(liveId) : undefined)?.packages ?? []
    const {base, current} = await this.buildFrom(source, packages)
    const target = (id: string) => this.layout.usersEnvLinkTarget(id)
    return {
      links: {
        current: target(current.id),
        base: target(base.id),
        previous: await fs.readlink(this.layout.usersEnvCurrent).catch(() => undefined),
      },
      packages,
    }
  }

  /** Where current, previous and base point now (upgrade keeps them to put back). */
  async links(): Promise<UsersEnvLinks> {
    const read = (link: string) => fs.readlink(link).catch(() => undefined)
    const {usersEnvCurrent, usersEnvPrevious, usersEnvBase} = this.layout
    return {
      current: await read(usersEnvCurrent),
      previous: await read(usersEnvPrevious),
      base: await read(usersEnvBase),
    }
  }

  /** The three links set (each atomically; one undefined is removed). */
  async setLinks(links: UsersEnvLinks): Promise<void> {
    const {usersEnvCurrent, usersEnvPrevious, usersEnvBase} = this.layout
    for (const [link, target] of [
      [usersEnvBase, links.base],
      [usersEnvPrevious, links.previous],
      [usersEnvCurrent, links.current],
    ] as const) {
      if (target) await symlinkAtomic(target, link)
      else await fs.rm(link, {force: true})
    }
  }

  /** The live environment's state; refused when this hub's servers do not run from one. */
  private async live(): Promise<UsersEnvState> {
    const settings = await new SettingsStore(this.layout).loadIfExists()
    const id = await this.linkId(this.layout.usersEnvCurrent)
    const state = id ? await this.state(id) : undefined
    if (!settings?.usersEnv || !state)
      throw preflightError(
        `this hub's user servers do not run from a users' environment of hubctl's (${settings ? `they run ${settings.executables.singleuser}, given to init with --jupyterhub` : `no hub under ${this.layout.prefix}`})`,
        settings
          ? 'run `hubctl init` again with the same flags plus --users-env (it copies that environment into ' +
              `${this.layout.usersEnvRoot}), then run this command again`
          : 'run `hubctl init` first',
      )
    return state
  }

  /** remove and sync: the pinned base plus the course packages, so nothing a removed package brought stays. */
  private async rebuild(action: 'remove' | 'sync', packages: string[]): Promise<EnvChangeResult> {
    const base = await this.linkId(this.layout.usersEnvBase)
    if (!base || !(await this.state(base)))
      throw preflightError(
        `the users' base environment (${this.layout.usersEnvBase}) is missing`,
        `run \`hubctl init\` again (it builds it), then run this command again; nothing was changed`,
      )
    const began = Date.now()
    const state = await this.build({
      from: this.layout.usersEnv(base),
      install: packages,
      packages,
      base: false,
      sourceChecked: true,
    })
    return this.switchTo(state, action, began)
  }

  private async locked<T>(what: string, body: () => Promise<T>): Promise<T> {
    if (this.deps.lock === false) return body()
    const lock = await acquireLock(this.layout.lockFile, what, {waitMs: 10_000})
    try {
      return await body()
    } finally {
      await lock.release()
    }
  }

  private newId(): string {
    const stamp = (this.deps.now?.() ?? new Date()).toISOString().replace(/[-:]/g, '').replace(/\..*$/, '')
    return `${stamp}-${randomBytes(3).toString('hex')}`
  }

  /**
   * A new environment: `from` copied with hard links, its paths rewritten, `install` pip-installed
   * with the constraints, checked (pip install's conflict report; pip check when needed). Nothing else is touched; on any failure it is removed.
   */
  private async build(options: {
    from: string
    install: string[]
    packages: string[]
    base: boolean
    /** `from` is a users' environment hubctl built (and checked): pip install's own report suffices. */
    sourceChecked: boolean
  }): Promise<UsersEnvState & {installed: string[]; phases: Record<string, number>}> {
    const {layout} = this
    const phases: Record<string, number> = {}
    let mark = Date.now()
    const phase = (name: string) => {
      const now = Date.now()
      phases[name] = (now - mark) / 1000
      mark = now
    }
    await ensureDir(layout.hubEnvRoot, 0o755)
    if ((await readIfExists(layout.hubEnvMarker)) === undefined)
      await writeFileAtomic(
        layout.hubEnvMarker,
        "This directory is managed by hubctl: the hub's and the users' environments (hubctl init, hubctl env).\n",
        {mode: 0o644},
      )
    await ensureDir(layout.usersEnvRoot, 0o755)
    await fs.chmod(layout.usersEnvRoot, 0o755)
    await ensureDir(layout.usersEnvsDir, 0o755)
    await fs.chmod(layout.usersEnvsDir, 0o755)
    const id = this.newId()
    const dir = layout.usersEnv(id)
    const python = layout.usersEnvPython(id)
    try {
      this.progress(`copying ${options.from} to ${dir}`)
      const oldPrefix = await this.venvPrefix(options.from)
      await this.clone(options.from, dir)
      phase('copy')
      await this.rewritePaths(id, oldPrefix)
      phase('paths')
      let installed: string[] = []
      const broken: string[] = []
      let uninstalled = false
      if (options.install.length > 0) {
        this.progress(`pip install ${options.install.join(' ')}`)
        const result = await this.pip(python, [
          'install',
          '--disable-pip-version-check',
          '--no-input',
          '--no-warn-script-location',
          '-c',
          this.constraints(),
          ...options.install,
        ])
        if (result.exitCode !== 0) throw pipError(options.install, `${result.stderr}\n${result.stdout}`)
        installed = /^Successfully installed (.*)$/m.exec(result.stdout)?.[1].split(' ') ?? []
        broken.push(...pipConflicts(`${result.stderr}\n${result.stdout}`))
        // What the hub's environment leaves out (python/unused.txt: it costs every server's start) stays out.
        const unused = parseUnused(await fs.readFile(UNUSED_FILE, 'utf8'))
        if (installed.some((i) => unused.includes(packageName(i.replace(/-[^-]+$/, ''))))) {
          await this.pip(python, ['uninstall', '--disable-pip-version-check', '--yes', ...unused])
          uninstalled = true
          installed = installed.filter((i) => !unused.includes(packageName(i.replace(/-[^-]+$/, ''))))
        }
      }
      phase('install')
      // pip install checks the requirements of every package it installed and of every package that
      // depends on one (pip's "dependency conflicts" report, exit 0): what this build may break. A
      // source hubctl built and checked (a users' environment) plus that report is `pip check`
      // clean without a second pip run of ~2.5 CPU-s. A source from elsewhere (init's, upgrade's
      // base), or packages uninstalled after (python/unused.txt), get the full pip check.
      if (!options.sourceChecked || uninstalled) {
        this.progress('pip check')
        const check = await this.pip(python, ['check', '--disable-pip-version-check'])
        if (check.exitCode !== 0) {
          // Only what this build broke: a problem the source had already is not the course's.
          const before = await this.pip(inside(options.from, 'bin/python3'), ['check', '--disable-pip-version-check'])
          const had = new Set(before.stdout.split('\n'))
          broken.push(...check.stdout.split('\n').filter((l) => l.trim() && !had.has(l)))
        }
      }
      if (broken.length > 0)
        throw usageError(
          `pip check found broken requirements in the new users' environment: ${broken.join('; ')}`,
          'add the missing packages, or versions that fit together; nothing was changed (new servers still get the live environment)',
        )
      phase('check')
      const state: UsersEnvState = {
        id,
        packages: options.packages,
        base: options.base,
        created: (this.deps.now?.() ?? new Date()).toISOString(),
        from: options.from,
      }
      await writeFileAtomic(layout.usersEnvState(id), `${JSON.stringify(state)}\n`, {mode: 0o644})
      return {...state, installed, phases}
    } catch (error) {
      await fs.rm(dir, {recursive: true, force: true}).catch(() => {})
      throw error
    }
  }

  private async switchTo(
    state: UsersEnvState & {installed: string[]; phases?: Record<string, number>},
    action: EnvChangeResult['action'],
    began: number,
    /** A new base built with it (upgrade's rebase): the `base` link goes there. */
    baseId?: string,
  ): Promise<EnvChangeResult> {
    const {layout} = this
    const switched = Date.now()
    const target = layout.usersEnvLinkTarget(state.id)
    const old = await fs.readlink(layout.usersEnvCurrent).catch(() => undefined)
    if (old) await symlinkAtomic(old, layout.usersEnvPrevious)
    await symlinkAtomic(target, layout.usersEnvCurrent)
    if (state.base) await symlinkAtomic(target, layout.usersEnvBase)
    if (baseId) await symlinkAtomic(layout.usersEnvLinkTarget(baseId), layout.usersEnvBase)
    const done = Date.now()
    // Housekeeping after the switch: the change is made, whatever happens here (the next one prunes).
    await this.prune().catch((error: unknown) =>
      this.progress(`old environments were not removed (${messageOf(error)}); the next change removes them`),
    )
    return {
      action,
      current: state.id,
      ...(old ? {previous: old.replace(/^envs\//, '')} : {}),
      packages: state.packages,
      seconds: {build: (switched - began) / 1000, switch: (done - switched) / 1000},
      installed: state.installed,
      ...(state.phases ? {phases: state.phases} : {}),
    }
  }

  /** Environments no link names and no running process uses are removed (half-built ones too). */
  async prune(): Promise<void> {
    const {layout} = this
    const keep = new Set<string>()
    for (const link of [layout.usersEnvCurrent, layout.usersEnvPrevious, layout.usersEnvBase]) {
      const id = await this.linkId(link)
      if (id) keep.add(id)
    }
    for (const s of await this.servers()) if (s.env) keep.add(s.env)
    const removed: string[] = []
    for (const id of await fs.readdir(layout.usersEnvsDir).catch(() => [] as string[])) {
      if (keep.has(id)) continue
      await fs.rename(layout.usersEnv(id), layout.usersEnvRemoved(id))
      removed.push(layout.usersEnvRemoved(id))
    }
    // Left by an earlier run whose deletion did not finish, then these: deleted by a detached rm,
    // so that the command's time is the build and the switch (a rename out of envs/ is instant).
    for (const name of await fs.readdir(layout.usersEnvRoot))
      if (name.startsWith('.removed-') && !removed.includes(inside(layout.usersEnvRoot, name)))
        removed.push(inside(layout.usersEnvRoot, name))
    if (removed.length > 0) (this.deps.removeInBackground ?? removeInBackground)(removed)
  }

  private async linkId(link: string): Promise<string | undefined> {
    const target = await fs.readlink(link).catch(() => undefined)
    return target?.startsWith('envs/') ? target.slice('envs/'.length) : undefined
  }

  private async state(id: string): Promise<UsersEnvState | undefined> {
    const text = await readIfExists(this.layout.usersEnvState(id))
    return text === undefined ? undefined : (JSON.parse(text) as UsersEnvState)
  }

  /**
   * Every process running from a users' environment (its interpreter, the first word of its
   * command line, is envs/<id>/bin/python3), and every jupyterhub-singleuser: pid, user, env.
   */
  private async servers(): Promise<
    Array<{pid: number; user: string; env?: string; python: string; singleuser: boolean; api: string}>
  > {
    const proc = this.deps.procDir ?? '/proc'
    const prefix = `${this.layout.usersEnvsDir}/`
    const found = []
    // A process that ends while /proc is read: its files answer ENOENT, or ESRCH once it is exiting
    // (CI at 097f430: an upgrade's rebuilt users' environment reported 'kept', the prune after the
    // switch having thrown), so any error skips that process.
    const read = (file: string) => fs.readFile(file, 'utf8').catch(() => undefined)
    for (const name of await fs.readdir(proc).catch(() => [] as string[])) {
      if (!/^\d+$/.test(name)) continue
      const argv = (await read(inside(proc, `${name}/cmdline`)))?.split('\0').filter(Boolean)
      if (!argv || argv.length === 0) continue
      const singleuser = argv.slice(0, 3).some((a) => /(^|\/)jupyterhub-singleuser$/.test(a))
      const env = argv[0].startsWith(prefix) ? argv[0].slice(prefix.length).split('/')[0] : undefined
      if (!singleuser && !env) continue
      // Unreadable (exiting): still listed, so that an environment it may use is kept.
      const environ = (await read(inside(proc, `${name}/environ`)))?.split('\0') ?? []
      const user = environ.find((e) => e.startsWith('JUPYTERHUB_USER='))?.slice('JUPYTERHUB_USER='.length) ?? ''
      const api = environ.find((e) => e.startsWith('JUPYTERHUB_API_URL='))?.slice('JUPYTERHUB_API_URL='.length) ?? ''
      found.push({pid: Number(name), user, env, python: argv[0], singleuser, api})
    }
    return found
  }

  /** Which of the requirements' packages the Python has no distribution of. */
  private async missing(python: string, specs: string[]): Promise<string[]> {
    const script =
      'import sys, importlib.metadata as m\nfor n in sys.argv[1:]:\n  try: m.version(n)\n  except m.PackageNotFoundError: print(n)'
    const result = await this.deps.runner.run(python, ['-I', '-c', script, ...specs.map(packageName)], {
      cwd: '/',
      timeoutMs: 120_000,
    })
    if (result.exitCode !== 0) return specs
    const absent = new Set(result.stdout.split('\n').filter(Boolean))
    return specs.filter((s) => absent.has(packageName(s)))
  }

  /** The directory a virtualenv's scripts name (their first line: #!<prefix>/bin/python…). */
  private async venvPrefix(dir: string): Promise<string> {
    if (!(await exists(inside(dir, 'pyvenv.cfg'))))
      throw preflightError(
        `${dir} is not a virtualenv (it has no pyvenv.cfg): hubctl makes the users' environment only from one`,
        'give init a JupyterHub installed in a virtualenv (--jupyterhub /path/venv/bin/jupyterhub), or run init without --jupyterhub',
      )
    const head = (await readIfExists(inside(dir, 'bin/jupyterhub-singleuser')))?.split('\n')[0] ?? ''
    const match = /^#!(\S+)\/bin\/python[0-9.]*$/.exec(head)
    if (!match)
      throw preflightError(
        `${inside(dir, 'bin/jupyterhub-singleuser')} is missing or does not start with its Python's path`,
        `install jupyterhub into ${dir} (pip install jupyterhub), then run the command again`,
      )
    return match[1]
  }

  /** Hard links (a second for the whole environment); a copy where links cannot be made (another file system). */
  private async clone(from: string, to: string): Promise<void> {
    let result = await this.deps.runner.run('cp', ['-al', '--', from, to], {cwd: '/', timeoutMs: 600_000})
    if (result.exitCode !== 0) {
      await fs.rm(to, {recursive: true, force: true})
      result = await this.deps.runner.run('cp', ['-a', '--', from, to], {cwd: '/', timeoutMs: 1_800_000})
    }
    if (result.exitCode !== 0)
      throw preflightError(
        `hubctl could not copy ${from} to ${to}: ${result.stderr.trim().split('\n').pop() ?? 'no output'}`,
        `free space on the file system of ${this.layout.usersEnvRoot}, then run the command again; nothing was changed`,
      )
    await fs.chmod(to, 0o755)
  }

  /**
   * Every script in bin/ and pyvenv.cfg name the environment's own directory: rewritten to the
   * new one, each as a new file (never in place: the old one is a hard link of the source's).
   */
  private async rewritePaths(id: string, oldPrefix: string): Promise<void> {
    const dir = this.layout.usersEnv(id)
    const pattern = new RegExp(`${oldPrefix.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}(?=[/"'\\s]|$)`, 'g')
    const python = this.layout.usersEnvPython(id)
    const files = [
      inside(dir, 'pyvenv.cfg'),
      ...(await fs.readdir(besideFile(python, '.'))).map((name) => besideFile(python, name)),
    ]
    for (const file of files) {
      const stat = await fs.lstat(file)
      if (!stat.isFile() || stat.size > 1_000_000) continue
      const text = await fs.readFile(file, 'latin1')
      if (!pattern.test(text)) continue
      pattern.lastIndex = 0
      await writeFileAtomic(file, Buffer.from(text.replace(pattern, dir), 'latin1'), {mode: stat.mode & 0o7777})
    }
  }

  private async pip(python: string, args: string[]) {
    // umask 022: readable by every user whose server runs from it. From /: nothing imported from the caller's directory.
    return this.deps.runner.run('/bin/sh', ['-c', 'umask 022 && exec "$0" "$@"', python, '-I', '-m', 'pip', ...args], {
      cwd: '/',
      timeoutMs: 1_800_000,
    })
  }
}

function removeInBackground(dirs: string[]): void {
  spawn('rm', ['-rf', '--', ...dirs], {detached: true, stdio: 'ignore', cwd: '/'}).unref()
}

/**
 * The requirements pip install reports broken after it installed (its "dependency conflicts"
 * report, printed with exit 0): `X 1.0 requires Y, which is not installed.`, `… but you have …`.
 */
export function pipConflicts(output: string): string[] {
  const lines = output.split('\n').map((l) => l.trim())
  const start = lines.findIndex((l) => /dependency resolver does not .*the following dependency conflicts/.test(l))
  if (start < 0) return []
  return lines
    .slice(start + 1)
    .filter((l) => / requires .*(, which is not installed\.| which is incompatible\.)$/.test(l))
}

function parseUnused(text: string): string[] {
  return text
    .split('\n')
    .map((l) => l.replace(/#.*$/, '').trim())
    .filter(Boolean)
    .map(packageName)
}

/** pip's failure as hubctl's: the index unreachable, a package that does not exist, a conflict, else pip's last error. */
export function pipError(specs: string[], output: string): HubctlError {
  const lines = output
    .split('\n')
    .map((l) => l.trim())
    .filter(Boolean)
  const errorLine = (lines.find((l) => l.startsWith('ERROR:')) ?? lines.at(-1) ?? 'no output').replace(/^ERROR:\s*/, '')
  const unchanged = 'nothing was changed (new servers still get the live environment)'
  if (/ResolutionImpossible|conflicting dependencies|Cannot install/i.test(output)) {
    const start = lines.findIndex((l) => /^The conflict is caused by/.test(l))
    const cause = start >= 0 ? lines.slice(start + 1).filter((l) => !/^(To fix|ERROR|\d\.|$)/.test(l)) : []
    const why = cause
      .filter((l) => /requested|depends on/.test(l))
      .slice(0, 4)
      .join('; ')
    return usageError(
      `pip refused ${specs.join(' ')}: it conflicts with the versions the users' environment pins (${why || errorLine})`,
      `pick a version that works with the pinned ones (python/constraints.txt: the JupyterLab and JupyterHub hubctl is tested with), or leave the package out; ${unchanged}`,
    )
  }
  if (NETWORK.test(output))
    return preflightError(
      `the package index could not be reached to install ${specs.join(' ')} (${errorLine})`,
      `let this machine reach PyPI (or set PIP_INDEX_URL to a mirror, https_proxy for a proxy), then run the command again; ${unchanged}`,
    )
  if (/No matching distribution found|Could not find a version that satisfies/i.test(output))
    return usageError(
      `pip found no package for ${specs.join(' ')} on the index (${errorLine})`,
      `check the name and version (https://pypi.org/project/NAME/), then run the command again; ${unchanged}`,
    )
  return usageError(
    `pip could not install ${specs.join(' ')}: ${errorLine}`,
    `fix what pip names, then run the command again; ${unchanged}`,
  )
}
