import fs from 'node:fs/promises'
import path from 'node:path'

import {Layout} from '../config/layout.js'
import {errnoCode, preflightError, runtimeError, usageError} from '../errors.js'
import {ProcessOfUid, processesOfUid} from '../processes.js'
import type {Runner} from '../runner.js'
import type {Clock} from '../stack/clock.js'
import {Account, systemAccountProblem} from './accounts.js'

/**
 * What `hubctl users remove` does to a removed user who may not want to go, after the account is
 * locked and expired (no new login):
 * 1. Every process of the uid ends. `kill -KILL -1` sent as the uid (setpriv) reaches, at once, every
 *    process the uid may signal (the kernel walks its task list; a process caught inside fork() takes
 *    its child with it), so a process that forks and lets its parent exit in a loop, which slips past
 *    any walk of /proc (pkill), cannot escape it. Repeated until /proc shows none of the uid left.
 * 2. The home is renamed into a 0700 root directory beside it: no process of the user's can reach
 *    it by any path any more.
 * 3. It is archived from there (tar: links archived as links, numeric owners, one file system), then
 *    deleted by `rm -rf --one-file-system`, which walks with openat and never follows a link.
 */

/** SIGKILL rounds before the survivors are reported. */
export const KILL_ROUNDS = 50
/** Between rounds: the killed processes exit (a process blocked in the kernel exits when it wakes). */
export const KILL_INTERVAL_MS = 100

export interface RemovalDeps {
  runner: Runner
  clock: Clock
  /** The live processes of a uid (default: /proc). */
  processesOf?: (uid: number) => Promise<ProcessOfUid[]>
  /** SIGKILL from hubctl itself (default: process.kill). */
  kill?: (pid: number) => void
}

const PATH_ONLY = {PATH: '/usr/sbin:/usr/bin:/sbin:/bin'}

/**
 * Ends every process of the account's uid; how many rounds it took. Throws, naming the survivors
 * and their states, when some are still there after KILL_ROUNDS (a process blocked in the kernel).
 */
export async function endProcesses(account: Pick<Account, 'name' | 'uid' | 'gid'>, deps: RemovalDeps): Promise<number> {
  // kill -1 as uid 0 or a system account would reach the machine's own services.
  const system = systemAccountProblem(account)
  if (system) throw usageError(`${system}: hubctl never ends its processes`, 'remove only accounts hubctl created')
  const processesOf = deps.processesOf ?? processesOfUid
  const kill =
    deps.kill ??
    ((pid: number) => {
      try {
        process.kill(pid, 'SIGKILL')
      } catch {
        // gone
      }
    })
  let left: ProcessOfUid[] = []
  let failure = ''
  for (let round = 1; round <= KILL_ROUNDS; round++) {
    // The first round always: an empty /proc walk does not prove no process of the uid runs.
    const result = await deps.runner.run(
      'setpriv',
      [`--reuid=${account.uid}`, `--regid=${account.gid}`, '--clear-groups', '--', '/bin/sh', '-c', 'kill -KILL -1'],
      {env: PATH_ONLY, extendEnv: false, cwd: '/'},
    )
    if (result.notFound)
      throw preflightError('setpriv is not installed', 'install util-linux (apt-get install util-linux)')
    // As a user, kill -1 succeeds when some processes were signalled and others (not the uid's) were not.
    failure = result.exitCode === 0 ? '' : result.stderr.trim().split('\n').pop() || `exit ${result.exitCode}`
    left = await processesOf(account.uid)
    if (left.length === 0) return round
    // What kill -1 as the uid cannot signal (the uid only effective): SIGKILL from root, by pid.
    for (const {pid} of left) kill(pid)
    await deps.clock.sleep(KILL_INTERVAL_MS)
  }
  const named = left.map(({pid, state}) => `pid ${pid} (state ${state})`).join(', ')
  throw runtimeError(
    `${left.length} process${left.length === 1 ? '' : 'es'} of ${account.name} (uid ${account.uid}) outlived ${KILL_ROUNDS} rounds of SIGKILL: ${named}${failure ? `; setpriv said: ${failure}` : ''}`,
    `state D is a process blocked in the kernel (a hung NFS mount or disk): wait, or reboot, then run \`hubctl users remove ${account.name}\` again (the account is locked; its home was not touched)`,
  )
}

