import {spawn} from 'node:child_process'
import fs from 'node:fs/promises'
import os from 'node:os'
import path from 'node:path'
import {fileURLToPath} from 'node:url'

/*
 * `npm test`'s runner (after the build): the unit tests in one mocha, then the end-to-end files in
 * lanes, side by side. One mocha process per e2e file, its output printed whole when it ends, so
 * the lanes' outputs never mix and each file keeps its own "N passing" / "N failing" lines (what
 * .ci/run sums). The exit status is 1 when any mocha exited non-zero.
 *
 * Lanes: an e2e file runs beside others only when it says so, in a line of its own:
 *     // e2e-lane: parallel
 * which it may say only when it uses nothing another file uses: its own temp prefix, ports from
 * freePort or portFlags (each mocha its own block of them), system users named by testUserName() or its own pid; not ports
 * 80/443 or 8443, not /etc (hosts, nginx), not the system nginx, not the systemd container. Every
 * other file, a new one too until it is marked, runs in the serial lane: one such file at a time.
 * Lane 1 runs the serial files, then helps with the parallel ones; the other lanes take the
 * parallel files only, longest first: by the times of the last run on this machine
 * (.test-times.json, not committed), else those of a CI run (test/e2e-times.json, committed: a
 * fresh checkout, CI's, starts its longest files first too, not last), else the file's size. The
 * unit tests (one mocha, mostly one core) run as the last lane's first job, beside the serial
 * lane's first file. HUBCTL_TEST_LANES: how many lanes (default 3; 1 runs the unit tests, then
 * every file one after another). Arguments after `npm test --` are given to every mocha (say, --grep).
 */

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..')
const MOCHA = path.join(ROOT, 'node_modules/.bin/mocha')
const TIMES = path.join(ROOT, '.test-times.json')
const CI_TIMES = path.join(ROOT, 'test/e2e-times.json')
const MARK = /^\/\/ e2e-lane: parallel$/m

interface Outcome {
  file: string
  lane: number
  seconds: number
  code: number
  output: string
}

/** What mocha printed of its failures (from "N failing" on), else its last lines: repeated at the end, where a tail of the log shows it. */
const failures = (output: string): string => {
  const at = output.search(/^ +\d+ failing/m)
  const text = at >= 0 ? output.slice(at) : output.split('\n').slice(-40).join('\n')
  // Each line marked, so that .ci/run, which sums the "N failing" lines, does not count them twice.
  return text.replace(/^/gm, '| ')
}

/**
 * A mocha for these files. `portBlock` of `portBlocks`: the block of test ports its freePort() hands
 * out (test/helpers/cli.ts), one for each mocha running at once, so two never pick the same port.
 */
function mocha(
  files: string[],
  extra: string[],
  portBlock: number,
  portBlocks: number,
): Promise<{code: number; output: string}> {
  return new Promise((resolve) => {
    const child = spawn(MOCHA, ['--forbid-only', ...extra, ...files], {
      cwd: ROOT,
      stdio: ['ignore', 'pipe', 'pipe'],
      env: {...process.env, HUBCTL_TEST_PORT_BLOCK: String(portBlock), HUBCTL_TEST_PORT_BLOCKS: String(portBlocks)},
    })
    const chunks: Buffer[] = []
    child.stdout.on('data', (chunk: Buffer) => chunks.push(chunk))
    child.stderr.on('data', (chunk: Buffer) => chunks.push(chunk))
    child.on('error', (error) => chunks.push(Buffer.from(`${error.message}\n`)))
    child.on('close', (code, signal) =>
      resolve({code: code ?? (signal ? 128 : 1), output: Buffer.concat(chunks).toString('utf8')}),
    )
  })
}

async function e2eFiles(): Promise<{serial: string[]; parallel: string[]}> {
  const dir = path.join(ROOT, 'test/e2e')
  const names = (await fs.readdir(dir)).filter((name) => name.endsWith('.test.ts')).sort()
  const read = (file: string): Promise<Record<string, number>> =>
    fs
      .readFile(file, 'utf8')
      .then((text) => JSON.parse(text) as Record<string, number>)
      .catch(() => ({}))
  const last = {...(await read(CI_TIMES)), ...(await read(TIMES))}
  const weighed: Array<{file: string; weight: number; parallel: boolean}> = []
  for (const name of names) {
    const file = path.join('test/e2e', name)
    const text = await fs.readFile(path.join(ROOT, file), 'utf8')
    weighed.push({file, weight: last[file] ?? text.length / 100, parallel: MARK.test(text)})
  }
  weighed.sort((a, b) => b.weight - a.weight)
  return {
    serial: weighed.filter((f) => !f.parallel).map((f) => f.file),
    parallel: weighed.filter((f) => f.parallel).map((f) => f.file),
  }
}

