// e2e-lane: parallel
import {expect} from 'chai'
import {execa} from 'execa'
import {randomBytes, randomUUID} from 'node:crypto'
import fs from 'node:fs/promises'
import path from 'node:path'

import {HubApi} from '../../src/lib/stack/hubapi.js'
import {Layout} from '../../src/lib/config/layout.js'
import {findRoute, proxyRoutes} from '../../src/lib/stack/servers.js'
import {
  checkServersEvery,
  DEBIAN_JUPYTERHUB,
  hubctl,
  initTestHub,
  portFlags,
  tempPrefix,
  VENV_JUPYTERHUB,
} from '../helpers/cli.js'
import {KernelMsg, execute, httpsJson, openChannel, stdoutOf as printed} from '../helpers/kernel.js'
import {waitUntil} from '../helpers/processes.js'
import {addUser, removeUser, testUserName} from '../helpers/users.js'

/*
 * A notebook cell, end to end: a user's server from the default LocalProcessSpawner (root, a
 * system user made for the test), a kernel created through nginx's https port, and print(6*7)
 * executed over wss://…/api/kernels/ID/channels (Jupyter messaging protocol 5.3, JSON frames),
 * its stream output read back. nginx's self-signed certificate is trusted by passing it as the CA,
 * never by turning verification off. Both JupyterHubs: Debian's 3.0 (classic notebook server) and
 * the virtualenv's current one (jupyter_server with JupyterLab).
 *
 * The token: hubctl's service may not issue tokens (its scopes are proxy, list:users,
 * read:users:activity, read:servers, servers), so the test grants it, in jupyterhub_config.d (the
 * operator's additions), `tokens` and `access:servers` for this one user only; it then asks the
 * hub for a token of the user limited to access:servers (POST /hub/api/users/NAME/tokens). Tokens
 * travel in headers only, never in a URL or argv.
 */

/** The text the code printed on stdout, after an execute_reply with status ok. */
function stdoutOf(replies: KernelMsg[]): string {
  const reply = replies.find((m) => m.header.msg_type === 'execute_reply')
  expect(reply?.content.status, JSON.stringify(replies.map((m) => m.header.msg_type))).to.equal('ok')
  return printed(replies)
}

interface StatusServers {
  servers: Array<{user: string; name: string; ready: boolean; routeOk: boolean | null}>
  serverWatch?: {checkedAt: string; ok: boolean; cullIdleSeconds: number | null}
}

