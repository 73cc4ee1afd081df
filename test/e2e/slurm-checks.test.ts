// e2e-lane: parallel
import {expect} from 'chai'
import {execa} from 'execa'
import {randomBytes} from 'node:crypto'
import fs from 'node:fs/promises'
import path from 'node:path'

import {Doctor} from '../../src/lib/setup/doctor.js'
import {execaRunner} from '../../src/lib/runner.js'
import {Layout} from '../../src/lib/config/layout.js'
import {checkNodePaths, checkSubmit} from '../../src/lib/setup/slurmcheck.js'
import {systemClock} from '../../src/lib/stack/clock.js'
import {hubctl, portFlags, tempPrefix, testHubInitArgs, VENV_JUPYTERHUB} from '../helpers/cli.js'
import {type SlurmCluster, slurmInstalled, squeue, startSlurmCluster, stopSlurmCluster} from '../helpers/slurm.js'
import {needTool} from '../helpers/tools.js'
import {addUser, removeUser} from '../helpers/users.js'

/*
 * The preflight and doctor checks of --spawner slurm that run something on a real one-node Slurm
 * cluster (test/helpers/slurm.ts), without starting a hub: --check-submit USER submits a test job as
 * a real system user (sudo -E -u USER sbatch, as batchspawner does) and reports its id, and nothing
 * stays in the queue; a user that does not exist is refused (exit 3, nothing written); a partition
 * that is down fails the check with Slurm's reason and the fix, its pending job cancelled; the jobs' programs are
 * checked on the node with srun as the user, and one the user cannot run is named with the fix.
 */
