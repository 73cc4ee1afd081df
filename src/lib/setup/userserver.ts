import {randomBytes, randomInt} from 'node:crypto'
import fs from 'node:fs/promises'
import os from 'node:os'
import path from 'node:path'

import type {SpawnerConfig} from '../config/jupyterhub.js'
import {Layout, pathChain, simpleSpawnerHome, userServerCheckHomePrefix} from '../config/layout.js'
import type {Settings} from '../config/settings.js'
import {HubctlError} from '../errors.js'
import type {Runner} from '../runner.js'
import {makeServerHomes} from './homes.js'
import {UnixAccounts, type UsersRecord, UsersRecordStore, systemAccountProblem} from '../users/accounts.js'

/*
 * "Can a user's server start?", asked the way the hub asks it: the spawner's own command, arguments
 * and environment (from the loaded config, the operator's jupyterhub_config.d included), started as
 * the user the spawner would start it as (LocalProcessSpawner: the user's uid, gid, groups, HOME,
 * SHELL and working directory; SimpleLocalProcessSpawner: the hub's own user with its
 * home_dir_template), bound to a free loopback port, with a stand-in for the hub's API (the server
 * asks the hub's version before it listens). It passes when the server answers its own URL
 * (/user/NAME/api); it is stopped at once, its whole process group. Without the hub running.
 */

/** Who the server runs as. */
export interface ServerIdentity {
  /** user: an admin or allowed user's account; made: a uid with no account, for this check only; hub: the hub's own user. */
  kind: 'user' | 'made' | 'hub'
  /** The hub user name the server is started for (in its URL and JUPYTERHUB_USER). */
  name: string
  uid: number
  gid: number
  home: string
  shell: string
}

/** What is started: the program, as whom, where, and its environment once the ports are known. */
export interface ServerLaunch {
  identity: ServerIdentity
  command: string
  args: string[]
  cwd: string
  /** The environment, given the stand-in hub API's URL and the server's port. */
  env(hubApiUrl: string, port: number): Record<string, string>
  /** The server's own URL path that answers once it is up. */
  probePath: string
  timeoutMs: number
  hubVersion: string
}

export type TrialResult =
  {answered: true; ms: number} | {answered: false; timedOut: boolean; exitCode?: number; output: string; ms: number}

/** Starts a launch and stops it again (the real one: userserver-trial.ts; unit tests pass a fake). */
export interface ServerTrial {
  run(launch: ServerLaunch): Promise<TrialResult>
}

export interface UserServerCheck {
  status: 'pass' | 'warn' | 'fail'
  message: string
  fix?: string
}

export interface UserServerDeps {
  layout: Layout
  runner: Runner
  trial: ServerTrial
  /** The process's uid (tests pass one). */
  uid?: number
  /** The process's gid and user name (the hub's user, for the simple spawner). */
  gid?: number
  userName?: string
}

/** Spawner classes hubctl knows how to start a server for. */
const LOCAL = 'jupyterhub.spawner.LocalProcessSpawner'
const SIMPLE = 'jupyterhub.spawner.SimpleLocalProcessSpawner'

/** uids for an identity made for the check: below systemd's dynamic users (61184-65519), above login.defs' UID_MAX. */
const MADE_UID = {first: 60_001, last: 61_183}

