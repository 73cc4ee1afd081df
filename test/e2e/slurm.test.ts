// e2e-lane: parallel
import {expect} from 'chai'
import {execa} from 'execa'
import {randomBytes} from 'node:crypto'
import fs from 'node:fs/promises'
import path from 'node:path'

import {HubApi} from '../../src/lib/stack/hubapi.js'
import {Doctor} from '../../src/lib/setup/doctor.js'
import {checkNodePaths} from '../../src/lib/setup/slurmcheck.js'
import {execaRunner} from '../../src/lib/runner.js'
import {Layout} from '../../src/lib/config/layout.js'
import {BrowserSession, logIn, runCellInLab, waitForServerPage} from '../helpers/browser.js'
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
import {userPids, waitUntil} from '../helpers/processes.js'
import {type SlurmCluster, slurmInstalled, squeue, startSlurmCluster, stopSlurmCluster} from '../helpers/slurm.js'
import {needTool} from '../helpers/tools.js'
import {addUser, removeUser, testUserName} from '../helpers/users.js'

/*
 * --spawner slurm on a real one-node Slurm cluster (test/helpers/slurm.ts: munge, slurmctld and
 * slurmd started directly), one hub for the file: a system user logs in through nginx in Chromium,
 * their server is a Slurm job submitted by batchspawner as that user (squeue shows it) and
 * JupyterLab runs a cell in it; a kernel runs a cell through nginx; a job ended by `scancel` behind
 * the hub's back is noticed and cleaned up by the hub; while a job waits for a busy node the spawn
 * progress says Slurm's reason, and a job still pending at the start timeout is cancelled;
 * `hubctl stop --keep-servers` leaves a job running and `start` finds it; `hubctl stop` cancels it.
 * The node check (srun) asks with the servers' --slurm-extra options, so a partition named there
 * that the cluster lacks fails it. Last, the hub set up again by init with --cull-idle 5s: the idle
 * culler stops a server, its job leaves the queue and none of the user's processes is left.
 *
 * The JupyterHub is the virtualenv's (VENV_JUPYTERHUB: .ci/run installs batchspawner there, pinned
 * in python/constraints.txt); the token for the user's server is made as kernel.test.ts makes it.
 */
