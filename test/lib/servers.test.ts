import {expect} from 'chai'

import {HubApi} from '../../src/lib/hubapi.js'
import {ProxyRoute, ServerWatcher, findRoute, serversForStatus} from '../../src/lib/servers.js'

/*
 * The ServerWatcher against a fake hub API (the real HubApi client over a fake fetch, so that the
 * requests it makes are the ones the hub would get) and a fake proxy; the clock is a number.
 */

const HUB = 'http://127.0.0.1:18081/hub/api'
const PROXY = 'http://127.0.0.1:18000'
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

function server(user: string, options: {name?: string; idleMs?: number; ready?: boolean; pending?: string | null; startedAt?: number} = {}): [string, RawServer] {
  const name = options.name ?? ''
  return [user, {
    name,
    ready: options.ready ?? true,
    pending: options.pending ?? null,
    url: name ? `/user/${user}/${name}/` : `/user/${user}/`,
    started: iso(options.startedAt ?? T0 - 10 * 3_600_000),
    last_activity: options.idleMs === undefined ? null : iso(T0 - options.idleMs),
  }]
}

type Answer = {status: number; body?: unknown} | {error: string}

/** A fake hub and proxy: users and their servers, what each URL answers, every request made. */
class FakeWorld {
  users = new Map<string, RawServer[]>()
  answers = new Map<string, Answer>()
  requests: Array<{method: string; url: string; auth?: string}> = []
  listFails = false

  add(...servers: Array<[string, RawServer]>): this {
    for (const [user, raw] of servers) this.users.set(user, [...(this.users.get(user) ?? []), raw])
    return this
  }

  /** The user's server answers through the proxy as a Jupyter server does. */
  routeOk(url: string): this {
    this.answers.set(`${PROXY}${url}api`, {status: 200, body: {version: '2.14.0'}})
    return this
  }

  fetch = async (input: string, init: RequestInit = {}): Promise<Response> => {
    const method = init.method ?? 'GET'
    const auth = (init.headers as Record<string, string> | undefined)?.Authorization
    this.requests.push({method, url: input, auth})
    if (input.startsWith(`${HUB}/users?`)) {
      if (this.listFails) return json(500, {message: 'database is locked'})
      const items = [...this.users].map(([name, servers]) => ({name, admin: false, last_activity: null, servers: Object.fromEntries(servers.map((s) => [s.name, s]))}))
      return json(200, {items, _pagination: {offset: 0, limit: 200, total: items.length, next: null}})
    }
    const stop = /^http:\/\/127\.0\.0\.1:18081\/hub\/api\/users\/([^/]+)\/server(?:s\/([^/]+))?$/.exec(input)
    if (stop && method === 'DELETE') return new Response(null, {status: 204})
    const answer = this.answers.get(input)
    if (!answer) return json(404, {message: 'Not Found'})
    if ('error' in answer) throw new TypeError('fetch failed', {cause: {code: answer.error}})
    return json(answer.status, answer.body ?? {})
  }

  deletes(): string[] {
    return this.requests.filter((r) => r.method === 'DELETE').map((r) => r.url.slice(HUB.length))
  }
}

function json(status: number, body: unknown): Response {
  return new Response(JSON.stringify(body), {status, headers: {'Content-Type': 'application/json'}})
}

function watcher(world: FakeWorld, options: {cullIdleMs?: number; routes?: Record<string, ProxyRoute>; clock?: {now(): number}; intervalMs?: number} = {}): ServerWatcher {
  const api = new HubApi({baseUrl: HUB, token: 'hubctl-test-token', fetch: world.fetch})
  return new ServerWatcher({
    api,
    proxyUrl: PROXY,
    routes: options.routes ? async () => options.routes! : undefined,
    clock: options.clock ?? {now: () => T0},
    fetch: world.fetch,
    cullIdleMs: options.cullIdleMs,
    intervalMs: options.intervalMs,
  })
}

