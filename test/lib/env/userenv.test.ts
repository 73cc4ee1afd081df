import {expect} from 'chai'
import fs from 'node:fs/promises'
import os from 'node:os'
import path from 'node:path'

import {Layout} from '../../../src/lib/config/layout.js'
import {SettingsStore} from '../../../src/lib/config/settings.js'
import {UsersEnvService, checkSpecs, mergeSpecs, parseRequirements, pipError} from '../../../src/lib/env/userenv.js'
import {type RunResult, type Runner, execaRunner} from '../../../src/lib/runner.js'
import {rejection, thrown} from '../../helpers/errors.js'
import {testSettings} from '../../helpers/settings.js'

const ok = (stdout = ''): RunResult => ({exitCode: 0, stdout, stderr: '', notFound: false})
const failed = (stderr: string): RunResult => ({exitCode: 1, stdout: '', stderr, notFound: false})

/**
 * pip faked, cp real (hard links, so that a script rewritten in place would show in the source):
 * `install` makes lib/<name> in the environment, or answers what `pipInstall` says.
 */
class FakePip implements Runner {
  installs: Array<{env: string; args: string[]}> = []
  checks = 0
  pipInstall?: (args: string[]) => RunResult
  pipCheck: (env: string) => RunResult = () => ok('No broken requirements found.')

