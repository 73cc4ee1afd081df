import {Args, Flags} from '@oclif/core'

import {BaseCommand} from '../../base-command.js'
import {usageError} from '../../lib/errors.js'
import {execaRunner} from '../../lib/runner.js'
import {isInteractive, passwordTwice, readPipedStdin} from '../../lib/setup/prompts.js'
import {UsersService, generatePassword} from '../../lib/users/users.js'

export default class UsersPasswd extends BaseCommand<typeof UsersPasswd> {
  static override summary = "Set a user's Unix password (PAM hubs): asked twice, from stdin, or generated."

  static override description = `The password is asked twice on a terminal, or read from the first line of standard input with --password-stdin, or generated with --generate and printed once (in --json, as "password"). It never appears in argv or a log: it reaches chpasswd on its standard input. Only for accounts hubctl created or adopted.`

  static override examples = [
    '<%= config.bin %> users passwd ada',
    'printf \'%s\\n\' "$PW" | <%= config.bin %> users passwd ada --password-stdin',
    '<%= config.bin %> users passwd ada --generate',
  ]

  static override args = {name: Args.string({description: 'user name', required: true})}

  static override flags = {
    'password-stdin': Flags.boolean({description: 'read the password from the first line of standard input'}),
    generate: Flags.boolean({description: 'generate one and print it once', exclusive: ['password-stdin']}),
  }

  async run(): Promise<{user: string; password?: string; generated: boolean}> {
    const {args} = await this.parse(UsersPasswd)
    const service = new UsersService({layout: this.layout, runner: execaRunner})
    let password: string
    if (this.flags.generate) password = generatePassword()
    else if (this.flags['password-stdin']) password = (await readPipedStdin()).split(/\r?\n/)[0] ?? ''
    else if (isInteractive() && !this.jsonEnabled()) password = await passwordTwice(`New password for ${args.name}:`)
    else
      throw usageError(
        'no terminal to ask the password on',
        'give --password-stdin with the password on standard input, or --generate',
      )
    await service.setPassword(args.name, password)
    if (!this.jsonEnabled())
      this.log(
        this.flags.generate
          ? `${args.name}'s password is now: ${password}\n(shown once; hubctl keeps no copy)`
          : `${args.name}'s password was set`,
      )
    return {user: args.name, generated: this.flags.generate, ...(this.flags.generate ? {password} : {})}
  }
}
