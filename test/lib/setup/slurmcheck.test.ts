import {expect} from 'chai'

import type {RunOptions, RunResult, Runner} from '../../../src/lib/runner.js'
import type {Clock} from '../../../src/lib/stack/clock.js'
import {checkNodePaths, checkSubmit, srunOptions, testJobScript} from '../../../src/lib/setup/slurmcheck.js'
import {checkPartition, type SlurmPartition} from '../../../src/lib/setup/slurm.js'
import {resolveInitRequest} from '../../../src/lib/setup/init-request.js'
import {rejection, thrown} from '../../helpers/errors.js'

/** A runner that answers each program from a table (a function of the call), recording the calls. */
function fakeRunner(answer: (command: string, args: string[], options: RunOptions) => Partial<RunResult>): Runner & {
  calls: Array<{command: string; args: string[]; input?: string}>
} {
  const calls: Array<{command: string; args: string[]; input?: string}> = []
  return {
    calls,
    async run(command, args, options = {}) {
      calls.push({command, args, input: options.input})
      return {exitCode: 0, stdout: '', stderr: '', notFound: false, ...answer(command, args, options)}
    },
  }
}

/** A clock whose sleep moves time on at once. */
function fakeClock(): Clock {
  let now = 0
  return {
    now: () => now,
    async sleep(ms) {
      now += ms
    },
  }
}

const shape = {partition: 'batch', memory: '2G', cpus: 1, extra: ['#SBATCH --account=physics']}
const job = (state: string, reason = 'None', node = 'n1') =>
  `JobId=42 JobName=hubctl-check-submit JobState=${state} Reason=${reason} Dependency=(null) ExitCode=0:0 NodeList=${node}`

describe('--check-submit: a test job as the user', () => {
  it("submits as the user through sudo, as batchspawner does, with the servers' #SBATCH lines, and passes when it completes", async () => {
    const states = ['PENDING', 'RUNNING', 'COMPLETED']
    const runner = fakeRunner((command, args) => {
      if (command === 'sudo' && args.includes('sbatch')) return {stdout: '42'}
      if (command === 'scontrol') return {stdout: job(states.shift()!)}
      return {}
    })
    const outcome = await checkSubmit(runner, fakeClock(), shape, 'scu1', {timeoutSeconds: 60})
    expect(outcome.status).to.equal('pass')
    expect(outcome.jobId).to.equal('42')
    expect(outcome.message).to.include('job 42').and.include('completed')
    const submit = runner.calls.find((c) => c.args.includes('sbatch'))!
    expect(submit.args).to.deep.equal(['-E', '-u', 'scu1', 'sbatch', '--parsable'])
    expect(submit.input).to.equal(testJobScript(shape))
    expect(submit.input).to.include('#SBATCH --partition=batch\n').and.include('#SBATCH --mem=2G\n')
    expect(submit.input).to.include('#SBATCH --account=physics\n')
    expect(runner.calls.some((c) => c.args.includes('scancel'))).to.equal(false)
  })

  it('refuses a user that does not exist before submitting anything', async () => {
    const runner = fakeRunner((command) => (command === 'id' ? {exitCode: 1, stderr: "id: 'nope': no such user"} : {}))
    const outcome = await checkSubmit(runner, fakeClock(), shape, 'nope', {timeoutSeconds: 60})
    expect(outcome.status).to.equal('fail')
    expect(outcome.message).to.include('no such user')
    expect(outcome.fix).to.include('getent passwd nope')
    expect(runner.calls.map((c) => c.command)).to.deep.equal(['id'])
  })

  it("names Slurm's words and the fix when sbatch refuses the job", async () => {
    const runner = fakeRunner((command, args) =>
      args.includes('sbatch')
        ? {
            exitCode: 1,
            stderr:
              'sbatch: error: Batch job submission failed: Invalid account or account/partition combination specified',
          }
        : {},
    )
    const outcome = await checkSubmit(runner, fakeClock(), shape, 'scu1', {timeoutSeconds: 60})
    expect(outcome.status).to.equal('fail')
    expect(outcome.message).to.include('Invalid account')
    expect(outcome.fix).to.include('--account')
  })

  it("cancels a job still pending at the timeout, and names Slurm's reason and the fix", async () => {
    const runner = fakeRunner((command, args) => {
      if (args.includes('sbatch')) return {stdout: '42;cluster'}
      if (command === 'scontrol') return {stdout: job('PENDING', 'PartitionDown', '')}
      return {}
    })
    const outcome = await checkSubmit(runner, fakeClock(), shape, 'scu1', {timeoutSeconds: 5, pollMs: 1000})
    expect(outcome.status).to.equal('fail')
    expect(outcome.jobId).to.equal('42')
    expect(outcome.message).to.include("Slurm's reason: PartitionDown").and.include('was cancelled')
    expect(outcome.fix).to.include('scontrol update PartitionName=batch State=UP')
    const cancel = runner.calls.find((c) => c.args.includes('scancel'))
    expect(cancel?.args).to.deep.equal(['-E', '-u', 'scu1', 'scancel', '42'])
  })

  it('fails a job that ended otherwise than COMPLETED, with its state, node and exit code', async () => {
    const runner = fakeRunner((command, args) => {
      if (args.includes('sbatch')) return {stdout: '42'}
      if (command === 'scontrol')
        return {stdout: job('FAILED', 'NonZeroExitCode').replace('ExitCode=0:0', 'ExitCode=1:0')}
      return {}
    })
    const outcome = await checkSubmit(runner, fakeClock(), shape, 'scu1', {timeoutSeconds: 60})
    expect(outcome.status).to.equal('fail')
    expect(outcome.message).to.include('ended FAILED on n1').and.include('exit code 1:0')
  })
})

