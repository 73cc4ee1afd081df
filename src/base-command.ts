import {stripVTControlCharacters} from 'node:util'

import {Command, Flags, Interfaces} from '@oclif/core'

import {HubctlError, errnoCode, internalError, usageError} from './lib/errors.js'
import {LOCAL_PREFIX, Layout} from './lib/config/layout.js'
import {fsError} from './lib/errors.js'

export type BaseFlags<T extends typeof Command> = Interfaces.InferredFlags<
  (typeof BaseCommand)['baseFlags'] & T['flags']
>

/**
 * What every hubctl command shares: --prefix (HUBCTL_PREFIX), --json, and one-line errors that
 * name the problem and the fix, with the exit codes listed in README.md.
 */
export abstract class BaseCommand<T extends typeof Command> extends Command {
  static override enableJsonFlag = true

  static override baseFlags = {
    prefix: Flags.string({
      description: 'root under which every file hubctl manages lives (tests and local mode use a folder of their own)',
      env: 'HUBCTL_PREFIX',
      default: '/',
      helpGroup: 'GLOBAL',
    }),
    local: Flags.boolean({
      description: 'the local-mode hub (`hubctl init --local`): --prefix hubctl-local unless --prefix is given',
      helpGroup: 'GLOBAL',
    }),
  }

  protected flags!: BaseFlags<T>
  protected layout!: Layout

  public override async init(): Promise<void> {
    await super.init()
    const {flags} = await this.parse({
      flags: this.ctor.flags,
      baseFlags: (this.ctor as typeof BaseCommand).baseFlags,
      enableJsonFlag: this.ctor.enableJsonFlag,
      args: this.ctor.args,
      strict: this.ctor.strict,
    })
    this.flags = flags as BaseFlags<T>
    // --local (init, start) without an explicit prefix means the local folder.
    const local = (this.flags as {local?: boolean}).local === true && this.flags.prefix === '/'
    this.layout = new Layout(local ? LOCAL_PREFIX : this.flags.prefix)
  }

  protected override async catch(error: Error & {exitCode?: number; code?: string}): Promise<unknown> {
    if (!(error instanceof HubctlError)) {
      // this.exit() below: already handled.
      if (error.code === 'EEXIT') return super.catch(error)
      if ((error as {oclif?: {exit?: number}}).oclif?.exit !== undefined) {
        // oclif's own parse errors (unknown flag, a value not among the options, a flag without its
        // value): one line and exit 2 like every other bad input, and the same JSON with --json.
        error = usageError(
          oclifMessage(error.message),
          `see \`hubctl ${(this.id ?? '').replaceAll(':', ' ')} --help\` for the flags and the values each takes`,
          error,
        )
      } else if (FS_ERRNOS.has(errnoCode(error) ?? '')) {
        // A file system failure no service turned into a HubctlError (a full disk, a read-only or
        // unwritable directory): name the file (or at least the prefix) and the fix, exit 3.
        error = fsError(
          error,
          (error as NodeJS.ErrnoException).path ?? `a file under ${this.layout?.prefix ?? 'the prefix'}`,
        )
      } else {
        error = internalError(
          `unexpected failure: ${error.message}`,
          'run again with DEBUG=hubctl* and report the output',
          error,
        )
      }
    }
    const hubctlError = error as HubctlError
    process.exitCode = hubctlError.exitCode
    if (this.jsonEnabled()) {
      this.logJson({error: {message: hubctlError.message, fix: hubctlError.fix, exitCode: hubctlError.exitCode}})
    } else {
      process.stderr.write(`hubctl: ${hubctlError.line}\n`)
    }
    return this.exit(hubctlError.exitCode)
  }
}

/** The errno codes fsError() explains; others stay "unexpected". */
const FS_ERRNOS = new Set(['ENOSPC', 'EDQUOT', 'EROFS', 'EACCES', 'EPERM', 'ELOOP', 'ENOTDIR', 'EISDIR'])

/** oclif's parse message on one line, without its "See more help" tail and colours. */
function oclifMessage(message: string): string {
  return stripVTControlCharacters(message)
    .split('\n')
    .map((line) => line.trim())
    .filter((line) => line && !/^See more help with --help$/.test(line))
    .join(' ')
    .replace(/\.$/, '')
}
