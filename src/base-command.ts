import {Command, Flags, Interfaces} from '@oclif/core'

import {ExitCode, HubctlError} from './lib/errors.js'
import {LOCAL_PREFIX, Layout} from './lib/layout.js'

export type BaseFlags<T extends typeof Command> = Interfaces.InferredFlags<(typeof BaseCommand)['baseFlags'] & T['flags']>

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

  protected override async catch(error: Error & {exitCode?: number}): Promise<unknown> {
    if (!(error instanceof HubctlError)) {
      // oclif's own parse errors (unknown flag, bad option) keep oclif's message and exit 2.
      if ((error as {oclif?: {exit?: number}}).oclif?.exit !== undefined || error.name === 'ExitError') return super.catch(error)
      error = new HubctlError(`unexpected failure: ${error.message}`, {exitCode: ExitCode.INTERNAL, fix: 'run again with DEBUG=hubctl* and report the output', cause: error})
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
