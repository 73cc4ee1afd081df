import {expect} from 'chai'
import fs from 'node:fs/promises'
import path from 'node:path'

import {Layout} from '../../../src/lib/config/layout.js'
import {
  RestoreJournal,
  accountsBefore,
  applyJournal,
  finishInterruptedRestore,
} from '../../../src/lib/backup/journal.js'
import type {Runner} from '../../../src/lib/runner.js'
import {tempPrefix} from '../../helpers/cli.js'

/** getent, chpasswd, userdel and groupdel on a table of accounts (name → password hash) and groups. */
function fakeAccounts(users: Map<string, string>, groups: Set<string>): Runner {
  const ok = (stdout = '') => ({exitCode: 0, stdout, stderr: '', notFound: false})
  const no = {exitCode: 2, stdout: '', stderr: 'no such entry', notFound: false}
  return {
    async run(command, args, options = {}) {
      const name = args.at(-1)!
      if (command === 'getent' && args[0] === 'group') return groups.has(name) ? ok(`${name}:x:1001:`) : no
      if (command === 'getent' && args[0] === 'passwd')
        return users.has(name) ? ok(`${name}:x:1001:1001::/h:/bin/sh`) : no
      if (command === 'getent' && args[0] === 'shadow')
        return users.has(name) ? ok(`${name}:${users.get(name)}:1::::::`) : no
      if (command === 'chpasswd') {
        const [user, hash] = options.input!.trim().split(':')
        users.set(user, hash)
        return ok()
      }
      if (command === 'userdel') return users.delete(name) ? ok() : no
      if (command === 'groupdel') return groups.delete(name) ? ok() : no
      throw new Error(`unexpected ${command} ${args.join(' ')}`)
    },
  }
}

/*
 * The rename phase of `hubctl restore`, killed after each of its steps (and half way through a
 * home's, once the old home is aside): the next `hubctl start` or restore finishes it, and the
 * files are then all the restored ones, never some old and some new.
 */