describe("the jobs' programs on a node (srun)", () => {
  const paths = [
    '/opt/jupyterhub/current/bin/jupyterhub-singleuser',
    '/opt/jupyterhub/current/bin/batchspawner-singleuser',
  ]

  it('runs test -x with srun as the user, in the partition, within a bound, and passes when both are there', async () => {
    const runner = fakeRunner(() => ({stdout: paths.map((p) => `hubctl-ok ${p}`).join('\n')}))
    const outcome = await checkNodePaths(runner, {partition: 'batch', extra: []}, 'nobody', paths, {
      immediateSeconds: 7,
    })
    expect(outcome.status).to.equal('pass')
    const [call] = runner.calls
    expect(call.command).to.equal('sudo')
    expect(call.args.slice(0, 3)).to.deep.equal(['-u', 'nobody', 'srun'])
    expect(call.args).to.include('--partition=batch').and.include('--immediate=7')
    expect(call.args.slice(-2)).to.deep.equal(paths)
  })

  it('fails naming the program the user cannot run there, with the fix', async () => {
    const runner = fakeRunner(() => ({stdout: `hubctl-ok ${paths[0]}\nhubctl-missing ${paths[1]}`}))
    const outcome = await checkNodePaths(runner, {partition: 'batch', extra: []}, 'scu1', paths)
    expect(outcome.status).to.equal('fail')
    expect(outcome.message).to.include(paths[1]).and.not.include(paths[0])
    expect(outcome.fix).to.include('same path on every node')
  })

  it("asks srun for a job like the servers': the --slurm-extra options srun takes, not the script's own", async () => {
    const runner = fakeRunner(() => ({stdout: paths.map((p) => `hubctl-ok ${p}`).join('\n')}))
    const extra = [
      '#SBATCH --account=physics',
      '#SBATCH -q  short',
      '#SBATCH --output=/dev/null',
      '#SBATCH --mail-type ALL',
      '#SBATCH --constraint=gpu # the nodes with GPUs',
    ]
    expect(srunOptions(extra)).to.deep.equal(['--account=physics', '-q', 'short', '--constraint=gpu'])
    expect((await checkNodePaths(runner, {partition: 'batch', extra}, 'nobody', paths)).status).to.equal('pass')
    const args = runner.calls[0].args
    const srun = args.slice(args.indexOf('srun'), args.indexOf('/bin/sh'))
    expect(srun).to.include.members(['--partition=batch', '--account=physics', '-q', 'short', '--constraint=gpu'])
    expect(srun.join(' ')).to.not.include('--output').and.not.include('--mail-type')
    // The operator's partition comes after the servers' own, as in the job script.
    expect(srun.indexOf('--partition=batch')).to.be.lessThan(srun.indexOf('--account=physics'))
  })

  it('fails naming a partition of --slurm-extra that Slurm does not have', async () => {
    const runner = fakeRunner((command, args) =>
      args.includes('--partition=nope')
        ? {
            exitCode: 1,
            stderr:
              'srun: error: invalid partition specified: nope\nsrun: error: Unable to allocate resources: Invalid partition name specified',
          }
        : {stdout: paths.map((p) => `hubctl-ok ${p}`).join('\n')},
    )
    const outcome = await checkNodePaths(
      runner,
      {partition: 'batch', extra: ['#SBATCH --partition=nope']},
      'nobody',
      paths,
    )
    expect(outcome.status).to.equal('fail')
    expect(outcome.message).to.include('in partition nope').and.include('Invalid partition name specified')
    expect(outcome.fix).to.include('the partition nope is named by --slurm-extra')
  })

  it('fails when Slurm refuses the account of --slurm-extra, with the fix', async () => {
    const runner = fakeRunner(() => ({
      exitCode: 1,
      stderr: 'srun: error: Unable to allocate resources: Invalid account or account/partition combination specified',
    }))
    const outcome = await checkNodePaths(runner, {partition: 'batch', extra: ['#SBATCH -A nope']}, 'nobody', paths)
    expect(outcome.status).to.equal('fail')
    expect(outcome.message).to.include('-A nope').and.include('in partition batch')
    expect(outcome.fix).to.include('sacctmgr')
  })

  it('warns that it could not check when srun gets no allocation', async () => {
    const runner = fakeRunner(() => ({
      exitCode: 1,
      stderr: 'srun: error: Unable to allocate resources: Requested nodes are busy',
    }))
    const outcome = await checkNodePaths(runner, {partition: 'batch', extra: []}, 'nobody', paths)
    expect(outcome.status).to.equal('warn')
    expect(outcome.message).to.include('could not check').and.include('Requested nodes are busy')
  })
})

