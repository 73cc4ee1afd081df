import {constants} from 'node:fs'
import fs from 'node:fs/promises'

import {errnoCode, preflightError} from '../errors.js'
import {JUPYTERHUB_DEFAULT_HOME, Layout, SERVER_HOME_MARKER} from '../config/layout.js'
import type {Settings} from '../config/settings.js'

/*
 * The homes of servers that run as the hub's own user (--spawner simple: local mode). JupyterHub's
 * default, /tmp/NAME, can be made first by any local user, with a jupyter_server_config.py or an
 * IPython startup file that the server (as root, in the quick start) then runs. hubctl's are
 * layout.serverHome(NAME): a 0700 directory of the hub's user, with hubctl's mark, inside the
 * 0700 srv/jupyterhub. init makes them; the spawn hook in jupyterhub_config.py makes or checks
 * them again before each start (the same rules, in Python). A home that exists and is not
 * hubctl's is refused, never used or changed.
 */

export interface HomeProblem {
  path: string
  problem: string
  fix: string
}

/** The hub users whose servers run as the hub's user and so get a home of hubctl's (none with --spawner local). */
export function serverHomeUsers(settings: Pick<Settings, 'spawner' | 'admins' | 'allowedUsers'>): string[] {
  return settings.spawner === 'simple' ? [...new Set([...settings.admins, ...settings.allowedUsers])] : []
}

/** What is wrong with the directory of homes and with each user's home (a missing one is fine: it is made). */
export async function serverHomeProblems(
  layout: Layout,
  users: string[],
  uid = process.getuid?.() ?? 0,
): Promise<HomeProblem[]> {
  if (users.length === 0) return []
  const parent = await dirProblem(layout.serverHomesDir, uid)
  if (parent) return [parent]
  const problems: HomeProblem[] = []
  for (const user of users) {
    const problem = await dirProblem(layout.serverHome(user), uid, layout.serverHomeMarker(user))
    if (problem) problems.push(problem)
  }
  return problems
}

/** Refuse (exit 3, nothing changed) when a home exists and is not hubctl's. */
export async function assertServerHomes(layout: Layout, users: string[], uid = process.getuid?.() ?? 0): Promise<void> {
  const [first] = await serverHomeProblems(layout, users, uid)
  if (first) throw preflightError(first.problem, first.fix)
}

/** Make the missing homes (0700, the running user's, marked); the ones made. Refuses as assertServerHomes. */
export async function makeServerHomes(
  layout: Layout,
  users: string[],
  uid = process.getuid?.() ?? 0,
): Promise<string[]> {
  if (users.length === 0) return []
  await assertServerHomes(layout, users, uid)
  await mkdirOwn(layout.serverHomesDir)
  const made: string[] = []
  for (const user of users) {
    const home = layout.serverHome(user)
    if (!(await mkdirOwn(home))) continue
    const marker = await fs.open(
      layout.serverHomeMarker(user),
      constants.O_WRONLY | constants.O_CREAT | constants.O_EXCL | constants.O_NOFOLLOW,
      0o600,
    )
    try {
      await marker.writeFile('hubctl made this directory as a server home.\n')
    } finally {
      await marker.close()
    }
    made.push(home)
  }
  // Made by someone else between the check and the mkdir: refused now.
  await assertServerHomes(layout, users, uid)
  return made
}

/**
 * Homes of an earlier hubctl: JupyterHub's /tmp/NAME, when it is a directory the hub's user made
 * (its notebooks). Nothing is moved: the operator copies what they want.
 */
export async function formerServerHomes(
  users: string[],
  uid = process.getuid?.() ?? 0,
): Promise<Array<{user: string; dir: string}>> {
  const found: Array<{user: string; dir: string}> = []
  for (const user of users) {
    const dir = JUPYTERHUB_DEFAULT_HOME.replace('{username}', user)
    const stat = await fs.lstat(dir).catch(() => undefined)
    if (stat?.isDirectory() && stat.uid === uid) found.push({user, dir})
  }
  return found
}

/** mkdir 0700 (not recursive: the directory above exists); false when it was there already. */
async function mkdirOwn(dir: string): Promise<boolean> {
  try {
    await fs.mkdir(dir, {mode: 0o700})
  } catch (error) {
    if (errnoCode(error) === 'EEXIST') return false
    throw error
  }
  await fs.chmod(dir, 0o700)
  return true
}

async function dirProblem(dir: string, uid: number, marker?: string): Promise<HomeProblem | undefined> {
  let stat
  try {
    stat = await fs.lstat(dir)
  } catch (error) {
    if (errnoCode(error) === 'ENOENT') return undefined
    throw error
  }
  const what = marker ? 'the server home' : 'the directory of server homes'
  const away = `look at what it holds, move it away (mv ${dir} ${dir}.not-hubctl), then run the command again: hubctl makes a new one`
  if (stat.isSymbolicLink())
    return {path: dir, problem: `${what} ${dir} is a symbolic link (to ${await fs.readlink(dir)})`, fix: away}
  if (!stat.isDirectory()) return {path: dir, problem: `${what} ${dir} is not a directory`, fix: away}
  if (stat.uid !== uid)
    return {
      path: dir,
      problem: `${what} ${dir} belongs to uid ${stat.uid}, not to the hub's user (uid ${uid}): the server would run what that user put in it`,
      fix: away,
    }
  if (marker) {
    const marked = await fs.lstat(marker).catch(() => undefined)
    if (!marked?.isFile() || marked.uid !== uid)
      return {
        path: dir,
        problem: `${what} ${dir} was not made by hubctl (it has no ${SERVER_HOME_MARKER})`,
        fix: `if it is the home you want and you trust what it holds, touch ${marker}; otherwise ${away}`,
      }
  }
  if ((stat.mode & 0o022) !== 0)
    return {
      path: dir,
      problem: `${what} ${dir} is writable by ${(stat.mode & 0o020) !== 0 ? 'its group' : 'others'}: they could put code in it that the server runs`,
      fix: `look at what it holds, then chmod go-w ${dir} and run the command again`,
    }
  return undefined
}
