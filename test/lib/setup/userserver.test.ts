import {expect} from 'chai'
import fs from 'node:fs/promises'
import path from 'node:path'

import type {SpawnerConfig} from '../../../src/lib/config/jupyterhub.js'
import {Layout, simpleSpawnerHome} from '../../../src/lib/config/layout.js'
import type {Settings} from '../../../src/lib/config/settings.js'
import type {RunOptions, RunResult, Runner} from '../../../src/lib/runner.js'
import {type ServerLaunch, type TrialResult, checkUserServer, launchFor} from '../../../src/lib/setup/userserver.js'
import {tempPrefix} from '../../helpers/cli.js'

const LOCAL: SpawnerConfig = {
  class: 'jupyterhub.spawner.LocalProcessSpawner',
  cmd: ['/x/opt/jupyterhub/current/bin/jupyterhub-singleuser'],
  args: ['--LabApp.news_url=None'],
  envKeep: ['PATH', 'LANG'],
  environment: {EXTRA: 'yes'},
  defaultUrl: '/lab',
  notebookDir: '',
  shellCmd: [],
  homeDirTemplate: null,
}
const SIMPLE: SpawnerConfig = {
  ...LOCAL,
  class: 'jupyterhub.spawner.SimpleLocalProcessSpawner',
  args: ['--allow-root'],
  homeDirTemplate: '',
}

function settingsWith(admins: string[], allowedUsers: string[] = []): Settings {
  return {admins, allowedUsers, spawn: {maxConcurrent: 2, timeoutSeconds: 30}} as unknown as Settings
}

interface Call {
  command: string
  args: string[]
  options?: RunOptions
}

/** getent knows the accounts given; the path walk (sh -c ... as the user) answers `blocked`. */
function fakeRunner(accounts: Record<string, string>, blocked = ''): {runner: Runner; calls: Call[]} {
  const calls: Call[] = []
  const result = (exitCode: number, stdout = ''): RunResult => ({exitCode, stdout, stderr: '', notFound: false})
  const runner: Runner = {
    async run(command, args, options) {
      calls.push({command, args, options})
      if (command === 'getent') {
        const lines = args.slice(1).flatMap((key) => (accounts[key] ? [accounts[key]] : []))
        return result(lines.length === args.length - 1 ? 0 : 2, lines.join('\n'))
      }
      if (args.includes('-c')) return result(0, blocked)
      return result(1)
    },
  }
  return {runner, calls}
}

function fakeTrial(answer: TrialResult): {
  trial: {run(launch: ServerLaunch): Promise<TrialResult>}
  launches: ServerLaunch[]
} {
  const launches: ServerLaunch[] = []
  return {
    launches,
    trial: {
      async run(launch) {
        launches.push(launch)
        return answer
      },
    },
  }
}

const ALICE = 'hcdoc-alice:x:1234:1235:hcdoc alice:/home/hcdoc-alice:/bin/bash'

