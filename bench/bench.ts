/**
 * npm run bench: medians and ratios of hubctl against what an operator would use otherwise, on
 * this machine, in one run. BENCH_RUNS sets the number of runs of each row (default 5).
 */
import {execa} from 'execa'
import fs from 'node:fs/promises'
import os from 'node:os'
import path from 'node:path'

import {BIN, DEBIAN_JUPYTERHUB, portFlags} from '../test/helpers/cli.js'
import {initPebbleRows, renewRows} from './acme.js'
import {browserRows} from './browser.js'
import {lectureRows} from './lecture.js'
import {rotationRows} from './rotation.js'
import {spawnRows} from './spawn.js'
import {watchRows} from './watch.js'
import {usersSyncRows} from './users.js'
import {backupRows} from './backup.js'
import {envAddRows} from './env.js'
import {proxyKillRows, startRows} from './supervision.js'

const RUNS = Number(process.env.BENCH_RUNS ?? 5)
/** Rows whose runs last long (JupyterHub alone may take minutes to bring a route back): BENCH_RUNS_SLOW, default 3. */
const RUNS_SLOW = Number(process.env.BENCH_RUNS_SLOW ?? 3)
const only = process.argv.slice(2)

interface Row {
  name: string
  hubctl: number[]
  other?: {name: string; times: number[]}
}

async function timed(fn: () => Promise<unknown>): Promise<number> {
  const start = process.hrtime.bigint()
  await fn()
  return Number(process.hrtime.bigint() - start) / 1e6
}

function median(values: number[]): number {
  const sorted = [...values].sort((a, b) => a - b)
  const mid = Math.floor(sorted.length / 2)
  return sorted.length % 2 ? sorted[mid] : (sorted[mid - 1] + sorted[mid]) / 2
}

async function run(command: string, args: string[]): Promise<void> {
  const result = await execa(command, args, {reject: false, stdin: 'ignore'})
  if (result.exitCode !== 0) throw new Error(`${command} ${args.join(' ')} failed: ${result.stderr}`)
}

async function tmp(): Promise<string> {
  return fs.mkdtemp(path.join(os.tmpdir(), 'hubctl-bench-'))
}

async function initOnce(dhparam: string): Promise<number> {
  const prefix = await tmp()
  const {flags} = await portFlags()
  try {
    return await timed(() =>
      run(process.execPath, [
        BIN,
        'init',
        '--prefix',
        prefix,
        '--yes',
        '--domain',
        'localhost',
        '--admin',
        'alice',
        '--tls',
        'self-signed',
        '--dhparam',
        dhparam,
        '--jupyterhub',
        DEBIAN_JUPYTERHUB,
        ...flags,
      ]),
    )
  } finally {
    await fs.rm(prefix, {recursive: true, force: true})
  }
}

