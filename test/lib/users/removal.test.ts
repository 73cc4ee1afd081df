import {expect} from 'chai'
import {execa} from 'execa'
import fs from 'node:fs/promises'
import path from 'node:path'

import {Layout} from '../../../src/lib/config/layout.js'
import {execaRunner, type RunOptions, type Runner} from '../../../src/lib/runner.js'
import type {Clock} from '../../../src/lib/stack/clock.js'
import {KILL_ROUNDS, archiveAndDelete, endProcesses, moveHomeAway} from '../../../src/lib/users/removal.js'
import {modeOf, tempPrefix} from '../../helpers/cli.js'
import {rejection} from '../../helpers/errors.js'

/** A clock that never waits. */
const clock: Clock = {now: () => 0, sleep: async () => {}}

function recordingRunner(answer = {exitCode: 0, stdout: '', stderr: '', notFound: false}) {
  const calls: Array<{command: string; args: string[]; options?: RunOptions}> = []
  const runner: Runner = {
    async run(command, args, options) {
      calls.push({command, args, options})
      return answer
    },
  }
  return {runner, calls}
}

const ada = {name: 'ada', uid: 2001, gid: 2001}

describe('users removal: every process of the uid ended', () => {
  it('kills as the uid (kill -KILL -1 through setpriv, PATH only) at least once, even when /proc shows none', async () => {
    const {runner, calls} = recordingRunner()
    const rounds = await endProcesses(ada, {runner, clock, processesOf: async () => []})
    expect(rounds).to.equal(1)
    expect(calls).to.have.length(1)
    expect(calls[0].command).to.equal('setpriv')
    expect(calls[0].args).to.deep.equal([
      '--reuid=2001',
      '--regid=2001',
      '--clear-groups',
      '--',
      '/bin/sh',
      '-c',
      'kill -KILL -1',
    ])
    expect(calls[0].options).to.deep.include({extendEnv: false, env: {PATH: '/usr/sbin:/usr/bin:/sbin:/bin'}})
  })

  it('repeats until /proc shows no live process of the uid; what is left is also killed by pid', async () => {
    const {runner, calls} = recordingRunner()
    const views = [[{pid: 41, state: 'S'}], [{pid: 42, state: 'R'}], []]
    const killed: number[] = []
    const rounds = await endProcesses(ada, {
      runner,
      clock,
      processesOf: async () => views.shift() ?? [],
      kill: (pid) => killed.push(pid),
    })
    expect(rounds).to.equal(3)
    expect(calls.filter((c) => c.command === 'setpriv')).to.have.length(3)
    expect(killed).to.deep.equal([41, 42])
  })

  it('names the survivors and their states after the last round (a process blocked in the kernel)', async () => {
    const {runner, calls} = recordingRunner()
    const error = await rejection(
      endProcesses(ada, {runner, clock, processesOf: async () => [{pid: 77, state: 'D'}], kill: () => {}}),
    )
    expect(calls).to.have.length(KILL_ROUNDS)
    expect(error.exitCode).to.equal(7)
    expect(error.line).to.include(
      `1 process of ada (uid 2001) outlived ${KILL_ROUNDS} rounds of SIGKILL: pid 77 (state D)`,
    )
    expect(error.line).to.include('hubctl users remove ada` again')
  })

  it('never for root, a system account or nobody; setpriv missing is named', async () => {
    for (const account of [
      {name: 'root', uid: 0, gid: 0},
      {name: 'daemon', uid: 1, gid: 1},
      {name: 'nobody', uid: 65534, gid: 65534},
    ]) {
      const {runner, calls} = recordingRunner()
      await rejection(endProcesses(account, {runner, clock, processesOf: async () => []}))
      expect(calls, account.name).to.deep.equal([])
    }
    const {runner} = recordingRunner({exitCode: 127, stdout: '', stderr: '', notFound: true})
    expect((await rejection(endProcesses(ada, {runner, clock}))).line).to.include('install util-linux')
  })
})