describe('user server check (fake runner and trial)', () => {
  let layout: Layout

  beforeEach(async () => {
    layout = new Layout(await tempPrefix('hcdoc-userserver'))
  })
  afterEach(async () => {
    await fs.rm(layout.prefix, {recursive: true, force: true})
  })

  it("starts the spawner's command as the first admin with an account, in the environment the spawner gives", async () => {
    const {runner} = fakeRunner({'hcdoc-alice': ALICE})
    const {trial, launches} = fakeTrial({answered: true, ms: 3400})
    const check = await checkUserServer(
      {layout, runner, trial, uid: 0},
      settingsWith(['hcdoc-nobody', 'hcdoc-alice']),
      LOCAL,
      '6.1.1',
    )
    expect(check.status).to.equal('pass')
    expect(check.message).to.include('started as hcdoc-alice (uid 1234)')
    expect(check.message).to.include('answered /user/hcdoc-alice/api in 3.4 s')
    const [launch] = launches
    expect(launch.identity).to.include({
      kind: 'user',
      name: 'hcdoc-alice',
      uid: 1234,
      gid: 1235,
      home: '/home/hcdoc-alice',
    })
    expect(launch.command).to.equal(LOCAL.cmd[0])
    expect(launch.args).to.deep.equal(LOCAL.args)
    expect(launch.timeoutMs).to.equal(30_000)
    const env = launch.env('http://127.0.0.1:9999/hub/api', 20001)
    expect(env).to.include({
      JUPYTERHUB_USER: 'hcdoc-alice',
      JUPYTERHUB_API_URL: 'http://127.0.0.1:9999/hub/api',
      JUPYTERHUB_SERVICE_URL: 'http://127.0.0.1:20001/user/hcdoc-alice/',
      JUPYTERHUB_SERVICE_PREFIX: '/user/hcdoc-alice/',
      JUPYTERHUB_DEFAULT_URL: '/lab',
      EXTRA: 'yes',
      HOME: '/home/hcdoc-alice',
      USER: 'hcdoc-alice',
      SHELL: '/bin/bash',
    })
    expect(env.JUPYTERHUB_API_TOKEN).to.match(/^[0-9a-f]{32}$/)
  })

  it('with no admin or allowed account: a uid made for the check, with a home removed after, and says so', async () => {
    const {runner, calls} = fakeRunner({})
    const {trial, launches} = fakeTrial({answered: true, ms: 1000})
    const check = await checkUserServer({layout, runner, trial, uid: 0}, settingsWith(['hcdoc-nobody']), LOCAL, '6.1.1')
    expect(check.status).to.equal('pass')
    const {identity} = launches[0]
    expect(identity.kind).to.equal('made')
    expect(identity.uid).to.be.within(60_001, 61_183)
    expect(check.message).to.include(`uid ${identity.uid} (made for this check with no account`)
    expect(check.message).to.include('no admin or allowed user has a system account yet')
    // The uid is free as a user and as a group; its home is gone after.
    expect(calls.filter((c) => c.command === 'getent').map((c) => c.args.join(' '))).to.include.members([
      `passwd ${identity.uid}`,
      `group ${identity.uid}`,
    ])
    expect(launches[0].env('http://h/hub/api', 1).HOME).to.equal(identity.home)
    await fs.access(identity.home).then(
      () => expect.fail(`${identity.home} is still there`),
      () => undefined,
    )
  })

  it('names the first directory the user cannot pass, its mode, and the fix', async () => {
    const blocked = path.join(layout.prefix, 'x')
    await fs.mkdir(blocked, {mode: 0o700})
    await fs.chmod(blocked, 0o700)
    const singleuser = path.join(blocked, 'bin/jupyterhub-singleuser')
    const {runner, calls} = fakeRunner({'hcdoc-alice': ALICE}, `x:${blocked}`)
    const {trial} = fakeTrial({
      answered: false,
      timedOut: false,
      exitCode: 126,
      output: `sh: 1: exec: ${singleuser}: Permission denied\n`,
      ms: 10,
    })
    const check = await checkUserServer(
      {layout, runner, trial, uid: 0},
      settingsWith(['hcdoc-alice']),
      {...LOCAL, cmd: [singleuser]},
      '6.1.1',
    )
    expect(check.status).to.equal('fail')
    expect(check.message).to.equal(
      `hcdoc-alice (uid 1234) cannot execute ${singleuser}: Permission denied at ${blocked} (mode 0700, owner uid ${process.getuid?.()}): no user's server can start`,
    )
    expect(check.fix).to.equal(`chmod o+x ${blocked} (users must pass through it to reach ${singleuser})`)
    // The walk is asked as the user (setpriv with the user's ids and groups), from / down.
    const walk = calls.find((c) => c.args.includes('-c'))!
    expect(walk.command).to.equal('setpriv')
    expect(walk.args.slice(0, 3)).to.deep.equal(['--reuid=1234', '--regid=1235', '--init-groups'])
    const words = walk.args.slice(walk.args.lastIndexOf('sh') + 1)
    expect(words.slice(0, 2)).to.deep.equal(['x:/', `x:${path.dirname(layout.prefix)}`])
    expect(words).to.include(`rx:${singleuser}`)
  })

  it('a file the server cannot read: the file and chmod for it', async () => {
    const site = path.join(layout.prefix, 'site-packages/jupyterhub/__init__.py')
    const {runner} = fakeRunner({'hcdoc-alice': ALICE}, `r:${site}`)
    const {trial} = fakeTrial({
      answered: false,
      timedOut: false,
      exitCode: 1,
      output: `Traceback (most recent call last):\nPermissionError: [Errno 13] Permission denied: '${site}'\n`,
      ms: 10,
    })
    const check = await checkUserServer({layout, runner, trial, uid: 0}, settingsWith(['hcdoc-alice']), LOCAL, '6.1.1')
    expect(check.status).to.equal('fail')
    expect(check.message).to.include(`cannot read ${site}: Permission denied at ${site}`)
    expect(check.fix).to.equal(`chmod o+r ${site}`)
  })

  it('a server that exits or never answers: its last lines', async () => {
    const {runner} = fakeRunner({'hcdoc-alice': ALICE})
    const exited = await checkUserServer(
      {
        layout,
        runner,
        trial: fakeTrial({
          answered: false,
          timedOut: false,
          exitCode: 1,
          output: 'a\nb\nModuleNotFoundError: No module named jupyter_server\n',
          ms: 5,
        }).trial,
        uid: 0,
      },
      settingsWith(['hcdoc-alice']),
      LOCAL,
      '6.1.1',
    )
    expect(exited.status).to.equal('fail')
    expect(exited.message).to.include(
      'exited with 1 before it answered: a | b | ModuleNotFoundError: No module named jupyter_server',
    )
    const late = await checkUserServer(
      {
        layout,
        runner,
        trial: fakeTrial({answered: false, timedOut: true, output: 'waiting', ms: 30_000}).trial,
        uid: 0,
      },
      settingsWith(['hcdoc-alice']),
      LOCAL,
      '6.1.1',
    )
    expect(late.message).to.include('did not answer /user/hcdoc-alice/api within 30 s: waiting')
  })

  it("SimpleLocalProcessSpawner: as the hub's own user, in the spawner's home", async () => {
    const {runner} = fakeRunner({})
    const {trial, launches} = fakeTrial({answered: true, ms: 2000})
    const home = path.join(layout.prefix, 'homes')
    const check = await checkUserServer(
      {layout, runner, trial, uid: 4321, gid: 4322, userName: 'operator'},
      settingsWith(['hcdoc-local']),
      {...SIMPLE, homeDirTemplate: `${home}/{username}`},
      '6.1.1',
    )
    expect(check.status).to.equal('pass')
    expect(check.message).to.include("the hub's own user operator (SimpleLocalProcessSpawner)")
    expect(launches[0].identity).to.include({kind: 'hub', uid: 4321, gid: 4322, home: `${home}/hcdoc-local`})
    expect(launches[0].args).to.deep.equal(['--allow-root'])
    expect((await fs.stat(`${home}/hcdoc-local`)).isDirectory()).to.equal(true)
  })

  it("SimpleLocalProcessSpawner with hubctl's homes: the home made as init makes it (0700, marked), one not hubctl's refused", async () => {
    const {runner} = fakeRunner({})
    const uid = process.getuid?.() ?? 0
    const {trial, launches} = fakeTrial({answered: true, ms: 2000})
    const spawner = {...SIMPLE, homeDirTemplate: layout.serverHomeTemplate}
    await fs.mkdir(layout.srvDir, {recursive: true, mode: 0o700})
    const check = await checkUserServer({layout, runner, trial, uid}, settingsWith(['hcdoc-local']), spawner, '6.1.1')
    expect(check.status, check.message).to.equal('pass')
    expect(launches[0].identity.home).to.equal(layout.serverHome('hcdoc-local'))
    expect((await fs.stat(layout.serverHome('hcdoc-local'))).mode & 0o777).to.equal(0o700)
    await fs.access(layout.serverHomeMarker('hcdoc-local'))
    // A home someone else put there (no mark): the spawn hook refuses it, and so does the check.
    await fs.mkdir(layout.serverHome('hcdoc-other'), {mode: 0o700})
    const refused = await checkUserServer({layout, runner, trial, uid}, settingsWith(['hcdoc-other']), spawner, '6.1.1')
    expect(refused.status).to.equal('fail')
    expect(refused.message).to.include(`hcdoc-other's server cannot start: `)
    expect(refused.message).to.include(layout.serverHome('hcdoc-other'))
    expect(launches).to.have.length(1)
  })

  it('is not checked (a warning) by a non-root doctor for LocalProcessSpawner, or for a spawner hubctl does not start', async () => {
    const {runner} = fakeRunner({'hcdoc-alice': ALICE})
    const {trial, launches} = fakeTrial({answered: true, ms: 1})
    const notRoot = await checkUserServer(
      {layout, runner, trial, uid: 1000},
      settingsWith(['hcdoc-alice']),
      LOCAL,
      '6.1.1',
    )
    expect(notRoot).to.include({status: 'warn', fix: 'run `hubctl doctor` as root'})
    const other = await checkUserServer(
      {layout, runner, trial, uid: 0},
      settingsWith(['hcdoc-alice']),
      {...LOCAL, class: 'dockerspawner.DockerSpawner'},
      '6.1.1',
    )
    expect(other.status).to.equal('warn')
    expect(other.message).to.include('dockerspawner.DockerSpawner')
    const unmade = await checkUserServer(
      {layout, runner, trial, uid: 0},
      settingsWith(['hcdoc-alice']),
      undefined,
      '6.1.1',
      "TypeError('needs a user')",
    )
    expect(unmade.status).to.equal('warn')
    expect(unmade.message).to.include("TypeError('needs a user')")
    expect(launches).to.have.length(0)
  })

  it("fills SimpleLocalProcessSpawner's home_dir_template as str.format does", () => {
    expect(simpleSpawnerHome('/srv/{{odd}}/home/{username}', 'hcdoc-a')).to.equal('/srv/{odd}/home/hcdoc-a')
    expect(simpleSpawnerHome('/tmp/{username}', 'hcdoc-a')).to.equal('/tmp/hcdoc-a')
  })

  it("launchFor keeps only env_keep's variables of the hub's environment, and runs shell_cmd with the quoted command", () => {
    const identity = {kind: 'user' as const, name: 'hcdoc-alice', uid: 1, gid: 1, home: '/h', shell: '/bin/sh'}
    const launch = launchFor(identity, {...LOCAL, shellCmd: ['bash', '-l', '-c'], args: ["--x='y'"]}, {}, '6.1.1', {
      PATH: '/usr/bin',
      LANG: 'C.UTF-8',
      CONFIGPROXY_AUTH_TOKEN: 'secret',
    })
    expect(launch.command).to.equal('bash')
    expect(launch.args).to.deep.equal(['-l', '-c', `'${LOCAL.cmd[0]}' '--x='"'"'y'"'"''`])
    const env = launch.env('http://h/hub/api', 1)
    expect(env).to.include({PATH: '/usr/bin', LANG: 'C.UTF-8'})
    expect(env).to.not.have.property('CONFIGPROXY_AUTH_TOKEN')
    expect(launch.timeoutMs).to.equal(60_000)
  })
})