/** The home moved out of the user's reach; undefined when there is none (already removed). */
export async function moveHomeAway(
  layout: Layout,
  account: Pick<Account, 'name' | 'home'>,
): Promise<string | undefined> {
  const dir = layout.removedHomesDir(account.home)
  const moved = layout.removedHome(account.home, account.name)
  await rootOnlyDir(dir)
  const home = await lstatOrUndefined(account.home)
  const earlier = await lstatOrUndefined(moved)
  if (!home) return earlier ? moved : undefined
  if (earlier)
    throw usageError(
      `${moved} is left from an earlier removal of ${account.name}, and ${account.home} exists again`,
      `archive or delete ${moved} by hand (rm -rf --one-file-system -- ${moved}), then run \`hubctl users remove ${account.name}\` again`,
    )
  if (!home.isDirectory())
    throw usageError(
      `${account.home}, the home of ${account.name}, is not a directory (${home.isSymbolicLink() ? 'a symbolic link' : 'a file'})`,
      `hubctl archives only a real directory: archive and delete it by hand, or give --keep-home (the account is locked)`,
    )
  try {
    await fs.rename(account.home, moved)
  } catch (error) {
    throw runtimeError(
      `could not move ${account.home} to ${moved} (${errnoCode(error) ?? String(error)})`,
      `a home that is a mount point or on another file system than ${path.dirname(dir)} cannot be moved: archive and delete it by hand, or give --keep-home (the account is locked and its processes ended)`,
    )
  }
  return moved
}

/** The moved home as a tar.gz at `archive` (0600 before anything is written), then deleted. */
export async function archiveAndDelete(runner: Runner, user: string, moved: string, archive: string): Promise<void> {
  const handle = await fs.open(archive, 'wx', 0o600)
  await handle.close()
  // GNU tar archives a link as a link (no -h); --one-file-system: nothing mounted below the home.
  const tar = await runner.run(
    'tar',
    ['--create', '--gzip', '--file', archive, '--numeric-owner', '--one-file-system', '-C', moved, '.'],
    {cwd: '/'},
  )
  if (tar.exitCode !== 0) {
    await fs.rm(archive, {force: true})
    throw runtimeError(
      `could not archive ${moved}: ${tar.stderr.trim().split('\n').pop() ?? ''}`,
      `the home is kept there, out of the user's reach: free space or fix it, then run \`hubctl users remove ${user}\` again (or give --keep-home)`,
    )
  }
  await fs.chmod(archive, 0o600)
  // rm walks with openat and never follows a link; --one-file-system: nor into a mount.
  const rm = await runner.run('rm', ['-rf', '--one-file-system', '--', moved], {cwd: '/'})
  if (rm.exitCode !== 0)
    throw runtimeError(
      `could not delete ${moved}: ${rm.stderr.trim().split('\n').pop() ?? `exit ${rm.exitCode}`}`,
      `the archive ${archive} is complete; unmount what is mounted below it, then run \`hubctl users remove ${user}\` again`,
    )
}

/**
 * `dir` a directory only root can enter: made 0700, or refused when it exists as anything else, or
 * when its parent lets others than root rename entries in it.
 */
async function rootOnlyDir(dir: string): Promise<void> {
  const parent = path.dirname(dir)
  const up = await fs.stat(parent)
  const sticky = (up.mode & 0o1000) !== 0
  if (up.uid !== 0 || ((up.mode & 0o022) !== 0 && !sticky))
    throw usageError(
      `${parent}, where the home is, can be changed by others than root (owner uid ${up.uid}, mode ${(up.mode & 0o7777).toString(8)})`,
      `chown root ${parent} and chmod go-w ${parent}, or archive and delete the home by hand and give --keep-home`,
    )
  try {
    await fs.mkdir(dir, {mode: 0o700})
    // Whatever the umask or a set-group-ID parent added.
    await fs.chmod(dir, 0o700)
  } catch (error) {
    if (errnoCode(error) !== 'EEXIST') throw error
  }
  const made = await fs.lstat(dir)
  if (!made.isDirectory() || made.uid !== 0 || (made.mode & 0o777) !== 0o700)
    throw usageError(
      `${dir} exists and is not a directory of root's with mode 0700 (${made.isSymbolicLink() ? 'a symbolic link' : `owner uid ${made.uid}, mode ${(made.mode & 0o7777).toString(8)}`})`,
      `look at what it holds, move it away, then run the command again`,
    )
}

async function lstatOrUndefined(file: string) {
  try {
    return await fs.lstat(file)
  } catch (error) {
    if (errnoCode(error) === 'ENOENT') return undefined
    throw error
  }
}
