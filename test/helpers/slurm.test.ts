import {expect} from 'chai'
import {execa} from 'execa'
import {spawn, type ChildProcess} from 'node:child_process'
import fs from 'node:fs/promises'
import os from 'node:os'
import path from 'node:path'
import {fileURLToPath} from 'node:url'

import {stopSlurmCluster, takeLock} from './slurm.js'
import {waitUntil} from './processes.js'

/*
 * The Slurm test cluster's lock (test/helpers/slurm.ts), on a lock file of this test's own (the
 * machine's /tmp/hubctl-slurm.lock is left to the Slurm e2e files): a start that waits for the lock
 * held elsewhere must not outlive the test file. stopSlurmCluster() (each Slurm file's after())
 * ends its `flock -w 900`, and so does the process's exit; either left behind kept mocha waiting
 * for the lock for 15 minutes after a before() timed out.
 */

/** The pids of the processes whose command line names `file`, but `except`. */
async function processesNaming(file: string, except: number[] = []): Promise<number[]> {
  const pids: number[] = []
  for (const entry of await fs.readdir('/proc')) {
    const pid = Number(entry)
    if (!Number.isInteger(pid) || except.includes(pid)) continue
    const cmdline = await fs.readFile(`/proc/${pid}/cmdline`, 'utf8').catch(() => '')
    if (cmdline.split('\0').includes(file)) pids.push(pid)
  }
  return pids
}

describe('the Slurm test cluster lock', () => {
  let dir = ''
  let lock = ''
  let other: ChildProcess | undefined

  beforeEach(async () => {
    dir = await fs.mkdtemp(path.join(os.tmpdir(), 'hubctl-slurm-lock-'))
    lock = path.join(dir, 'lock')
    // Another test file's cluster, holding the lock.
    other = spawn('flock', [lock, 'sh', '-c', 'echo locked; exec cat >/dev/null'], {stdio: ['pipe', 'pipe', 'ignore']})
    await new Promise<void>((resolve) => other!.stdout!.once('data', () => resolve()))
  })

  afterEach(async () => {
    other?.stdin?.end()
    if (other && other.exitCode === null) await new Promise((resolve) => other!.once('exit', resolve))
    for (const pid of await processesNaming(lock)) process.kill(pid, 'SIGKILL')
    await fs.rm(dir, {recursive: true, force: true})
  })

  it('stopSlurmCluster() ends a wait for the lock: the start fails and no flock is left', async () => {
    const waiting = takeLock(lock)
    const failed = waiting.then(
      () => undefined,
      (error: Error) => error,
    )
    await waitUntil('the wait for the lock to start', async () =>
      (await processesNaming(lock, [other!.pid!])).length > 0 ? true : undefined,
    )
    await stopSlurmCluster()
    expect((await failed)?.message).to.match(/before taking the lock/)
    expect(await processesNaming(lock, [other!.pid!])).to.deep.equal([])
  })

  it('a process that exits while it waits for the lock leaves no flock behind (it would wait 15 minutes)', async () => {
    const helper = path.join(path.dirname(fileURLToPath(import.meta.url)), 'slurm.ts')
    const script = [
      `const {takeLock} = await import(${JSON.stringify(helper)})`,
      "const {execFileSync} = await import('node:child_process')",
      `takeLock(${JSON.stringify(lock)}).catch(() => undefined)`,
      // Exit once its flock runs (the lock is held by the test, so it waits).
      'for (;;) {',
      "  try { execFileSync('pgrep', ['-P', String(process.pid), 'flock']); break } catch {}",
      '  await new Promise((resolve) => setTimeout(resolve, 50))',
      '}',
      'process.exit(0)',
    ].join('\n')
    const child = await execa(process.execPath, ['--import', 'tsx', '--input-type=module', '-e', script], {
      reject: false,
      // Not piped: a flock left behind would hold the pipes open, and execa wait for it.
      stdio: 'ignore',
    })
    expect(child.exitCode).to.equal(0)
    expect(await processesNaming(lock, [other!.pid!])).to.deep.equal([])
  })
})
