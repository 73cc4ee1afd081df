import {expect} from 'chai'
import fs from 'node:fs/promises'

import {FFDHE2048_PEM} from '../../../src/lib/tls/dhparam.js'
import {HubctlError} from '../../../src/lib/errors.js'
import {Layout} from '../../../src/lib/config/layout.js'
import {procStartTime} from '../../../src/lib/processes.js'
import {BACKUPS_KEPT, RotationService, fingerprint, rotationNotice} from '../../../src/lib/stack/rotate.js'
import {Runner} from '../../../src/lib/runner.js'
import {SecretStore} from '../../../src/lib/files/secrets.js'
import type {Settings} from '../../../src/lib/config/settings.js'
import type {ControlAction, ControlResult} from '../../../src/lib/stack/state.js'
import {modeOf, tempPrefix} from '../../helpers/cli.js'

const settings = {
  ports: {http: 80, https: 443, proxy: 8000, proxyApi: 8001, hub: 8081, proxyStandby: 8002, proxyStandbyApi: 8003},
  dhparam: {mode: 'ffdhe2048', bits: 2048},
  executables: {jupyterhub: '/usr/bin/jupyterhub', singleuser: '', nginx: 'nginx', node: '', proxy: ''},
} as unknown as Settings

/** nginx -V and nginx -t pass; nothing else is run by these tests. */
const runner: Runner = {
  async run(command, args) {
    return {
      exitCode: 0,
      stdout: '',
      stderr:
        args.includes('-V') || args.includes('-v')
          ? 'nginx version: nginx/1.22.1'
          : 'nginx: configuration file test is successful',
      notFound: false,
    }
  },
}

