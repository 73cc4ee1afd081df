/**
 * Bench row `browser`: seconds from the click on "Sign in" to the cell's output, in Chromium, as a
 * person: the spawn page, JupyterLab, a new notebook from the launcher, print(6*7), 42 shown.
 * With hubctl's stack (https through nginx, the proxy, the hub), and beside it the same JupyterHub
 * and config started alone with its own proxy (plain http on the proxy's port, no nginx). Each
 * run starts with the user's server stopped and a fresh browser.
 */
import fsp from 'node:fs/promises'

import {BrowserSession, runCellInLab, waitForServerPage} from '../test/helpers/browser.js'
import {VENV_JUPYTERHUB} from '../test/helpers/cli.js'
import {BenchRow, hubctl, status, until} from './lib.js'
import {HubApi, hubApiUrl} from '../src/lib/stack/hubapi.js'
import {SecretStore} from '../src/lib/files/secrets.js'
import {AloneHub, LocalHub, stopUserServer, withLocalHub} from './supervision.js'

const USER = 'bench'

async function loginToOutput(origin: string, password: string, acceptSelfSigned: boolean): Promise<number> {
  const session = await BrowserSession.start({acceptSelfSigned})
  try {
    const {page} = session
    await page.goto(`${origin}/hub/login`)
    await page.locator('#username_input').fill(USER)
    await page.locator('#password_input').fill(password)
    const began = process.hrtime.bigint()
    await page.locator('#login_submit').click()
    await waitForServerPage(page, USER, 'lab')
    const output = await runCellInLab(page, 'print(6*7)')
    const ms = Number(process.hrtime.bigint() - began) / 1e6
    if (output !== '42') throw new Error(`the cell printed ${JSON.stringify(output)}`)
    return ms
  } catch (error) {
    await session.keep('bench-browser')
    throw error
  } finally {
    await session.close()
  }
}

export async function browserRows(runs: number): Promise<BenchRow[]> {
  return [
    await withLocalHub(VENV_JUPYTERHUB, async (hub: LocalHub) => {
      const password = (await fsp.readFile(hub.layout.loginPassword, 'utf8')).trim()
      const withHubctl: number[] = []
      const alone: number[] = []
      await hubctl(['start', '--detach', '--prefix', hub.layout.prefix])
      for (let i = 0; i < runs; i++) {
        withHubctl.push(await loginToOutput(`https://localhost:${hub.ports.https}`, password, true))
        await stopUserServer(hub)
      }
      await hubctl(['stop', '--prefix', hub.layout.prefix])
      const other = new AloneHub(hub)
      await other.start()
      try {
        if (
          (await until(
            async () => (await status(`http://127.0.0.1:${hub.ports.proxy}/hub/health`)).status === 200,
            180_000,
            100,
          )) === undefined
        )
          throw new Error('JupyterHub alone never answered /hub/health')
        // The bench started this hub itself (its own child), so its API is asked without hubctl's owner check.
        const secrets = new SecretStore(hub.layout)
        const api = new HubApi({
          baseUrl: hubApiUrl({ports: hub.ports}),
          token: () => secrets.read('apiToken'),
          verify: async () => {},
        })
        for (let i = 0; i < runs; i++) {
          alone.push(await loginToOutput(`http://127.0.0.1:${hub.ports.proxy}`, password, false))
          await api.stopServer(USER)
          if ((await until(async () => (await api.userServers(USER)).length === 0, 60_000, 200)) === undefined)
            throw new Error('the server alone never stopped')
        }
      } finally {
        await other.stop()
        await fsp.rm(`/tmp/${USER}`, {recursive: true, force: true})
      }
      return {
        name: `browser: "Sign in" click → print(6*7) shows 42 in JupyterLab (JupyterHub ${hub.version}, https via nginx)`,
        hubctl: withHubctl,
        other: {name: `jupyterhub ${hub.version} alone, own proxy, http`, times: alone},
      }
    }),
  ]
}
