import {expect} from 'chai'

import {HubApi} from '../../../src/lib/stack/hubapi.js'
import {
  ProxyRoute,
  ServerWatcher,
  type ServerWatcherOptions,
  findRoute,
  serversForStatus,
} from '../../../src/lib/stack/servers.js'

/*
 * The ServerWatcher against a fake hub API (the real HubApi client over a fake fetch, so that the
 * requests it makes are the ones the hub would get), a fake proxy routing table and fake route
 * targets; the clock is a number.
 */

const HUB = 'http://127.0.0.1:18081/hub/api'
/** The proxy's public port: a probe must never go there (the proxy would count it as activity). */
const PROXY_PORT = 18000
const T0 = Date.parse('2026-01-10T12:00:00Z')

interface RawServer {
  name: string
  ready: boolean
  pending?: string | null
  url: string
  started: string | null
  last_activity: string | null
}

function iso(ms: number): string {
  return new Date(ms).toISOString()
}

function server(
  user: string,
  options: {name?: string; idleMs?: number; ready?: boolean; pending?: string | null; startedAt?: number} = {},
): [string, RawServer] {
  const name = options.name ?? ''
  return [
    user,
    {
      name,
      ready: options.ready ?? true,
      pending: options.pending ?? null,
      url: name ? `/user/${user}/${name}/` : `/user/${user}/`,
      started: iso(options.startedAt ?? T0 - 10 * 3_600_000),
      last_activity: options.idleMs === undefined ? null : iso(T0 - options.idleMs),
    },
  ]
}

type Answer = {status: number; body?: unknown} | {error: string}

/** A fake hub and proxy: users and their servers, the proxy's routes, what each URL answers, every request made. */
class FakeWorld {
  users = new Map<string, RawServer[]>()
  table: Record<string, ProxyRoute> = {}
  tableFails = false
  answers = new Map<string, Answer>()
  requests: Array<{method: string; url: string; auth?: string}> = []
  listFails = false
  private nextPort = 40_001

  /** Users in the hub's database without a server (they logged in once). */
  idle(count: number): this {
    for (let i = 0; i < count; i++) this.users.set(`old-${i}`, [])
    return this
  }

  add(...servers: Array<[string, RawServer]>): this {
    for (const [user, raw] of servers) this.users.set(user, [...(this.users.get(user) ?? []), raw])
    return this
  }

  /** A route for `url` in the proxy's table; its target answers `answer` (a Jupyter server's /api by default). */
  route(url: string, answer: Answer = {status: 200, body: {version: '2.14.0'}}): string {
    const target = `http://127.0.0.1:${this.nextPort++}`
    const [, user, name] = /^\/user\/([^/]+)\/(?:([^/]+)\/)?$/.exec(url) ?? []
    this.table[url] = {target, user, server_name: name ?? ''}
    this.answers.set(`${target}${url}api`, answer)
    return target
  }

  routes = async (): Promise<Record<string, ProxyRoute>> => {
    if (this.tableFails) throw new Error("the proxy's API answered 403")
    return this.table
  }

  fetch = async (input: string, init: RequestInit = {}): Promise<Response> => {
    const method = init.method ?? 'GET'
    const auth = (init.headers as Record<string, string> | undefined)?.Authorization
    this.requests.push({method, url: input, auth})
    if (input.startsWith(`${HUB}/users?`)) {
      if (this.listFails) return json(500, {message: 'database is locked'})
      // As JupyterHub 2+ answers: ?state=active keeps users with a server, pages of at most 200.
      const query = new URL(input).searchParams
      const offset = Number(query.get('offset') ?? 0)
      const limit = Math.min(Number(query.get('limit') ?? 50), 200)
      const all = [...this.users]
        .filter(([, servers]) => query.get('state') !== 'active' || servers.length > 0)
        .map(([name, servers]) => ({
          name,
          admin: false,
          last_activity: null,
          servers: Object.fromEntries(servers.map((s) => [s.name, s])),
        }))
      const items = all.slice(offset, offset + limit)
      const next = offset + limit < all.length ? {offset: offset + limit, limit, url: 'x'} : null
      return json(200, {items, _pagination: {offset, limit, total: all.length, next}})
    }
    if (input === `${HUB}/proxy` && method === 'POST') return new Response(null, {status: 200})
    if (input.startsWith(`${HUB}/users/`) && method === 'DELETE') return new Response(null, {status: 204})
    const answer = this.answers.get(input)
    if (!answer) return json(404, {message: 'Not Found'})
    if ('error' in answer) throw new TypeError('fetch failed', {cause: {code: answer.error}})
    return json(answer.status, answer.body ?? {})
  }

