import {expect} from 'chai'
import fs from 'node:fs/promises'

import {HubctlError} from '../../../src/lib/errors.js'
import {Layout} from '../../../src/lib/config/layout.js'
import {acquireLock} from '../../../src/lib/files/lock.js'
import {tempPrefix} from '../../helpers/cli.js'

describe('lock', () => {
  let layout: Layout
  beforeEach(async () => {
    layout = new Layout(await tempPrefix('hubctl-lock'))
  })
  afterEach(async () => {
    await fs.rm(layout.prefix, {recursive: true, force: true})
  })

  it('lets one writer in and refuses a second, naming the holder', async () => {
    const lock = await acquireLock(layout.lockFile, 'init')
    let error: unknown
    try {
      await acquireLock(layout.lockFile, 'cert renew')
    } catch (error_) {
      error = error_
    }
    expect(error).to.be.instanceOf(HubctlError)
    expect((error as HubctlError).line).to.match(new RegExp(`pid ${process.pid}, init.*Fix: wait`))
    expect((error as HubctlError).exitCode).to.equal(6)
    await lock.release()
    await (await acquireLock(layout.lockFile, 'again')).release()
  })

  it('takes over the lock of a process that died', async () => {
    await fs.mkdir(layout.srvDir, {recursive: true})
    await fs.writeFile(layout.lockFile, JSON.stringify({pid: 2 ** 22 + 12_345, what: 'dead'}))
    const lock = await acquireLock(layout.lockFile, 'init')
    // The lock is now this process's, and held: a second writer is refused naming it, not the dead one.
    expect(JSON.parse(await fs.readFile(layout.lockFile, 'utf8'))).to.include({pid: process.pid, what: 'init'})
    const second = await acquireLock(layout.lockFile, 'cert renew').then(
      () => expect.fail('a second writer got the lock taken over'),
      (error: unknown) => error as HubctlError,
    )
    expect(second.exitCode).to.equal(6)
    expect(second.line).to.match(new RegExp(`pid ${process.pid}, init`))
    await lock.release()
    await fs.access(layout.lockFile).then(
      () => expect.fail('the lock file is left after release'),
      () => {},
    )
  })
})

describe('lock: taking over a stale lock is atomic', function () {
  this.timeout(120_000)
  let layout: Layout
  beforeEach(async () => {
    layout = new Layout(await tempPrefix('hubctl-lockrace'))
  })
  afterEach(async () => {
    await fs.rm(layout.prefix, {recursive: true, force: true})
  })

  const DEAD = 2 ** 22 + 12_345

  it("many writers racing to take over one dead holder's lock: exactly one wins, every round, nothing left beside it", async () => {
    await fs.mkdir(layout.srvDir, {recursive: true})
    for (let round = 0; round < 30; round++) {
      await fs.writeFile(layout.lockFile, JSON.stringify({pid: DEAD, what: 'dead'}))
      const attempts = await Promise.allSettled(
        Array.from({length: 24}, (_, i) => acquireLock(layout.lockFile, `racer ${i}`)),
      )
      const winners = attempts.filter(
        (a): a is PromiseFulfilledResult<Awaited<ReturnType<typeof acquireLock>>> => a.status === 'fulfilled',
      )
      for (const lost of attempts.filter((a) => a.status === 'rejected'))
        expect(
          (lost as PromiseRejectedResult).reason.exitCode,
          String((lost as PromiseRejectedResult).reason),
        ).to.equal(6)
      expect(winners.length, `round ${round}: winners`).to.equal(1)
      const holder = JSON.parse(await fs.readFile(layout.lockFile, 'utf8'))
      expect(holder.pid).to.equal(process.pid)
      await winners[0].value.release()
      expect(
        (await fs.readdir(layout.srvDir)).filter((name) => name.startsWith('hubctl.lock')),
        'files left beside the lock',
      ).to.deep.equal([])
    }
  })

  it("separate processes racing to take over one dead holder's lock: exactly one holds it (was: 4 of 8)", async () => {
    const {execa} = await import('execa')
    await fs.mkdir(layout.srvDir, {recursive: true})
    const script = `
      import {acquireLock} from ${JSON.stringify(new URL('../../../src/lib/files/lock.ts', import.meta.url).pathname)}
      const start = Number(process.argv[2])
      while (Date.now() < start) {}
      try {
        const lock = await acquireLock(process.argv[1], 'racer')
        console.log('won')
        // Held until every racer has said how it ended: a racer that starts late (a loaded machine)
        // must find it held, not released by a winner that gave up waiting.
        const {existsSync} = await import('node:fs')
        while (!existsSync(process.argv[3])) await new Promise((r) => setTimeout(r, 20))
        await lock.release()
      } catch (error) {
        console.log(error.exitCode === 6 ? 'lost' : 'error ' + error.message)
      }
    `
    for (let round = 0; round < 3; round++) {
      await fs.writeFile(layout.lockFile, JSON.stringify({pid: DEAD, what: 'dead'}))
      const start = Date.now() + 4000
      const release = `${layout.lockFile}.release-${round}`
      const racers = Array.from({length: 8}, () =>
        execa(
          process.execPath,
          ['--import', 'tsx', '--input-type=module', '-e', script, layout.lockFile, String(start), release],
          {reject: false},
        ),
      )
      // Every racer has printed won or lost (or ended): then the winners may let go.
      let said = 0
      await new Promise<void>((resolve) => {
        for (const racer of racers) {
          let done = false
          const once = () => {
            if (done) return
            done = true
            if (++said === racers.length) resolve()
          }
          racer.stdout?.once('data', once)
          void racer.then(once, once)
        }
      })
      await fs.writeFile(release, '')
      const results = await Promise.all(racers)
      const outcomes = results.map((r) => r.stdout.trim() || r.stderr.trim())
      expect(
        outcomes.filter((o) => o === 'won'),
        outcomes.join(', '),
      ).to.have.length(1)
      expect(
        outcomes.filter((o) => o !== 'won' && o !== 'lost'),
        outcomes.join(', '),
      ).to.deep.equal([])
    }
  })
})