  async run(command: string, args: string[]): Promise<RunResult> {
    if (command === 'cp') return execaRunner.run(command, args)
    if (command === '/bin/sh') {
      const [, , python, , , , sub, ...rest] = args
      const env = path.dirname(path.dirname(python))
      if (sub === 'check') {
        this.checks++
        return this.pipCheck(env)
      }
      if (sub === 'uninstall') return ok()
      const specs = rest.filter((a, i) => !a.startsWith('-') && rest[i - 1] !== '-c')
      this.installs.push({env, args: rest})
      const answer = this.pipInstall?.(rest)
      if (answer) return answer
      const names = specs.map((s) => s.split(/[=<>!~[]/)[0].toLowerCase())
      for (const name of names) await fs.mkdir(path.join(env, 'lib', name), {recursive: true})
      return ok(`Successfully installed ${names.map((n) => `${n}-1.0`).join(' ')}`)
    }
    // missing(): the base's packages are all in the source.
    return ok('')
  }
}

async function venv(dir: string): Promise<void> {
  await fs.mkdir(path.join(dir, 'bin'), {recursive: true})
  await fs.writeFile(path.join(dir, 'pyvenv.cfg'), `home = /usr/bin\ncommand = /usr/bin/python3 -m venv ${dir}\n`)
  await fs.writeFile(path.join(dir, 'bin/jupyterhub-singleuser'), `#!${dir}/bin/python3\nimport sys\n`, {mode: 0o755})
  await fs.writeFile(path.join(dir, 'bin/activate'), `VIRTUAL_ENV="${dir}"\nexport VIRTUAL_ENV\n`)
  await fs.symlink('/usr/bin/python3', path.join(dir, 'bin/python3'))
}

describe('UsersEnvService (the users’ environment, hubctl env)', () => {
  let root = ''
  let layout: Layout
  let runner: FakePip
  let service: UsersEnvService
  let source = ''
  let removed: string[][]
  const procDir = () => path.join(root, 'proc')

  beforeEach(async () => {
    root = await fs.mkdtemp(path.join(os.tmpdir(), 'hubctl-userenv-'))
    layout = new Layout(path.join(root, 'prefix'))
    source = path.join(root, 'hubvenv')
    await venv(source)
    await fs.mkdir(procDir())
    await fs.mkdir(layout.etcDir, {recursive: true})
    await new SettingsStore(layout).save(testSettings({usersEnv: true}))
    runner = new FakePip()
    removed = []
    let clock = Date.parse('2026-12-07T10:00:00Z')
    service = new UsersEnvService({
      layout,
      runner,
      procDir: procDir(),
      constraintsFile: '/c.txt',
      now: () => new Date((clock += 1000)),
      removeInBackground: (dirs) => removed.push(dirs),
    })
    await service.ensure(source)
  })

  afterEach(async () => {
    await fs.rm(root, {recursive: true, force: true})
  })

  const live = async () => (await fs.readlink(layout.usersEnvCurrent)).replace('envs/', '')

  it('builds the base from the source: its scripts and pyvenv.cfg name the new directory, the source stays as it was', async () => {
    const id = await live()
    const dir = layout.usersEnv(id)
    expect(await fs.readlink(layout.usersEnvBase)).to.equal(`envs/${id}`)
    expect(await fs.readFile(path.join(dir, 'bin/jupyterhub-singleuser'), 'utf8')).to.equal(
      `#!${dir}/bin/python3\nimport sys\n`,
    )
    expect(await fs.readFile(path.join(dir, 'bin/activate'), 'utf8')).to.include(`VIRTUAL_ENV="${dir}"`)
    expect(await fs.readFile(path.join(dir, 'pyvenv.cfg'), 'utf8')).to.include(`-m venv ${dir}\n`)
    // The copy is hard links: a rewrite in place would have changed the source's script too.
    expect(await fs.readFile(path.join(source, 'bin/jupyterhub-singleuser'), 'utf8')).to.equal(
      `#!${source}/bin/python3\nimport sys\n`,
    )
    expect((await fs.stat(path.join(dir, 'bin/jupyterhub-singleuser'))).mode & 0o777).to.equal(0o755)
    expect(await fs.readlink(path.join(dir, 'bin/python3'))).to.equal('/usr/bin/python3')
    expect((await fs.stat(layout.usersEnvRoot)).mode & 0o777).to.equal(0o755)
  })

  it('add: pip installs only the new packages, constrained, into a copy of the live one; then current and previous switch', async () => {
    const base = await live()
    const first = await service.add(['tabulate'])
    expect(runner.installs.at(-1)).to.deep.equal({
      env: layout.usersEnv(first.current),
      args: [
        'install',
        '--disable-pip-version-check',
        '--no-input',
        '--no-warn-script-location',
        '-c',
        '/c.txt',
        'tabulate',
      ].slice(1),
    })
    const second = await service.add(['toolz==1.0', 'Tabulate>=0.9'])
    expect(runner.installs.at(-1)?.args.slice(-2)).to.deep.equal(['toolz==1.0', 'Tabulate>=0.9'])
    expect(second).to.deep.include({action: 'add', previous: first.current, packages: ['toolz==1.0', 'Tabulate>=0.9']})
    // The copy of the live one keeps what was added before.
    expect(await fs.readdir(path.join(layout.usersEnv(second.current), 'lib'))).to.have.members(['tabulate', 'toolz'])
    expect(await live()).to.equal(second.current)
    expect(await fs.readlink(layout.usersEnvPrevious)).to.equal(`envs/${first.current}`)
    expect(await fs.readlink(layout.usersEnvBase)).to.equal(`envs/${base}`)
    expect(await fs.readdir(layout.usersEnvsDir)).to.have.members([base, first.current, second.current])
    // Neither linked nor used: moved out of envs/ and deleted in the background.
    const third = await service.add(['numpy'])
    expect(await fs.readdir(layout.usersEnvsDir)).to.have.members([base, second.current, third.current])
    expect(removed).to.deep.equal([[layout.usersEnvRemoved(first.current)]])
  })

  it('a refused install or a broken pip check: nothing switched, the half-built environment removed', async () => {
    const before = await live()
    runner.pipInstall = () =>
      failed(
        'ERROR: Cannot install jupyterlab==4.0.0 because these package versions have conflicting dependencies.\n\nThe conflict is caused by:\n    The user requested jupyterlab==4.0.0\n    The user requested (constraint) jupyterlab==4.6.6\n\nERROR: ResolutionImpossible',
      )
    const conflict = await rejection(service.add(['jupyterlab==4.0.0']))
    expect(conflict.exitCode).to.equal(2)
    expect(conflict.message).to.equal(
      "pip refused jupyterlab==4.0.0: it conflicts with the versions the users' environment pins (The user requested jupyterlab==4.0.0; The user requested (constraint) jupyterlab==4.6.6)",
    )
    // What pip install reports broken (exit 0): refused, with no second pip run (pip check).
    runner.pipInstall = () => ({
      ...ok('Successfully installed foo-1.0'),
      stderr:
        "ERROR: pip's dependency resolver does not currently take into account all the packages that are installed. This behaviour is the source of the following dependency conflicts.\nfoo 1.0 requires bar>=2, which is not installed.\n",
    })
    const checks = runner.checks
    const broken = await rejection(service.add(['foo']))
    expect(broken.message).to.equal(
      "pip check found broken requirements in the new users' environment: foo 1.0 requires bar>=2, which is not installed.",
    )
    expect(runner.checks).to.equal(checks)
    expect(await live()).to.equal(before)
    expect(await fs.readdir(layout.usersEnvsDir)).to.deep.equal([before])
    expect(await fs.readlink(layout.usersEnvPrevious).catch(() => 'none')).to.equal('none')
    runner.pipInstall = undefined
    expect((await service.add(['tabulate'])).installed).to.deep.equal(['tabulate-1.0'])
    expect(runner.checks, 'a clean install into a checked environment needs no pip check').to.equal(checks)
  })

  it("upgrade's rebase: a new base from the hub's new environment, the course's packages on top, then current and base switch; a failure leaves all as it was", async () => {
    const oldBase = await live()
    const added = await service.add(['tabulate'])
    const newSource = path.join(root, 'hubvenv2')
    await venv(newSource)
    const rebased = await service.rebase(newSource)
    expect(rebased.packages).to.deep.equal(['tabulate'])
    const newBase = (await fs.readlink(layout.usersEnvBase)).replace('envs/', '')
    expect([newBase, rebased.current]).to.not.include(oldBase)
    expect(await live()).to.equal(rebased.current)
    expect(await fs.readlink(layout.usersEnvPrevious)).to.equal(`envs/${added.current}`)
    expect(runner.installs.at(-1)).to.deep.include({env: layout.usersEnv(rebased.current)})
    expect(runner.installs.at(-1)?.args.at(-1)).to.equal('tabulate')
    expect(await fs.readFile(path.join(layout.usersEnv(newBase), 'pyvenv.cfg'), 'utf8')).to.include(
      `-m venv ${layout.usersEnv(newBase)}\n`,
    )

    // The course's package no longer fits: refused, the new base taken away again, nothing switched.
    const envs = (await fs.readdir(layout.usersEnvsDir)).sort()
    runner.pipInstall = () => failed('ERROR: Could not find a version that satisfies the requirement tabulate')
    const refused = await rejection(service.rebase(source))
    expect(refused.message).to.match(/^pip found no package for tabulate/)
    expect(await live()).to.equal(rebased.current)
    expect(await fs.readlink(layout.usersEnvBase)).to.equal(`envs/${newBase}`)
    expect((await fs.readdir(layout.usersEnvsDir)).sort()).to.deep.equal(envs)
  })

  it('remove and sync build from the base with the packages left; an unknown package is refused', async () => {
    const base = await live()
    await service.add(['tabulate', 'toolz'])
    expect((await rejection(service.remove(['numpy']))).message).to.equal(
      "numpy is not among the course's packages (tabulate, toolz)",
    )
    const removed_ = await service.remove(['TOOLZ'])
    expect(removed_.packages).to.deep.equal(['tabulate'])
    expect(runner.installs.at(-1)?.args.at(-1)).to.equal('tabulate')
    expect(await fs.readdir(path.join(layout.usersEnv(removed_.current), 'lib'))).to.deep.equal(['tabulate'])
    const file = path.join(root, 'requirements.txt')
    await fs.writeFile(file, '# the course\nnumpy==2.1.3  # arrays\n\npandas\n')
    const synced = await service.sync(file)
    expect(synced.packages).to.deep.equal(['numpy==2.1.3', 'pandas'])
    expect(await fs.readdir(path.join(layout.usersEnv(synced.current), 'lib'))).to.have.members(['numpy', 'pandas'])
    expect(await fs.readlink(layout.usersEnvBase)).to.equal(`envs/${base}`)
  })

  it('rollback swaps current and previous, building nothing; with no previous it is refused', async () => {
    const base = await live()
    expect((await rejection(service.rollback())).message).to.match(/^there is no previous users' environment/)
    const added = await service.add(['tabulate'])
    const installs = runner.installs.length
    const back = await service.rollback()
    expect(back).to.deep.include({current: base, previous: added.current, packages: []})
    expect(await live()).to.equal(base)
    expect((await service.rollback()).current).to.equal(added.current)
    expect(runner.installs).to.have.length(installs)
  })

  it('list: which servers run which environment (from /proc); an environment a process uses is never removed', async () => {
    const base = await live()
    const first = await service.add(['tabulate'])
    const proc = async (pid: number, argv: string[], environ: string[]) => {
      await fs.mkdir(path.join(procDir(), String(pid)))
      await fs.writeFile(path.join(procDir(), String(pid), 'cmdline'), `${argv.join('\0')}\0`)
      await fs.writeFile(path.join(procDir(), String(pid), 'environ'), `${environ.join('\0')}\0`)
    }
    await proc(101, [layout.usersEnvPython(first.current), layout.usersEnvCurrentSingleuser], ['JUPYTERHUB_USER=ada'])
    await proc(
      102,
      ['/opt/other/bin/python3', '/opt/other/bin/jupyterhub-singleuser'],
      ['JUPYTERHUB_USER=bob', 'JUPYTERHUB_API_URL=http://127.0.0.1:8081/hub/api'],
    )
    await proc(
      103,
      ['/opt/other/bin/python3', '/opt/other/bin/jupyterhub-singleuser'],
      ['JUPYTERHUB_USER=eve', 'JUPYTERHUB_API_URL=http://127.0.0.1:9999/hub/api'],
    )
    // A process that is exiting: /proc answers an error other than ENOENT for its files (here a
    // directory where its environ is, EISDIR; ESRCH from the kernel). Skipped, not a failed add.
    await fs.mkdir(path.join(procDir(), '104'))
    await fs.writeFile(path.join(procDir(), '104', 'cmdline'), `/opt/x/bin/jupyterhub-singleuser\0`)
    await fs.mkdir(path.join(procDir(), '104', 'environ'))
    await fs.mkdir(path.join(procDir(), '105'))
    await fs.mkdir(path.join(procDir(), '105', 'cmdline'))
    await service.add(['toolz'])
    await service.add(['numpy'])
    const list = await service.list()
    expect(list.envs.map((e) => [e.id === base, e.current, e.previous, e.servers.map((s) => s.user)])).to.deep.equal([
      [true, false, false, []],
      [false, false, false, ['ada']],
      [false, false, true, []],
      [false, true, false, []],
    ])
    expect(list.envs[1].id, 'in use by a server: kept').to.equal(first.current)
    expect(
      list.otherServers.map((s) => s.user),
      "this hub's only",
    ).to.deep.equal(['bob'])
    expect(list.spawner).to.equal(layout.usersEnvCurrentSingleuser)
    expect(removed.flat()).to.have.length(0)
  })

  it("refuses when this hub's servers run the JupyterHub given to init, naming init --users-env", async () => {
    await new SettingsStore(layout).save(testSettings())
    const error = await rejection(service.add(['tabulate']))
    expect(error.exitCode).to.equal(3)
    expect(error.line).to.match(
      /they run \/usr\/bin\/jupyterhub-singleuser, given to init with --jupyterhub.*--users-env/,
    )
  })
})

describe('package requirements and pip failures', () => {
  it('takes names with extras and versions; refuses options, paths, URLs and shell', () => {
    expect(checkSpecs(['pandas', 'scikit-learn==1.5.2', 'matplotlib>=3.8,<4', 'dask[dataframe]'])).to.have.length(4)
    for (const bad of ['--index-url=http://x', '-r', 'git+https://x/y', './pkg', 'pkg; rm -rf /', 'a b', ''])
      expect(thrown(() => checkSpecs([bad])).exitCode, bad).to.equal(2)
    expect(thrown(() => parseRequirements('pandas\n-e .\n', 'req.txt')).message).to.match(/line 2 of req\.txt/)
  })

  it('a package added again replaces its earlier requirement (names compared as pip does)', () => {
    expect(mergeSpecs(['scikit_learn==1.4', 'pandas'], ['Scikit-Learn==1.5', 'numpy'])).to.deep.equal([
      'pandas',
      'Scikit-Learn==1.5',
      'numpy',
    ])
  })

  it('tells an unreachable index from a package that does not exist', () => {
    const offline = pipError(
      ['tabulate'],
      "WARNING: Retrying ... NewConnectionError('Failed to establish a new connection: [Errno 111] Connection refused')\nERROR: Could not find a version that satisfies the requirement tabulate (from versions: none)\nERROR: No matching distribution found for tabulate",
    )
    expect([offline.exitCode, offline.message]).to.deep.equal([
      3,
      'the package index could not be reached to install tabulate (Could not find a version that satisfies the requirement tabulate (from versions: none))',
    ])
    const missing = pipError(
      ['nosuch'],
      'ERROR: Could not find a version that satisfies the requirement nosuch (from versions: none)\nERROR: No matching distribution found for nosuch',
    )
    expect([missing.exitCode, missing.message]).to.deep.equal([
      2,
      'pip found no package for nosuch on the index (Could not find a version that satisfies the requirement nosuch (from versions: none))',
    ])
  })
})
