import type {Clock} from '../stack/clock.js'
import type {Runner, RunResult} from '../runner.js'

/**
 * The checks of --spawner slurm that run something on the cluster (issue #26), for init and
 * doctor: `--check-submit USER` submits a tiny job as that user, the way the hub submits a server
 * (`sudo -E -u USER sbatch --parsable`, the script on stdin), and follows it to its end; and the
 * programs each job runs (jupyterhub-singleuser, batchspawner-singleuser) are checked on a node
 * with `srun ... test -x`, as a user who is not root. Each returns an outcome; the caller makes it
 * an error (init) or a check result (doctor). Nothing is left in the queue: a job still there at
 * the timeout is cancelled.
 */

/** What the test job asks for: the servers' own partition, memory, CPUs, GPUs and #SBATCH lines. */
export interface SlurmJobShape {
  partition: string
  memory: string
  cpus: number
  gpus?: number
  extra: string[]
}

export interface SlurmCheckOutcome {
  status: 'pass' | 'warn' | 'fail'
  message: string
  /** Present unless the check passed. */
  fix?: string
  /** The test job's id, when sbatch gave one. */
  jobId?: string
}

/** The seconds --check-submit waits for its job when --check-submit-timeout is not given. */
export const CHECK_SUBMIT_TIMEOUT = 60
/** The seconds the srun path check waits for an allocation (srun --immediate) before it says it could not check. */
export const SRUN_IMMEDIATE = 20
/** The user the path check runs as without --check-submit: not root, as the jobs are not. */
export const PATH_CHECK_USER = 'nobody'

const lastLine = (result: RunResult): string =>
  (result.stderr || result.stdout).trim().split('\n').filter(Boolean).pop() ?? `exit ${result.exitCode}`

/** The script of the test job: the servers' #SBATCH lines, a one-minute limit, no output file. */
export function testJobScript(shape: SlurmJobShape): string {
  return [
    '#!/bin/bash',
    '#SBATCH --job-name=hubctl-check-submit',
    '#SBATCH --output=/dev/null',
    `#SBATCH --partition=${shape.partition}`,
    '#SBATCH --time=1',
    `#SBATCH --mem=${shape.memory}`,
    `#SBATCH --cpus-per-task=${shape.cpus}`,
    ...(shape.gpus ? [`#SBATCH --gres=gpu:${shape.gpus}`] : []),
    ...shape.extra,
    'exit 0',
    '',
  ].join('\n')
}

/** The fix for a submission sbatch refused, by what Slurm said. */
function submitFix(said: string, shape: SlurmJobShape): string {
  if (/invalid account|account\/partition|AssocNotFound|association/i.test(said))
    return "give the users a Slurm account they may submit to (sacctmgr add user NAME account=ACCOUNT), or name one for every job with --slurm-extra '#SBATCH --account=ACCOUNT'"
  if (/invalid partition|partition.*(not available|does not exist)/i.test(said))
    return `give --slurm-partition a partition the user may submit to (sinfo -s lists them; check AllowGroups/AllowAccounts of ${shape.partition} in slurm.conf)`
  if (/node configuration is not available|memory specification|more processors|requested node config/i.test(said))
    return `ask for less: --slurm-memory ${shape.memory} and --slurm-cpus ${shape.cpus} must fit one node of ${shape.partition} (sinfo -N -p ${shape.partition} -o '%N %m %c')`
  if (/time limit/i.test(said))
    return `give --slurm-runtime within the partition's MaxTime (scontrol show partition ${shape.partition})`
  return `submit by hand to see more: sudo -u USER sbatch -p ${shape.partition} --mem=${shape.memory} --wrap true`
}

