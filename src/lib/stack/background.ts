import {HubctlError, internalError, usageError} from '../errors.js'
import {parseDuration} from '../duration.js'
import {Layout} from '../config/layout.js'
import {SettingsStore} from '../config/settings.js'
import {parentSaysGo} from './control.js'
import {superviseHere} from './foreground.js'

/*
 * The background hubctl that `start --detach` runs, entered from bin/run.js without loading oclif:
 * it is ready sooner (a tenth of a second of every start), while its parent runs the checks. Its
 * command line is the one startDetached() writes, and nothing else is accepted:
 *   start --prefix PREFIX --checked-by-parent [--cull-idle DURATION]
 */

/** Whether bin/run.js hands `argv` (after `node run.js`) to runBackground. */
export function isBackgroundStart(argv: string[]): boolean {
  return argv[0] === 'start' && argv.includes('--checked-by-parent')
}

function parseArgs(argv: string[]): {prefix: string; cullIdle?: string} {
  let prefix: string | undefined
  let cullIdle: string | undefined
  for (let i = 1; i < argv.length; i++) {
    const arg = argv[i]
    if (arg === '--checked-by-parent') continue
    if ((arg === '--prefix' || arg === '--cull-idle') && i + 1 < argv.length) {
      if (arg === '--prefix') prefix = argv[++i]
      else cullIdle = argv[++i]
      continue
    }
    throw usageError(`the background hubctl start was given ${JSON.stringify(arg)}`, 'run `hubctl start --detach`')
  }
  if (!prefix) throw usageError('the background hubctl start was given no --prefix', 'run `hubctl start --detach`')
  return {prefix, cullIdle}
}

/** Runs the background start; resolves to its exit code (errors are printed as every command prints them). */
export async function runBackground(argv: string[]): Promise<number> {
  try {
    const {prefix, cullIdle} = parseArgs(argv)
    const cullIdleMs = cullIdle === undefined ? undefined : parseDuration(cullIdle, '--cull-idle')
    const layout = new Layout(prefix)
    // The parent's checks failed, or the parent is gone: nothing is started.
    if (!(await parentSaysGo(process.stdin))) return 0
    // Read once the parent's checks are done: they finish a killed restore or upgrade, which changes hubctl.json.
    const settings = await new SettingsStore(layout).load()
    await superviseHere({layout, settings, cullIdleMs, json: false})
    return 0
  } catch (error) {
    const known =
      error instanceof HubctlError
        ? error
        : internalError(
            `unexpected failure: ${(error as Error).message}`,
            'run again with DEBUG=hubctl* and report the output',
            error as Error,
          )
    process.stderr.write(`hubctl: ${known.line}\n`)
    return known.exitCode
  }
}