describe('rotate', () => {
  let layout: Layout
  let store: SecretStore

  beforeEach(async () => {
    layout = new Layout(await tempPrefix('hubctl-rotate'))
    store = new SecretStore(layout)
    await store.generateMissing(() => Promise.resolve(FFDHE2048_PEM))
  })

  afterEach(async () => {
    await fs.rm(layout.prefix, {recursive: true, force: true})
  })

  /** Make this test process pass for the prefix's running supervisor. */
  async function pretendRunning(): Promise<void> {
    await fs.mkdir(layout.runDir, {recursive: true})
    await fs.writeFile(layout.pidFile, `${process.pid}\n`)
    await fs.writeFile(
      layout.stateFile,
      JSON.stringify({version: 1, supervisor: {pid: process.pid, startTime: await procStartTime(process.pid)}}),
    )
  }

  it('says what users notice before it acts', () => {
    expect(rotationNotice(['cookieSecret'], false).join(' ')).to.match(/log in again/)
    expect(rotationNotice(['cookieSecret'], true).join(' ')).to.match(/restarted one at a time/)
    expect(rotationNotice(['proxyAuthToken'], false).join(' ')).to.match(/requests keep being answered/)
    expect(rotationNotice(['apiToken'], false).join(' ')).to.match(/stay logged in/)
    expect(fingerprint('abc')).to.equal('ba7816bf')
  })

  it('on a stopped stack: new files (0600), 0600 backups of the old ones, one audit line each, no value in it', async () => {
    const oldCookie = await store.read('cookieSecret')
    const oldToken = await store.read('proxyAuthToken')
    const calls: ControlAction[] = []
    const service = new RotationService({
      layout,
      settings,
      runner,
      control: async (action) => {
        calls.push(action)
        return undefined
      },
    })
    const result = await service.rotate({
      secrets: ['proxyAuthToken', 'cookieSecret'],
      restartServers: false,
      dhparam: {mode: 'ffdhe2048', bits: 2048},
    })
    expect(result.running).to.equal(false)
    expect(calls).to.deep.equal([])
    expect(await store.read('cookieSecret')).to.not.equal(oldCookie)
    expect(await store.read('proxyAuthToken')).to.not.equal(oldToken)
    expect(await store.check()).to.deep.equal([])
    const byName = Object.fromEntries(result.rotated.map((record) => [record.secret, record]))
    expect((await fs.readFile(byName.cookieSecret.backup!, 'utf8')).trim()).to.equal(oldCookie)
    expect(await modeOf(byName.cookieSecret.backup!)).to.equal(0o600)
    expect(await modeOf(layout.backupDir)).to.equal(0o700)
    const audit = await fs.readFile(layout.auditLog, 'utf8')
    expect(audit.trim().split('\n')).to.have.length(2)
    expect(audit).to.include(
      `secret=cookieSecret sha256=${fingerprint(await store.read('cookieSecret'))} outcome=written`,
    )
    expect(audit).to.not.include(await store.read('cookieSecret'))
    expect(audit).to.not.include(oldCookie)
  })

  it('on a running stack: the proxy is handed over, then the hub restarts once for both of its secrets', async () => {
    await pretendRunning()
    const calls: ControlAction[] = []
    const control = async (action: ControlAction): Promise<ControlResult> => {
      calls.push(action)
      return {id: 'x', action, ok: true, at: '', seconds: 0}
    }
    // The proxy's API as the real one answers: 200 to the token in the file, 403 to any other.
    const fakeFetch = (async (_url: string | URL | Request, init?: RequestInit) => {
      const sent = (init?.headers as Record<string, string>).Authorization
      return new Response('{}', {status: sent === `token ${await store.read('proxyAuthToken')}` ? 200 : 403})
    }) as typeof fetch
    const oldToken = await store.read('proxyAuthToken')
    const service = new RotationService({
      layout,
      settings,
      runner,
      control,
      fetch: fakeFetch,
      listenerCheck: async () => undefined,
    })
    const result = await service.rotate({
      secrets: ['cookieSecret', 'proxyAuthToken'],
      restartServers: false,
      dhparam: {mode: 'ffdhe2048', bits: 2048},
    })
    expect(calls).to.deep.equal(['proxy-token', 'restart-hub'])
    expect(result.running).to.equal(true)
    expect(result.restarted).to.deep.equal(['proxy', 'hub'])
    expect(await store.read('proxyAuthToken')).to.not.equal(oldToken)
    expect(result.rotated.map((record) => record.outcome)).to.deep.equal(['applied', 'applied'])
  })

  it('rolls back every secret when the stack does not come back healthy, and says so', async () => {
    await pretendRunning()
    const oldCookie = await store.read('cookieSecret')
    const oldApi = await store.read('apiToken')
    const calls: ControlAction[] = []
    const control = async (action: ControlAction): Promise<ControlResult> => {
      calls.push(action)
      // The first restart fails (the hub cannot start with the new values), the rollback's works.
      return {
        id: String(calls.length),
        action,
        ok: calls.length > 1,
        at: '',
        seconds: 1,
        ...(calls.length > 1 ? {} : {error: 'the hub did not answer /hub/health'}),
      }
    }
    const service = new RotationService({layout, settings, runner, control})
    const error = await service
      .rotate({secrets: ['cookieSecret', 'apiToken'], restartServers: false, dhparam: {mode: 'ffdhe2048', bits: 2048}})
      .catch((caught: unknown) => caught)
    expect(error).to.be.instanceOf(HubctlError)
    expect((error as HubctlError).exitCode).to.equal(7)
    expect((error as HubctlError).message).to.match(/did not come back healthy/)
    expect(calls).to.deep.equal(['restart-hub', 'restart-hub'])
    expect(await store.read('cookieSecret')).to.equal(oldCookie)
    expect(await store.read('apiToken')).to.equal(oldApi)
    const audit = (await fs.readFile(layout.auditLog, 'utf8')).trim().split('\n')
    expect(audit).to.have.length(2)
    for (const line of audit) expect(line).to.match(/outcome=rolled-back/)
  })

  it('keeps only the last few backups of a secret', async () => {
    const service = new RotationService({layout, settings, runner})
    for (let i = 0; i < BACKUPS_KEPT + 3; i++) {
      await service.rotate({secrets: ['apiToken'], restartServers: false, dhparam: {mode: 'ffdhe2048', bits: 2048}})
    }
    expect(await store.backups('apiToken')).to.have.length(BACKUPS_KEPT)
  })

  it('refuses an empty request before it changes anything', async () => {
    const before = await fs.readFile(layout.cookieSecret, 'utf8')
    const service = new RotationService({layout, settings, runner})
    const error = await service
      .rotate({secrets: [], restartServers: false, dhparam: {mode: 'ffdhe2048', bits: 2048}})
      .catch((caught: unknown) => caught)
    expect((error as HubctlError).exitCode).to.equal(2)
    expect(await fs.readFile(layout.cookieSecret, 'utf8')).to.equal(before)
    await fs.access(layout.backupDir).then(
      () => expect.fail('a backup directory was made'),
      () => {},
    )
  })
})
