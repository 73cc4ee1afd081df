/**
 * Bench rows for `hubctl secrets rotate` on a running local-mode stack (nginx, the proxy, Debian's
 * JupyterHub and one user server): how long each rotation takes, and how many requests of a loop
 * through nginx to the user's server failed while the proxy token was rotated.
 */
import {execa} from 'execa'
import fs from 'node:fs/promises'
import https from 'node:https'
import os from 'node:os'
import path from 'node:path'

import {HubApi} from '../src/lib/stack/hubapi.js'
import {Layout} from '../src/lib/config/layout.js'
import {BIN, DEBIAN_JUPYTERHUB, portFlags} from '../test/helpers/cli.js'

export interface RotationRow {
  name: string
  hubctl: number[]
}

function get(url: string, ca: string): Promise<number> {
  return new Promise((resolve, reject) => {
    const request = https.get(url, {ca, agent: false, timeout: 10_000}, (response) => {
      response.resume()
      response.on('end', () => resolve(response.statusCode ?? 0))
    })
    request.on('timeout', () => request.destroy(new Error('timeout')))
    request.on('error', reject)
  })
}

async function hubctl(args: string[]): Promise<void> {
  const result = await execa(process.execPath, [BIN, ...args], {reject: false, stdin: 'ignore'})
  if (result.exitCode !== 0) throw new Error(`hubctl ${args.join(' ')} failed: ${result.stderr}`)
}

async function timed(fn: () => Promise<unknown>): Promise<number> {
  const start = process.hrtime.bigint()
  await fn()
  return Number(process.hrtime.bigint() - start) / 1e6
}

export async function rotationRows(runs: number): Promise<RotationRow[]> {
  const prefix = await fs.mkdtemp(path.join(os.tmpdir(), 'hubctl-bench-rotate-'))
  const layout = new Layout(prefix)
  const {flags, ports} = await portFlags()
  try {
    // Local mode: the simple spawner runs the user's server as the hub's own user (no system user needed).
    await hubctl([
      'init',
      '--local',
      '--prefix',
      prefix,
      '--yes',
      '--admin',
      'bench',
      '--jupyterhub',
      DEBIAN_JUPYTERHUB,
      '--no-systemd',
      '--no-schedule',
      ...flags,
    ])
    await hubctl(['start', '--detach', '--prefix', prefix])
    const ca = await fs.readFile(layout.fullchain, 'utf8')
    const api = HubApi.forLayout(layout, {ports})
    await api.startServer('bench')
    const url = `https://localhost:${ports.https}/user/bench/api`
    for (let i = 0; i < 600 && (await get(url, ca).catch(() => 0)) !== 200; i++)
      await new Promise((resolve) => setTimeout(resolve, 200))

    const proxy: number[] = []
    let requests = 0
    let failed = 0
    for (let i = 0; i < runs; i++) {
      let stop = false
      const loop = (async () => {
        while (!stop) {
          requests++
          if ((await get(url, ca).catch(() => 0)) !== 200) failed++
        }
      })()
      proxy.push(await timed(() => hubctl(['secrets', 'rotate', '--proxy-token', '--prefix', prefix])))
      stop = true
      await loop
    }
    const rows: RotationRow[] = [
      {
        name: `secrets rotate --proxy-token, running (request loop through nginx: ${failed} failed of ${requests})`,
        hubctl: proxy,
      },
    ]
    for (const [flag, what] of [
      ['--cookie-secret', 'hub restart'],
      ['--api-token', 'hub restart, old token revoked'],
      ['--dhparam', 'ffdhe2048, nginx reload'],
    ] as const) {
      const times: number[] = []
      for (let i = 0; i < runs; i++)
        times.push(
          await timed(() =>
            hubctl(['secrets', 'rotate', flag, '--yes', '--dhparam-mode', 'ffdhe2048', '--prefix', prefix]),
          ),
        )
      rows.push({name: `secrets rotate ${flag}, running (${what})`, hubctl: times})
    }
    return rows
  } finally {
    await execa(process.execPath, [BIN, 'stop', '--prefix', prefix], {reject: false, stdin: 'ignore'})
    await fs.rm(prefix, {recursive: true, force: true})
  }
}
