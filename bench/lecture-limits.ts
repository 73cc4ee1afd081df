/**
 * Bench `lecture with limits` (issue #24): the lecture of bench/lecture.ts (test/helpers/lecture.ts:
 * each student from the login form to print(6*7) → 42 over the kernel's websocket, clicking "Sign
 * in" at a random moment within LECTURE_WINDOW seconds, default 20) against a hub whose users'
 * servers carry per-user limits. Limits need systemd as PID 1, so the hub runs in the Debian 12
 * system container of the e2e suite (test/helpers/container.ts, this machine's network: ports 80
 * and 443, so run it under `flock /tmp/hubctl-80.lock`), set up as an operator does at prefix `/`:
 * `init --domain localhost --tls self-signed --mem-limit 1G --cpu-limit 1 --tasks-limit 256`, PAM
 * users of the machine (useradd, chpasswd), every one let in by a file in jupyterhub_config.d, then
 * `systemctl start jupyterhub`. Each class (the sizes given as arguments, default 40 60) logs in at
 * once; its servers are stopped before the next. Reported: failures with their causes, p50/p95/max
 * of login → 42, the class's seconds, and one server's unit (MemoryMax, CPUQuota, TasksMax). On a
 * host with cgroup v1 the container's kernel does not enforce MemoryMax (`hubctl doctor` says so);
 * the units carry the limits all the same, and CPUQuota and TasksMax are enforced.
 *
 *   flock /tmp/hubctl-80.lock node --import tsx --no-warnings bench/lecture-limits.ts 40 60
 */
import {randomBytes} from 'node:crypto'
import fs from 'node:fs/promises'
import https from 'node:https'

import {Layout} from '../src/lib/config/layout.js'
import {SettingsStore} from '../src/lib/config/settings.js'
import {HubApi, hubApiUrl} from '../src/lib/stack/hubapi.js'
import {SystemContainer, containerPrerequisites, ensureRootfs} from '../test/helpers/container.js'
import {StudentResult, classNames, lecture} from '../test/helpers/lecture.js'
import {movedInternalPorts} from '../test/helpers/readme.js'
import {until} from './lib.js'

const SIZES = process.argv.slice(2).map(Number)
const WINDOW_S = Number(process.env.LECTURE_WINDOW ?? 20)
const CHECKOUT = '/root/hubctl'
/**
 * The container shares this machine's uids (no user namespace): a test here that ends a removed
 * user's processes by uid (1004, ...) ended two students' servers of a first run. Far from them.
 */
const HIGH_UIDS = ['-K', 'UID_MIN=61000', '-K', 'UID_MAX=62000']
const LIMITS = ['--mem-limit', '1G', '--cpu-limit', '1', '--tasks-limit', '256']

const secs = (ms: number) => `${(ms / 1000).toFixed(1)} s`
const log = (line: string) => process.stderr.write(`bench: lecture-limits: ${line}\n`)

function percentile(sorted: number[], p: number): number {
  if (sorted.length === 0) return Number.NaN
  return sorted[Math.min(sorted.length - 1, Math.ceil((p / 100) * sorted.length) - 1)]
}

/** The status of a GET of https://localhost{path} (the hub's own certificate trusted), 0 when none came. */
function httpsStatus(path: string, ca: string): Promise<number> {
  return new Promise((resolve) => {
    https
      .get({host: '127.0.0.1', port: 443, path, servername: 'localhost', headers: {Host: 'localhost'}, ca}, (r) => {
        r.resume()
        resolve(r.statusCode ?? 0)
      })
      .on('error', () => resolve(0))
  })
}

async function inside(machine: SystemContainer, argv: string[], input?: string, timeoutMs = 300_000) {
  const result = await machine.exec(argv, {cwd: CHECKOUT, input, timeoutMs})
  if (result.exitCode !== 0)
    throw new Error(`${argv.join(' ')} failed (exit ${result.exitCode}):\n${result.stdout}\n${result.stderr}`)
  return result.stdout
}

function summary(size: number, results: StudentResult[], ms: number): string {
  const times = results.flatMap((r) => (r.ms === undefined ? [] : [r.ms])).sort((a, b) => a - b)
  const failed = results.filter((r) => r.failure)
  const causes = new Map<string, number>()
  for (const r of failed) {
    const cause = `${r.failure!.step}: ${r.failure!.message.replace(/hcl[0-9a-f]+-\d+/g, 'USER').slice(0, 200)}`
    causes.set(cause, (causes.get(cause) ?? 0) + 1)
  }
  const retries = results.reduce((sum, r) => sum + r.retries, 0)
  const line = `${size} students in ${WINDOW_S} s with limits: ${failed.length} of ${results.length} failed, ${retries} retries after 429; login → 42 p50 ${secs(percentile(times, 50))}, p95 ${secs(percentile(times, 95))}, max ${secs(times.at(-1) ?? Number.NaN)}; the class ${secs(ms)}`
  log(line)
  for (const [cause, count] of causes) log(`  ${count} x ${cause}`)
  return line
}

