/**
 * Memory per student: a user's server and one idle kernel, RSS and PSS (/proc/PID/smaps_rollup),
 * on a local-mode hub of the venv's JupyterHub 6.1.1 and JupyterLab 4.6.6, with JupyterLab as
 * hubctl starts it and as pip installs it (spawn.ts's labDefaults: LAB_SERVER_ARGS out, the
 * packages of python/unused.txt back), alternating, MEMORY_RUNS pairs (default 3). What to give
 * --mem-limit: a student's server and kernel before any of their own data.
 *   npm run build && node --import tsx --no-warnings bench/memory.ts
 */
import fsp from 'node:fs/promises'
import http from 'node:http'
import path from 'node:path'

import {VENV_JUPYTERHUB} from '../test/helpers/cli.js'
import {hubctl, sleep, until} from './lib.js'
import {labDefaults} from './spawn.js'
import {LocalHub, stopUserServer, withLocalHub} from './supervision.js'

const USER = 'bench'
const RUNS = Number(process.env.MEMORY_RUNS ?? 3)
const IDLE_MS = 5000

interface Usage {
  rss: number
  pss: number
}
interface Sample {
  server: Usage
  kernel: Usage
}

async function usageOf(pid: number): Promise<Usage> {
  const text = await fsp.readFile(`/proc/${pid}/smaps_rollup`, 'utf8')
  const kb = (field: string) => Number(new RegExp(`^${field}:\\s+(\\d+) kB`, 'm').exec(text)?.[1] ?? NaN) * 1024
  return {rss: kb('Rss'), pss: kb('Pss')}
}

/** The server's and the kernel's pids: processes whose environment names this hub's API and the user. */
async function processes(hub: LocalHub): Promise<{server?: number; kernel?: number}> {
  const found: {server?: number; kernel?: number} = {}
  for (const name of await fsp.readdir('/proc')) {
    if (!/^\d+$/.test(name)) continue
    const environ = await fsp.readFile(`/proc/${name}/environ`, 'utf8').catch(() => '')
    if (
      !environ.includes(`127.0.0.1:${hub.ports.hub}/hub/api`) ||
      !environ.split('\0').includes(`JUPYTERHUB_USER=${USER}`)
    )
      continue
    const cmdline = await fsp.readFile(`/proc/${name}/cmdline`, 'utf8').catch(() => '')
    if (cmdline.includes('ipykernel_launcher')) found.kernel = Number(name)
    else if (cmdline.includes('jupyterhub-singleuser')) found.server = Number(name)
  }
  return found
}

async function userToken(hub: LocalHub): Promise<string> {
  const apiToken = (await fsp.readFile(hub.layout.apiToken, 'utf8')).trim()
  const response = await fetch(`http://127.0.0.1:${hub.ports.hub}/hub/api/users/${USER}/tokens`, {
    method: 'POST',
    headers: {Authorization: `token ${apiToken}`, 'Content-Type': 'application/json'},
    body: JSON.stringify({note: 'hubctl memory bench', expires_in: 3600, scopes: [`access:servers!user=${USER}`]}),
  })
  const body = (await response.json()) as {token?: string; message?: string}
  if (!body.token) throw new Error(`no token for ${USER}: ${response.status} ${body.message}`)
  return body.token
}

async function measure(hub: LocalHub): Promise<Sample> {
  await hub.api.startServer(USER)
  const base = `http://127.0.0.1:${hub.ports.proxy}/user/${USER}/api`
  const up = await until(async () => (await fetch(base).catch(() => undefined))?.status === 200, 180_000, 200)
  if (up === undefined) throw new Error(`the server of ${USER} never answered`)
  const token = await userToken(hub)
  // node:http, not fetch: fetch's Sec-Fetch-Mode: cors makes the server ask for an XSRF token.
  const status = await new Promise<number>((resolve, reject) => {
    const request = http.request(
      `${base}/kernels`,
      {method: 'POST', headers: {Authorization: `token ${token}`, 'Content-Type': 'application/json'}},
      (response) => {
        response.resume()
        resolve(response.statusCode ?? 0)
      },
    )
    request.on('error', reject)
    request.end(JSON.stringify({name: 'python3'}))
  })
  if (status !== 201) throw new Error(`creating a kernel was answered ${status}`)
  let pids: {server?: number; kernel?: number} = {}
  await until(async () => Boolean((pids = await processes(hub)).kernel && pids.server), 60_000, 200)
  // Idle: the kernel has started and answered the server's first requests.
  await sleep(IDLE_MS)
  const sample = {server: await usageOf(pids.server!), kernel: await usageOf(pids.kernel!)}
  await stopUserServer(hub)
  return sample
}

const mb = (bytes: number) => `${(bytes / 2 ** 20).toFixed(0)} MB`
const median = (values: number[]) => [...values].sort((a, b) => a - b)[Math.floor(values.length / 2)]

await withLocalHub(VENV_JUPYTERHUB, async (hub) => {
  await fsp.mkdir(hub.layout.hubConfigD, {recursive: true})
  await fsp.writeFile(
    path.join(hub.layout.hubConfigD, '90-bench-tokens.py'),
    [
      'c.JupyterHub.load_roles.append({  # noqa: F821',
      '    "name": "bench-tokens",',
      `    "scopes": ["tokens!user=${USER}", "access:servers!user=${USER}"],`,
      '    "services": ["hubctl"],',
      '})',
      '',
    ].join('\n'),
  )
  await hubctl(['start', '--detach', '--prefix', hub.layout.prefix])
  const samples: Record<string, Sample[]> = {hubctl: [], pip: []}
  for (let i = 0; i < RUNS; i++) {
    for (const pip of i % 2 ? [true, false] : [false, true]) {
      await labDefaults(hub, pip)
      const sample = await measure(hub)
      samples[pip ? 'pip' : 'hubctl'].push(sample)
      process.stderr.write(
        `bench: memory ${pip ? 'as pip installs it' : 'as hubctl starts it'} run ${i + 1}: server ${mb(sample.server.rss)} RSS ${mb(sample.server.pss)} PSS, kernel ${mb(sample.kernel.rss)} RSS ${mb(sample.kernel.pss)} PSS\n`,
      )
    }
  }
  console.log(`memory per student (JupyterHub ${hub.version}, one idle kernel), medians of ${RUNS}`)
  console.log('| JupyterLab | server RSS | server PSS | kernel RSS | kernel PSS | server + kernel PSS |')
  console.log('|---|---|---|---|---|---|')
  for (const [label, list] of Object.entries(samples)) {
    const m = (f: (s: Sample) => number) => mb(median(list.map(f)))
    console.log(
      `| ${label === 'pip' ? 'as pip installs it' : 'as hubctl starts it'} | ${m((s) => s.server.rss)} | ${m((s) => s.server.pss)} | ${m((s) => s.kernel.rss)} | ${m((s) => s.kernel.pss)} | ${m((s) => s.server.pss + s.kernel.pss)} |`,
    )
  }
})