export async function checkUserServer(
  deps: UserServerDeps,
  settings: Settings,
  spawner: SpawnerConfig | undefined,
  hubVersion: string,
  spawnerError?: string,
): Promise<UserServerCheck> {
  const uid = deps.uid ?? process.getuid?.() ?? 0
  if (!spawner)
    return {
      status: 'warn',
      message: `not checked: the spawner could not be made from the config without a running hub (${spawnerError ?? 'unknown'})`,
      fix: 'start the hub and log in as a user to see that a server starts',
    }
  if (settings.spawner === 'slurm' && spawner.class === 'batchspawner.SlurmSpawner')
    return {
      status: 'warn',
      message: "not checked: each user's server is a Slurm job (--spawner slurm), which starts only through the hub",
      fix: 'start the hub and log in as a user: `squeue` shows the job, `hubctl status` the job of each server',
    }
  if (spawner.class !== LOCAL && spawner.class !== SIMPLE)
    return {
      status: 'warn',
      message: `not checked: the spawner is ${spawner.class} (jupyterhub_config.d), which hubctl does not start servers with`,
      fix: 'start the hub and log in as a user to see that a server starts',
    }
  const simple = spawner.class === SIMPLE
  if (!simple && uid !== 0)
    return {
      status: 'warn',
      message: "not checked: only root can start a server as a user (the hub's LocalProcessSpawner runs as root)",
      fix: 'run `hubctl doctor` as root',
    }
  let madeHome: string | undefined
  try {
    let identity: ServerIdentity
    let note = ''
    if (simple) {
      const name = settings.admins[0] ?? 'hubctl-check'
      const home = simpleSpawnerHome(spawner.homeDirTemplate ?? '/tmp/{username}', name)
      if (path.resolve(home) === deps.layout.serverHome(name)) {
        // hubctl's own home (homes.ts): made 0700 with its mark, or refused when it is not hubctl's,
        // as init and the spawn hook make or refuse it.
        try {
          await makeServerHomes(deps.layout, [name], uid)
        } catch (error) {
          if (!(error instanceof HubctlError)) throw error
          return {status: 'fail', message: `${name}'s server cannot start: ${error.message}`, fix: error.fix}
        }
        // Any other home_dir_template (jupyterhub_config.d): as the spawner does (os.makedirs(home, 0o755)).
      } else await fs.mkdir(home, {recursive: true, mode: 0o755})
      identity = {
        kind: 'hub',
        name,
        uid,
        gid: deps.gid ?? process.getgid?.() ?? 0,
        home,
        shell: '/bin/bash',
      }
    } else {
      const chosen = await userToCheckAs(deps, settings)
      if (chosen) identity = chosen
      else {
        const made = await madeIdentity(deps.runner)
        madeHome = made.home
        identity = made
        note = ': no admin or allowed user has a system account yet'
      }
    }
    const launch = launchFor(identity, spawner, settings, hubVersion)
    const who = describe(identity, deps.userName ?? hubUserName(), note)
    const result = await deps.trial.run(launch)
    if (result.answered)
      return {
        status: 'pass',
        message: `${launch.command} started as ${who} and answered ${launch.probePath} in ${(result.ms / 1000).toFixed(1)} s (stopped again)`,
      }
    return await explainFailure(deps, launch, who, result)
  } finally {
    if (madeHome) await fs.rm(madeHome, {recursive: true, force: true})
  }
}

/** The first admin, else allowed user, with a person's account (not root, not locked by `users remove`). */
async function userToCheckAs(deps: UserServerDeps, settings: Settings): Promise<ServerIdentity | undefined> {
  const names = [...new Set([...settings.admins, ...settings.allowedUsers])]
  const accounts = await new UnixAccounts(deps.runner).lookup(names)
  // An unreadable record is doctor's `user accounts` check's to report; here it only skips removed users.
  const record = await new UsersRecordStore(deps.layout).load().catch((): UsersRecord => ({version: 1, accounts: {}}))
  for (const name of names) {
    const account = accounts.get(name)
    if (!account || systemAccountProblem(account) || record.accounts[name]?.removed) continue
    return {
      kind: 'user',
      name,
      uid: account.uid,
      gid: account.gid,
      home: account.home,
      shell: account.shell,
    }
  }
  return undefined
}

/** A uid and gid no account or group has, with a fresh 0700 home of its own (removed after). */
async function madeIdentity(runner: Runner): Promise<ServerIdentity> {
  for (let attempt = 0; attempt < 20; attempt++) {
    const id = randomInt(MADE_UID.first, MADE_UID.last + 1)
    const [passwd, group] = await Promise.all([
      runner.run('getent', ['passwd', String(id)]),
      runner.run('getent', ['group', String(id)]),
    ])
    if (passwd.exitCode !== 2 || group.exitCode !== 2) continue
    const home = await fs.mkdtemp(userServerCheckHomePrefix())
    // Only root gets here outside unit tests (LocalProcessSpawner runs as root).
    if ((process.getuid?.() ?? 0) === 0) await fs.chown(home, id, id)
    return {kind: 'made', name: `hubctl-check-${id}`, uid: id, gid: id, home, shell: '/bin/sh'}
  }
  throw new Error(`no free uid in ${MADE_UID.first}-${MADE_UID.last} for the check`)
}

function hubUserName(): string | undefined {
  try {
    return os.userInfo().username
  } catch {
    return undefined
  }
}

/** Who the server ran as, in words: the output says whether it was a real user or one made for the check. */
function describe(identity: ServerIdentity, userName: string | undefined, note: string): string {
  switch (identity.kind) {
    case 'user':
      return `${identity.name} (uid ${identity.uid})`
    case 'made':
      return `uid ${identity.uid} (made for this check with no account, its home removed after${note})`
    case 'hub':
      return `the hub's own user ${userName ?? `uid ${identity.uid}`} (SimpleLocalProcessSpawner)`
  }
}