async function main(): Promise<void> {
  const sizes = SIZES.length > 0 ? SIZES : [40, 60]
  const missing = await containerPrerequisites()
  if (missing) throw new Error(`cannot run a system container here: ${missing}`)
  await ensureRootfs()
  const machine = await SystemContainer.create('hubctl-lecture-limits')
  const lines: string[] = []
  try {
    await machine.installCheckout(CHECKOUT)
    const booted = await machine.boot()
    if (booted.state !== 'running') log(`booted ${booted.state}: ${booted.failed}`)
    const layout = new Layout(machine.dir)
    const password = randomBytes(12).toString('hex')
    const admin = 'hcladmin'
    await inside(machine, ['useradd', '-m', ...HIGH_UIDS, admin])

    let start = Date.now()
    await inside(
      machine,
      [
        './bin/run.js',
        'init',
        '--yes',
        '--domain',
        'localhost',
        '--admin',
        admin,
        '--tls',
        'self-signed',
        '--dhparam',
        'ffdhe2048',
        ...LIMITS,
        '--no-server-check',
        ...(await movedInternalPorts()),
      ],
      undefined,
      1_500_000,
    )
    log(`init with ${LIMITS.join(' ')} in ${secs(Date.now() - start)}`)
    await machine.writeFile(
      '/etc/jupyterhub/jupyterhub_config.d/50-lecture-bench.py',
      '# bench lecture-limits: every user of the machine (PAM) logs in.\nc.Authenticator.allowed_users = set()  # noqa: F821\nc.Authenticator.allow_all = True  # noqa: F821\n',
    )
    await inside(machine, ['systemctl', 'start', 'jupyterhub'])
    const ca = await fs.readFile(layout.fullchain, 'utf8')
    if ((await until(async () => (await httpsStatus('/hub/api', ca)) === 200, 240_000, 500)) === undefined)
      throw new Error('the hub never answered https://localhost/hub/api')
    const settings = await new SettingsStore(layout).load()
    const token = (await fs.readFile(layout.apiToken, 'utf8')).trim()
    const api = new HubApi({
      baseUrl: hubApiUrl({ports: settings.ports}),
      token: async () => token,
      verify: async () => {},
    })

    for (const size of sizes) {
      const users = classNames(size)
      await inside(machine, [
        'sh',
        '-c',
        `for u in "$@"; do useradd -m ${HIGH_UIDS.join(' ')} "$u"; done`,
        'sh',
        ...users,
      ])
      await inside(machine, ['chpasswd'], users.map((u) => `${u}:${password}\n`).join(''))
      start = Date.now()
      const results = await lecture(users, WINDOW_S * 1000, {origin: 'https://localhost', password, ca})
      const ms = Date.now() - start
      const unit = await machine.exec([
        'systemctl',
        'show',
        `jupyter-${users[0]}-singleuser`,
        '-p',
        'MemoryMax,CPUQuotaPerSecUSec,TasksMax,OOMScoreAdjust',
      ])
      const units = await machine.exec(['sh', '-c', "systemctl list-units --no-legend 'jupyter-*' | grep -c running"])
      lines.push(
        `${summary(size, results, ms)}; ${units.stdout.trim()} server units running, each with ${unit.stdout.trim().split('\n').join(' ')}`,
      )
      log(lines.at(-1)!)
      await Promise.all(users.map((user) => api.stopServer(user).catch(() => undefined)))
      await until(
        async () =>
          (await Promise.all(users.map((u) => api.userServers(u).catch(() => [])))).every((s) => s.length === 0),
        300_000,
        1000,
      )
    }
    const doctor = await machine.exec(['./bin/run.js', 'doctor'], {cwd: CHECKOUT, timeoutMs: 300_000})
    const memory = doctor.stdout.split('\n').filter((l) => /memory|limits/i.test(l))
    log(`doctor: ${memory.slice(0, 4).join(' | ')}`)
  } finally {
    await machine.destroy()
  }
  process.stdout.write(`${lines.join('\n')}\n`)
}

await main()
