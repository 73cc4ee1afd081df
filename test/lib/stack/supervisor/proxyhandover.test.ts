import {expect} from 'chai'
import fs from 'node:fs/promises'

import {readState} from '../../../../src/lib/stack/state.js'
import {seededStoreModule} from '../../../../src/lib/stack/proxy.js'
import {crash, removePrefixes, restarted, settle, startHarness, until} from './harness.js'

/* The proxy's routes across its restarts, through the Supervisor and its harness (harness.ts). */

describe('proxy handover (fake spawn and clock): a restarted proxy gets its routes back', function () {
  this.timeout(60_000)

  after(removePrefixes)

  it('after the proxy restarts, the hub is asked to restore every route (/hub/api/proxy)', async () => {
    const h = await startHarness()
    const proxyApiCalls = () => h.requests.filter((r) => /\/hub\/api\/proxy$/.test(r.url))
    expect(proxyApiCalls(), 'none while the first proxy runs').to.deep.equal([])
    expect(await crash(h, 'proxy', {signal: 'SIGKILL'})).to.equal(500)
    await until('the hub API call', () => proxyApiCalls().length > 0)
    expect(['POST', 'PATCH']).to.include(proxyApiCalls()[0].method)
    // README: the hub learns the proxy's token at runtime, PATCH /hub/api/proxy (a POST only re-checks the routes).
    expect(proxyApiCalls().map((call) => call.method)).to.deep.equal(['PATCH'])
    await until('the route sync in state.json', async () => (await readState(h.layout))?.lastRouteSync?.ok === true)
    await h.finish()
  })

  it('a crashed proxy comes back seeded with the routes of the last health tick, then the hub re-checks them (PATCH)', async () => {
    const routes = {
      '/': {hub: true, target: 'http://127.0.0.1:1', jupyterhub: true},
      '/user/alice': {user: 'alice', target: 'http://127.0.0.1:2', jupyterhub: true},
    }
    const h = await startHarness({realSpecs: true, routes})
    const first = h.latest('proxy')
    expect(first.args, 'the first proxy starts with the default store').to.not.include('--storage-backend')
    expect(first.env.HUBCTL_PROXY_SEED).to.equal(undefined)
    // A health tick reads the proxy's routes: what a crashed proxy restarts with.
    await h.clock.advance(5000)
    await until('the health tick to read the routes', () =>
      h.requests.some((r) => r.url.endsWith(`/api/routes`) && r.method === 'GET'),
    )
    await settle()
    const proxyApiCalls = () => h.requests.filter((r) => /\/hub\/api\/proxy$/.test(r.url))
    await crash(h, 'proxy', {signal: 'SIGKILL'})
    await restarted(h, 'proxy', 2)
    const second = h.latest('proxy')
    expect(second.args).to.include.members(['--storage-backend', seededStoreModule()])
    expect(second.env.HUBCTL_PROXY_SEED).to.equal(h.layout.proxySeed)
    expect(second.env.CONFIGPROXY_AUTH_TOKEN).to.equal('f'.repeat(64))
    expect(JSON.parse(second.seed!)).to.deep.equal({routes})
    await until('the hub API call', () => proxyApiCalls().length > 0)
    expect(proxyApiCalls().map((call) => call.method)).to.deep.equal(['PATCH'])
    await until('the route sync in state.json', async () => (await readState(h.layout))?.lastRouteSync?.ok === true)
    await fs.access(h.layout.proxySeed).then(
      () => expect.fail('the seed file (user names and addresses) is left once the proxy runs'),
      () => {},
    )
    await h.finish()
  })

  it("a new proxy token while the proxy's API does not answer: the new proxy is seeded with the last health tick's routes, not none", async () => {
    const routes = {
      '/': {hub: true, target: 'http://127.0.0.1:1', jupyterhub: true},
      '/user/alice': {user: 'alice', target: 'http://127.0.0.1:2', jupyterhub: true},
    }
    let token = 'f'.repeat(64)
    let routesAnswer = true
    const h = await startHarness({realSpecs: true, routes, proxyToken: () => token, routesAnswer: () => routesAnswer})
    await h.clock.advance(5000)
    await until('the health tick to read the routes', () =>
      h.requests.some((r) => r.url.endsWith(`/api/routes`) && r.method === 'GET'),
    )
    await settle()
    // A rotation wrote a new token; the proxy's API is too busy to list its routes (CI: a loaded
    // machine); the hub restarts, and the proxy is replaced with the token the hub now reads.
    token = 'e'.repeat(64)
    routesAnswer = false
    await crash(h, 'hub', {signal: 'SIGKILL'})
    await restarted(h, 'proxy', 2)
    const second = h.latest('proxy')
    expect(second.env.CONFIGPROXY_AUTH_TOKEN).to.equal(token)
    expect(JSON.parse(second.seed!), "alice's route from her first request").to.deep.equal({routes})
    await h.finish()
  })
})