const rows: Record<string, () => Promise<Row | Row[]>> = {
  async version() {
    const hubctl: number[] = []
    const other: number[] = []
    for (let i = 0; i < RUNS; i++) {
      hubctl.push(await timed(() => run(process.execPath, [BIN, '--version'])))
      other.push(await timed(() => run(process.execPath, ['-e', '0'])))
    }
    return {name: 'hubctl --version (cold start)', hubctl, other: {name: 'node -e 0', times: other}}
  },
  async dhparam() {
    const {generateDhparam} = await import('../src/lib/tls/dhparam.js')
    const hubctl: number[] = []
    const other: number[] = []
    const dir = await tmp()
    // CPU seconds too (all threads of this process; openssl's from /proc/self/stat cutime+cstime),
    // since two other engineers' tests may share the cores.
    const cpu = {hubctl: [] as number[], other: [] as number[]}
    const childCpu = async () => {
      const fields = (await fs.readFile('/proc/self/stat', 'utf8')).split(') ')[1].split(' ')
      return (Number(fields[13]) + Number(fields[14])) / 100
    }
    for (let i = 0; i < RUNS; i++) {
      const own = process.cpuUsage()
      hubctl.push(await timed(() => generateDhparam(2048)))
      const used = process.cpuUsage(own)
      cpu.hubctl.push((used.user + used.system) / 1e6)
      const children = await childCpu()
      other.push(await timed(() => run('openssl', ['dhparam', '-out', path.join(dir, 'dh.pem'), '2048'])))
      cpu.other.push((await childCpu()) - children)
      process.stderr.write(
        `bench: dhparam run ${i + 1}: hubctl ${fmt(hubctl[i])} (${cpu.hubctl[i].toFixed(1)} CPU-s), openssl ${fmt(other[i])} (${cpu.other[i].toFixed(1)} CPU-s), load ${os.loadavg()[0].toFixed(2)}\n`,
      )
    }
    const cpuRange = (t: number[]) =>
      `${median(t).toFixed(1)} (${Math.min(...t).toFixed(1)}-${Math.max(...t).toFixed(1)})`
    process.stderr.write(
      `bench: dhparam CPU seconds, medians (min-max): hubctl ${cpuRange(cpu.hubctl)}, openssl ${cpuRange(cpu.other)}\n`,
    )
    await fs.rm(dir, {recursive: true, force: true})
    return {name: 'DH parameters, 2048 bits', hubctl, other: {name: 'openssl dhparam 2048', times: other}}
  },
  async 'init-ffdhe'() {
    const hubctl: number[] = []
    for (let i = 0; i < RUNS; i++) hubctl.push(await initOnce('ffdhe2048'))
    return {name: 'hubctl init --tls self-signed --dhparam ffdhe2048', hubctl}
  },
  async 'init-generate'() {
    const hubctl: number[] = []
    for (let i = 0; i < RUNS; i++) hubctl.push(await initOnce('generate'))
    return {name: 'hubctl init --tls self-signed --dhparam generate', hubctl}
  },
  async rotate() {
    return rotationRows(RUNS)
  },
  async renew() {
    return renewRows(RUNS)
  },
  async 'init-pebble'() {
    return initPebbleRows(RUNS)
  },
  async start() {
    return startRows(RUNS)
  },
  async 'proxy-kill'() {
    return proxyKillRows(RUNS_SLOW)
  },
  async browser() {
    return browserRows(RUNS)
  },
  /** init on a machine without hubctl's JupyterHub: the virtualenv is built each run (pip's cache as the machine has it). */
  async 'init-venv'() {
    const total: number[] = []
    const software: number[] = []
    for (let i = 0; i < RUNS_SLOW; i++) {
      const prefix = await tmp()
      const {flags} = await portFlags()
      try {
        let output = ''
        total.push(
          await timed(async () => {
            const result = await execa(
              process.execPath,
              [BIN, 'init', '--local', '--yes', '--prefix', prefix, ...flags],
              {reject: false, stdin: 'ignore', all: true},
            )
            output = String(result.all)
            if (result.exitCode !== 0) throw new Error(`init --local failed: ${output}`)
          }),
        )
        // The reporter's own line: "ok Software (…): … (42.3s)".
        software.push(Number(/^ok Software.*\((\d+(?:\.\d+)?)s\)$/m.exec(output)?.[1] ?? Number.NaN) * 1000)
      } finally {
        await fs.rm(prefix, {recursive: true, force: true})
      }
    }
    return [
      {name: "init --local --yes on a machine without hubctl's JupyterHub (builds the virtualenv)", hubctl: total},
      {
        name: '  of which the software step: virtualenv + pip install of the pinned JupyterHub and JupyterLab',
        hubctl: software,
      },
    ]
  },
  async spawn() {
    return spawnRows(RUNS)
  },
  /** A class logging in at once (LECTURE_USERS, LECTURE_WINDOW): one run, medians over the users. */
  async lecture() {
    return lectureRows()
  },
  /** The server watch's tick with many users in the database (WATCH_USERS) and few running (WATCH_RUNNING). */
  async watch() {
    return watchRows(RUNS)
  },
  async 'users-sync'() {
    return usersSyncRows(RUNS)
  },
  /** backup --include-homes and restore of BENCH_BACKUP_USERS homes of 10 MB: BENCH_RUNS_BACKUP runs (default 1). */
  async backup() {
    return backupRows(Number(process.env.BENCH_RUNS_BACKUP ?? 1))
  },
  /** `env add` of three packages against pip install of the same into a copy by hand (ENV_PACKAGES). */
  async 'env-add'() {
    return envAddRows(RUNS)
  },
}

const fmt = (ms: number) => (ms >= 10_000 ? `${(ms / 1000).toFixed(1)} s` : `${ms.toFixed(0)} ms`)
const results: Row[] = []
for (const [key, row] of Object.entries(rows)) {
  if (only.length > 0 && !only.includes(key)) continue
  process.stderr.write(`bench: ${key}...\n`)
  results.push(...[await row()].flat())
}
console.log(
  `hubctl bench on ${os.cpus().length} cores, ${RUNS} runs each${only.length === 0 || only.includes('proxy-kill') ? ` (proxy-kill: ${RUNS_SLOW})` : ''}, medians (min-max)`,
)
console.log('| what | hubctl | instead | ratio |')
console.log('|---|---|---|---|')
for (const row of results) {
  const h = median(row.hubctl)
  const range = (t: number[]) => `${fmt(median(t))} (${fmt(Math.min(...t))}-${fmt(Math.max(...t))})`
  const other = row.other ? `${row.other.name}: ${range(row.other.times)}` : '-'
  const ratio = row.other ? `${(h / median(row.other.times)).toFixed(2)}x` : '-'
  console.log(`| ${row.name} | ${range(row.hubctl)} | ${other} | ${ratio} |`)
}
