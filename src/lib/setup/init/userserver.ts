import {runtimeError} from '../../errors.js'
import {checkUserServer} from '../userserver.js'
import {realTrial} from '../userserver-trial.js'
import {type InitStep, prefixFlag} from './context.js'

/**
 * 7. A user's server starts, as doctor's `user server` check starts it (after the accounts
 * --create-users made): init does not call a hub ready that no user can use. A failure is exit 7
 * with the fix; the files stay written, and `hubctl doctor` checks again once it is fixed.
 * Off with --no-server-check.
 */
export const userServer: InitStep = {
  name: 'user server',

  async run(ctx) {
    const {layout, runner, deps, result, handoff, reporter: r} = ctx
    if (deps.serverCheck === false) return
    r.start('user server')
    const check = await checkUserServer(
      {layout, runner, trial: deps.trial ?? realTrial},
      ctx.plan.rendered.settings,
      handoff.spawner,
      ctx.plan.jupyterhub.version,
      handoff.spawnerError,
    )
    if (check.status === 'fail')
      throw runtimeError(
        `hubctl init wrote the hub's files, but ${check.message}`,
        `${check.fix ?? 'fix it'}, then \`hubctl doctor${prefixFlag(layout)}\` (or init again) checks it`,
      )
    if (check.status === 'warn') result.warnings.push(`${check.message}; ${check.fix ?? ''}`)
    result.userServer = check
    r.done('user server', check.message)
  },
}