for (const jupyterhub of [DEBIAN_JUPYTERHUB, VENV_JUPYTERHUB]) {
  describe(`a kernel over wss through nginx with ${jupyterhub}`, function () {
    this.timeout(300_000)

    const user = testUserName()
    let uid = -1
    let prefix = ''
    let layout: Layout
    let ports: Awaited<ReturnType<typeof portFlags>>['ports']
    let api: HubApi
    let ca = ''
    let userToken = ''
    let kernelId = ''

    before(async function () {
      uid = await addUser(user)
      const singleuser = path.join(path.dirname(jupyterhub), 'jupyterhub-singleuser')
      const canRun = await execa('runuser', ['-u', user, '--', singleuser, '--version'], {reject: false, cwd: '/'})
      expect(canRun.exitCode, `${user} cannot run ${singleuser}: ${canRun.stderr}`).to.equal(0)
      prefix = await tempPrefix('hubctl-kernel')
      layout = new Layout(prefix)
      ports = await initTestHub(prefix, {admin: user, allowUsers: [user], jupyterhub})
      // The status test below waits for the supervisor's check of the servers: every 5 s, not 30.
      await checkServersEvery(layout.settings, 5)
      // The test's own grant (see above): tokens and server access for this one user. JupyterHub
      // 3.0 checks a service's filtered `tokens!user=` against the service instead of the user,
      // and refuses: there, the (throwaway) test hub grants `tokens` unfiltered.
      const tokensScope = jupyterhub === DEBIAN_JUPYTERHUB ? 'tokens' : `tokens!user=${user}`
      await fs.writeFile(
        path.join(layout.hubConfigD, '90-kernel-test.py'),
        [
          '# hubctl kernel e2e test: lets the hubctl service issue a token for the test user.',
          'c.JupyterHub.load_roles.append({',
          `    "name": "kernel-test-tokens",`,
          `    "scopes": ["${tokensScope}", "access:servers!user=${user}"],`,
          '    "services": ["hubctl"],',
          '})',
          '',
        ].join('\n'),
        {mode: 0o644},
      )
      const started = await hubctl(['start', '--detach', '--prefix', prefix, '--json'])
      expect(started.exitCode, started.stderr + started.stdout).to.equal(0)
      // A generous client timeout: a spawn request is answered after the hub's slow_spawn_timeout (10 s), later under load.
      api = HubApi.forLayout(layout, {ports}, {timeoutMs: 60_000})
      ca = await fs.readFile(layout.fullchain, 'utf8')
    })

    after(async function () {
      this.timeout(120_000)
      if (prefix) await hubctl(['stop', '--prefix', prefix, '--json'])
      if (uid >= 0) {
        await removeUser(user, uid)
      }
      if (prefix) await fs.rm(prefix, {recursive: true, force: true})
    })

    /**
     * The user's server and a token for it, made once by whichever test needs them first: each
     * test can run alone (mocha --grep) or in any order.
     */
    let made: Promise<void> | undefined
    const serverAndToken = () =>
      (made ??= (async () => {
        const outcome = await api.startServer(user)
        expect(['started', 'pending']).to.include(outcome)
        await waitUntil(
          'the server to be ready',
          async () => (await api.userServers(user)).find((s) => s.name === '' && s.ready),
          {tries: 600, intervalMs: 200},
        )
        const apiToken = (await fs.readFile(layout.apiToken, 'utf8')).trim()
        const response = await fetch(`http://127.0.0.1:${ports.hub}/hub/api/users/${user}/tokens`, {
          method: 'POST',
          headers: {Authorization: `token ${apiToken}`, 'Content-Type': 'application/json'},
          body: JSON.stringify({note: 'hubctl kernel e2e', expires_in: 3600, scopes: [`access:servers!user=${user}`]}),
        })
        const body = (await response.json()) as {token?: string; message?: string}
        expect(response.status, body.message).to.equal(201)
        expect(body.token).to.match(/^\S{16,}$/)
        userToken = body.token!
      })())

    /**
     * POST …/api/kernels through nginx. Retried only while nginx answers 502 (the proxy's port
     * refused it for an instant) or the request fails to connect; any other answer (a refusal, the
     * server's error, the hub's "not running" page) fails the test at once, with the body.
     */
    const createKernel = async (base: string): Promise<{id: string; name: string}> =>
      waitUntil(
        'the kernel to be created',
        async () => {
          const created = await httpsJson(`${base}/kernels`, {
            method: 'POST',
            ca,
            token: userToken,
            body: {name: 'python3'},
          })
          const detail = `POST kernels answered ${created.status}: ${JSON.stringify(created.body).slice(0, 300)}`
          if (created.status === 502) throw new Error(detail)
          expect(created.status, detail).to.equal(201)
          return created.body as {id: string; name: string}
        },
        {tries: 10, intervalMs: 1000},
      )

    let kernelMade: Promise<void> | undefined
    const kernelOnce = () =>
      (kernelMade ??= (async () => {
        await serverAndToken()
        const kernel = await createKernel(`https://localhost:${ports.https}/user/${user}/api`)
        kernelId = kernel.id
      })())

    it('the user gets a server, and a token for it from the hub API', async () => {
      await serverAndToken()
      expect(userToken).to.match(/^\S{16,}$/)
    })

    it('creates a kernel through nginx over https (the certificate checked against its own file)', async () => {
      await serverAndToken()
      expect(userToken, 'the previous test made the token').to.not.equal('')
      const base = `https://localhost:${ports.https}/user/${user}/api`
      // Without a token the server refuses (it is the server answering, not a route to the hub).
      const anonymous = await httpsJson(`${base}/kernels`, {ca})
      expect(anonymous.status).to.be.oneOf([302, 403])
      const kernel = await createKernel(base)
      expect(kernel.name).to.equal('python3')
      expect(kernel.id).to.match(/^[0-9a-f-]{36}$/)
      kernelMade ??= Promise.resolve()
      kernelId ||= kernel.id
      const listed = await httpsJson(`${base}/kernels`, {ca, token: userToken})
      expect(listed.status).to.equal(200)
      expect((listed.body as Array<{id: string}>).map((k) => k.id)).to.include(kernel.id)
    })

    it('runs print(6*7) over wss and reads 42 from its stream', async () => {
      await kernelOnce()
      expect(kernelId, 'the previous test made the kernel').to.not.equal('')
      const replies = await execute(`wss://localhost:${ports.https}/user/${user}/api/kernels/${kernelId}/channels`, {
        ca,
        headers: {Authorization: `token ${userToken}`},
        code: 'print(6*7)',
      })
      const types = replies.map((m) => m.header.msg_type)
      expect(types, JSON.stringify(types)).to.include.members(['execute_reply', 'stream'])
      const reply = replies.find((m) => m.header.msg_type === 'execute_reply')!
      expect(reply.content.status).to.equal('ok')
      const streams = replies.filter((m) => m.header.msg_type === 'stream')
      expect(streams.map((m) => m.content.name)).to.deep.equal(['stdout'])
      expect(streams.map((m) => m.content.text).join('')).to.equal('42\n')
    })

    it("uploads a 3 MiB file through nginx in JupyterLab's chunks (1 MiB, base64 in JSON) and saves a notebook larger than the hub's body limit", async () => {
      await serverAndToken()
      expect(userToken, 'the first test made the token').to.not.equal('')
      const base = `https://localhost:${ports.https}/user/${user}/api/contents`
      const data = randomBytes(3 * 1024 * 1024)
      const chunkSize = 1024 * 1024
      let largest = 0
      for (let offset = 0, chunk = 1; offset < data.length; offset += chunkSize, chunk++) {
        const last = offset + chunkSize >= data.length
        const body = {
          type: 'file',
          format: 'base64',
          name: 'upload.bin',
          path: 'upload.bin',
          chunk: last ? -1 : chunk,
          content: data.subarray(offset, offset + chunkSize).toString('base64'),
        }
        largest = Math.max(largest, Buffer.byteLength(JSON.stringify(body)))
        const put = await httpsJson(`${base}/upload.bin`, {method: 'PUT', ca, token: userToken, body})
        expect(put.status, `chunk ${chunk}: ${JSON.stringify(put.body).slice(0, 200)}`).to.be.oneOf([200, 201])
      }
      console.log(`      measured: one upload chunk of JupyterLab is ${largest} bytes of JSON`)
      const read = await httpsJson(`${base}/upload.bin?content=1&format=base64&type=file`, {ca, token: userToken})
      expect(read.status).to.equal(200)
      expect(
        Buffer.from((read.body as {content: string}).content, 'base64').equals(data),
        'the file read back is the one uploaded',
      ).to.equal(true)
      const notebook = {
        type: 'notebook',
        content: {
          nbformat: 4,
          nbformat_minor: 5,
          metadata: {},
          cells: [{cell_type: 'markdown', id: 'big', metadata: {}, source: 'x'.repeat(2 * 1024 * 1024)}],
        },
      }
      const saved = await httpsJson(`${base}/big.ipynb`, {method: 'PUT', ca, token: userToken, body: notebook})
      expect(saved.status, JSON.stringify(saved.body).slice(0, 200)).to.be.oneOf([200, 201])
    })

    it("the proxy's routing table names the server's target (where hubctl checks each server)", async () => {
      await serverAndToken()
      const routes = await proxyRoutes(
        `http://127.0.0.1:${ports.proxyApi}`,
        async () => (await fs.readFile(layout.proxyAuthToken, 'utf8')).trim(),
        fetch,
      )()
      const route = findRoute(routes, {user, name: '', url: `/user/${user}/`})
      expect(route?.target, JSON.stringify(routes)).to.match(/^http:\/\/127\.0\.0\.1:\d+$/)
      const direct = await fetch(`${route!.target}/user/${user}/api`)
      expect(direct.status).to.equal(200)
      expect(((await direct.json()) as {version?: unknown}).version).to.be.a('string')
    })

    it('hubctl status shows the server with its route checked by the supervisor', async () => {
      await serverAndToken()
      // The supervisor checks the servers every 5 s here: poll (bounded) until it has seen this one.
      const status = await waitUntil(
        'the supervisor to have probed the route',
        async () => {
          const result = await hubctl(['status', '--prefix', prefix, '--json'])
          const parsed = JSON.parse(result.stdout) as StatusServers
          return parsed.servers.find((s) => s.user === user)?.routeOk === null ? undefined : parsed
        },
        {tries: 60, intervalMs: 1000},
      )
      expect(status.servers).to.have.length(1)
      expect(status.servers[0]).to.include({user, name: '', ready: true, routeOk: true})
      // Idle servers: jupyterhub-idle-culler (a service of the hub) where its Python has it; beside
      // Debian's JupyterHub there is none, and hubctl's supervisor culls after the default hour.
      expect(status.serverWatch).to.include({
        ok: true,
        cullIdleSeconds: jupyterhub === DEBIAN_JUPYTERHUB ? 3600 : null,
      })
      const text = await hubctl(['status', '--prefix', prefix])
      expect(text.stdout).to.match(new RegExp(`${user}\\s+ready\\s+/user/${user}/.*route ok`))
    })

    it('a kernel websocket held open across `hubctl restart` and `secrets rotate --proxy-token`: it survives, or reconnects as JupyterLab does to the same kernel, whose state is kept', async () => {
      expect(kernelId, 'an earlier test made the kernel').to.not.equal('')
      const url = `wss://localhost:${ports.https}/user/${user}/api/kernels/${kernelId}/channels`
      // JupyterLab's client id, kept across its reconnects.
      const session = randomUUID()
      let channel = await openChannel(url, {ca, headers: {Authorization: `token ${userToken}`}, session})
      expect(stdoutOf(await channel.execute('x = 41\nprint("set")'))).to.equal('set\n')
      for (const [what, args] of [
        ['hubctl restart', ['restart', '--prefix', prefix, '--json']],
        ['secrets rotate --proxy-token', ['secrets', 'rotate', '--proxy-token', '--prefix', prefix, '--json']],
      ] as const) {
        const result = await hubctl([...args])
        expect(result.exitCode, `${what}: ${result.stderr}${result.stdout}`).to.equal(0)
        // On the socket held open; when it closed (before or while asked), JupyterLab's
        // KernelConnection reconnects, unasked: up to 7 times to the same kernel id with the same
        // client id, waiting 1, 2, 4… s between them.
        let outcome = 'survived'
        let replies = channel.closed ? [] : await channel.execute('print(x + 1)')
        if (channel.closed && !replies.some((m) => m.header.msg_type === 'execute_reply')) {
          outcome = 'was closed, and the client reconnected'
          let attempt = 0
          for (;;) {
            try {
              channel = await openChannel(url, {ca, headers: {Authorization: `token ${userToken}`}, session})
              break
            } catch (error) {
              expect(attempt, `${what}: reconnecting to the kernel: ${(error as Error).message}`).to.be.lessThan(6)
              await new Promise((resolve) => setTimeout(resolve, 1000 * 2 ** attempt++))
            }
          }
          replies = await channel.execute('print(x + 1)')
        }
        console.log(`      ${what}: the kernel websocket ${outcome}`)
        // The same kernel: the variable set before is still there.
        expect(stdoutOf(replies), `${what}: the same kernel answers`).to.equal('42\n')
      }
      channel.close()
      const listed = await httpsJson(`https://localhost:${ports.https}/user/${user}/api/kernels`, {
        ca,
        token: userToken,
      })
      expect((listed.body as Array<{id: string}>).map((k) => k.id)).to.include(kernelId)
    })
  })
}
