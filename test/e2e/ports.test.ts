// e2e-lane: parallel
import {expect} from 'chai'
import fs from 'node:fs/promises'
import http from 'node:http'
import net from 'node:net'

import {HubApi} from '../../src/lib/stack/hubapi.js'
import {Layout} from '../../src/lib/config/layout.js'
import {SERVER_PORTS} from '../../src/lib/config/settings.js'
import {findRoute, proxyRoutes} from '../../src/lib/stack/servers.js'
import {DEBIAN_JUPYTERHUB, hubctl, portFlags, tempPrefix, testHubInitArgs, VENV_JUPYTERHUB} from '../helpers/cli.js'
import {waitUntil} from '../helpers/processes.js'

/*
 * The port of a user server, with something else on it (issue 15: under load a kernel took the
 * random port handed to a starting server, and the hub took that port's 404 for the server being
 * up). A process holds a port and answers 404 to everything, as another user's server does; the
 * hub's range (init --server-ports) is that port and its neighbour (the hub picks one of the two at
 * random, so it would pick the held one every other time if it did not check). The user's server
 * must still start, on the other port, and answer its own /user/NAME/api through the proxy. Both JupyterHubs; dummy login, SimpleLocalProcessSpawner, so
 * no system user is needed.
 */

/** Two neighbouring ports of hubctl's range that nothing holds now. */
async function freePair(): Promise<number> {
  const free = (port: number) =>
    new Promise<boolean>((resolve) => {
      const server = net.createServer()
      server.once('error', () => resolve(false))
      server.listen(port, () => server.close(() => resolve(true)))
    })
  for (;;) {
    const port = SERVER_PORTS.first + Math.floor(Math.random() * (SERVER_PORTS.last - SERVER_PORTS.first))
    if ((await free(port)) && (await free(port + 1))) return port
  }
}

for (const jupyterhub of [VENV_JUPYTERHUB, DEBIAN_JUPYTERHUB]) {
  describe(`a user server's port held by another process (${jupyterhub})`, function () {
    this.timeout(400_000)

    const user = 'hclports'
    let prefix = ''
    let layout: Layout
    let ports: Awaited<ReturnType<typeof portFlags>>['ports']
    let squatter: http.Server | undefined
    let pair = 0
    let held = 0
    const asked: string[] = []

    before(async () => {
      prefix = await tempPrefix('hubctl-ports')
      layout = new Layout(prefix)
      const portInfo = await portFlags()
      ports = portInfo.ports
      pair = await freePair()
      held = pair
      squatter = http.createServer((request, response) => {
        asked.push(request.url ?? '')
        response.writeHead(404, {'Content-Type': 'application/json'})
        response.end('{"message": "Not Found", "reason": null}')
      })
      await new Promise<void>((resolve) => squatter!.listen(held, '127.0.0.1', resolve))
      const init = await hubctl(
        testHubInitArgs(
          prefix,
          {
            admin: user,
            jupyterhub,
            extra: ['--authenticator', 'dummy', '--spawner', 'simple', '--server-ports', `${pair}-${pair + 1}`],
          },
          portInfo.flags,
        ),
      )
      expect(init.exitCode, init.stderr).to.equal(0)
    })

    after(async function () {
      this.timeout(120_000)
      squatter?.close()
      if (prefix) {
        await hubctl(['stop', '--prefix', prefix, '--json'])
        await fs.rm(prefix, {recursive: true, force: true})
      }
      await fs.rm(`/tmp/${user}`, {recursive: true, force: true})
    })

    it("starts the user's server on a free port, and only its own answer counts", async () => {
      const started = await hubctl(['start', '--detach', '--prefix', prefix, '--json'])
      expect(started.exitCode, started.stderr + started.stdout).to.equal(0)
      const api = HubApi.forLayout(layout, {ports}, {timeoutMs: 60_000})
      await api.startServer(user)
      const server = await waitUntil(
        'the server to be ready',
        async () => {
          const found = (await api.userServers(user)).find((s) => s.ready)
          // A spawn that failed leaves no server: fail at once rather than wait out the tries.
          if (!found && (await api.userServers(user)).length === 0) throw new Error('the spawn failed')
          return found
        },
        {tries: 600, intervalMs: 500},
      )
      const routes = await proxyRoutes(
        `http://127.0.0.1:${ports.proxyApi}`,
        async () => (await fs.readFile(layout.proxyAuthToken, 'utf8')).trim(),
        fetch,
      )()
      const route = findRoute(routes, {user, name: '', url: server.url})
      expect(route?.target, JSON.stringify(route)).to.equal(`http://127.0.0.1:${2 * pair + 1 - held}`)
      const answer = await fetch(`http://127.0.0.1:${ports.proxy}/user/${user}/api`)
      expect(answer.status).to.equal(200)
      expect(((await answer.json()) as {version?: unknown}).version).to.be.a('string')
      expect(asked, 'the held port was never taken for the server').to.deep.equal([])
    })
  })
}