const clock = (seconds: number) => `${Math.floor(seconds / 60)}m${String(Math.round(seconds % 60)).padStart(2, '0')}s`

async function main(): Promise<number> {
  const extra = process.argv.slice(2)
  const lanes = Math.max(1, Number(process.env.HUBCTL_TEST_LANES ?? 3) || 3)
  const started = Date.now()
  let failed = false

  const {serial, parallel} = await e2eFiles()
  console.log(
    `unit tests (test/lib, test/helpers) in lane ${lanes}; e2e: ${lanes} lane(s); serial lane: ${serial.length} files, one at a time; parallel: ${parallel.length} files`,
  )
  const outcomes: Outcome[] = []
  let unit = {code: 0, output: ''}
  let unitSeconds = 0
  const e2eStart = Date.now()
  const laneSeconds: number[] = []
  const work = async (lane: number): Promise<void> => {
    const laneStart = Date.now()
    if (lane === lanes) {
      // The unit tests, printed whole when they end, like a file.
      unit = await mocha(['test/lib/**/*.test.ts', 'test/helpers/**/*.test.ts'], extra, lanes, lanes + 1)
      unitSeconds = (Date.now() - laneStart) / 1000
      if (unit.code !== 0) failed = true
      process.stdout.write(
        `\n=== unit tests (lane ${lane}, ${clock(unitSeconds)}, exit ${unit.code})\n${unit.output}=== end of the unit tests\n`,
      )
    }
    for (;;) {
      const file = lane === 1 ? (serial.shift() ?? parallel.shift()) : parallel.shift()
      if (!file) break
      console.log(`[lane ${lane}] ${file} started`)
      const begun = Date.now()
      const result = await mocha([file], extra, lane - 1, lanes + 1)
      const seconds = (Date.now() - begun) / 1000
      outcomes.push({file, lane, seconds, code: result.code, output: result.output})
      if (result.code !== 0) failed = true
      process.stdout.write(
        `\n=== ${file} (lane ${lane}, ${clock(seconds)}, exit ${result.code})\n${result.output}=== end of ${file}\n`,
      )
    }
    laneSeconds[lane - 1] = (Date.now() - laneStart) / 1000
  }
  // With one lane, lane 1 runs the unit tests first, then the serial files, then the parallel ones.
  await Promise.all(Array.from({length: lanes}, (_, i) => work(i + 1)))

  const times: Record<string, number> = {}
  for (const o of outcomes) times[o.file] = Math.round(o.seconds)
  if (extra.length === 0) await fs.writeFile(TIMES, `${JSON.stringify(times, null, 2)}\n`).catch(() => undefined)
  console.log('\ntest times (the slowest first):')
  for (const o of [...outcomes].sort((a, b) => b.seconds - a.seconds))
    console.log(
      `  ${clock(o.seconds).padStart(7)}  lane ${o.lane}  ${o.file}${o.code === 0 ? '' : `  (exit ${o.code})`}`,
    )
  console.log(`  ${clock(unitSeconds).padStart(7)}  unit tests`)
  console.log(
    `lanes: ${laneSeconds.map((s, i) => `${i + 1}: ${clock(s)}`).join(', ')}; e2e ${clock((Date.now() - e2eStart) / 1000)}; all ${clock((Date.now() - started) / 1000)} on ${os.cpus().length} cores`,
  )
  const bad = outcomes.filter((o) => o.code !== 0).map((o) => o.file)
  if (unit.code !== 0) bad.unshift('the unit tests')
  if (unit.code !== 0) console.log(`\n=== what failed in the unit tests\n${failures(unit.output)}`)
  for (const o of outcomes.filter((o) => o.code !== 0))
    console.log(`\n=== what failed in ${o.file}\n${failures(o.output)}`)
  if (bad.length > 0) console.log(`failed: ${bad.join(', ')}`)
  return failed ? 1 : 0
}

process.exitCode = await main()
