import {expect} from 'chai'
import {EventEmitter} from 'node:events'
import type {ChildProcess} from 'node:child_process'
import fs from 'node:fs/promises'
import net from 'node:net'
import os from 'node:os'
import path from 'node:path'

import {Layout} from '../../../../src/lib/config/layout.js'
import type {Settings} from '../../../../src/lib/config/settings.js'
import {systemClock} from '../../../../src/lib/stack/clock.js'
import {HubApi} from '../../../../src/lib/stack/hubapi.js'
import type {SupervisedChild} from '../../../../src/lib/stack/supervisor/child.js'
import type {SupervisorContext} from '../../../../src/lib/stack/supervisor/context.js'
import {ProxyHandover} from '../../../../src/lib/stack/supervisor/proxyhandover.js'
import type {Readiness} from '../../../../src/lib/stack/supervisor/readiness.js'
import {freePort} from '../../../helpers/cli.js'

/*
 * The proxy's handover and the health tick, each the real ProxyHandover, with a proxy and a
 * standby proxy whose APIs are tables in memory (fetch faked), the proxy's stop held open by the
 * test: what a health tick does while the proxy is being replaced.
 */

type Table = Record<string, Record<string, unknown>>

describe('proxy handover and the health tick: the standby keeps the routes the handover gave it', function () {
  this.timeout(20_000)
  let prefix = ''
  let standbyPort: net.Server | undefined

  afterEach(async () => {
    if (standbyPort) await new Promise((resolve) => standbyPort!.close(resolve))
    standbyPort = undefined
    if (prefix) await fs.rm(prefix, {recursive: true, force: true})
  })

  it("a health tick while the proxy is replaced takes no route from the standby (was: the user's route, added after the last tick, deleted)", async () => {
    prefix = await fs.mkdtemp(path.join(os.tmpdir(), 'hubctl-handover-tick-'))
    const layout = new Layout(prefix)
    await fs.mkdir(path.dirname(layout.proxySeed), {recursive: true})
    await fs.mkdir(path.dirname(layout.proxyLog), {recursive: true})
    const ports = {proxyApi: await freePort(), proxyStandby: await freePort(), proxyStandbyApi: await freePort()}
    // The standby's port answers (startStandby connects to it): a real listener.
    standbyPort = net.createServer((socket) => socket.destroy())
    await new Promise<void>((resolve) => standbyPort!.listen(ports.proxyStandby, '127.0.0.1', resolve))

    const hubRoute = {hub: true, target: 'http://127.0.0.1:1'}
    const aliceRoute = {user: 'alice', target: 'http://127.0.0.1:2'}
    let proxyTable: Table = {'/': hubRoute}
    const standbyTable: Table = {'/': {target: 'http://127.0.0.1:1'}}
    const standbyCalls: string[] = []
    const json = (body: unknown) => new Response(JSON.stringify(body), {status: 200})
    const fetchFn = async (url: string, init: RequestInit = {}): Promise<Response> => {
      const method = init.method ?? 'GET'
      const proxyApi = `http://127.0.0.1:${ports.proxyApi}/api/routes`
      const standbyApi = `http://127.0.0.1:${ports.proxyStandbyApi}/api/routes`
      if (url === proxyApi) {
        if (!proxy.running) throw new TypeError('fetch failed', {cause: {code: 'ECONNREFUSED'}})
        return json(proxyTable)
      }
      if (url.startsWith(standbyApi)) {
        const routePath = url.slice(standbyApi.length) || '/'
        if (method !== 'GET') standbyCalls.push(`${method} ${routePath}`)
        if (method === 'GET') return json(standbyTable)
        if (method === 'POST') standbyTable[routePath] = JSON.parse(String(init.body)) as Record<string, unknown>
        if (method === 'DELETE') delete standbyTable[routePath]
        return new Response(null, {status: method === 'POST' ? 201 : 204})
      }
      throw new Error(`unexpected fetch ${method} ${url}`)
    }

    // The proxy: its stop held until the test lets it end.
    let releaseStop!: () => void
    let stopBegun!: () => void
    const stopping = new Promise<void>((resolve) => {
      stopBegun = resolve
    })
    const proxy = {
      running: true,
      restartPending: false,
      pid: 4242,
      async stop() {
        this.running = false
        stopBegun()
        await new Promise<void>((resolve) => {
          releaseStop = resolve
        })
      },
      async launch() {
        // The new proxy starts with the seed's routes.
        proxyTable = (JSON.parse(await fs.readFile(layout.proxySeed, 'utf8')) as {routes: Table}).routes
        this.running = true
      },
      setSpec() {},
    }
    const ctx: SupervisorContext = {
      layout,
      settings: {ports, subdomains: false} as unknown as Settings,
      clock: systemClock,
      fetch: fetchFn,
      timings: {pollMs: 10, stopTimeoutMs: 1000, healthTimeoutMs: 5000} as SupervisorContext['timings'],
      env: {PATH: '/usr/bin:/bin'},
      shutdown: new AbortController().signal,
      stopping: () => false,
      ready: () => true,
      log: () => {},
      writeState: async () => {},
    }
    const spawn = () => Object.assign(new EventEmitter(), {pid: 999_999_999}) as unknown as ChildProcess
    const handover = new ProxyHandover(ctx, {
      child: () => proxy as unknown as SupervisedChild,
      readiness: {waitForProxyApi: async () => true, verifyOwnPort: async () => {}} as unknown as Readiness,
      api: () => ({updateProxy: async () => {}}) as unknown as HubApi,
      secrets: {read: async () => 'e'.repeat(64)},
      spawn: spawn as never,
      ownsPort: async () => ({owned: true}),
      standbyEnabled: true,
      injectedSpecs: false,
    })
    handover.useToken('f'.repeat(64))
    await handover.startStandby()
    // A tick before alice's server: its table has no route of hers.
    await handover.tick()
    // Her server starts: the hub adds her route to the proxy, after that tick.
    proxyTable = {...proxyTable, '/user/alice': aliceRoute}

    const replaced = handover.handoverProxy('e'.repeat(64))
    await stopping
    // The handover gave the standby her route; the proxy is stopping: the standby answers now.
    expect(standbyTable['/user/alice']).to.deep.equal(aliceRoute)
    await handover.tick()
    expect(standbyTable['/user/alice'], "alice's route on the standby after a tick in the handover").to.deep.equal(
      aliceRoute,
    )
    releaseStop()
    await replaced
    expect(proxyTable['/user/alice'], 'the new proxy seeded with her route').to.deep.equal(aliceRoute)
    // After the handover a tick reads the new proxy, which has her route: nothing is taken away.
    await handover.tick()
    expect(standbyCalls.filter((call) => call.startsWith('DELETE'))).to.deep.equal([])
  })
})