describe('user servers as Slurm jobs (--spawner slurm)', function () {
  this.timeout(300_000)

  const user = testUserName()
  /** A second user, whose start gives up after START_TIMEOUT s (the test's auth_state_hook), for the pending job. */
  const waiter = testUserName()
  const START_TIMEOUT = 15
  const password = randomBytes(12).toString('base64url')
  const jupyterhub = VENV_JUPYTERHUB
  let waiterUid = -1
  let session: BrowserSession | undefined
  let blocker = ''
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
    await execa('chpasswd', {input: `${user}:${password}\n`})
    waiterUid = await addUser(waiter)
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
      allowUsers: [user, waiter],
      jupyterhub,
      extra: slurmFlags(cluster.partition),
    })
    await grantHubctlTokens(layout.hubConfigD, 'slurm-test-tokens', [user, waiter])
    // The waiter's start gives up sooner than the hub's (the others keep the hub's timeout).
    await fs.writeFile(
      path.join(layout.hubConfigD, '91-slurm-test-timeout.py'),
      [
        `# hubctl e2e test: the start of ${waiter}'s server times out after ${START_TIMEOUT} s (a hook the`,
        '# hub runs before each start, which hubctl leaves unset).',
        '',
        '',
        'def _hubctl_test_short_start(spawner, auth_state):',
        `    if spawner.user.name == ${JSON.stringify(waiter)}:`,
        `        spawner.start_timeout = ${START_TIMEOUT}`,
        '',
        '',
        'c.Spawner.auth_state_hook = _hubctl_test_short_start',
        '',
      ].join('\n'),
      {mode: 0o644},
    )
    const started = await hubctl(['start', '--detach', '--prefix', prefix, '--json'])
    expect(started.exitCode, started.stderr + started.stdout).to.equal(0)
    api = HubApi.forLayout(layout, {ports}, {timeoutMs: 60_000})
    ca = await fs.readFile(layout.fullchain, 'utf8')
  })

  afterEach(async function () {
    if (this.currentTest?.state === 'failed') await session?.keep(this.currentTest.fullTitle())
    await session?.close()
    session = undefined
    if (blocker) await execa('scancel', [blocker], {reject: false})
    blocker = ''
  })

  after(async function () {
    this.timeout(120_000)
    if (prefix) await hubctl(['stop', '--prefix', prefix, '--json'])
    if (uid >= 0) await removeUser(user, uid)
    if (waiterUid >= 0) await removeUser(waiter, waiterUid)
    if (prefix) await fs.rm(prefix, {recursive: true, force: true})
    const bad = await badInit?.catch(() => undefined)
    if (bad) await fs.rm(bad.prefix, {recursive: true, force: true})
    // Also when before() timed out waiting for the lock or starting the cluster.
    await stopSlurmCluster()
  })

  const jobsOfUser = async () => (await squeue()).filter((job) => job.user === user)

  /** The events of a spawn's progress stream (what the spawn page shows), until it ends. */
  const spawnProgress = async (name: string, token: string) => {
    const response = await fetch(`http://127.0.0.1:${ports.hub}/hub/api/users/${name}/server/progress`, {
      headers: {Authorization: `token ${token}`},
    })
    expect(
      response.status,
      await response
        .clone()
        .text()
        .catch(() => ''),
    ).to.equal(200)
    const events: Array<{message?: string; failed?: boolean; ready?: boolean}> = []
    let text = ''
    for await (const chunk of response.body!) text += Buffer.from(chunk).toString()
    for (const line of text.split('\n')) if (line.startsWith('data:')) events.push(JSON.parse(line.slice(5)))
    return events
  }

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

  /** A token of the user's for their server (made by hubctl's service, as kernel.test.ts makes one). */
  const userToken = async (name = user, scopes = [`access:servers!user=${name}`]) => {
    const apiToken = (await fs.readFile(layout.apiToken, 'utf8')).trim()
    const response = await fetch(`http://127.0.0.1:${ports.hub}/hub/api/users/${name}/tokens`, {
      method: 'POST',
      headers: {Authorization: `token ${apiToken}`, 'Content-Type': 'application/json'},
      body: JSON.stringify({note: 'hubctl slurm e2e', expires_in: 3600, scopes}),
    })
    const body = (await response.json()) as {token?: string; message?: string}
    expect(response.status, body.message).to.equal(201)
    return body.token!
  }

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

  it('a system user logs in through nginx in Chromium: the server starts as their Slurm job, JupyterLab runs a cell in it', async () => {
    session = await BrowserSession.start({acceptSelfSigned: true})
    const {page} = session
    await logIn(page, `https://localhost:${ports.https}`, user, password)
    await waitForServerPage(page, user, 'lab')
    const jobs = await jobsOfUser()
    expect(jobs, JSON.stringify(jobs)).to.have.length(1)
    expect(jobs[0].state).to.equal('RUNNING')
    // The later tests use this server.
    serverOnce = Promise.resolve(jobs[0])
    expect(await runCellInLab(page, 'import os; print(os.environ["SLURM_JOB_ID"])')).to.equal(jobs[0].id)
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

  it("the node check asks Slurm with the servers' --slurm-extra options: a partition there that the cluster lacks fails, named", async () => {
    const singleuser = path.join(path.dirname(jupyterhub), 'jupyterhub-singleuser')
    const check = (extra: string[]) =>
      checkNodePaths(execaRunner, {partition: cluster!.partition, extra}, 'nobody', [singleuser], {immediateSeconds: 5})
    const bad = await check(['#SBATCH --comment=hubctl-e2e', '#SBATCH --partition=no-such-partition'])
    expect(bad.status, JSON.stringify(bad)).to.equal('fail')
    expect(bad.message).to.include('in partition no-such-partition')
    expect(bad.fix).to.include('the partition no-such-partition is named by --slurm-extra')
    const good = await check(['#SBATCH --comment=hubctl-e2e', '#SBATCH --output=/dev/null'])
    expect(good.status, JSON.stringify(good)).to.equal('pass')
  })

  it('runs a cell in a kernel of that server, through nginx', async () => {
    await server()
    const body = {token: await userToken()}
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

  it("says Slurm's reason on the spawn progress while the job waits, and cancels a job still pending at the start timeout", async () => {
    // The node held busy by a job of root's that takes all its CPUs and memory.
    blocker = (
      await execa('sbatch', [
        '--parsable',
        `--partition=${cluster!.partition}`,
        '--exclusive',
        '--mem=0',
        '--job-name=hubctl-e2e-blocker',
        '--output=/dev/null',
        '--wrap=exec sleep 600',
      ])
    ).stdout.trim()
    await waitUntil('the blocking job to run', async () =>
      (await squeue()).some((job) => job.id === blocker && job.state === 'RUNNING'),
    )
    expect(['started', 'pending']).to.include(await api.startServer(waiter))
    const events = await spawnProgress(waiter, await userToken(waiter, [`read:servers!user=${waiter}`]))
    const messages = events.map((event) => event.message ?? '')
    expect(messages.join('\n')).to.match(/Slurm job \d+ waits in the queue of partition hubtest: Slurm says Resources/)
    // The start timed out (JupyterHub's failed event names no reason for a timeout).
    expect(events.at(-1)?.failed, JSON.stringify(events)).to.equal(true)
    await waitUntil(
      "the waiter's job to leave the queue",
      async () => (await squeue()).every((job) => job.user !== waiter),
      {tries: 60, intervalMs: 500},
    )
    expect((await api.userServers(waiter)).some((s) => s.name === '')).to.equal(false)
  })

  it('hubctl stop --keep-servers leaves the job running, and start finds it: it answers through nginx again', async () => {
    const job = await server()
    const token = await userToken()
    const stopped = await hubctl(['stop', '--keep-servers', '--prefix', prefix, '--json'])
    expect(stopped.exitCode, stopped.stderr).to.equal(0)
    expect((await squeue()).filter((j) => j.id === job.id).map((j) => j.state)).to.deep.equal(['RUNNING'])
    const started = await hubctl(['start', '--detach', '--prefix', prefix, '--json'])
    expect(started.exitCode, started.stderr + started.stdout).to.equal(0)
    const answer = await waitUntil(
      'the kept server to answer through nginx',
      async () => {
        const answered = await httpsJson(`https://localhost:${ports.https}/user/${user}/api/status`, {ca, token})
        if (answered.status === 502 || answered.status === 503) throw new Error(`answered ${answered.status}`)
        return answered
      },
      {tries: 60, intervalMs: 500},
    )
    expect(answer.status, JSON.stringify(answer.body)).to.equal(200)
    expect((await jobsOfUser()).map((j) => j.id)).to.deep.equal([job.id])
    const status = await hubctl(['status', '--prefix', prefix, '--json'])
    const listed = (JSON.parse(status.stdout) as {servers: Array<{user: string; slurmJobs?: Array<{id: string}>}>})
      .servers
    expect(listed.find((s) => s.user === user)?.slurmJobs?.map((j) => j.id)).to.deep.equal([job.id])
  })

  it("cancels a running server's job at hubctl stop", async () => {
    const job = await server()
    const stopped = await hubctl(['stop', '--prefix', prefix, '--json'])
    expect(stopped.exitCode, stopped.stderr).to.equal(0)
    const left = (await squeue()).filter((j) => j.id === job.id && j.state !== 'COMPLETING')
    expect(left, JSON.stringify(left)).to.deep.equal([])
  })

  it("the idle culler (init --cull-idle) ends an idle server's job: it leaves the queue, the hub shows no server, none of the user's processes are left", async () => {
    // The hub (stopped by the test before) is set up again with a short idle time, as an operator
    // would: init on the same prefix and ports, then start.
    const flags = Object.entries({
      http: '--http-port',
      https: '--https-port',
      proxy: '--proxy-port',
      proxyApi: '--proxy-api-port',
      hub: '--hub-port',
      proxyStandby: '--proxy-standby-port',
      proxyStandbyApi: '--proxy-standby-api-port',
    }).flatMap(([key, flag]) => [flag, String(ports[key as keyof typeof ports])])
    const init = await hubctl(
      testHubInitArgs(
        prefix,
        {
          admin: user,
          allowUsers: [user, waiter],
          jupyterhub,
          extra: [...slurmFlags(cluster!.partition), '--cull-idle', '5s'],
        },
        flags,
      ),
    )
    expect(init.exitCode, init.stderr).to.equal(0)
    const started = await hubctl(['start', '--detach', '--prefix', prefix, '--json'])
    expect(started.exitCode, started.stderr + started.stdout).to.equal(0)
    serverOnce = undefined
    const job = await server()
    // Nobody uses the server: the culler stops it through the hub, whose stop cancels the job.
    await waitUntil(
      'the culler to stop the idle server',
      async () => !(await api.userServers(user)).some((s) => s.name === ''),
      {tries: 120, intervalMs: 500},
    )
    serverOnce = undefined
    // squeue lists an ended job until its processes are gone (COMPLETING), then not at all.
    await waitUntil(
      `Slurm job ${job.id} to leave the queue`,
      async () => !(await squeue()).some((j) => j.id === job.id),
      {tries: 120, intervalMs: 500},
    )
    expect(await userPids(uid), `processes of ${user} left after the job ended`).to.deep.equal([])
    const log = await fs.readFile(layout.hubLog, 'utf8')
    expect(log, 'the culler says it culled the server').to.match(new RegExp(`Culling server ${user}\\b`))
  })
})