describe('restore journal', () => {
  let prefix = ''
  let layout: Layout
  let journal: RestoreJournal
  const noAccounts = fakeAccounts(new Map(), new Set())

  beforeEach(async () => {
    prefix = await tempPrefix('hubctl-journal')
    layout = new Layout(prefix)
    await fs.mkdir(layout.srvDir, {recursive: true})
    await fs.mkdir(layout.etcDir, {recursive: true})
    const home = path.join(prefix, 'home/ada')
    await fs.mkdir(home, {recursive: true})
    // The old hub, then every new entry complete beside its target.
    for (const [file, text] of [
      [layout.cookieSecret, 'old-cookie'],
      [layout.settings, 'old-settings'],
      [layout.database, 'old-db'],
      [path.join(home, 'notes'), 'old-notes'],
    ])
      await fs.writeFile(file, text)
    await fs.writeFile(`${layout.database}-journal`, 'hot journal of the old database')
    await fs.writeFile(layout.restoreNew(layout.cookieSecret), 'new-cookie')
    await fs.writeFile(layout.restoreNew(layout.settings), 'new-settings')
    await fs.writeFile(layout.restoreNew(layout.database), 'new-db')
    await fs.mkdir(layout.restoreNew(home))
    await fs.writeFile(path.join(layout.restoreNew(home), 'notes'), 'new-notes')
    journal = {
      version: 1,
      archive: '/backup.tar',
      ops: [
        ...layout.databaseSidecars.map((to) => ({op: 'remove' as const, to})),
        {op: 'rename', from: layout.restoreNew(layout.cookieSecret), to: layout.cookieSecret},
        {op: 'rename', from: layout.restoreNew(layout.settings), to: layout.settings},
        {op: 'rename', from: layout.restoreNew(layout.database), to: layout.database},
        {op: 'rename', from: layout.restoreNew(home), to: home, aside: layout.restoreOld(home)},
      ],
    }
  })

  afterEach(async () => {
    await fs.rm(prefix, {recursive: true, force: true})
  })

  const state = async () => ({
    cookie: await fs.readFile(layout.cookieSecret, 'utf8'),
    settings: await fs.readFile(layout.settings, 'utf8'),
    db: await fs.readFile(layout.database, 'utf8'),
    notes: await fs.readFile(path.join(prefix, 'home/ada/notes'), 'utf8'),
    sidecar: await fs.readFile(`${layout.database}-journal`, 'utf8').catch(() => 'none'),
    leftovers: (await fs.readdir(path.join(prefix, 'home'))).filter((n) => n !== 'ada'),
  })
  const restored = {
    cookie: 'new-cookie',
    settings: 'new-settings',
    db: 'new-db',
    notes: 'new-notes',
    sidecar: 'none',
    leftovers: [],
  }

  it('killed before its journal was written: the old hub, untouched', async () => {
    expect(await finishInterruptedRestore(layout, noAccounts)).to.equal(false)
    expect(await state()).to.deep.include({
      cookie: 'old-cookie',
      settings: 'old-settings',
      db: 'old-db',
      notes: 'old-notes',
    })
  })

  for (let done = 0; done <= 8; done++) {
    it(`killed after ${done} of its steps: finished whole by the next run`, async () => {
      await fs.writeFile(layout.restoreJournal, JSON.stringify(journal))
      await applyJournal({...journal, ops: journal.ops.slice(0, done)})
      // The home's step half done: the old home moved aside, the new one not yet in place.
      if (done === journal.ops.length - 1)
        await fs.rename(path.join(prefix, 'home/ada'), layout.restoreOld(path.join(prefix, 'home/ada')))
      expect(await finishInterruptedRestore(layout, noAccounts)).to.equal(true)
      expect(await state()).to.deep.equal(restored)
      expect(await fs.stat(layout.restoreJournal).catch(() => undefined)).to.equal(undefined)
      // And once more: nothing left to do.
      expect(await finishInterruptedRestore(layout, noAccounts)).to.equal(false)
    })
  }

  it('killed while it made the accounts (its journal in the accounts phase): the accounts as they were, the files untouched', async () => {
    // Before: ada with her old hash and group; the archive's accounts ada and bea (made by the restore).
    const users = new Map([['ada', '$y$old']])
    const groups = new Set(['ada'])
    const runner = fakeAccounts(users, groups)
    const before = await accountsBefore(runner, ['ada', 'bea'])
    expect(before).to.deep.equal([
      {name: 'ada', existed: true, groupExisted: true, shadow: '$y$old'},
      {name: 'bea', existed: false, groupExisted: false},
    ])
    await fs.writeFile(
      layout.restoreJournal,
      JSON.stringify({version: 1, archive: '/backup.tar', phase: 'accounts', accounts: before, ops: []}),
    )
    // What the restore did before the kill: the archive's hash set, bea and her group made.
    users.set('ada', '$y$archived')
    users.set('bea', '$y$archived-bea')
    groups.add('bea')
    expect(await finishInterruptedRestore(layout, runner)).to.equal(true)
    expect([...users]).to.deep.equal([['ada', '$y$old']])
    expect([...groups]).to.deep.equal(['ada'])
    expect(await state()).to.deep.include({
      cookie: 'old-cookie',
      settings: 'old-settings',
      db: 'old-db',
      notes: 'old-notes',
    })
    expect(await fs.stat(layout.restoreJournal).catch(() => undefined)).to.equal(undefined)
    // Killed before bea was made (only her group): the group removed; and once more: nothing left to do.
    await fs.writeFile(
      layout.restoreJournal,
      JSON.stringify({version: 1, archive: '/backup.tar', phase: 'accounts', accounts: before, ops: []}),
    )
    groups.add('bea')
    expect(await finishInterruptedRestore(layout, runner)).to.equal(true)
    expect([...groups]).to.deep.equal(['ada'])
    expect(await finishInterruptedRestore(layout, runner)).to.equal(false)
  })
})