/** The fix for a test job that stayed pending, by Slurm's reason. */
function pendingFix(reason: string, shape: SlurmJobShape, timeoutSeconds: number): string {
  if (/PartitionDown|PartitionInactive/.test(reason))
    return `bring the partition up (scontrol update PartitionName=${shape.partition} State=UP), or give another --slurm-partition`
  if (/ReqNodeNotAvail|NodeDown|Nodes?_required|BadConstraints/.test(reason))
    return `bring ${shape.partition}'s nodes back (sinfo -R lists why they are down; scontrol update NodeName=NODE State=RESUME)`
  if (/Resources|Priority|QOS|Assoc.*Limit|Reservation/.test(reason))
    return `the cluster is busy or the user is at a limit: try again later, or give --check-submit-timeout more than ${timeoutSeconds} seconds (users' servers would wait as long)`
  return `look at the reason in Slurm's documentation (squeue's JOB REASON CODES), fix it, and check again`
}

/** JobState, Reason, ExitCode and NodeList of a job, from `scontrol show job -o ID`; undefined once Slurm forgot it. */
function parseJob(stdout: string): {state: string; reason: string; exit: string; node: string} | undefined {
  const field = (name: string) => new RegExp(`(?:^|\\s)${name}=(\\S*)`).exec(stdout)?.[1] ?? ''
  const state = field('JobState')
  if (!state) return undefined
  return {state, reason: field('Reason'), exit: field('ExitCode'), node: field('NodeList')}
}

/**
 * `--check-submit USER`: the test job submitted as USER (through sudo, as batchspawner does),
 * followed until it ends or `timeoutSeconds` pass (then cancelled). Passes when it COMPLETED.
 */