  deletes(): string[] {
    return this.requests.filter((r) => r.method === 'DELETE').map((r) => r.url.slice(HUB.length))
  }

  syncs(): number {
    return this.requests.filter((r) => r.method === 'POST' && r.url === `${HUB}/proxy`).length
  }
}

function json(status: number, body: unknown): Response {
  return new Response(JSON.stringify(body), {status, headers: {'Content-Type': 'application/json'}})
}

function watcher(
  world: FakeWorld,
  options: {
    cullIdleMs?: number
    cullMaxAgeMs?: number
    clock?: {now(): number}
    intervalMs?: number
    verifyTarget?: ServerWatcherOptions['verifyTarget']
  } = {},
): ServerWatcher {
  const api = new HubApi({baseUrl: HUB, token: 'hubctl-test-token', verify: async () => {}, fetch: world.fetch})
  return new ServerWatcher({
    api,
    routes: world.routes,
    clock: options.clock ?? {now: () => T0},
    fetch: world.fetch,
    cullIdleMs: options.cullIdleMs,
    cullMaxAgeMs: options.cullMaxAgeMs,
    intervalMs: options.intervalMs,
    verifyTarget: options.verifyTarget,
  })
}

describe('ServerWatcher', () => {
  it("takes a Jupyter server's answer at a route's target only from the server's own process (verifyTarget)", async () => {
    const world = new FakeWorld().add(server('alice'), server('bob'))
    const alice = world.route('/user/alice/')
    const bob = world.route('/user/bob/')
    const asked: string[] = []
    const problem = "port 20001 is held by another program (pid 4242, uid 1001), not by the server's process (pid 17)"
    const report = await watcher(world, {
      verifyTarget: async (info, target) => {
        asked.push(`${info.user} ${target}`)
        return info.user === 'bob' ? problem : undefined
      },
    }).check()
    const byUser = Object.fromEntries(report.servers.map((s) => [s.user, s]))
    expect(byUser.alice).to.include({routeOk: true})
    expect(byUser.bob).to.include({routeOk: false, routeProblem: problem, refusals: 0})
    expect(asked.sort()).to.deep.equal([`alice ${alice}`, `bob ${bob}`])
    // Not "gone": nothing is stopped for it (the squatter is not the server; the hub's poll decides).
    expect(world.deletes()).to.deep.equal([])
  })

  it("reports each server with its idle time and whether it answers at its route's target", async () => {
    const world = new FakeWorld().add(
      server('alice', {idleMs: 90_000}),
      server('bob', {ready: false, pending: 'spawn'}),
      server('carol', {name: 'gpu', idleMs: 0}),
    )
    const alice = world.route('/user/alice/')
    const carol = world.route('/user/carol/gpu/', {status: 302})
    const report = await watcher(world).check()
    expect(report.ok).to.equal(true)
    expect(report.cullIdleSeconds).to.equal(null)
    const byUser = Object.fromEntries(report.servers.map((s) => [s.user, s]))
    expect(byUser.alice).to.include({
      name: '',
      url: '/user/alice/',
      ready: true,
      idleSeconds: 90,
      routeOk: true,
      refusals: 0,
    })
    // Not ready: not probed.
    expect(byUser.bob).to.include({ready: false, pending: 'spawn', routeOk: null, idleSeconds: 36_000})
    // A redirect is not a Jupyter server answering.
    expect(byUser.carol).to.include({name: 'gpu', routeOk: false})
    expect(byUser.carol.routeProblem).to.equal(`its route's target ${carol} answered 302`)
    // Each target asked directly; nothing through the proxy's port, no stop, no route re-check.
    const probes = world.requests
      .filter((r) => !r.url.startsWith(HUB))
      .map((r) => r.url)
      .sort()
    expect(probes).to.deep.equal([`${alice}/user/alice/api`, `${carol}/user/carol/gpu/api`])
    expect(world.requests.filter((r) => r.url.includes(`:${PROXY_PORT}`))).to.deep.equal([])
    expect(world.deletes()).to.deep.equal([])
    expect(world.syncs()).to.equal(0)
    // Only the hub gets hubctl's token.
    for (const request of world.requests)
      expect(Boolean(request.auth), request.url).to.equal(request.url.startsWith(HUB))
  })

  it('with a cull time, DELETEs the servers idle longer than that, and only those', async () => {
    const hour = 3_600_000
    const world = new FakeWorld().add(
      server('idle', {idleMs: 2 * hour}),
      server('named', {name: 'big', idleMs: 3 * hour}),
      server('active', {idleMs: 10 * 60_000}),
      server('edge', {idleMs: hour}),
      server('spawning', {idleMs: 5 * hour, ready: false, pending: 'spawn'}),
      server('stopping', {idleMs: 5 * hour, pending: 'stop'}),
    )
    for (const user of ['idle', 'active', 'edge', 'stopping']) world.route(`/user/${user}/`)
    world.route('/user/named/big/')
    const report = await watcher(world, {cullIdleMs: hour}).check()
    expect(world.deletes().sort()).to.deep.equal(['/users/idle/server', '/users/named/servers/big'])
    expect(report.cullIdleSeconds).to.equal(3600)
    expect(report.actions.map((a) => [a.user, a.name, a.action, a.result])).to.deep.equal([
      ['idle', '', 'culled', 'stopped'],
      ['named', 'big', 'culled', 'stopped'],
    ])
    expect(report.actions[0].reason).to.equal('idle for 2h (more than 1h)')
  })

  it('with a maximum age (hubctl culling without jupyterhub-idle-culler), DELETEs the servers running longer, however active', async () => {
    const hour = 3_600_000
    const world = new FakeWorld().add(
      server('old', {idleMs: 0, startedAt: T0 - 9 * hour}),
      server('young', {idleMs: 0, startedAt: T0 - 7 * hour}),
    )
    for (const user of ['old', 'young']) world.route(`/user/${user}/`)
    const report = await watcher(world, {cullMaxAgeMs: 8 * hour}).check()
    expect(world.deletes()).to.deep.equal(['/users/old/server'])
    expect(report.actions.map((a) => [a.user, a.action, a.reason])).to.deep.equal([
      ['old', 'culled', 'running for 9h (more than 8h)'],
    ])
  })

  it('without a cull time stops nothing, however idle', async () => {
    const world = new FakeWorld().add(server('idle', {idleMs: 30 * 86_400_000}))
    world.route('/user/idle/')
    const report = await watcher(world).check()
    expect(world.deletes()).to.deep.equal([])
    expect(report.servers[0].idleSeconds).to.equal(30 * 86_400)
  })

  it('cleans up a server whose port refuses connections three checks in a row, and not before', async () => {
    const world = new FakeWorld().add(server('ghost', {idleMs: 60_000}))
    const target = world.route('/user/ghost/', {error: 'ECONNREFUSED'})
    const w = watcher(world)
    const first = await w.check()
    expect(first.servers[0]).to.include({routeOk: false, refusals: 1})
    expect(first.servers[0].routeProblem).to.equal(`its route's target ${target} refused the connection`)
    // The hub re-checks its routes (a stale route would be corrected) before anything is stopped.
    expect(world.syncs()).to.equal(1)
    expect((await w.check()).servers[0].refusals).to.equal(2)
    expect(world.deletes()).to.deep.equal([])
    const third = await w.check()
    expect(world.deletes()).to.deep.equal(['/users/ghost/server'])
    expect(world.syncs()).to.equal(3)
    expect(third.actions).to.have.length(1)
    expect(third.actions[0]).to.include({user: 'ghost', action: 'cleaned-up', result: 'stopped'})
    expect(third.actions[0].reason).to.match(/refused 3 checks in a row/)
    expect(third.servers[0].pending).to.equal('stop')
  })

  it('never takes a slow, answering or unrouted server for gone, nor any when the routing table cannot be read', async () => {
    const world = new FakeWorld().add(server('slow'), server('answers'), server('unrouted'), server('other'))
    world.route('/user/slow/', {error: 'UND_ERR_CONNECT_TIMEOUT'})
    world.route('/user/answers/', {status: 500})
    world.route('/user/other/', {status: 200, body: {hello: 'not jupyter'}})
    const w = watcher(world)
    for (let i = 0; i < 5; i++) await w.check()
    const report = await w.check()
    expect(world.deletes()).to.deep.equal([])
    for (const s of report.servers) expect(s, s.user).to.include({routeOk: false, refusals: 0})
    const problems = Object.fromEntries(report.servers.map((s) => [s.user, s.routeProblem]))
    expect(problems.unrouted).to.equal('the proxy has no route for /user/unrouted/')
    expect(problems.answers).to.match(/answered 500$/)
    expect(problems.other).to.match(/answered 200 without a Jupyter server's version$/)
    expect(problems.slow).to.match(/did not answer \(UND_ERR_CONNECT_TIMEOUT\)$/)
    // A table that cannot be read (a rotation under way): unknown, never a refusal.
    world.route('/user/gone/', {error: 'ECONNREFUSED'})
    world.add(server('gone'))
    world.tableFails = true
    for (let i = 0; i < 4; i++) await w.check()
    const blind = await w.check()
    for (const s of blind.servers) expect(s, s.user).to.include({routeOk: null, refusals: 0})
    expect(blind.servers[0].routeProblem).to.match(/routing table could not be read/)
    expect(world.deletes()).to.deep.equal([])
  })

  it('a refusal count starts again when the server answers or was started anew', async () => {
    const world = new FakeWorld().add(server('flaky'))
    const target = world.route('/user/flaky/', {error: 'ECONNREFUSED'})
    const w = watcher(world)
    await w.check()
    await w.check()
    world.answers.set(`${target}/user/flaky/api`, {status: 200, body: {version: '1'}})
    expect((await w.check()).servers[0]).to.include({routeOk: true, refusals: 0})
    world.answers.set(`${target}/user/flaky/api`, {error: 'ECONNREFUSED'})
    await w.check()
    await w.check()
    // Started again: another server, its count from zero.
    world.users.set('flaky', [server('flaky', {startedAt: T0 - 1000})[1]])
    expect((await w.check()).servers[0].refusals).to.equal(1)
    expect(world.deletes()).to.deep.equal([])
  })

  it('a failed stop is reported, not thrown', async () => {
    const world = new FakeWorld().add(server('idle', {idleMs: 7_200_000}))
    world.route('/user/idle/')
    const fetchFn = world.fetch
    world.fetch = async (input, init = {}) =>
      init.method === 'DELETE' ? json(403, {message: 'Action is not authorized'}) : fetchFn(input, init)
    const report = await watcher(world, {cullIdleMs: 3_600_000}).check()
    expect(report.actions[0]).to.include({user: 'idle', action: 'culled', result: 'failed'})
    expect(report.actions[0].error).to.match(/403/)
  })

  it('when the hub API fails, says so and keeps the previous servers', async () => {
    const world = new FakeWorld().add(server('alice', {idleMs: 0}))
    world.route('/user/alice/')
    const w = watcher(world)
    await w.check()
    world.listFails = true
    const report = await w.check()
    expect(report.ok).to.equal(false)
    expect(report.error).to.match(/500/)
    expect(report.servers.map((s) => s.user)).to.deep.equal(['alice'])
  })

  it('tick() checks at most once per interval of the clock', async () => {
    let now = T0
    const world = new FakeWorld().add(server('alice'))
    world.route('/user/alice/')
    const w = watcher(world, {clock: {now: () => now}, intervalMs: 30_000})
    const lists = () => world.requests.filter((r) => r.url.startsWith(`${HUB}/users?`)).length
    expect(await w.tick()).to.not.equal(undefined)
    now += 29_999
    expect(await w.tick()).to.equal(undefined)
    expect(lists()).to.equal(1)
    now += 1
    expect(await w.tick()).to.not.equal(undefined)
    expect(lists()).to.equal(2)
  })
})

describe('servers helpers', () => {
  it('findRoute: by path, else by the user and server name the hub stores in the route', () => {
    const table = {
      '/user/a/': {target: 'http://127.0.0.1:1', user: 'a', server_name: ''},
      'hub.example.org/user/b/x/': {target: 'http://127.0.0.1:2', user: 'b', server_name: 'x'},
    }
    expect(findRoute(table, {user: 'a', name: '', url: '/user/a/'})?.target).to.equal('http://127.0.0.1:1')
    expect(findRoute(table, {user: 'b', name: 'x', url: '/user/b/x/'})?.target).to.equal('http://127.0.0.1:2')
    expect(findRoute(table, {user: 'b', name: '', url: '/user/b/'})).to.equal(undefined)
  })

  it('serversForStatus: the live list with the last probe of the same server', () => {
    const live = [
      {user: 'a', name: '', url: '/user/a/', ready: true, pending: null, lastActivity: null, started: 's1'},
      {user: 'b', name: '', url: '/user/b/', ready: true, pending: null, lastActivity: null, started: 's2'},
    ]
    const report = {
      at: 'now',
      ok: true,
      cullIdleSeconds: 60,
      actions: [],
      servers: [
        {
          user: 'a',
          name: '',
          url: '/user/a/',
          ready: true,
          pending: null,
          lastActivity: null,
          started: 's1',
          idleSeconds: 1,
          routeOk: false,
          routeProblem: 'p',
          refusals: 1,
        },
        {
          user: 'b',
          name: '',
          url: '/user/b/',
          ready: true,
          pending: null,
          lastActivity: null,
          started: 'older',
          idleSeconds: 1,
          routeOk: true,
          refusals: 0,
        },
      ],
    }
    const {servers, watch} = serversForStatus(live, report)
    expect(servers).to.deep.equal([
      {user: 'a', name: '', url: '/user/a/', ready: true, lastActivity: null, routeOk: false, routeProblem: 'p'},
      {user: 'b', name: '', url: '/user/b/', ready: true, lastActivity: null, routeOk: null},
    ])
    expect(watch).to.deep.equal({checkedAt: 'now', ok: true, cullIdleSeconds: 60, actions: []})
    expect(serversForStatus(live, undefined).watch).to.equal(undefined)
  })

  it('asks the hub only for users with a server: a tick costs one request for 3 servers among 5,000 users', async () => {
    const world = new FakeWorld().idle(5000).add(server('alice', {idleMs: 1000}), server('bob'), server('carol'))
    for (const user of ['alice', 'bob', 'carol']) world.route(`/user/${user}/`)
    const report = await watcher(world).check()
    expect(report.ok).to.equal(true)
    expect(report.servers.map((s) => s.user).sort()).to.deep.equal(['alice', 'bob', 'carol'])
    const lists = world.requests.filter((r) => r.url.startsWith(`${HUB}/users?`))
    expect(lists.map((r) => r.url)).to.deep.equal([`${HUB}/users?offset=0&limit=200&state=active`])
  })

  it('follows the pages when more users than one page have servers', async () => {
    const world = new FakeWorld().idle(1000)
    for (let i = 0; i < 450; i++) world.add(server(`u${i}`))
    const report = await watcher(world).check()
    expect(report.servers).to.have.length(450)
    const lists = world.requests.filter((r) => r.url.startsWith(`${HUB}/users?`)).map((r) => r.url)
    expect(lists).to.deep.equal([0, 200, 400].map((offset) => `${HUB}/users?offset=${offset}&limit=200&state=active`))
  })
})
