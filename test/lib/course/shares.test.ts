import {expect} from 'chai'
import fs from 'node:fs/promises'
import path from 'node:path'

import {Layout} from '../../../src/lib/config/layout.js'
import {SharesService, SharesStore, shareGroup} from '../../../src/lib/course/shares.js'
import {execaRunner, type Runner} from '../../../src/lib/runner.js'
import {tempPrefix} from '../../helpers/cli.js'
import {rejection} from '../../helpers/errors.js'

/**
 * The Unix users and groups as the shares service sees them, faked (getent, groupadd, gpasswd,
 * groupdel); cp, chown, chmod and find are the real ones, on the test's folder. Every call is recorded.
 */
function fakeSystem(users: string[], groups: Record<string, {gid: number; members: string[]}>) {
  const calls: string[] = []
  const ok = (stdout = '') => ({exitCode: 0, stdout, stderr: '', notFound: false})
  const runner: Runner = {
    async run(command, args, options) {
      calls.push([command, ...args].join(' '))
      switch (command) {
        case 'getent': {
          const [db, ...names] = args
          const lines =
            db === 'passwd'
              ? names
                  .filter((n) => users.includes(n))
                  .map((n) => `${n}:x:${1500 + users.indexOf(n)}:1500::/home/${n}:/bin/sh`)
              : names.filter((n) => n in groups).map((n) => `${n}:x:${groups[n].gid}:${groups[n].members.join(',')}`)
          return {...ok(lines.join('\n')), exitCode: lines.length === names.length ? 0 : 2}
        }
        case 'groupadd':
          groups[args[0]] = {gid: 4000 + Object.keys(groups).length, members: []}
          return ok()
        case 'gpasswd':
          if (args[0] === '--delete') groups[args[2]].members = groups[args[2]].members.filter((m) => m !== args[1])
          else groups[args[2]].members.push(args[1])
          return ok()
        case 'groupdel':
          delete groups[args[0]]
          return ok()
        default:
          return execaRunner.run(command, args, options)
      }
    },
  }
  return {runner, calls, groups}
}

const changing = (calls: string[]) => calls.filter((c) => !c.startsWith('getent'))