/** The command, arguments and environment the spawner would give this user's server (JupyterHub's Spawner.get_env). */
export function launchFor(
  identity: ServerIdentity,
  spawner: SpawnerConfig,
  settings: Pick<Settings, 'spawn'>,
  hubVersion: string,
  hubEnv: Record<string, string | undefined> = process.env,
): ServerLaunch {
  const name = identity.name
  const prefix = `/user/${encodeURIComponent(name)}/`
  const format = (text: string) => text.split('{username}').join(name)
  let [command, ...args] = [...spawner.cmd, ...spawner.args]
  if (spawner.shellCmd.length > 0) {
    const quoted = [...spawner.cmd, ...spawner.args].map((word) => `'${word.replace(/'/g, `'"'"'`)}'`).join(' ')
    ;[command, ...args] = [...spawner.shellCmd, quoted]
  }
  // A throwaway token: the stand-in hub API accepts anything; no secret of the hub's is used.
  const token = randomBytes(16).toString('hex')
  return {
    identity,
    command,
    args,
    cwd: identity.home,
    probePath: `${prefix}api`,
    timeoutMs: Math.min(settings.spawn?.timeoutSeconds ?? 60, 120) * 1000,
    hubVersion,
    env(hubApiUrl, port) {
      const env: Record<string, string> = {}
      for (const key of spawner.envKeep) if (hubEnv[key] !== undefined) env[key] = hubEnv[key]!
      Object.assign(env, {
        JUPYTERHUB_API_TOKEN: token,
        JPY_API_TOKEN: token,
        JUPYTERHUB_CLIENT_ID: `jupyterhub-user-${encodeURIComponent(name)}`,
        JUPYTERHUB_COOKIE_HOST_PREFIX_ENABLED: '0',
        JUPYTERHUB_HOST: '',
        JUPYTERHUB_OAUTH_CALLBACK_URL: `${prefix}oauth_callback`,
        JUPYTERHUB_OAUTH_SCOPES: JSON.stringify([`access:servers!server=${name}/`, `access:servers!user=${name}`]),
        JUPYTERHUB_OAUTH_ACCESS_SCOPES: JSON.stringify([
          `access:servers!server=${name}/`,
          `access:servers!user=${name}`,
        ]),
        JUPYTERHUB_OAUTH_CLIENT_ALLOWED_SCOPES: '[]',
        JUPYTERHUB_USER: name,
        JUPYTERHUB_SERVER_NAME: '',
        JUPYTERHUB_API_URL: hubApiUrl,
        JUPYTERHUB_ACTIVITY_URL: `${hubApiUrl}/users/${encodeURIComponent(name)}/activity`,
        JUPYTERHUB_BASE_URL: '/',
        JUPYTERHUB_SERVICE_PREFIX: prefix,
        JUPYTERHUB_SERVICE_URL: `http://127.0.0.1:${port}${prefix}`,
      })
      if (spawner.notebookDir) env.JUPYTERHUB_ROOT_DIR = format(spawner.notebookDir)
      if (spawner.defaultUrl) env.JUPYTERHUB_DEFAULT_URL = format(spawner.defaultUrl)
      Object.assign(env, spawner.environment)
      Object.assign(env, {USER: name, HOME: identity.home, SHELL: identity.shell})
      return env
    },
  }
}

/**
 * Why the server did not start, with the fix. A program that could not be executed (or a file the
 * server could not read): the first place on its path the user cannot pass, found by asking as
 * that user, with its mode and owner.
 */
async function explainFailure(
  deps: UserServerDeps,
  launch: ServerLaunch,
  who: string,
  result: Extract<TrialResult, {answered: false}>,
): Promise<UserServerCheck> {
  const output = result.output.trim()
  // sh's "exec: PATH: Permission denied" (or hubctl's own words for the hub's user), else a file
  // the server's Python could not open (its script, a package).
  const exec = /(?:failed to execute|exec:) (\/.*?): (.+)$/m.exec(output)
  const deniedMatch = /'(\/[^']+)'[^\n]*Permission denied|Permission denied: '(\/[^']+)'/.exec(output)
  const denied = deniedMatch && (deniedMatch[1] ?? deniedMatch[2])
  if (exec || denied) {
    const target = exec ? exec[1] : denied!
    const needs: Array<[string, string]> = []
    if (exec) {
      const chains = [pathChain(target), pathChain(await fs.realpath(target).catch(() => target))]
      const interpreter = await shebang(target)
      if (interpreter)
        chains.push(pathChain(interpreter), pathChain(await fs.realpath(interpreter).catch(() => interpreter)))
      for (const chain of chains)
        chain.forEach((p, i) => needs.push([i === chain.length - 1 ? (p === target ? 'rx' : 'x') : 'x', p]))
    } else {
      const chain = pathChain(target)
      chain.forEach((p, i) => needs.push([i === chain.length - 1 ? 'r' : 'x', p]))
    }
    const blocked = await firstBlocked(deps.runner, launch.identity, needs)
    const reason = exec ? exec[2] : 'Permission denied'
    const action = exec ? `execute ${target}` : `read ${target}`
    if (blocked) {
      const info = await fs.stat(blocked.path).catch(() => undefined)
      const mode = info ? `mode ${(info.mode & 0o7777).toString(8).padStart(4, '0')}, owner uid ${info.uid}` : ''
      const isDir = info?.isDirectory() ?? blocked.need === 'x'
      const prefix = deps.layout.prefix
      const inPrefix = !deps.layout.isSystem && (blocked.path === prefix || prefix.startsWith(`${blocked.path}/`))
      return {
        status: 'fail',
        message: `${who} cannot ${action}: ${reason} at ${blocked.path}${mode ? ` (${mode})` : ''}: no user's server can start`,
        fix: isDir
          ? `chmod o+x ${blocked.path} (users must pass through it to reach ${target})${inPrefix ? ', or put the hub under a prefix every user can pass through' : ''}`
          : `chmod o+${blocked.need} ${blocked.path}`,
      }
    }
    return {
      status: 'fail',
      message: `${who} cannot ${action}: ${reason}: no user's server can start`,
      fix: `check that users may ${exec ? 'execute' : 'read'} ${target} (its mode, its directories, the mount's noexec, ACLs)`,
    }
  }
  const lines = output.split('\n').filter((line) => line.trim() !== '')
  const tail = lines.slice(-3).join(' | ') || 'no output'
  if (result.timedOut)
    return {
      status: 'fail',
      message: `${launch.command} started as ${who} did not answer ${launch.probePath} within ${launch.timeoutMs / 1000} s: ${tail}`,
      fix: "read the server's output above; the hub's log shows the same when a user starts a server",
    }
  return {
    status: 'fail',
    message: `${launch.command} started as ${who} exited with ${result.exitCode ?? 'a signal'} before it answered: ${tail}`,
    fix: "fix what the server's last lines name (its Python, its packages, the user's home), then check again",
  }
}

/** The interpreter of a script (#!), if it is one the caller may read. */
async function shebang(file: string): Promise<string | undefined> {
  try {
    const handle = await fs.open(file, 'r')
    try {
      const {buffer, bytesRead} = await handle.read(Buffer.alloc(256), 0, 256, 0)
      const match = /^#!\s*(\/\S+)/.exec(buffer.subarray(0, bytesRead).toString('utf8'))
      return match?.[1]
    } finally {
      await handle.close()
    }
  } catch {
    return undefined
  }
}

/**
 * The command line that runs a program as the identity. setpriv changes the ids but keeps root's
 * capabilities through its own exec (PR_SET_KEEPCAPS): the program it runs could still pass a 0700
 * directory. So setpriv runs sh, which holds no capability, and sh executes the program as the
 * spawner's child does (after setuid, a plain execve). For the hub's own user: the program itself.
 */
export function asIdentity(identity: ServerIdentity, command: string, args: string[]): string[] {
  if (identity.kind === 'hub') return [command, ...args]
  return [
    'setpriv',
    `--reuid=${identity.uid}`,
    `--regid=${identity.gid}`,
    identity.kind === 'user' ? '--init-groups' : '--clear-groups',
    '--',
    '/bin/sh',
    '-c',
    'exec "$@"',
    'sh',
    command,
    ...args,
  ]
}

/**
 * The first of the paths the identity cannot use as needed (x: pass through or execute, r: read,
 * rx: both), asked as that identity: test(1) uses access(2), so ACLs and groups count.
 */
export async function firstBlocked(
  runner: Runner,
  identity: ServerIdentity,
  needs: Array<[string, string]>,
): Promise<{need: string; path: string} | undefined> {
  const seen = new Set<string>()
  const words = needs
    .filter(([need, p]) => !seen.has(`${need}:${p}`) && seen.add(`${need}:${p}`))
    .map(([need, p]) => `${need}:${p}`)
  const script =
    'for w do n=${w%%:*}; p=${w#*:}; ' +
    'case $n in *r*) [ -r "$p" ] || { echo "$w"; exit 0; };; esac; ' +
    'case $n in *x*) [ -x "$p" ] || { echo "$w"; exit 0; };; esac; done'
  const [program, ...rest] = asIdentity(identity, '/bin/sh', ['-c', script, 'sh', ...words])
  const result = await runner.run(program, rest, {cwd: '/', extendEnv: false, env: {PATH: '/usr/bin:/bin'}})
  const answer = result.stdout.trim()
  const at = answer.indexOf(':')
  if (result.exitCode !== 0 || at < 0) return undefined
  return {need: answer.slice(0, at), path: answer.slice(at + 1)}
}
