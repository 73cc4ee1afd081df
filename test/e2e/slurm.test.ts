// e2e-lane: parallel
import {expect} from 'chai'
import {execa} from 'execa'
import fs from 'node:fs/promises'
import path from 'node:path'

import {HubApi} from '../../src/lib/stack/hubapi.js'
import {Doctor} from '../../src/lib/setup/doctor.js'
import {execaRunner} from '../../src/lib/runner.js'
import {Layout} from '../../src/lib/config/layout.js'
import {
  grantHubctlTokens,
  hubctl,
  initTestHub,
  portFlags,
  tempPrefix,
  testHubInitArgs,
  VENV_JUPYTERHUB,
} from '../helpers/cli.js'
import {execute, httpsJson, stdoutOf} from '../helpers/kernel.js'
import {waitUntil} from '../helpers/processes.js'
import {type SlurmCluster, slurmInstalled, squeue, startSlurmCluster} from '../helpers/slurm.js'
import {needTool} from '../helpers/tools.js'
import {addUser, removeUser, testUserName} from '../helpers/users.js'

/*
 * --spawner slurm on a real one-node Slurm cluster (test/helpers/slurm.ts: munge, slurmctld and
 * slurmd started directly), one hub for the file: a system user's server is a Slurm job submitted
 * by batchspawner as that user (squeue shows it), a kernel in it runs a cell through nginx, a job
 * ended by `scancel` behind the hub's back is noticed and cleaned up by the hub, and `hubctl stop`
 * cancels the job of a running server.
 *
 * The JupyterHub is the virtualenv's (VENV_JUPYTERHUB: .ci/run installs batchspawner there, pinned
 * in python/constraints.txt); the token for the user's server is made as kernel.test.ts makes it.
 */