describe('shares service (fake users and groups)', function () {
  this.timeout(20_000)
  let dir = ''
  let layout: Layout

  beforeEach(async () => {
    dir = await tempPrefix('hubctl-shares-unit')
    await fs.chmod(dir, 0o755)
    layout = new Layout(path.join(dir, 'prefix'))
    // As on a server (/srv, 0755), made before the lock's 0700 srv/jupyterhub.
    await fs.mkdir(path.dirname(layout.sharedRoot), {recursive: true, mode: 0o755})
  })

  afterEach(async () => {
    if (dir) await fs.rm(dir, {recursive: true, force: true})
  })

  it('makes a share: its group, a folder of root and the group with mode 2775, the writers in the group, the record', async () => {
    const system = fakeSystem(['ta1', 'ta2', 'stu'], {})
    const service = new SharesService({layout, runner: system.runner})
    const result = await service.add('data', {writers: ['ta1']})
    const group = shareGroup(layout, 'data')
    expect(result.action).to.equal('created')
    expect(result.share).to.include({name: 'data', path: layout.sharedDir('data'), group, present: true})
    expect(result.share.members).to.deep.equal(['ta1'])
    const stat = await fs.lstat(layout.sharedDir('data'))
    expect(stat.isDirectory()).to.equal(true)
    expect(stat.mode & 0o7777).to.equal(0o2775)
    expect([stat.uid, stat.gid]).to.deep.equal([0, system.groups[group].gid])
    expect((await fs.stat(layout.sharedRoot)).mode & 0o777).to.equal(0o755)
    expect(Object.keys((await new SharesStore(layout).load()).shares)).to.deep.equal(['data'])
    expect((await fs.stat(layout.sharesRecord)).mode & 0o777).to.equal(0o644)
    // Again with another writer: only that one is added; again with the same: nothing changes.
    system.calls.length = 0
    const more = await service.add('data', {writers: ['ta1', 'ta2']})
    expect([more.action, more.added]).to.deep.equal(['updated', ['ta2']])
    expect(changing(system.calls)).to.deep.equal([`gpasswd --add ta2 ${group}`])
    system.calls.length = 0
    expect((await service.add('data', {writers: ['ta2']})).action).to.equal('unchanged')
    expect(changing(system.calls)).to.deep.equal([])
    expect((await service.list()).map((s) => [s.name, s.members, s.writers])).to.deep.equal([
      ['data', ['ta1', 'ta2'], ['ta1', 'ta2']],
    ])
  })

  it('takes a group of writers as its members', async () => {
    const system = fakeSystem(['ta1'], {instructors: {gid: 3000, members: ['prof', 'ta9']}})
    const result = await new SharesService({layout, runner: system.runner}).add('notes', {writers: ['instructors']})
    expect(result.share.members).to.deep.equal(['prof', 'ta9'])
  })

  it('users admin --share-writer: adds the users to existing shares only, every share and account checked before any change', async () => {
    const system = fakeSystem(['prof', 'ta1', 'stu'], {})
    const service = new SharesService({layout, runner: system.runner})
    await service.add('data', {writers: ['prof']})
    await service.add('notes')
    const before = changing(system.calls).length
    // An unknown share (even beside a known one), or a user without an account: refused, nothing done.
    const share = await rejection(service.addWriters(['data', 'week9'], ['ta1']))
    expect([share.exitCode, share.message]).to.deep.equal([2, 'there is no share week9'])
    const account = await rejection(service.addWriters(['data'], ['ta1', 'oauth-only']))
    expect([account.exitCode, account.message]).to.deep.equal([
      2,
      'oauth-only has no Unix account on this machine, so cannot write a share',
    ])
    expect(changing(system.calls).length).to.equal(before)
    expect(Object.keys((await new SharesStore(layout).load()).shares).sort()).to.deep.equal(['data', 'notes'])

    const results = await service.addWriters(['data', 'notes'], ['ta1'])
    expect(results.map((r) => [r.share.name, r.action, r.added])).to.deep.equal([
      ['data', 'updated', ['ta1']],
      ['notes', 'updated', ['ta1']],
    ])
    expect(system.groups[shareGroup(layout, 'data')].members).to.deep.equal(['prof', 'ta1'])
    expect(system.groups[shareGroup(layout, 'notes')].members).to.deep.equal(['ta1'])
    expect(system.groups[shareGroup(layout, 'data')].members).to.not.include('stu')
  })

  it("users admin --revoke --share-writer: the users leave the share's group and its writers, checked first, idempotent", async () => {
    const system = fakeSystem(['prof', 'ta1', 'stu'], {})
    const service = new SharesService({layout, runner: system.runner})
    await service.add('data', {writers: ['prof', 'ta1']})
    await service.add('notes', {writers: ['ta1']})
    const group = shareGroup(layout, 'data')
    const before = changing(system.calls).length
    // An unknown share (even after a known one), or a user without an account: refused, nothing done.
    const share = await rejection(service.removeWriters(['data', 'week9'], ['ta1']))
    expect([share.exitCode, share.message]).to.deep.equal([2, 'there is no share week9'])
    const account = await rejection(service.removeWriters(['data'], ['ta1', 'oauth-only']))
    expect([account.exitCode, account.message, account.fix]).to.deep.equal([
      2,
      'oauth-only has no Unix account on this machine, so cannot write a share',
      "check the names against the members `hubctl share list` shows (only a Unix account can be in a share's group); nothing was changed",
    ])
    expect(changing(system.calls).length).to.equal(before)
    expect(system.groups[group].members).to.deep.equal(['prof', 'ta1'])

    system.calls.length = 0
    const results = await service.removeWriters(['data', 'notes'], ['ta1'])
    expect(results.map((r) => [r.share.name, r.action, r.removed, r.share.members, r.share.writers])).to.deep.equal([
      ['data', 'updated', ['ta1'], ['prof'], ['prof']],
      ['notes', 'updated', ['ta1'], [], []],
    ])
    expect(changing(system.calls)).to.deep.equal([
      `gpasswd --delete ta1 ${group}`,
      `gpasswd --delete ta1 ${shareGroup(layout, 'notes')}`,
    ])
    expect((await new SharesStore(layout).load()).shares.data.writers).to.deep.equal(['prof'])
    // Again, or a user who never wrote: nothing changes.
    system.calls.length = 0
    const again = await service.removeWriters(['data'], ['ta1', 'stu'])
    expect(again.map((r) => [r.action, r.removed, r.stillHeld])).to.deep.equal([['unchanged', [], []]])
    expect(changing(system.calls)).to.deep.equal([])
  })

  it('users admin --revoke --share-writer again: a user out of the group whose process still has it (a server the first run could not stop) is named, to be stopped', async () => {
    const system = fakeSystem(['prof', 'ta1', 'stu'], {})
    const proc = path.join(dir, 'proc')
    const service = new SharesService({layout, runner: system.runner, procDir: proc})
    await service.add('data', {writers: ['prof', 'ta1']})
    const gid = system.groups[shareGroup(layout, 'data')].gid
    // /proc as the kernel shows it: ta1's server started while ta1 was a writer (the group among its
    // groups), stu's process without it, a zombie of prof's with it.
    const processes: Array<[number, number, string, string]> = [
      [101, 1501, 'S (sleeping)', `100 ${gid} 27`],
      [102, 1502, 'S (sleeping)', '100'],
      [103, 1500, 'Z (zombie)', `${gid}`],
    ]
    for (const [pid, uid, state, groups] of processes) {
      await fs.mkdir(path.join(proc, String(pid)), {recursive: true})
      await fs.writeFile(
        path.join(proc, String(pid), 'status'),
        `Name:\tpython3\nState:\t${state}\nUid:\t${uid}\t${uid}\t${uid}\t${uid}\nGid:\t100\t100\t100\t100\nGroups:\t${groups} \n`,
      )
    }
    const first = await service.removeWriters(['data'], ['ta1', 'stu'])
    // Taken out now: stopped as removed, not named twice.
    expect(first.map((r) => [r.removed, r.stillHeld])).to.deep.equal([[['ta1'], []]])
    const again = await service.removeWriters(['data'], ['ta1', 'stu', 'prof'])
    expect(again.map((r) => [r.removed, r.stillHeld])).to.deep.equal([[['prof'], ['ta1']]])
    // Once that server is gone, nothing is named.
    await fs.rm(path.join(proc, '101'), {recursive: true})
    const done = await service.removeWriters(['data'], ['ta1'])
    expect(done.map((r) => [r.action, r.removed, r.stillHeld])).to.deep.equal([['unchanged', [], []]])
  })

  it('refuses a bad name, an unknown writer, a group or folder already there, a missing source: exit 2, nothing changed', async () => {
    const system = fakeSystem(['ta1'], {[shareGroup(layout, 'taken')]: {gid: 3001, members: []}})
    const service = new SharesService({layout, runner: system.runner})
    for (const name of ['', '../etc', 'Data', 'a b', 'x'.repeat(20), '-data', '.', 'data/x']) {
      const error = await rejection(service.add(name))
      expect([error.exitCode, error.message], name).to.deep.equal([
        2,
        `the share name ${JSON.stringify(name)} is not valid`,
      ])
    }
    const unknown = await rejection(service.add('data', {writers: ['ta1', 'nobody-here']}))
    expect([unknown.exitCode, unknown.message]).to.deep.equal([
      2,
      'nobody-here is neither a user nor a group of this machine',
    ])
    expect((await rejection(service.add('data', {writers: ['Bad Name']}))).exitCode).to.equal(2)
    const group = await rejection(service.add('taken'))
    expect([group.exitCode, group.message]).to.deep.equal([
      2,
      `the group ${shareGroup(layout, 'taken')} exists already, and hubctl did not make it for a share`,
    ])
    const source = await rejection(service.add('data', {source: path.join(dir, 'missing')}))
    expect([source.exitCode, source.message]).to.deep.equal([
      2,
      `--source ${path.join(dir, 'missing')} is not a directory`,
    ])
    await fs.mkdir(layout.sharedDir('mine'), {recursive: true})
    const folder = await rejection(service.add('mine'))
    expect([folder.exitCode, folder.message]).to.deep.equal([
      2,
      `${layout.sharedDir('mine')} exists already, and is not a share of hubctl's`,
    ])
    expect(changing(system.calls)).to.deep.equal([])
    expect(await fs.readdir(layout.sharedRoot)).to.deep.equal(['mine'])
    expect(await fs.stat(layout.sharesRecord).catch(() => undefined)).to.equal(undefined)
  })

  it('refuses a share no other user could reach (a folder above it without o+x): exit 3, nothing changed', async () => {
    await fs.chmod(dir, 0o700)
    const system = fakeSystem([], {})
    const error = await rejection(new SharesService({layout, runner: system.runner}).add('data'))
    expect(error.exitCode).to.equal(3)
    expect(error.message).to.include(`${dir} does not let other users through (mode 700)`)
    expect(changing(system.calls)).to.deep.equal([])
  })

  it("fills a new share from --source (the group's, writable by it, readable by all, setgid folders), refuses --source for an existing one", async () => {
    const source = path.join(dir, 'course-data')
    await fs.mkdir(path.join(source, 'week1'), {recursive: true, mode: 0o700})
    await fs.writeFile(path.join(source, 'week1', 'table.csv'), 'a,b\n', {mode: 0o600})
    await fs.symlink('/etc/shadow', path.join(source, 'link'))
    const system = fakeSystem([], {})
    const service = new SharesService({layout, runner: system.runner})
    await service.add('data', {source})
    const gid = system.groups[shareGroup(layout, 'data')].gid
    const file = await fs.stat(path.join(layout.sharedDir('data'), 'week1', 'table.csv'))
    expect([file.uid, file.gid, file.mode & 0o777]).to.deep.equal([0, gid, 0o664])
    const sub = await fs.stat(path.join(layout.sharedDir('data'), 'week1'))
    expect([sub.gid, sub.mode & 0o7777]).to.deep.equal([gid, 0o2775])
    // The link stays a link (never the file it names copied in).
    expect(await fs.readlink(path.join(layout.sharedDir('data'), 'link'))).to.equal('/etc/shadow')
    const again = await rejection(service.add('data', {source}))
    expect([again.exitCode, again.message]).to.deep.equal([
      2,
      'the share data exists already; --source only fills a new share',
    ])
  })

  it('removes a share: the record first, the folder, its group; an unknown share is exit 2', async () => {
    const system = fakeSystem([], {})
    const service = new SharesService({layout, runner: system.runner})
    await service.add('data')
    await service.add('notes')
    const group = shareGroup(layout, 'data')
    const result = await service.remove('data')
    expect(result).to.deep.equal({name: 'data', path: layout.sharedDir('data'), group, removed: true})
    expect(await fs.readdir(layout.sharedRoot)).to.deep.equal(['notes'])
    expect(system.groups).to.not.have.property(group)
    expect(Object.keys((await new SharesStore(layout).load()).shares)).to.deep.equal(['notes'])
    const again = await rejection(service.remove('data'))
    expect([again.exitCode, again.message]).to.deep.equal([2, 'there is no share data'])
  })

  it("names the group hubctl-share-NAME on the system, and one of each prefix's own under another prefix", () => {
    expect(shareGroup(new Layout('/'), 'data')).to.equal('hubctl-share-data')
    const a = shareGroup(new Layout('/tmp/a'), 'data')
    expect(a).to.match(/^hubctl-share-[0-9a-f]{8}$/)
    expect(a).to.not.equal(shareGroup(new Layout('/tmp/b'), 'data'))
    expect(shareGroup(new Layout('/'), 'x'.repeat(19)).length).to.be.at.most(32)
  })
})
