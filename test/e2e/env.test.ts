// e2e-lane: parallel
import {expect} from 'chai'
import {execa} from 'execa'
import fs from 'node:fs/promises'

import {Layout} from '../../src/lib/config/layout.js'
import type {EnvChangeResult, EnvListResult} from '../../src/lib/env/userenv.js'
import {HubApi} from '../../src/lib/stack/hubapi.js'
import path from 'node:path'

import {
  grantHubctlTokens,
  hubctl,
  initTestHub,
  ROOT,
  tempPrefix,
  type TestHubPorts,
  VENV_JUPYTERHUB,
} from '../helpers/cli.js'
import {runInNewKernel} from '../helpers/kernel.js'
import {killPids, serverPids, waitUntil} from '../helpers/processes.js'

/*
 * The users' environment apart from the hub's (`hubctl env`), on one real hub (init --users-env:
 * a copy of the test's virtualenv; dummy authenticator, SimpleLocalProcessSpawner, nginx): a
 * package added is in the environment of a server started after, while the server running before
 * keeps its environment (the servers' processes say which); rollback puts the previous one back for new servers. A package
 * that conflicts with the pinned JupyterLab, one that does not exist, and an index that cannot be
 * reached are refused with pip's reason and nothing switched. `hubctl upgrade` of a hub whose
 * users' environment an older hubctl built (another nbgitpuller than python/constraints.txt pins)
 * builds it again with the course's package on top, and a kernel of a server started after imports
 * it from the rebuilt environment. tabulate: one small pure-Python module.
 */
/** The environment's prefix, and where it finds tabulate (None: nowhere). */
const CODE =
  'import importlib.util, sys\nspec = importlib.util.find_spec("tabulate")\nprint(sys.prefix)\nprint(spec.origin if spec else None)'

