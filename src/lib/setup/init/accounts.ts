import {UsersService} from '../../users/users.js'
import {type InitStep, prefixFlag} from './context.js'

/**
 * With PAM every admin and allowed user logs in with a system account: a missing one is made
 * (--create-users, or yes on a terminal) as `hubctl users add` makes it, or named in a warning
 * with that command. After the lock is released: the users service takes it itself. Shows no step.
 */
export const accounts: InitStep = {
  name: 'accounts',

  async run(ctx) {
    const {layout, runner, deps, result} = ctx
    const settings = ctx.plan.rendered.settings
    if (settings.authenticator !== 'pam' || settings.local) return
    const users = new UsersService({layout, runner})
    const names = [...new Set([...settings.admins, ...settings.allowedUsers])]
    const plan = await users.planAdd(names, false)
    const missing = plan.account.map((entry) => entry.name)
    if (missing.length === 0) return
    const question = `${missing.join(', ')} ${missing.length === 1 ? 'has' : 'have'} no system account, so nobody can log in as ${missing.length === 1 ? 'that user' : 'them'}. Create ${missing.length === 1 ? 'it' : 'them'} now (no password until \`hubctl users passwd\`)?`
    if (deps.createUsers || (deps.confirm && (await deps.confirm(question)))) {
      await users.apply(plan)
      result.usersCreated = missing
      result.next.unshift(...missing.map((name) => `hubctl users passwd ${name}${prefixFlag(layout)}`))
      return
    }
    for (const name of missing)
      result.warnings.push(
        `${name} has no system account: with PAM nobody can log in as ${name}; create it with \`hubctl users add ${name}${prefixFlag(layout)}\` (or init --create-users --yes)`,
      )
  },
}
