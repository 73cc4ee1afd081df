import {expect} from 'chai'
import fs from 'node:fs/promises'
import path from 'node:path'

import {Layout} from '../../../src/lib/config/layout.js'
import {SettingsStore} from '../../../src/lib/config/settings.js'
import {testSettings} from '../../helpers/settings.js'
import type {RunOptions, Runner} from '../../../src/lib/runner.js'
import type {HubApi} from '../../../src/lib/stack/hubapi.js'
import {UsersRecordStore} from '../../../src/lib/users/accounts.js'
import {UsersService} from '../../../src/lib/users/users.js'
import {modeOf, tempPrefix} from '../../helpers/cli.js'
import {rejection} from '../../helpers/errors.js'

const settings = testSettings({admins: ['prof'], jupyterhubVersion: '3.0.0'})

interface Call {
  command: string
  args: string[]
  input?: string
}

/**
 * The system as the users service sees it, faked: a passwd table, useradd making a home under the
 * test's folder, JupyterHub 3.0 that loads any config. Every call is recorded.
 */
function fakeSystem(home: string, passwd: Record<string, number>) {
  const calls: Call[] = []
  const line = (name: string) => `${name}:x:${passwd[name]}:${passwd[name]}::${path.join(home, name)}:/bin/bash`
  const runner: Runner = {
    async run(command: string, args: string[], options: RunOptions = {}) {
      calls.push({command: path.basename(command), args, input: options.input})
      // Every Python hubctl runs is isolated (-I), a Python script too (run by its Python, never as itself).
      if (/^(python[\d.]*|jupyterhub.*)$/.test(path.basename(command)) && args[0] !== '-I')
        throw new Error(`a Python run without -I: ${command} ${args.join(' ')}`)
      const ok = (stdout = '') => ({exitCode: 0, stdout, stderr: '', notFound: false})
      switch (path.basename(command)) {
        case 'getent': {
          const names = args.slice(1).filter((n) => n in passwd)
          return {...ok(names.map(line).join('\n')), exitCode: names.length === args.length - 1 ? 0 : 2}
        }
        case 'useradd': {
          const name = args.at(-1)!
          passwd[name] = 2000 + Object.keys(passwd).length
          await fs.mkdir(path.join(home, name), {recursive: true, mode: 0o755})
          return ok()
        }
        default:
          // JupyterHub's Python, isolated: its --version (or the version probe), or a script.
          if (args[0] === '-I' && (args[2] === '--version' || args[2].includes('jupyterhub._version')))
            return ok('3.0.0')
          if (args[0] === '-I') return ok(args[2].includes('find_spec') ? 'notebook' : 'ok')
          return ok()
      }
    },
  }
  return {runner, calls}
}