describe('ServerWatcher', () => {
  it('reports each server with its idle time and whether its route answers through the proxy', async () => {
    const world = new FakeWorld()
      .add(server('alice', {idleMs: 90_000}), server('bob', {ready: false, pending: 'spawn'}), server('carol', {name: 'gpu', idleMs: 0}))
      .routeOk('/user/alice/')
    world.answers.set(`${PROXY}/user/carol/gpu/api`, {status: 302, body: {}})
    const report = await watcher(world).check()
    expect(report.ok).to.equal(true)
    expect(report.cullIdleSeconds).to.equal(null)
    const byUser = Object.fromEntries(report.servers.map((s) => [s.user, s]))
    expect(byUser.alice).to.include({name: '', url: '/user/alice/', ready: true, idleSeconds: 90, routeOk: true, refusals: 0})
    // Not ready: not probed.
    expect(byUser.bob).to.include({ready: false, pending: 'spawn', routeOk: null, idleSeconds: 36_000})
    // The hub's redirect is not the server answering.
    expect(byUser.carol).to.include({name: 'gpu', routeOk: false})
    expect(byUser.carol.routeProblem).to.match(/the proxy answered 302/)
    // Probes go through the proxy, never to a stop.
    expect(world.requests.filter((r) => r.url.startsWith(PROXY)).map((r) => r.url).sort()).to.deep.equal([`${PROXY}/user/alice/api`, `${PROXY}/user/carol/gpu/api`])
    expect(world.deletes()).to.deep.equal([])
    // Only the hub gets hubctl's token.
    for (const request of world.requests) expect(Boolean(request.auth), request.url).to.equal(request.url.startsWith(HUB))
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
    for (const user of ['idle', 'active', 'edge', 'stopping']) world.routeOk(`/user/${user}/`)
    world.routeOk('/user/named/big/')
    const report = await watcher(world, {cullIdleMs: hour}).check()
    expect(world.deletes().sort()).to.deep.equal(['/users/idle/server', '/users/named/servers/big'])
    expect(report.cullIdleSeconds).to.equal(3600)
    expect(report.actions.map((a) => [a.user, a.name, a.action, a.result])).to.deep.equal([['idle', '', 'culled', 'stopped'], ['named', 'big', 'culled', 'stopped']])
    expect(report.actions[0].reason).to.equal('idle for 2h (more than 1h)')
  })

  it('without a cull time stops nothing, however idle', async () => {
    const world = new FakeWorld().add(server('idle', {idleMs: 30 * 86_400_000})).routeOk('/user/idle/')
    const report = await watcher(world).check()
    expect(world.deletes()).to.deep.equal([])
    expect(report.servers[0].idleSeconds).to.equal(30 * 86_400)
  })

  it('cleans up a server whose port refuses connections three checks in a row, and not before', async () => {
    const world = new FakeWorld().add(server('ghost', {idleMs: 60_000}))
    // Through the proxy: its error page (the target refused); the proxy's table names the target.
    world.answers.set(`${PROXY}/user/ghost/api`, {status: 503})
    world.answers.set('http://127.0.0.1:40001/user/ghost/api', {error: 'ECONNREFUSED'})
    const w = watcher(world, {routes: {'/user/ghost/': {target: 'http://127.0.0.1:40001', user: 'ghost', server_name: ''}}})
    const first = await w.check()
    expect(first.servers[0]).to.include({routeOk: false, refusals: 1})
    expect(first.servers[0].routeProblem).to.match(/refused the connection/)
    expect((await w.check()).servers[0].refusals).to.equal(2)
    expect(world.deletes()).to.deep.equal([])
    const third = await w.check()
    expect(world.deletes()).to.deep.equal(['/users/ghost/server'])
    expect(third.actions).to.have.length(1)
    expect(third.actions[0]).to.include({user: 'ghost', action: 'cleaned-up', result: 'stopped'})
    expect(third.servers[0].pending).to.equal('stop')
  })

  it('never takes a slow, answering or unrouted server for gone', async () => {
    const world = new FakeWorld().add(server('slow'), server('answers'), server('unrouted'), server('noproxy'))
    for (const user of ['slow', 'answers', 'unrouted', 'noproxy']) world.answers.set(`${PROXY}/user/${user}/api`, {status: 503})
    world.answers.set('http://127.0.0.1:40002/user/slow/api', {error: 'UND_ERR_CONNECT_TIMEOUT'})
    world.answers.set('http://127.0.0.1:40003/user/answers/api', {status: 500})
    world.answers.set(`${PROXY}/user/noproxy/api`, {error: 'ECONNREFUSED'})
    const routes = {
      '/user/slow/': {target: 'http://127.0.0.1:40002'},
      '/user/answers/': {target: 'http://127.0.0.1:40003'},
      '/user/noproxy/': {target: 'http://127.0.0.1:40004'},
    }
    world.answers.set('http://127.0.0.1:40004/user/noproxy/api', {status: 200, body: {version: '1'}})
    const w = watcher(world, {routes})
    for (let i = 0; i < 5; i++) await w.check()
    const report = await w.check()
    expect(world.deletes()).to.deep.equal([])
    for (const s of report.servers) expect(s, s.user).to.include({routeOk: false, refusals: 0})
    const problems = Object.fromEntries(report.servers.map((s) => [s.user, s.routeProblem]))
    expect(problems.unrouted).to.match(/no route for \/user\/unrouted\//)
    expect(problems.answers).to.match(/answers 500 at its target/)
    expect(problems.noproxy).to.match(/the proxy did not answer \(ECONNREFUSED\)/)
  })

  it('a refusal count starts again when the server answers or was started anew', async () => {
    const world = new FakeWorld().add(server('flaky'))
    world.answers.set(`${PROXY}/user/flaky/api`, {status: 503})
    world.answers.set('http://127.0.0.1:40005/user/flaky/api', {error: 'ECONNREFUSED'})
    const w = watcher(world, {routes: {'/user/flaky/': {target: 'http://127.0.0.1:40005'}}})
    await w.check()
    await w.check()
    world.routeOk('/user/flaky/')
    expect((await w.check()).servers[0]).to.include({routeOk: true, refusals: 0})
    world.answers.set(`${PROXY}/user/flaky/api`, {status: 503})
    await w.check()
    await w.check()
    // Started again: another server, its count from zero.
    world.users.set('flaky', [server('flaky', {startedAt: T0 - 1000})[1]])
    expect((await w.check()).servers[0].refusals).to.equal(1)
    expect(world.deletes()).to.deep.equal([])
  })

  it('a failed stop is reported, not thrown', async () => {
    const world = new FakeWorld().add(server('idle', {idleMs: 7_200_000})).routeOk('/user/idle/')
    const fetchFn = world.fetch
    world.fetch = async (input, init = {}) => (init.method === 'DELETE' ? json(403, {message: 'Action is not authorized'}) : fetchFn(input, init))
    const report = await watcher(world, {cullIdleMs: 3_600_000}).check()
    expect(report.actions[0]).to.include({user: 'idle', action: 'culled', result: 'failed'})
    expect(report.actions[0].error).to.match(/403/)
  })

  it('when the hub API fails, says so and keeps the previous servers', async () => {
    const world = new FakeWorld().add(server('alice', {idleMs: 0})).routeOk('/user/alice/')
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
    const world = new FakeWorld().add(server('alice')).routeOk('/user/alice/')
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
      at: 'now', ok: true, cullIdleSeconds: 60, actions: [],
      servers: [
        {user: 'a', name: '', url: '/user/a/', ready: true, pending: null, lastActivity: null, started: 's1', idleSeconds: 1, routeOk: false, routeProblem: 'p', refusals: 1},
        {user: 'b', name: '', url: '/user/b/', ready: true, pending: null, lastActivity: null, started: 'older', idleSeconds: 1, routeOk: true, refusals: 0},
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
})