describe("the partition's nodes", () => {
  const node = (name: string, memoryMb: number, cpus: number, state = 'idle') => ({name, memoryMb, cpus, state})
  const request = {partition: 'batch', memory: '8G', memoryMb: 8192, cpus: 8}

  it('refuses memory and CPUs that no single node has together', () => {
    const partitions: SlurmPartition[] = [
      {name: 'batch', avail: 'up', nodes: [node('big', 16384, 2), node('wide', 4096, 32)]},
    ]
    expect(thrown(() => checkPartition(partitions, request)).message).to.include('no single node')
    partitions[0].nodes.push(node('both', 8192, 8))
    expect(checkPartition(partitions, request).warnings).to.deep.equal([])
  })

  it('warns when no node of an up partition takes jobs', () => {
    const partitions: SlurmPartition[] = [
      {name: 'batch', avail: 'up', nodes: [node('n1', 8192, 8, 'drain'), node('n2', 8192, 8, 'idle*')]},
    ]
    expect(checkPartition(partitions, request).warnings.join()).to.include('no node of the Slurm partition batch')
    partitions[0].nodes.push(node('n3', 8192, 8, 'mix'))
    expect(checkPartition(partitions, request).warnings).to.deep.equal([])
  })
})

describe('--check-submit and --check-submit-timeout (init)', () => {
  const machine = {cores: 2}
  const base = {domain: ['hub.example.org'], email: 'a@example.org', admin: ['alice']}
  const slurm = {...base, spawner: 'slurm', 'slurm-partition': 'batch'}

  it('takes a user name and a timeout in seconds, with --spawner slurm only', async () => {
    const ok = await resolveInitRequest(
      {...slurm, 'check-submit': 'scu1', 'check-submit-timeout': '30'},
      undefined,
      machine,
    )
    expect(ok.slurm).to.deep.include({checkSubmit: 'scu1', checkSubmitTimeout: 30})
    expect((await resolveInitRequest(slurm, undefined, machine)).slurm?.checkSubmit).to.equal(undefined)
    const alone = await rejection(resolveInitRequest({...base, 'check-submit': 'scu1'}, undefined, machine))
    expect(alone.message).to.equal('--check-submit goes with --spawner slurm')
  })

  it('refuses a user name that is none, a timeout that is no number of seconds, a timeout alone', async () => {
    expect(
      (await rejection(resolveInitRequest({...slurm, 'check-submit': 'a b'}, undefined, machine))).exitCode,
    ).to.equal(2)
    const slow = await rejection(
      resolveInitRequest({...slurm, 'check-submit': 'scu1', 'check-submit-timeout': '1h'}, undefined, machine),
    )
    expect(slow.message).to.include('--check-submit-timeout')
    const alone = await rejection(resolveInitRequest({...slurm, 'check-submit-timeout': '30'}, undefined, machine))
    expect(alone.message).to.equal('--check-submit-timeout goes with --check-submit')
  })
})