export async function checkSubmit(
  runner: Runner,
  clock: Clock,
  shape: SlurmJobShape,
  user: string,
  options: {timeoutSeconds: number; pollMs?: number},
): Promise<SlurmCheckOutcome> {
  const asUser = ['-E', '-u', user]
  const exists = await runner.run('id', ['-u', user], {cwd: '/', timeoutMs: 15_000})
  if (exists.exitCode !== 0)
    return {
      status: 'fail',
      message: `--check-submit ${user}: there is no such user on this machine (id -u ${user}: ${lastLine(exists)})`,
      fix: `give --check-submit a user who logs in to the hub and exists on this machine and the nodes (getent passwd ${user})`,
    }
  const submitted = await runner.run('sudo', [...asUser, 'sbatch', '--parsable'], {
    cwd: '/',
    input: testJobScript(shape),
    timeoutMs: 60_000,
  })
  const jobId = /^(\d+)/.exec(submitted.stdout.trim())?.[1]
  if (submitted.exitCode !== 0 || !jobId) {
    const said = lastLine(submitted)
    return {
      status: 'fail',
      message: `--check-submit ${user}: sbatch as ${user} (sudo -E -u ${user} sbatch, as the hub submits a server) was refused: ${said}`,
      fix: /^sudo:/m.test(submitted.stderr)
        ? `let root run sbatch as ${user} through sudo (the hub does: sudo -E -u ${user} sbatch); ${said}`
        : submitFix(said, shape),
    }
  }
  const started = clock.now()
  let last: ReturnType<typeof parseJob>
  for (;;) {
    const shown = await runner.run('scontrol', ['show', 'job', '-o', jobId], {cwd: '/', timeoutMs: 30_000})
    const job = shown.exitCode === 0 ? parseJob(shown.stdout) : undefined
    if (!job) {
      // Slurm forgot the job (MinJobAge passed between two looks): it ended; how, it no longer says.
      if (last)
        return {
          status: 'pass',
          jobId,
          message: `--check-submit ${user}: job ${jobId} ran and ended (Slurm no longer shows how)`,
        }
      return {
        status: 'fail',
        jobId,
        message: `--check-submit ${user}: sbatch gave job ${jobId}, and scontrol does not know it: ${lastLine(shown)}`,
        fix: "check that slurmctld is healthy (scontrol ping) and this machine uses the cluster's slurm.conf",
      }
    }
    last = job
    if (job.state === 'COMPLETED')
      return {
        status: 'pass',
        jobId,
        message: `--check-submit ${user}: job ${jobId} submitted as ${user} ran on ${job.node || 'a node'} and completed in ${Math.round((clock.now() - started) / 1000)} s`,
      }
    if (!['PENDING', 'CONFIGURING', 'RUNNING', 'COMPLETING', 'REQUEUED', 'RESIZING', 'SUSPENDED'].includes(job.state))
      return {
        status: 'fail',
        jobId,
        message: `--check-submit ${user}: job ${jobId} ended ${job.state}${job.node ? ` on ${job.node}` : ''} (exit code ${job.exit || '?'}, reason ${job.reason || 'None'})`,
        fix: `a server's job would end the same way: see slurmd's log on ${job.node || 'the node'} for job ${jobId}, and that ${user} exists there with a home directory`,
      }
    if (clock.now() - started >= options.timeoutSeconds * 1000) {
      const cancelled = await runner.run('sudo', [...asUser, 'scancel', jobId], {cwd: '/', timeoutMs: 30_000})
      const reason = job.reason && job.reason !== 'None' ? job.reason : ''
      return {
        status: 'fail',
        jobId,
        message: `--check-submit ${user}: job ${jobId} was still ${job.state}${reason ? ` (Slurm's reason: ${reason})` : ''} after ${options.timeoutSeconds} s, and ${cancelled.exitCode === 0 ? 'was cancelled' : `could not be cancelled (scancel ${jobId}: ${lastLine(cancelled)})`}`,
        fix:
          job.state === 'PENDING'
            ? pendingFix(reason, shape, options.timeoutSeconds)
            : `give --check-submit-timeout more than ${options.timeoutSeconds} seconds if the nodes are slow to start a job`,
      }
    }
    await clock.sleep(options.pollMs ?? 500)
  }
}

/**
 * The sbatch options of the operator's `#SBATCH` lines (--slurm-extra) that srun takes too, as srun
 * arguments: what places the job (partition, account, QOS, reservation, constraint, GPUs, ...), so
 * that the node check asks Slurm for a job like the servers' own. Left out: what only a batch
 * script has, or would take the check's output away (output and error files, the job's name and
 * directory, its environment, arrays, requeueing, mail).
 */
export function srunOptions(extra: string[]): string[] {
  const scriptOnly = new Set([
    '--output',
    '-o',
    '--error',
    '-e',
    '--input',
    '-i',
    '--open-mode',
    '--job-name',
    '-J',
    '--chdir',
    '-D',
    '--export',
    '--export-file',
    '--get-user-env',
    '--array',
    '-a',
    '--requeue',
    '--no-requeue',
    '--parsable',
    '--wait',
    '-W',
    '--wrap',
    '--test-only',
    '--mail-type',
    '--mail-user',
    '--signal',
  ])
  const options: string[] = []
  for (const line of extra) {
    const words = line
      .replace(/^#SBATCH\s+/, '')
      .split(/\s+/)
      .filter(Boolean)
    let skipping = false
    for (const word of words) {
      if (word.startsWith('#')) break
      if (word.startsWith('-')) {
        const name = word.startsWith('--') ? word.split('=')[0] : word.slice(0, 2)
        skipping = scriptOnly.has(name)
      }
      if (!skipping) options.push(word)
    }
  }
  return options
}

/** The partition a job of `shape` goes to: the last one its #SBATCH lines name, else the servers' own. */
export function jobPartition(shape: Pick<SlurmJobShape, 'partition' | 'extra'>): string {
  let partition = shape.partition
  const words = srunOptions(shape.extra)
  for (const [i, word] of words.entries()) {
    const joined = /^(?:--partition=|-p)(.+)$/.exec(word)
    if (joined) partition = joined[1].replace(/^=/, '')
    else if ((word === '--partition' || word === '-p') && words[i + 1]) partition = words[i + 1]
  }
  return partition
}

/** srun's words when Slurm refused the job outright (not a busy cluster): a bad partition, account, QOS, option. */
const REFUSED =
  /invalid (partition|account|qos|generic resource|feature|reservation|node name|option)|unrecognized option|Invalid (partition|account|qos)|not permitted|AssocNotFound|Access\/permission denied|Requested node configuration is not available|More processors requested|Memory required by task is not available/i

/**
 * The programs each job runs, by absolute path, checked on a node of the partition as `user` (not
 * root: the files must be reachable by the users): `srun --immediate` runs `test -x` for each, with
 * the servers' own --slurm-extra options (srunOptions), so it asks for the partition, account or QOS
 * their jobs will. A job Slurm refuses outright (a partition or account that does not exist) fails,
 * naming it; no allocation within SRUN_IMMEDIATE seconds (a busy or down partition) is a warning
 * that the check could not be made, not a failure.
 */
export async function checkNodePaths(
  runner: Runner,
  shape: Pick<SlurmJobShape, 'partition' | 'extra'>,
  user: string,
  paths: string[],
  options: {immediateSeconds?: number} = {},
): Promise<SlurmCheckOutcome> {
  const immediate = options.immediateSeconds ?? SRUN_IMMEDIATE
  const extraOptions = srunOptions(shape.extra)
  const script = 'for f in "$@"; do if test -x "$f"; then echo "hubctl-ok $f"; else echo "hubctl-missing $f"; fi; done'
  const result = await runner.run(
    'sudo',
    [
      '-u',
      user,
      'srun',
      `--partition=${shape.partition}`,
      '--nodes=1',
      '--ntasks=1',
      '--mem=64M',
      '--time=1',
      `--immediate=${immediate}`,
      '--job-name=hubctl-check-paths',
      '--chdir=/',
      ...extraOptions,
      '/bin/sh',
      '-c',
      script,
      'sh',
      ...paths,
    ],
    {cwd: '/', timeoutMs: (immediate + 60) * 1000},
  )
  const lines = result.stdout.split('\n').map((line) => line.trim())
  const missing = paths.filter((p) => lines.includes(`hubctl-missing ${p}`))
  const found = paths.filter((p) => lines.includes(`hubctl-ok ${p}`))
  if (missing.length > 0)
    return {
      status: 'fail',
      message: `each server's job runs ${missing.join(' and ')} as its user, and on a node of ${shape.partition} ${user} cannot run ${missing.length === 1 ? 'it' : 'them'} (srun ... test -x as ${user})`,
      fix: "install hubctl's environment at the same path on every node, readable and executable by every user (a shared /opt/jupyterhub, or your --jupyterhub's virtualenv outside any home), with batchspawner beside jupyterhub-singleuser",
    }
  if (found.length === paths.length)
    return {
      status: 'pass',
      message: `${user} can run ${paths.join(' and ')} on a node of ${shape.partition} (srun)`,
    }
  const said = lastLine(result)
  if (found.length === 0 && !result.timedOut && REFUSED.test(`${result.stderr}\n${result.stdout}`)) {
    const partition = jobPartition(shape)
    const asked = [`--partition=${shape.partition}`, ...extraOptions].join(' ')
    return {
      status: 'fail',
      message: `Slurm refused a job like the servers' (srun as ${user} with ${asked}, in partition ${partition}): ${said}`,
      fix:
        partition === shape.partition
          ? submitFix(said, {...shape, memory: '64M', cpus: 1})
          : `the partition ${partition} is named by --slurm-extra: give one that exists there (sinfo -s lists them), or leave the line out`,
    }
  }
  return {
    status: 'warn',
    message: `could not check on a node that ${paths.join(' and ')} ${paths.length === 1 ? 'is' : 'are'} there for the users' jobs: srun as ${user} got no allocation in ${shape.partition} within ${immediate} s (${result.timedOut ? 'timed out' : said})`,
    fix: `make sure every node has them at the same path, readable by every user; \`hubctl doctor\` checks again when the partition has room`,
  }
}
