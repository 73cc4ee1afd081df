import fs from 'node:fs/promises'

import {Args, Flags} from '@oclif/core'

import {BaseCommand} from '../../base-command.js'
import {planLines, resultLines} from '../../command-parts/users.js'
import {fsError, usageError} from '../../lib/errors.js'
import {execaRunner} from '../../lib/runner.js'
import {confirmOnTerminal, isInteractive} from '../../lib/setup/prompts.js'
import {emptyPlan, parseRoster} from '../../lib/users/roster.js'
import {ApplyResult, UsersService} from '../../lib/users/users.js'

export default class UsersSync extends BaseCommand<typeof UsersSync> {
  static override summary = "Make the hub's users match a roster (CSV: username, optional admin and email)."

  static override description = `The roster is CSV with a header line: username, and optionally admin (yes/no, true/false, 1/0) and email. The whole file is checked first (names, duplicates, columns); any problem is an error naming its line and nothing changes. Then the plan is shown (to add, to change, to remove) and asked for on a terminal; --yes applies it without asking, --dry-run only shows it. Users missing from the roster are removed only with --remove-missing. A second run with the same roster changes nothing.`

  static override examples = [
    '<%= config.bin %> users sync class.csv --dry-run',
    '<%= config.bin %> users sync class.csv --yes',
    '<%= config.bin %> users sync class.csv --yes --remove-missing --json',
  ]

  static override args = {file: Args.string({description: 'the roster (CSV)', required: true})}

  static override flags = {
    yes: Flags.boolean({char: 'y', description: 'apply the plan without asking'}),
    'dry-run': Flags.boolean({description: 'show the plan, change nothing'}),
    'remove-missing': Flags.boolean({description: 'remove users the roster does not list'}),
    adopt: Flags.boolean({description: 'let users log in with system accounts that exist already'}),
    'keep-home': Flags.boolean({description: "with --remove-missing: leave removed users' homes in place"}),
  }

  async run(): Promise<ApplyResult> {
    const {args} = await this.parse(UsersSync)
    const service = new UsersService({layout: this.layout, runner: execaRunner, log: (l) => this.logToStderr(l)})
    const settings = await service.settings()
    const text = await fs.readFile(args.file, 'utf8').catch((error: unknown) => {
      throw (error as {code?: string}).code === 'ENOENT'
        ? usageError(`${args.file} does not exist`, 'give the path of the roster CSV file')
        : fsError(error, args.file)
    })
    const roster = parseRoster(text, args.file, {pam: UsersService.pam(settings)})
    const plan = await service.planRoster(roster, this.flags['remove-missing'])
    const dryRun = this.flags['dry-run']
    if (!this.jsonEnabled()) {
      this.log(emptyPlan(plan) ? 'the roster matches the hub: nothing to change' : 'plan:')
      for (const line of planLines(plan)) this.log(line)
    }
    if (!dryRun && !emptyPlan(plan) && !this.flags.yes) {
      if (!isInteractive() || this.jsonEnabled())
        throw usageError(
          'the plan was not confirmed; nothing changed',
          'give --yes to apply it, or --dry-run to only see it',
        )
      if (!(await confirmOnTerminal('Apply this plan?')))
        throw usageError('the plan was not confirmed; nothing changed', 'answer yes, or give --yes')
    }
    const result = await service.apply(plan, {adopt: this.flags.adopt, keepHome: this.flags['keep-home'], dryRun})
    if (!this.jsonEnabled() && !dryRun && !emptyPlan(plan)) for (const line of resultLines(result)) this.log(line)
    return result
  }
}
