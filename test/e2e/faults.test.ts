// e2e-lane: parallel
import {expect} from 'chai'
import {execa} from 'execa'
import {X509Certificate} from 'node:crypto'
import {constants as fsConstants} from 'node:fs'
import fs from 'node:fs/promises'
import path from 'node:path'

import {HubctlError} from '../../src/lib/errors.js'
import {Layout} from '../../src/lib/config/layout.js'
import {acquireLock} from '../../src/lib/files/lock.js'
import {DEBIAN_JUPYTERHUB, hubctl, portFlags, snapshot, tempPrefix, testHubFlags} from '../helpers/cli.js'

/*
 * A full disk during a write, for real: the prefix is a 4 MiB tmpfs (root may mount one in this
 * sandbox; the test says so plainly if it cannot), filled by a filler file, with exactly as many
 * free pages left as the case needs. tmpfs counts file data in whole 4 KiB pages, so "one page
 * free" lets hubctl write its lock file and nothing more. Each case asserts the exit code 3, the
 * one-line message naming the file and the fix, the old files intact, no temp file and no lock left.
 */

const PAGE = 4096
const BASE = testHubFlags({admin: 'alice', jupyterhub: DEBIAN_JUPYTERHUB})

/** Every file under `dir` whose name says it is a temp file of an atomic write, or a candidate. */
async function leftovers(dir: string): Promise<string[]> {
  const found: string[] = []
  async function walk(current: string): Promise<void> {
    for (const entry of await fs.readdir(current, {withFileTypes: true})) {
      const full = path.join(current, entry.name)
      if (entry.isDirectory()) await walk(full)
      else if (/\.tmp$|\.candidate$/.test(entry.name)) found.push(full)
    }
  }
  await walk(dir)
  return found
}