describe('Slurm preflight: --check-submit and the programs on the nodes', function () {
  this.timeout(300_000)

  const user = `scu-${randomBytes(3).toString('hex')}`
  const jupyterhub = VENV_JUPYTERHUB
  let cluster: SlurmCluster | undefined
  let uid = -1
  const prefixes: string[] = []
  const missing = `scu-none-${randomBytes(3).toString('hex')}`
  type Init = Promise<{prefix: string; result: Awaited<ReturnType<typeof hubctl>>}>
  let submitted: Init | undefined
  let noSuchUser: Init | undefined

  const slurmFlags = (partition: string, extra: string[] = []) => [
    '--spawner',
    'slurm',
    '--slurm-partition',
    partition,
    '--slurm-memory',
    '256M',
    '--slurm-runtime',
    '10:00',
    ...extra,
  ]

  /** `hubctl init` of a test hub (no server check) with these Slurm flags, in a fresh prefix. */
  const init = async (extra: string[]): Init => {
    const prefix = await tempPrefix('hubctl-slurmcheck')
    prefixes.push(prefix)
    const ports = await portFlags()
    const args = testHubInitArgs(prefix, {admin: user, allowUsers: [user], jupyterhub, extra}, ports.flags)
    const result = await hubctl([...args, '--json'])
    return {prefix, result}
  }

  const jobsOfUser = async () => (await squeue()).filter((job) => job.user === user)

  before(async function () {
    needTool(this, await slurmInstalled(), 'Slurm (slurmctld, slurmd, slurm-client, munge, sudo) is not installed')
    cluster = await startSlurmCluster()
    uid = await addUser(user)
    // The two inits whose partition is up run side by side (each pays for init's preflight).
    submitted = init(slurmFlags(cluster.partition, ['--check-submit', user]))
    noSuchUser = init(slurmFlags(cluster.partition, ['--check-submit', missing]))
    await Promise.allSettled([submitted, noSuchUser])
  })

  after(async function () {
    this.timeout(120_000)
    await execa('scontrol', ['update', `PartitionName=${cluster?.partition}`, 'State=UP'], {reject: false})
    if (uid >= 0) await removeUser(user, uid)
    for (const prefix of prefixes) await fs.rm(prefix, {recursive: true, force: true})
    // Also when before() timed out waiting for the lock or starting the cluster.
    await stopSlurmCluster()
  })

  it("init --check-submit USER: the test job ran as the user (its id reported, gone from the queue), and the jobs' programs were found on the node as that user", async () => {
    const {prefix, result} = await submitted!
    expect(result.exitCode, result.stderr + result.stdout).to.equal(0)
    const json = JSON.parse(result.stdout) as {
      slurmChecks?: {
        submit?: {status: string; jobId?: string; message: string}
        nodePaths?: {status: string; message: string}
      }
    }
    const submit = json.slurmChecks?.submit
    expect(submit?.status, JSON.stringify(json.slurmChecks)).to.equal('pass')
    expect(submit?.jobId).to.match(/^\d+$/)
    expect(submit?.message).to.include(`job ${submit?.jobId} submitted as ${user}`).and.include('completed')
    expect(json.slurmChecks?.nodePaths?.status, JSON.stringify(json.slurmChecks)).to.equal('pass')
    expect(json.slurmChecks?.nodePaths?.message).to.include(`${user} can run`).and.include('batchspawner-singleuser')
    expect((await squeue()).map((job) => job.id)).to.not.include(submit?.jobId)

    // doctor --check-submit: the same two checks, in this process (the whole doctor starts JupyterHub's Python several times).
    const doctor = new Doctor({layout: new Layout(prefix), runner: execaRunner, checkSubmit: {user}})
    await doctor.checkSettings()
    const checks = await doctor.checkSlurmJobs()
    expect(
      checks.map((c) => [c.check, c.status]),
      JSON.stringify(checks),
    ).to.deep.equal([
      ['slurm node paths', 'pass'],
      ['slurm submit', 'pass'],
    ])
    expect(await jobsOfUser()).to.deep.equal([])
  })

  it('init --check-submit with a user that does not exist: exit 3 naming the user and the fix, nothing written', async () => {
    const {prefix, result} = await noSuchUser!
    expect(result.exitCode, result.stderr + result.stdout).to.equal(3)
    const said = result.stderr + result.stdout
    expect(said).to.include(`--check-submit ${missing}: there is no such user`)
    expect(said).to.include(`getent passwd ${missing}`)
    expect(await fs.readdir(prefix)).to.deep.equal([])
  })

  it("a partition that is down: the pending test job is cancelled at the timeout, with Slurm's reason and the fix; srun says it could not check", async () => {
    // The library that init's preflight and doctor call (the CLI's exit 3 is the test above's).
    const partition = cluster!.partition
    await execa('scontrol', ['update', `PartitionName=${partition}`, 'State=DOWN'])
    try {
      const shape = {partition, memory: '256M', cpus: 1, extra: []}
      const outcome = await checkSubmit(execaRunner, systemClock, shape, user, {timeoutSeconds: 5})
      expect(outcome.status, JSON.stringify(outcome)).to.equal('fail')
      expect(outcome.message).to.match(
        /job \d+ was still PENDING \(Slurm's reason: PartitionDown\) after 5 s, and was cancelled/,
      )
      expect(outcome.fix).to.include(`scontrol update PartitionName=${partition} State=UP`)
      expect(await jobsOfUser()).to.deep.equal([])

      const paths = [path.join(path.dirname(jupyterhub), 'jupyterhub-singleuser')]
      const check = await checkNodePaths(execaRunner, {partition, extra: []}, user, paths, {immediateSeconds: 2})
      expect(check.status, JSON.stringify(check)).to.equal('warn')
      expect(check.message).to.include('could not check').and.include(`srun as ${user} got no allocation`)
    } finally {
      await execa('scontrol', ['update', `PartitionName=${partition}`, 'State=UP'])
    }
  })

  it('a program the user cannot run on the node (chmod 700) is named by the srun check, with the fix', async () => {
    const dir = await tempPrefix('hubctl-slurmcheck-bin')
    prefixes.push(dir)
    await fs.chmod(dir, 0o755)
    const singleuser = path.join(dir, 'jupyterhub-singleuser')
    const wrapper = path.join(dir, 'batchspawner-singleuser')
    await fs.writeFile(singleuser, '#!/bin/sh\n', {mode: 0o755})
    await fs.writeFile(wrapper, '#!/bin/sh\n', {mode: 0o700})
    const check = await checkNodePaths(execaRunner, {partition: cluster!.partition, extra: []}, user, [
      singleuser,
      wrapper,
    ])
    expect(check.status, JSON.stringify(check)).to.equal('fail')
    expect(check.message).to.include(`runs ${wrapper} as its user`).and.include(`${user} cannot run it`)
    expect(check.message).to.not.include(singleuser)
    expect(check.fix).to.include('same path on every node')
    await fs.chmod(wrapper, 0o755)
    expect(
      (await checkNodePaths(execaRunner, {partition: cluster!.partition, extra: []}, user, [singleuser, wrapper]))
        .status,
    ).to.equal('pass')
  })
})