describe('users service (fake system)', function () {
  this.timeout(20_000)
  let layout: Layout
  let home: string
  let dir = ''

  afterEach(async () => {
    if (dir) await fs.rm(dir, {recursive: true, force: true})
  })

  beforeEach(async () => {
    dir = await tempPrefix('hubctl-users-unit')
    layout = new Layout(path.join(dir, 'prefix'))
    home = path.join(dir, 'home')
    await fs.mkdir(home)
    await new SettingsStore(layout).save(settings)
  })

  it('refuses an existing account hubctl did not create unless --adopt, and a system account always; nothing changed', async () => {
    const {runner, calls} = fakeSystem(home, {prof: 1500, staff: 1600, daemon2: 999})
    const service = new UsersService({layout, runner, stackRunning: async () => false})
    const stranger = await rejection(service.apply(await service.planAdd(['ada', 'staff'], false)))
    expect(stranger.exitCode).to.equal(2)
    expect(stranger.line).to.match(/staff already has a system account that hubctl did not create\. Fix: give --adopt/)
    const system = await rejection(service.apply(await service.planAdd(['daemon2'], false), {adopt: true}))
    expect(system.line).to.include('daemon2 is a system account (uid 999 < 1000)')
    // All or nothing: ada was not created either, and hubctl.json is as it was.
    expect(calls.filter((c) => c.command === 'useradd')).to.deep.equal([])
    expect(await new SettingsStore(layout).load()).to.deep.equal(settings)
    const adopted = await service.apply(await service.planAdd(['ada', 'staff'], false), {adopt: true})
    expect(adopted.accounts.created).to.deep.equal(['ada'])
    expect(adopted.accounts.adopted).to.deep.equal(['staff'])
    expect(await modeOf(path.join(home, 'ada'))).to.equal(0o700)
    const record = await new UsersRecordStore(layout).load()
    expect(record.accounts.ada.origin).to.equal('created')
    expect(record.accounts.staff.origin).to.equal('adopted')
    expect((await new SettingsStore(layout).load()).allowedUsers).to.deep.equal(['ada', 'prof', 'staff'])
    const useradd = calls.find((c) => c.command === 'useradd')!
    expect(useradd.args).to.include.members(['--create-home', '--user-group', '--shell', '/bin/bash', 'ada'])
  })

  it('a second add changes nothing; admin of a missing user names `users add`', async () => {
    const {runner, calls} = fakeSystem(home, {prof: 1500})
    const service = new UsersService({layout, runner, stackRunning: async () => false})
    await service.apply(await service.planAdd(['ada'], false))
    const before = calls.length
    const again = await service.apply(await service.planAdd(['ada'], false))
    expect(again.changed).to.equal(false)
    expect(calls.slice(before).map((c) => c.command)).to.deep.equal(['getent'])
    const missing = await rejection(service.planAdmin(['zed'], false))
    expect(missing.line).to.include('hubctl users add zed --admin')
    // Revoking from a stranger: the names are to be checked, not the user added.
    const stranger = await rejection(service.planAdmin(['zed'], true))
    expect([stranger.exitCode, stranger.message, stranger.fix]).to.deep.equal([
      2,
      'zed is not a user of this hub',
      'check the names against `hubctl users list` (a user who is not one has nothing to revoke); nothing was changed',
    ])
  })

  it('remove on a running hub: server stopped, hub restarted, then the user deleted through the API; account locked, home archived 0600', async () => {
    const {runner, calls} = fakeSystem(home, {prof: 1500})
    const events: string[] = []
    let servers = [{user: 'ada', name: ''}]
    const api = {
      userServers: async () => servers,
      stopServer: async (user: string) => {
        events.push(`stop ${user}`)
        servers = []
        return 'stopped'
      },
      deleteUser: async (user: string) => {
        events.push(`delete ${user}`)
        return 'deleted'
      },
      listUsers: async () => [],
    } as unknown as HubApi
    let running = false
    const service = new UsersService({
      layout,
      runner,
      stackRunning: async () => running,
      api: () => api,
      restart: async () => events.push('restart'),
    })
    await service.apply(await service.planAdd(['ada'], false))
    await fs.writeFile(path.join(home, 'ada', 'notes.txt'), 'x')
    running = true
    const result = await service.apply(await service.planRemove(['ada']))
    expect(events).to.deep.equal(['stop ada', 'restart', 'delete ada'])
    expect(result.hub.deleted).to.deep.equal(['ada'])
    expect(result.accounts.locked).to.deep.equal(['ada'])
    expect(result.archives).to.have.length(1)
    expect(await modeOf(result.archives[0])).to.equal(0o600)
    expect(path.dirname(result.archives[0])).to.equal(layout.homeArchiveDir)
    const usermod = calls.find((c) => c.command === 'usermod')!
    expect(usermod.args).to.deep.equal(['--lock', '--expiredate', '1', 'ada'])
    // Locked first, then every process of the uid ended, then the home archived and deleted.
    const order = calls.map((c) => c.command).filter((c) => ['usermod', 'setpriv', 'tar', 'rm'].includes(c))
    expect(order).to.deep.equal(['usermod', 'setpriv', 'tar', 'rm'])
    expect(calls.find((c) => c.command === 'rm')!.args).to.deep.equal([
      '-rf',
      '--one-file-system',
      '--',
      path.join(home, '.hubctl-removed', 'ada'),
    ])
    expect((await new SettingsStore(layout).load()).allowedUsers).to.deep.equal(['prof'])
    // Removing again changes nothing.
    const again = await service.apply(await service.planRemove(['ada']))
    expect(again.changed).to.equal(false)
    expect(await rejection(service.planRemove(['prof'])))
      .to.have.property('message')
      .that.includes('without an admin')
  })

  it('stopServers (users admin --revoke --share-writer): the running servers of the users stopped through the API; none when the hub is not running', async () => {
    const {runner} = fakeSystem(home, {prof: 1500})
    const events: string[] = []
    const servers: Record<string, Array<{user: string; name: string}>> = {ada: [{user: 'ada', name: ''}], bea: []}
    const api = {
      userServers: async (user: string) => servers[user] ?? [],
      stopServer: async (user: string, name: string) => {
        events.push(`stop ${user}/${name}`)
        servers[user] = []
        return 'stopped'
      },
    } as unknown as HubApi
    let running = false
    const service = new UsersService({layout, runner, stackRunning: async () => running, api: () => api})
    await service.apply(await service.planAdd(['ada', 'bea'], false))
    expect(await service.stopServers(['ada', 'bea'])).to.deep.equal([])
    expect(events).to.deep.equal([])
    running = true
    expect(await service.stopServers(['ada', 'bea'])).to.deep.equal(['ada'])
    expect(events).to.deep.equal(['stop ada/'])
  })

  it('passwd: the password reaches chpasswd on stdin only; never for an account hubctl did not make or adopt', async () => {
    const {runner, calls} = fakeSystem(home, {prof: 1500})
    const service = new UsersService({layout, runner, stackRunning: async () => false})
    const notOurs = await rejection(service.setPassword('prof', 'correct horse'))
    expect(notOurs.line).to.include('--adopt')
    await service.apply(await service.planAdd(['ada'], false))
    await service.setPassword('ada', 'correct horse')
    const chpasswd = calls.filter((c) => c.command === 'chpasswd')
    expect(chpasswd).to.deep.equal([{command: 'chpasswd', args: [], input: 'ada:correct horse\n'}])
    expect(JSON.stringify(calls.map((c) => c.args))).to.not.include('correct horse')
    expect((await rejection(service.setPassword('ada', 'short'))).line).to.include('shorter than 8')
  })
})