describe('a full disk during a write (the prefix on a 4 MiB tmpfs)', function () {
  this.timeout(180_000)
  let mountPoint = ''
  let mounted = false
  let layout: Layout
  let flags: string[]
  let filler: string

  /** Fill the file system, then give back exactly `pages` pages. */
  async function fillLeaving(pages: number): Promise<void> {
    const handle = await fs.open(filler, fsConstants.O_CREAT | fsConstants.O_WRONLY | fsConstants.O_APPEND, 0o600)
    try {
      for (const chunk of [Buffer.alloc(64 * 1024), Buffer.alloc(PAGE)]) {
        for (;;) {
          try {
            const {bytesWritten} = await handle.write(chunk)
            if (bytesWritten < chunk.length) break
          } catch (error) {
            expect((error as NodeJS.ErrnoException).code).to.equal('ENOSPC')
            break
          }
        }
        // A short last write leaves a partly used page: cut back to whole pages and go on page by page.
        const {size} = await handle.stat()
        await handle.truncate(Math.floor(size / PAGE) * PAGE)
      }
    } finally {
      await handle.close()
    }
    const {size} = await fs.stat(filler)
    await fs.truncate(filler, size - pages * PAGE)
    const {stdout} = await execa('df', ['--output=avail', '-B1', mountPoint])
    expect(Number(stdout.trim().split('\n').pop()), 'bytes free on the tmpfs').to.equal(pages * PAGE)
  }

  before(async () => {
    mountPoint = await tempPrefix('hubctl-fulldisk')
    const mount = await execa('mount', ['-t', 'tmpfs', '-o', 'size=4m,mode=0700', 'tmpfs', mountPoint], {reject: false})
    expect(
      mount.exitCode,
      `mount -t tmpfs (this test needs root allowed to mount a tmpfs; else see test/lib/files/secrets.test.ts for the injected fault): ${mount.stderr}`,
    ).to.equal(0)
    mounted = true
    layout = new Layout(path.join(mountPoint, 'hub'))
    filler = path.join(mountPoint, 'filler')
    const ports = await portFlags()
    flags = [...BASE, ...ports.flags]
    const init = await hubctl(['init', '--prefix', layout.prefix, ...flags])
    expect(init.exitCode, init.stderr).to.equal(0)
  })

  afterEach(async () => {
    await fs.rm(filler, {force: true})
  })

  after(async () => {
    if (mounted) {
      const umount = await execa('umount', [mountPoint], {reject: false})
      if (umount.exitCode !== 0) await execa('umount', ['-l', mountPoint], {reject: false})
    }
    if (mountPoint) await fs.rm(mountPoint, {recursive: true, force: true})
  })

  it('no room even for the lock: exit 3 naming the lock file, no empty lock left behind, the next run works (was: exit 70, then locked out for good)', async () => {
    await fs.rm(layout.apiToken)
    const before = await snapshot(layout.prefix)
    await fillLeaving(0)
    const result = await hubctl(['secrets', 'generate', '--prefix', layout.prefix, '--dhparam', 'ffdhe2048'])
    expect(result.exitCode, result.stderr).to.equal(3)
    expect(result.stderr.trim()).to.equal(
      `hubctl: no space left on the device holding ${layout.lockFile}; nothing was replaced. Fix: free some disk space and run the command again`,
    )
    expect(await snapshot(layout.prefix)).to.deep.equal(before)
    await fs.access(layout.lockFile).then(
      () => expect.fail('an empty lock file was left behind'),
      () => {},
    )
    await fs.rm(filler)
    const again = await hubctl(['secrets', 'generate', '--prefix', layout.prefix, '--dhparam', 'ffdhe2048'])
    expect(again.exitCode, again.stderr).to.equal(0)
    expect(again.stdout).to.match(/created the hubctl API token/)
  })

  it("a secret: init with the API token missing and one page free (the lock's) exits 3 naming it; the other secrets intact, no temp file", async () => {
    await fs.rm(layout.apiToken)
    const before = await snapshot(layout.prefix)
    await fillLeaving(1)
    const result = await hubctl(['init', '--prefix', layout.prefix, ...flags])
    expect(result.exitCode, result.stderr).to.equal(3)
    expect(result.stderr.trim().split('\n').pop()).to.equal(
      `hubctl: no space left on the device holding ${layout.apiToken}; nothing was replaced. Fix: free some disk space and run the command again`,
    )
    expect(await snapshot(layout.prefix)).to.deep.equal(before)
    expect(await leftovers(layout.prefix)).to.deep.equal([])
    await fs.access(layout.lockFile).then(
      () => expect.fail('the lock was left behind'),
      () => {},
    )
    await fs.rm(filler)
    const again = await hubctl(['init', '--prefix', layout.prefix, ...flags])
    expect(again.exitCode, again.stderr).to.equal(0)
    expect((await hubctl(['secrets', 'check', '--prefix', layout.prefix])).exitCode).to.equal(0)
  })

  it('a config: init --allow-user bob with one page free exits 3; jupyterhub_config.py, the nginx site and hubctl.json intact, no candidate left (was: exit 70)', async () => {
    const before = await snapshot(layout.prefix)
    await fillLeaving(1)
    const result = await hubctl(['init', '--prefix', layout.prefix, ...flags, '--allow-user', 'bob'])
    expect(result.exitCode, result.stderr).to.equal(3)
    expect(result.stderr.trim().split('\n').pop()).to.equal(
      `hubctl: no space left on the device holding ${layout.hubConfigCandidate}; nothing was replaced. Fix: free some disk space and run the command again`,
    )
    expect(await snapshot(layout.prefix)).to.deep.equal(before)
    expect(await fs.readFile(layout.hubConfig, 'utf8')).not.to.include('bob')
    expect(await leftovers(layout.prefix)).to.deep.equal([])
    await fs.rm(filler)
    const again = await hubctl(['init', '--prefix', layout.prefix, ...flags, '--allow-user', 'bob'])
    expect(again.exitCode, again.stderr).to.equal(0)
    expect(await fs.readFile(layout.hubConfig, 'utf8')).to.include('"bob"')
  })

  it('a certificate: init adding a domain with one page free exits 3; the live key and chain are the old pair, together', async () => {
    const before = await snapshot(layout.prefix)
    const currentBefore = await fs.readlink(layout.sslCurrentLink)
    await fillLeaving(1)
    const result = await hubctl([
      'init',
      '--prefix',
      layout.prefix,
      ...flags,
      '--allow-user',
      'bob',
      '--domain',
      'hub.localhost',
    ])
    expect(result.exitCode, result.stderr).to.equal(3)
    expect(result.stderr.trim().split('\n').pop()).to.match(
      new RegExp(
        `^hubctl: no space left on the device holding ${layout.sslArchiveDir}/[^/]+/privkey\\.pem; nothing was replaced\\. Fix: free some disk space`,
      ),
    )
    expect(await fs.readlink(layout.sslCurrentLink)).to.equal(currentBefore)
    const after = await snapshot(layout.prefix)
    // Every file is as it was, and no half-written pair (or its empty directory) stays in the archive.
    expect(after).to.deep.equal(before)
    expect(await fs.readdir(layout.sslArchiveDir)).to.deep.equal([currentBefore.split('/').pop()])
    const cert = new X509Certificate(await fs.readFile(layout.fullchain))
    expect(cert.subjectAltName).not.to.include('hub.localhost')
    expect(
      cert.checkPrivateKey((await import('node:crypto')).createPrivateKey(await fs.readFile(layout.privkey))),
    ).to.equal(true)
    expect(await leftovers(layout.prefix)).to.deep.equal([])
  })
})

describe('the lock after a crash or a full disk (in process)', () => {
  let layout: Layout
  beforeEach(async () => {
    layout = new Layout(await tempPrefix('hubctl-lockfault'))
    await fs.mkdir(layout.srvDir, {recursive: true, mode: 0o700})
  })
  afterEach(async () => {
    await fs.rm(layout.prefix, {recursive: true, force: true})
  })

  it('an empty lock file a minute old (its writer died before writing its pid) is taken over', async () => {
    await fs.writeFile(layout.lockFile, '')
    const aMinuteAgo = new Date(Date.now() - 60_000)
    await fs.utimes(layout.lockFile, aMinuteAgo, aMinuteAgo)
    const lock = await acquireLock(layout.lockFile, 'init')
    expect(JSON.parse(await fs.readFile(layout.lockFile, 'utf8')).pid).to.equal(process.pid)
    await lock.release()
  })

  it('an empty lock file just made (its writer is writing it now) is respected: exit 6 with the fix', async () => {
    await fs.writeFile(layout.lockFile, '')
    let error: unknown
    try {
      await acquireLock(layout.lockFile, 'init')
    } catch (error_) {
      error = error_
    }
    expect(error).to.be.instanceOf(HubctlError)
    expect((error as HubctlError).exitCode).to.equal(6)
    expect((error as HubctlError).line).to.match(/another hubctl .* is changing this hub\. Fix: wait for it to finish/)
    expect(await fs.readFile(layout.lockFile, 'utf8')).to.equal('')
  })
})