describe('hubctl env: the users’ environment, apart from the hub’s', function () {
  this.timeout(600_000)

  const user = 'ueenv-ada'
  let prefix = ''
  let layout: Layout
  let ports: TestHubPorts
  let api: HubApi

  const env = async <T>(args: string[], options: {env?: Record<string, string>} = {}) => {
    const result = await hubctl(['env', ...args, '--prefix', prefix, '--json'], {...options, timeoutMs: 600_000})
    return {...result, json: JSON.parse(result.stdout || '{}') as T & {error?: {message: string}}}
  }
  const links = async () =>
    Object.fromEntries(
      await Promise.all(
        [layout.usersEnvCurrent, layout.usersEnvPrevious, layout.usersEnvBase].map(async (l) => [
          l,
          await fs.readlink(l).catch(() => ''),
        ]),
      ),
    )
  const unchanged = async () => ({links: await links(), envs: (await fs.readdir(layout.usersEnvsDir)).sort()})

  async function startServer(user: string): Promise<void> {
    await api.startServer(user)
    await waitUntil(`${user}'s server to be ready`, async () => (await api.userServers(user)).find((s) => s.ready), {
      tries: 240,
      intervalMs: 500,
    })
  }

  async function restartServer(user: string): Promise<void> {
    await api.stopServer(user)
    await waitUntil(
      `${user}'s server to stop`,
      async () => ((await api.userServers(user)).length === 0 ? true : undefined),
      {
        tries: 120,
        intervalMs: 500,
      },
    )
    await startServer(user)
  }

  /** What the Python of a users' environment (the one its servers and their kernels run) finds. */
  async function imports(id: string): Promise<string[]> {
    const result = await execa(layout.usersEnvPython(id), ['-c', CODE], {cwd: '/'})
    return result.stdout.trim().split('\n')
  }

  before(async function () {
    this.timeout(600_000)
    prefix = await tempPrefix('hubctl-env')
    layout = new Layout(prefix)
    ports = await initTestHub(prefix, {
      admin: user,
      jupyterhub: VENV_JUPYTERHUB,
      extra: ['--authenticator', 'dummy', '--spawner', 'simple', '--users-env'],
    })
    // The test's own grant (read at start): hubctl's service may make the user a token for a kernel.
    await grantHubctlTokens(layout.hubConfigD, 'env-test-tokens', [user])
    const started = await hubctl(['start', '--detach', '--prefix', prefix, '--json'])
    expect(started.exitCode, started.stderr + started.stdout).to.equal(0)
    api = HubApi.forLayout(layout, {ports}, {timeoutMs: 60_000})
  })

  after(async function () {
    this.timeout(120_000)
    if (!prefix) return
    await hubctl(['stop', '--prefix', prefix, '--json'])
    if (ports) killPids(await serverPids({user, hubPort: ports.hub}))
    await fs.rm(prefix, {recursive: true, force: true})
  })

  it('add: the running server keeps its environment, a server started after imports it; rollback gives new servers the previous one; users cannot write it', async () => {
    await startServer(user)
    const base = (await env<EnvListResult>(['list'])).json
    expect(base.current).to.equal(base.base)
    expect(base.spawner).to.equal(layout.usersEnvCurrentSingleuser)

    const added = await env<EnvChangeResult>(['add', 'tabulate'])
    expect(added.exitCode, added.stderr + added.stdout).to.equal(0)
    expect(added.json).to.deep.include({action: 'add', previous: base.current, packages: ['tabulate']})
    const serversOf = async (id?: string) =>
      (await env<EnvListResult>(['list'])).json.envs.find((e) => e.id === id)?.servers.map((s) => s.user) ?? []
    expect(await serversOf(base.current), 'the running server keeps its environment').to.deep.equal([user])
    expect(await imports(base.current!), 'the running server’s environment has no tabulate').to.deep.equal([
      layout.usersEnv(base.current!),
      'None',
    ])

    await restartServer(user)
    expect(await serversOf(added.json.current), 'a server started after runs the new one').to.deep.equal([user])
    expect(await imports(added.json.current)).to.deep.equal([
      layout.usersEnv(added.json.current),
      `${layout.usersEnv(added.json.current)}/lib/python3.11/site-packages/tabulate/__init__.py`,
    ])

    // Root's, 0755, from the root down to the modules: no user (an admin in a terminal) can write it.
    const site = `${layout.usersEnv(added.json.current)}/lib/python3.11/site-packages`
    for (const dir of [
      layout.usersEnvRoot,
      layout.usersEnvsDir,
      layout.usersEnv(added.json.current),
      site,
      `${site}/tabulate`,
    ]) {
      const stat = await fs.stat(dir)
      expect([stat.uid, stat.mode & 0o777], dir).to.deep.equal([0, 0o755])
    }

    const back = await env<EnvChangeResult>(['rollback'])
    expect(back.exitCode, back.stderr + back.stdout).to.equal(0)
    expect(back.json).to.deep.include({current: base.current, previous: added.json.current, packages: []})
    // New servers start through the link: the previous environment again.
    expect(await fs.readlink(layout.usersEnvCurrent)).to.equal(layout.usersEnvLinkTarget(base.current!))
    expect((await env<EnvListResult>(['list'])).json.current).to.equal(base.current)
  })

  it('refuses a package that needs another JupyterLab, one that does not exist, and an unreachable index: pip says why, nothing switched', async () => {
    const before = await unchanged()

    const conflict = await env<EnvChangeResult>(['add', 'jupyterlab==4.0.0'])
    expect(conflict.exitCode, conflict.stdout).to.equal(2)
    expect(conflict.json.error?.message).to.match(
      /pip refused jupyterlab==4\.0\.0: it conflicts with the versions the users' environment pins \(.*jupyterlab==4\.6\.6/,
    )
    expect(await unchanged()).to.deep.equal(before)

    const missing = await env<EnvChangeResult>(['add', 'hubctl-no-such-package-5e1f'])
    expect(missing.exitCode, missing.stdout).to.equal(2)
    expect(missing.json.error?.message).to.match(/pip found no package for hubctl-no-such-package-5e1f on the index/)
    expect(await unchanged()).to.deep.equal(before)

    const offline = await env<EnvChangeResult>(['add', 'toolz'], {
      env: {PIP_INDEX_URL: 'http://127.0.0.1:9/simple', PIP_RETRIES: '1', PIP_TIMEOUT: '5', PIP_NO_CACHE_DIR: '1'},
    })
    expect(offline.exitCode, offline.stdout).to.equal(3)
    expect(offline.json.error?.message).to.match(/the package index could not be reached to install toolz/)
    expect(await unchanged()).to.deep.equal(before)
  })

  it("upgrade: a users' environment at other base pins is built again with the course's package, which a kernel started after imports from it", async () => {
    const added = await env<EnvChangeResult>(['add', 'tabulate'])
    expect(added.exitCode, added.stderr + added.stdout).to.equal(0)
    const old = added.json.current
    // As an older hubctl left it: another nbgitpuller than python/constraints.txt pins (1.3.0).
    const pip = await execa(
      layout.usersEnvPython(old),
      ['-m', 'pip', 'install', '-q', '--no-deps', '--disable-pip-version-check', 'nbgitpuller==1.2.2'],
      {cwd: '/', reject: false},
    )
    expect(pip.exitCode, pip.stderr).to.equal(0)

    const upgraded = await hubctl(
      ['upgrade', '--yes', '--env', path.join(ROOT, '.venv'), '--prefix', prefix, '--json'],
      {timeoutMs: 600_000},
    )
    expect(upgraded.exitCode, upgraded.stderr + upgraded.stdout).to.equal(0)
    // A server started after the upgrade: its kernel, through nginx, imports tabulate from the
    // environment new servers get, which has the pinned nbgitpuller (the rebuilt one).
    const rebuilt = (await env<EnvListResult>(['list'])).json.current!
    await restartServer(user)
    const made = await fetch(`http://127.0.0.1:${ports.hub}/hub/api/users/${user}/tokens`, {
      method: 'POST',
      headers: {
        Authorization: `token ${(await fs.readFile(layout.apiToken, 'utf8')).trim()}`,
        'Content-Type': 'application/json',
      },
      body: JSON.stringify({note: 'hubctl env e2e', expires_in: 3600, scopes: [`access:servers!user=${user}`]}),
    })
    expect(made.status).to.equal(201)
    const printed = await runInNewKernel(`https://localhost:${ports.https}`, {
      user,
      ca: await fs.readFile(layout.fullchain, 'utf8'),
      token: ((await made.json()) as {token: string}).token,
      code: 'import os, sys, tabulate, importlib.metadata as m\nprint(os.path.realpath(sys.prefix))\nprint(os.path.realpath(tabulate.__file__))\nprint(m.version("nbgitpuller"))',
    })
    const site = await fs.realpath(`${layout.usersEnv(rebuilt)}/lib/python3.11/site-packages`)
    expect(printed.trim().split('\n')).to.deep.equal([
      await fs.realpath(layout.usersEnv(rebuilt)),
      `${site}/tabulate/__init__.py`,
      '1.3.0',
    ])

    const result = JSON.parse(upgraded.stdout) as {
      usersEnv?: {action: string; why: string; current: string; packages: string[]}
    }
    // The whole outcome in the message: a 'kept' names its error and fix (CI at 097f430 said only 'kept').
    expect(result.usersEnv, JSON.stringify(result.usersEnv)).to.deep.include({
      action: 'rebuilt',
      packages: ['tabulate'],
    })
    expect(result.usersEnv?.why).to.include('nbgitpuller 1.2.2 → 1.3.0')
    expect(result.usersEnv?.current).to.equal(rebuilt)
    expect(rebuilt).to.not.equal(old)
  })
})
