/**
 * Bench row `watch`: what one tick of hubctl's server watch costs the hub, with few servers
 * running and many users in the database. The tick lists the servers (ServerWatcher → HubApi
 * listServers: GET /hub/api/users?state=active, pages of 200); beside it, what it did before, every
 * user paged (GET /hub/api/users). Measured with WATCH_USERS users in the hub's database (default
 * 5,000, created through the API: the test's file in jupyterhub_config.d lets hubctl's service
 * create users) and with only the running ones, WATCH_RUNNING servers running (default 2), for both
 * JupyterHubs (Debian's 3.0, the virtualenv's). BENCH_RUNS ticks of each, alternating.
 */
import fsp from 'node:fs/promises'
import path from 'node:path'

import {HubApi, hubApiUrl} from '../src/lib/stack/hubapi.js'
import {SecretStore} from '../src/lib/files/secrets.js'
import {DEBIAN_JUPYTERHUB, VENV_JUPYTERHUB} from '../test/helpers/cli.js'
import {BenchRow, hubctl, timed, until} from './lib.js'
import {LocalHub, withLocalHub} from './supervision.js'

const USERS = Number(process.env.WATCH_USERS ?? 5000)
const RUNNING = Number(process.env.WATCH_RUNNING ?? 2)

async function grantUserCreation(hub: LocalHub): Promise<void> {
  await fsp.writeFile(
    path.join(hub.layout.hubConfigD, '50-watch-bench.py'),
    [
      '# bench watch: hubctl may create the users of a big database.',
      'c.JupyterHub.load_roles.append({"name": "watch-bench", "scopes": ["admin:users"], "services": ["hubctl"]})  # noqa: F821',
      '',
    ].join('\n'),
  )
}

/** POST /hub/api/users in batches of 500. */
async function createUsers(hub: LocalHub, token: string, names: string[]): Promise<void> {
  for (let i = 0; i < names.length; i += 500) {
    const response = await fetch(`${hubApiUrl({ports: hub.ports})}/users`, {
      method: 'POST',
      headers: {Authorization: `token ${token}`, 'Content-Type': 'application/json'},
      body: JSON.stringify({usernames: names.slice(i, i + 500)}),
      signal: AbortSignal.timeout(300_000),
    })
    if (response.status !== 201 && response.status !== 409)
      throw new Error(`creating users answered ${response.status}: ${await response.text()}`)
  }
}

async function measure(api: HubApi, runs: number): Promise<{active: number[]; all: number[]}> {
  const active: number[] = []
  const all: number[] = []
  for (let i = 0; i < runs; i++) {
    let seen = 0
    active.push(await timed(async () => (seen = (await api.listServers()).length)))
    all.push(await timed(() => api.listUsers()))
    if (seen !== RUNNING) throw new Error(`the watch saw ${seen} servers, not ${RUNNING}`)
  }
  return {active, all}
}

export async function watchRows(runs: number): Promise<BenchRow[]> {
  const rows: BenchRow[] = []
  for (const jupyterhub of [DEBIAN_JUPYTERHUB, VENV_JUPYTERHUB]) {
    rows.push(
      ...(await withLocalHub(jupyterhub, async (hub) => {
        await grantUserCreation(hub)
        await hubctl(['start', '--detach', '--prefix', hub.layout.prefix])
        const secrets = new SecretStore(hub.layout)
        const token = await secrets.read('apiToken')
        const api = new HubApi({
          baseUrl: hubApiUrl({ports: hub.ports}),
          token,
          verify: async () => {},
          timeoutMs: 300_000,
        })
        const running = Array.from({length: RUNNING}, (_, i) => `hclwatch-run-${i}`)
        await createUsers(hub, token, running)
        await Promise.all(running.map((user) => api.startServer(user)))
        if (
          (await until(
            async () => (await api.listServers()).filter((s) => s.ready).length === RUNNING,
            600_000,
            1000,
          )) === undefined
        )
          throw new Error(`${RUNNING} servers never became ready`)
        const small = await measure(api, runs)
        await createUsers(
          hub,
          token,
          Array.from({length: USERS}, (_, i) => `hclwatch-${i}`),
        )
        const big = await measure(api, runs)
        await Promise.all(running.map((user) => api.stopServer(user).catch(() => undefined)))
        await Promise.all(running.map((user) => fsp.rm(`/tmp/${user}`, {recursive: true, force: true})))
        const what = (users: number) =>
          `server watch tick, ${users} users in the database, ${RUNNING} running (JupyterHub ${hub.version})`
        return [
          {
            name: what(RUNNING + 1),
            hubctl: small.active,
            other: {name: 'every user paged (hubctl before)', times: small.all},
          },
          {
            name: what(USERS + RUNNING + 1),
            hubctl: big.active,
            other: {name: 'every user paged (hubctl before)', times: big.all},
          },
        ]
      })),
    )
  }
  return rows
}
