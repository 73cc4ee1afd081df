/**
 * `hubctl upgrade`'s decisions, pure: what to do from what was found (planUpgrade), and what to
 * undo after a failure from how far the upgrade got (undoSteps). The effects are in upgrade.ts.
 */

import type {SchemaState} from '../config/dbschema.js'

/** What the upgrade found, before it changes anything. */
export interface UpgradeFacts {
  /** The JupyterHub the hub runs now (hubctl.json's executable, resolved). */
  live: {executable: string; version: string}
  /** The versions this hubctl pins (python/constraints.txt). */
  pinned: {jupyterhub: string; jupyterlab: string}
  /** The environment of the pins: hubctl's built (or to build) beside the live one, or one given (--env). */
  target: {executable: string; dir: string; built: boolean}
  /** The hub's database against the live JupyterHub (older/newer: it was not started since the JupyterHub changed). */
  liveSchema: SchemaState
  /** --rebuild: asked to build the environment again with the current Python. */
  rebuild: boolean
  /** The Python the live environment was built from is gone (an OS upgrade): it cannot start again. */
  pythonGone: boolean
  /** The users' environment's Python is gone (it was copied from a hub environment of that Python). */
  usersPythonGone?: boolean
}

export interface UpgradePlan {
  action: 'nothing' | 'upgrade'
  /** Build the target environment first (it is not built yet). */
  build: boolean
  /** Build the users' environment again from the target (its Python is gone), switched with the rest. */
  rebuildUsers: boolean
  /** The hub's executable changes (another environment, or Debian's JupyterHub to hubctl's). */
  switchEnv: boolean
  /** Why, in one line (what `hubctl upgrade` prints first). */
  why: string
}

/** Compare dotted versions numerically (6.1.1 > 5.10.0); pre-release tails are ignored. */
export function compareVersions(a: string, b: string): number {
  const parts = (v: string) => v.split('.').map((p) => Number.parseInt(p, 10) || 0)
  const [x, y] = [parts(a), parts(b)]
  for (let i = 0; i < Math.max(x.length, y.length); i++) {
    const d = (x[i] ?? 0) - (y[i] ?? 0)
    if (d !== 0) return Math.sign(d)
  }
  return 0
}

export function planUpgrade(facts: UpgradeFacts): UpgradePlan {
  const {live, pinned, target} = facts
  const switchEnv = live.executable !== target.executable
  // An environment that is built is not built again: its id is a hash of the pins and of the Python
  // (its path and version), so a build with the same Python and pins would be the same environment.
  const build = !target.built
  const rebuildUsers = Boolean(facts.usersPythonGone)
  if (!switchEnv && !build && facts.liveSchema === 'current' && !facts.pythonGone && !rebuildUsers)
    return {
      action: 'nothing',
      build: false,
      rebuildUsers: false,
      switchEnv: false,
      why: facts.rebuild
        ? `the Python of the hub's environment still runs and it is at the pins (JupyterHub ${live.version}, ${target.dir}): nothing to rebuild (--rebuild builds again an environment whose Python is gone; the same Python and pins would build the same environment)`
        : `the hub runs JupyterHub ${live.version}, the version this hubctl pins (${target.dir}), and its database is at its schema`,
    }
  const why = facts.pythonGone
    ? `the Python ${live.executable} was built with is gone: JupyterHub ${pinned.jupyterhub} built again with the current Python${rebuildUsers ? ", and the users' environment from it" : ''}`
    : switchEnv
      ? `JupyterHub ${live.version} (${live.executable}) → ${pinned.jupyterhub}, the version this hubctl pins`
      : facts.liveSchema === 'older'
        ? `the database is older than JupyterHub ${live.version}: migrated`
        : `the Python of the users' environment is gone: built again from the hub's (${target.dir})`
  return {action: 'upgrade', build, rebuildUsers, switchEnv, why}
}

/** How far an upgrade got: each stage is recorded once it is done (upgrade.ts). */
export type Stage =
  | 'backup'
  | 'built'
  | 'users-built'
  | 'trial-migrated'
  | 'stopped'
  | 'database-swapped'
  | 'config-written'
  | 'settings-written'
  | 'link-switched'
  | 'users-switched'
  | 'started'
  | 'checked'

/** What a rollback does, in order. */
export type Undo =
  | 'stop-new-hub'
  | 'settings-back'
  | 'config-back'
  | 'link-back'
  | 'users-links-back'
  | 'database-back'
  | 'start-old-hub'

/**
 * The rollback after a failure, from the stages done: the new hub stopped (it may run half-started
 * even when its start failed), every file put back as it was, and the old hub started again if it
 * was stopped. Nothing to undo before the hub was stopped: the build and the trial migration
 * changed nothing the live hub uses. After `checked` the upgrade is done: nothing is undone.
 */
export function undoSteps(done: ReadonlySet<Stage>): Undo[] {
  if (done.has('checked') || !done.has('stopped')) return []
  const undo: Undo[] = []
  // A start that failed may have left a supervisor running: stopped whatever was reached.
  if (done.has('settings-written') || done.has('started')) undo.push('stop-new-hub')
  if (done.has('settings-written')) undo.push('settings-back')
  if (done.has('config-written')) undo.push('config-back')
  if (done.has('link-switched')) undo.push('link-back')
  if (done.has('users-switched')) undo.push('users-links-back')
  if (done.has('database-swapped')) undo.push('database-back')
  undo.push('start-old-hub')
  return undo
}
