import {runtimeError} from '../../errors.js'
import {batchspawnerWrapper} from '../../config/slurm.js'
import {PATH_CHECK_USER, checkNodePaths} from '../slurmcheck.js'
import {type InitStep, prefixFlag, settingsOf} from './context.js'

/**
 * --spawner slurm, after the install (hubctl's environment exists by now): the programs each job
 * runs by absolute path, jupyterhub-singleuser and batchspawner-singleuser, are checked on a node
 * of the partition with `srun ... test -x`, as --check-submit's user or else nobody (the files must
 * be reachable by a user, not only by root). Missing is exit 7 with the fix (the files stay written;
 * `hubctl doctor` checks again); no allocation within a short bound is a warning that it could not
 * be checked.
 */
export const slurmNodes: InitStep = {
  name: 'slurm nodes',

  async run(ctx) {
    const {layout, runner, result, reporter: r} = ctx
    const settings = settingsOf(ctx)
    if (settings.spawner !== 'slurm' || !settings.slurm) return
    const user = ctx.request.slurm?.checkSubmit ?? PATH_CHECK_USER
    r.start('slurm nodes')
    const singleuser = settings.executables.singleuser
    const check = await checkNodePaths(runner, settings.slurm, user, [singleuser, batchspawnerWrapper(singleuser)])
    result.slurmChecks = {...result.slurmChecks, nodePaths: check}
    if (check.status === 'fail')
      throw runtimeError(
        `hubctl init wrote the hub's files, but ${check.message}`,
        `${check.fix ?? 'fix it'}, then \`hubctl doctor${prefixFlag(layout)}\` (or init again) checks it`,
      )
    if (check.status === 'warn') result.warnings.push(`${check.message}; ${check.fix ?? ''}`)
    r.done('slurm nodes', check.message)
  },
}