describe('user servers as Slurm jobs (--spawner slurm)', function () {
  this.timeout(300_000)

  const user = testUserName()
  const jupyterhub = VENV_JUPYTERHUB
  let cluster: SlurmCluster | undefined
  let uid = -1
  let prefix = ''
  let layout: Layout
  let ports: Awaited<ReturnType<typeof portFlags>>['ports']
  let api: HubApi
  let ca = ''
  let badInit: Promise<{result: Awaited<ReturnType<typeof hubctl>>; prefix: string}> | undefined

  const slurmFlags = (partition: string) => [
    '--spawner',
    'slurm',
    '--slurm-partition',
    partition,
    '--slurm-memory',
    '512M',
    '--slurm-cpus',
    '1',
    '--slurm-runtime',
    '1:00:00',
    '--slurm-extra',
    '#SBATCH --comment=hubctl-e2e',
  ]

  before(async function () {
    needTool(this, await slurmInstalled(), 'Slurm (slurmctld, slurmd, slurm-client, munge, sudo) is not installed')
    const python = path.join(path.dirname(jupyterhub), 'python')
    const imports = await execa(python, ['-c', 'import batchspawner'], {reject: false, cwd: '/'})
    expect(imports.exitCode, `${python} has no batchspawner (.ci/run installs it): ${imports.stderr}`).to.equal(0)
    cluster = await startSlurmCluster()
    uid = await addUser(user)
    // An init naming a partition the cluster lacks, run beside the hub's own init (the first test reads it).
    badInit = (async () => {
      const other = await tempPrefix('hubctl-slurm-bad')
      const portInfo = await portFlags()
      const args = testHubInitArgs(
        other,
        {admin: user, jupyterhub, extra: slurmFlags('no-such-partition')},
        portInfo.flags,
      )
      return {result: await hubctl(args), prefix: other}
    })()
    prefix = await tempPrefix('hubctl-slurm')
    layout = new Layout(prefix)
    ports = await initTestHub(prefix, {
      admin: user,
      allowUsers: [user],
      jupyterhub,
      extra: slurmFlags(cluster.partition),
    })
    await grantHubctlTokens(layout.hubConfigD, 'slurm-test-tokens', [user])
    const started = await hubctl(['start', '--detach', '--prefix', prefix, '--json'])
    expect(started.exitCode, started.stderr + started.stdout).to.equal(0)
    api = HubApi.forLayout(layout, {ports}, {timeoutMs: 60_000})
    ca = await fs.readFile(layout.fullchain, 'utf8')
  })

  after(async function () {
    this.timeout(120_000)
    if (prefix) await hubctl(['stop', '--prefix', prefix, '--json'])
    if (uid >= 0) await removeUser(user, uid)
    if (prefix) await fs.rm(prefix, {recursive: true, force: true})
    const bad = await badInit?.catch(() => undefined)
    if (bad) await fs.rm(bad.prefix, {recursive: true, force: true})
    await cluster?.stop()
  })

  const jobsOfUser = async () => (await squeue()).filter((job) => job.user === user)

  /** The user's server started through the hub's API, ready; its job as squeue shows it. */
  const startServer = async () => {
    expect(['started', 'pending']).to.include(await api.startServer(user))
    await waitUntil(
      'the server to be ready',
      async () => (await api.userServers(user)).find((s) => s.name === '' && s.ready),
      {tries: 600, intervalMs: 200},
    )
    const jobs = await jobsOfUser()
    expect(jobs, JSON.stringify(jobs)).to.have.length(1)
    return jobs[0]
  }

  let serverOnce: Promise<Awaited<ReturnType<typeof startServer>>> | undefined
  const server = () => (serverOnce ??= startServer())

  it('refuses a partition the cluster does not have, naming the ones it has, and writes nothing', async () => {
    const {result, prefix: other} = await badInit!
    expect(result.exitCode, result.stderr).to.equal(2)
    expect(result.stderr).to.include('the Slurm partition no-such-partition does not exist')
    expect(result.stderr).to.include(`give --slurm-partition one of ${cluster!.partition}`)
    const written = await fs.access(new Layout(other).settings).then(
      () => true,
      () => false,
    )
    expect(written, 'hubctl.json was written').to.equal(false)
  })

  it("starts the user's server as a Slurm job of the user, running, on the cluster's node", async () => {
    const job = await server()
    expect(job.state).to.equal('RUNNING')
    expect(job.node).to.equal(cluster!.node)
    expect(job.name).to.equal('jupyterhub-singleuser')
    const scontrol = await execa('scontrol', ['show', 'job', job.id])
    // The operator's --slurm-extra line is in the job, and the job asks what init was told.
    expect(scontrol.stdout).to.include('Comment=hubctl-e2e')
    expect(scontrol.stdout).to.match(/TimeLimit=01:00:00/)
    expect(scontrol.stdout).to.match(/MinMemoryNode=512M|mem=512M/)
    // hubctl status names the server's job, its state and node.
    const status = await hubctl(['status', '--prefix', prefix, '--json'])
    const listed = (JSON.parse(status.stdout) as {servers: Array<{user: string; slurmJobs?: unknown[]}>}).servers
    expect(listed.find((s) => s.user === user)?.slurmJobs).to.deep.equal([
      {id: job.id, state: 'RUNNING', node: cluster!.node, reason: 'None'},
    ])
  })

  it("doctor's Slurm checks: munge works, the partition is up and the resources fit a node", async () => {
    // Doctor's own checks of the cluster, in this process (the whole `hubctl doctor` also starts
    // JupyterHub's Python several times, which this file need not pay for).
    const doctor = new Doctor({layout, runner: execaRunner})
    await doctor.checkSettings()
    const checks = await doctor.checkSlurm()
    expect(
      checks.map((c) => [c.check, c.status]),
      JSON.stringify(checks),
    ).to.deep.equal([
      ['munge', 'pass'],
      ['slurm partition', 'pass'],
    ])
    expect(checks[1].message).to.include(`${cluster!.partition} is up`)
  })

  it('runs a cell in a kernel of that server, through nginx', async () => {
    await server()
    const apiToken = (await fs.readFile(layout.apiToken, 'utf8')).trim()
    const response = await fetch(`http://127.0.0.1:${ports.hub}/hub/api/users/${user}/tokens`, {
      method: 'POST',
      headers: {Authorization: `token ${apiToken}`, 'Content-Type': 'application/json'},
      body: JSON.stringify({note: 'hubctl slurm e2e', expires_in: 3600, scopes: [`access:servers!user=${user}`]}),
    })
    const body = (await response.json()) as {token?: string; message?: string}
    expect(response.status, body.message).to.equal(201)
    const base = `https://localhost:${ports.https}/user/${user}/api`
    const kernel = await waitUntil(
      'the kernel to be created',
      async () => {
        const created = await httpsJson(`${base}/kernels`, {
          method: 'POST',
          ca,
          token: body.token,
          body: {name: 'python3'},
        })
        const detail = `POST kernels answered ${created.status}: ${JSON.stringify(created.body).slice(0, 300)}`
        if (created.status === 502) throw new Error(detail)
        expect(created.status, detail).to.equal(201)
        return created.body as {id: string}
      },
      {tries: 10, intervalMs: 1000},
    )
    const replies = await execute(`wss://localhost:${ports.https}/user/${user}/api/kernels/${kernel.id}/channels`, {
      ca,
      headers: {Authorization: `token ${body.token}`},
      code: 'import os; print(os.environ.get("SLURM_JOB_ID"))',
    })
    // The kernel runs inside the Slurm job.
    expect(stdoutOf(replies)).to.equal(`${(await server()).id}\n`)
  })

  it('notices a job ended by scancel behind its back, and cleans up the server', async () => {
    const job = await server()
    await execa('scancel', [job.id])
    await waitUntil(
      'the hub to clean up the server whose job was cancelled',
      async () => {
        const servers = await api.userServers(user)
        return !servers.some((s) => s.name === '') && servers
      },
      {tries: 240, intervalMs: 500},
    )
    expect(await jobsOfUser()).to.deep.equal([])
    serverOnce = undefined
  })

  it("cancels a running server's job at hubctl stop", async () => {
    const job = await server()
    const stopped = await hubctl(['stop', '--prefix', prefix, '--json'])
    expect(stopped.exitCode, stopped.stderr).to.equal(0)
    const left = (await squeue()).filter((j) => j.id === job.id && j.state !== 'COMPLETING')
    expect(left, JSON.stringify(left)).to.deep.equal([])
  })
})
