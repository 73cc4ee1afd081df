/**
 * `hubctl upgrade` and the users' environment (env/userenv.ts), pure: whether the users' environment
 * is built again, from what was found. The effect is in upgrade.ts (UsersEnvService.rebase).
 *
 * The choice: when the pins of the users' base (python/userenv.txt's packages in python/constraints.txt)
 * differ from what the live users' environment has, or its Python no longer runs (an OS upgrade),
 * the upgrade builds it again from the hub's new environment with the course's packages on top, and
 * switches to it like `hubctl env` (running servers keep theirs). If that build fails (a course
 * package that does not fit the new pins, PyPI unreachable), the hub's upgrade stands and the old
 * users' environment is kept, said in the result with the fix; a users' environment whose Python is
 * gone cannot be kept working, so that case says servers will not start until it is fixed.
 */

export interface UsersEnvFacts {
  /** hubctl.json's usersEnv: servers run from a users' environment of hubctl's. */
  enabled: boolean
  /** The live users' environment's Python runs. */
  pythonRuns: boolean
  /** The versions the live users' environment has of the base's packages (undefined: not installed). */
  installed: Record<string, string | undefined>
  /** The versions python/constraints.txt pins of the same (undefined: not pinned). */
  pinned: Record<string, string | undefined>
}

export interface UsersEnvPlan {
  action: 'none' | 'rebuild'
  /** The base's packages whose version changes, as `name old → new`. */
  changed: string[]
  why: string
}

export function planUsersEnv(facts: UsersEnvFacts): UsersEnvPlan {
  if (!facts.enabled)
    return {action: 'none', changed: [], why: "user servers run the JupyterHub given to init, not a users' environment"}
  const changed = Object.keys(facts.pinned)
    .filter((name) => facts.pinned[name] !== undefined && facts.installed[name] !== facts.pinned[name])
    .map((name) => `${name} ${facts.installed[name] ?? 'none'} → ${facts.pinned[name]}`)
  if (!facts.pythonRuns)
    return {
      action: 'rebuild',
      changed,
      why: "the users' environment's Python is gone: built again with the current one",
    }
  if (changed.length > 0)
    return {action: 'rebuild', changed, why: `the users' base pins changed (${changed.join(', ')})`}
  return {action: 'none', changed: [], why: "the users' environment is at the pins"}
}