describe('users removal: the home moved out of reach, archived, deleted without following links', function () {
  this.timeout(20_000)
  let dir = ''
  let layout: Layout
  let homes = ''

  beforeEach(async () => {
    dir = await tempPrefix('hubctl-removal-unit')
    layout = new Layout(path.join(dir, 'prefix'))
    homes = path.join(dir, 'home')
    await fs.mkdir(homes, {mode: 0o755})
  })
  afterEach(async () => {
    if (dir) await execa('rm', ['-rf', '--one-file-system', '--', dir])
  })

  it('renames the home into a 0700 root directory beside it; tar keeps links as links; rm leaves what a link points to', async () => {
    const home = path.join(homes, 'ada')
    const outside = path.join(dir, 'outside')
    await fs.mkdir(path.join(home, 'sub'), {recursive: true})
    await fs.writeFile(path.join(home, 'sub', 'notes.txt'), 'mine\n')
    await fs.mkdir(outside)
    await fs.writeFile(path.join(outside, 'precious'), 'root\n')
    await fs.symlink(outside, path.join(home, 'lnk'))
    const moved = await moveHomeAway(layout, {name: 'ada', home})
    expect(moved).to.equal(path.join(homes, '.hubctl-removed', 'ada'))
    expect(await modeOf(path.join(homes, '.hubctl-removed'))).to.equal(0o700)
    await fs.lstat(home).then(
      () => expect.fail('the home is still where it was'),
      () => {},
    )
    const archive = path.join(dir, 'ada.tar.gz')
    await archiveAndDelete(execaRunner, 'ada', moved!, archive)
    expect(await modeOf(archive)).to.equal(0o600)
    const listing = (await execa('tar', ['-tvzf', archive])).stdout
    expect(listing).to.match(/^l.* \.\/lnk -> /m)
    expect(listing).to.include('./sub/notes.txt')
    expect(listing).to.not.include('precious')
    await fs.lstat(moved!).then(
      () => expect.fail('the moved home is still there'),
      () => {},
    )
    expect(await fs.readFile(path.join(outside, 'precious'), 'utf8')).to.equal('root\n')
    // Removed again (nothing left): nothing to do.
    expect(await moveHomeAway(layout, {name: 'ada', home})).to.equal(undefined)
  })

  it('finishes an interrupted removal (the home already moved); refuses when the home exists again beside it', async () => {
    const home = path.join(homes, 'ada')
    await fs.mkdir(path.join(homes, '.hubctl-removed'), {mode: 0o700})
    await fs.chmod(path.join(homes, '.hubctl-removed'), 0o700)
    await fs.mkdir(path.join(homes, '.hubctl-removed', 'ada'))
    expect(await moveHomeAway(layout, {name: 'ada', home})).to.equal(path.join(homes, '.hubctl-removed', 'ada'))
    await fs.mkdir(home)
    const error = await rejection(moveHomeAway(layout, {name: 'ada', home}))
    expect(error.line).to.include('is left from an earlier removal of ada')
  })

  it('refuses a holding directory that is a link or not 0700, a parent others can write, and a home that is a link; nothing moved', async () => {
    const home = path.join(homes, 'ada')
    await fs.mkdir(home)
    const holding = path.join(homes, '.hubctl-removed')
    await fs.symlink(dir, holding)
    expect((await rejection(moveHomeAway(layout, {name: 'ada', home}))).line).to.include('a symbolic link')
    await fs.rm(holding)
    await fs.mkdir(holding, {mode: 0o755})
    await fs.chmod(holding, 0o755)
    expect((await rejection(moveHomeAway(layout, {name: 'ada', home}))).line).to.include('mode 755')
    await fs.rmdir(holding)
    await fs.chmod(homes, 0o777)
    expect((await rejection(moveHomeAway(layout, {name: 'ada', home}))).line).to.include('chmod go-w')
    await fs.chmod(homes, 0o755)
    await fs.rmdir(home)
    await fs.symlink(dir, home)
    expect((await rejection(moveHomeAway(layout, {name: 'ada', home}))).line).to.include('a symbolic link')
    expect((await fs.lstat(home)).isSymbolicLink()).to.equal(true)
  })
})
