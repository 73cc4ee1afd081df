import {expect} from 'chai'
import fs from 'node:fs/promises'

import {HubctlError} from '../../src/lib/errors.js'
import {Layout} from '../../src/lib/layout.js'
import {acquireLock} from '../../src/lib/lock.js'
import {tempPrefix} from '../helpers/cli.js'

describe('lock', () => {
  let layout: Layout
  beforeEach(async () => { layout = new Layout(await tempPrefix('hubctl-lock')) })
  afterEach(async () => { await fs.rm(layout.prefix, {recursive: true, force: true}) })

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
    await lock.release()
  })
})
