import {ChildProcess, spawn} from 'node:child_process'
import fs from 'node:fs'

import {LOCAL_PREFIX, Layout} from '../config/layout.js'

/*
 * `hubctl start --detach` starts its background hubctl before oclif is even loaded (bin/run.js
 * calls prewarm()): the child loads while the parent loads, parses its flags and runs the checks,
 * then waits on its stdin for the parent's go (control.ts: parentSaysGo). Nothing is started, and
 * no file is created, before that word. Only for a command line read here without doubt, and a hub
 * whose supervisor log already exists (it has been started before); otherwise startDetached()
 * spawns the background hubctl itself once the checks passed, as before.
 */

export interface Prewarmed {
  proc: ChildProcess
  /** The prefix read from the command line (Layout's form), to be compared with the parsed one. */
  prefix: string
  logFile: string
  /** The log's size when the child was started: what it writes comes after. */
  logStart: number
  args: string[]
  /** The checks before a start, begun at the same moment (when bin/run.js gave them). */
  checked?: Promise<void>
}

let prewarmed: Prewarmed | undefined

/** The prefix of a `start --detach` command line (after `node run.js`), or undefined when not one or not sure. */
export function detachedStartPrefix(
  argv: string[],
  env: NodeJS.ProcessEnv,
): {prefix: string; cullIdle?: string} | undefined {
  if (argv[0] !== 'start') return undefined
  let detach = false
  let local = false
  let prefix: string | undefined
  let cullIdle: string | undefined
  for (let i = 1; i < argv.length; i++) {
    const arg = argv[i]
    if (arg === '--detach' || arg === '-d') detach = true
    else if (arg === '--local') local = true
    else if (arg === '--json') continue
    else if (arg === '--prefix' && i + 1 < argv.length) prefix = argv[++i]
    else if (arg.startsWith('--prefix=')) prefix = arg.slice('--prefix='.length)
    else if (arg === '--cull-idle' && i + 1 < argv.length) cullIdle = argv[++i]
    else if (arg.startsWith('--cull-idle=')) cullIdle = arg.slice('--cull-idle='.length)
    else return undefined
  }
  if (!detach) return undefined
  // As BaseCommand: --prefix, else HUBCTL_PREFIX, else /; --local without a prefix: the local folder.
  prefix ??= env.HUBCTL_PREFIX || '/'
  if (prefix === '') return undefined
  if (local && prefix === '/') prefix = LOCAL_PREFIX
  return {prefix: new Layout(prefix).prefix, ...(cullIdle === undefined ? {} : {cullIdle})}
}

/**
 * Start the background hubctl for this command line now, if it is a `start --detach` read without
 * doubt; and `checks` for its prefix, whose outcome startDetached() takes instead of running them.
 */
export function prewarm(argv: string[], bin: string, checks?: (prefix: string) => Promise<void>): void {
  const found = detachedStartPrefix(argv, process.env)
  if (!found) return
  const layout = new Layout(found.prefix)
  let fd: number
  try {
    // An existing log only: opening it for appending changes nothing.
    fd = fs.openSync(layout.supervisorLog, fs.constants.O_WRONLY | fs.constants.O_APPEND | fs.constants.O_NOFOLLOW)
  } catch {
    return
  }
  try {
    const logStart = fs.fstatSync(fd).size
    const args = ['--checked-by-parent', ...(found.cullIdle === undefined ? [] : ['--cull-idle', found.cullIdle])]
    const proc = spawn(process.execPath, [bin, 'start', '--prefix', layout.prefix, ...args], {
      detached: true,
      stdio: ['pipe', fd, fd],
      cwd: '/',
    })
    proc.on('error', () => {})
    proc.stdin?.on('error', () => {})
    // Neither may keep this process alive: when it ends without a word, the child reads the end of its stdin and leaves.
    proc.unref()
    ;(proc.stdin as unknown as {unref?: () => void} | null)?.unref?.()
    const checked = checks?.(layout.prefix)
    // Awaited (and its failure reported) by startDetached; a command that never gets there drops it.
    checked?.catch(() => {})
    prewarmed = {proc, prefix: layout.prefix, logFile: layout.supervisorLog, logStart, args, checked}
  } finally {
    fs.closeSync(fd)
  }
}

/**
 * The background hubctl started for `prefix` with these arguments, handed over once; any other is
 * told to leave (its stdin ends) and undefined returned.
 */
export function takePrewarmed(prefix: string, args: string[]): Prewarmed | undefined {
  const found = prewarmed
  prewarmed = undefined
  if (!found) return undefined
  if (found.prefix === prefix && found.args.join('\0') === args.join('\0')) return found
  found.proc.stdin?.end()
  return undefined
}
