import {expect} from 'chai'
import {execa} from 'execa'
import fs from 'node:fs/promises'

import {installHubPython} from '../../../src/lib/config/hubpython.js'
import {Layout} from '../../../src/lib/config/layout.js'
import {assertTrusted, assertTrustedFile, trustProblems, trustedPaths} from '../../../src/lib/setup/trust.js'
import {tempPrefix} from '../../helpers/cli.js'

/* trust.ts on real files, owned by root and by a real user made here (tests run as root). */
describe('trust: what root loads', function () {
  this.timeout(60_000)
  const user = `htru${process.pid % 100_000}`
  let uid = -1
  let layout: Layout

  before(async () => {
    const created = await execa('useradd', ['-M', '-s', '/usr/sbin/nologin', user], {reject: false})
    expect(created.exitCode, created.stderr).to.equal(0)
    uid = Number((await execa('id', ['-u', user])).stdout)
  })
  after(async () => {
    await execa('userdel', [user], {reject: false})
  })
  beforeEach(async () => {
    layout = new Layout(await tempPrefix('hubctl-trust-unit'))
    for (const dir of [layout.srvDir, layout.hubConfigD]) await fs.mkdir(dir, {recursive: true, mode: 0o755})
    await fs.chmod(layout.srvDir, 0o700)
    await fs.writeFile(layout.hubConfig, '', {mode: 0o644})
  })
  afterEach(async () => {
    await fs.rm(layout.prefix, {recursive: true, force: true})
  })

  it("passes a prefix under /tmp (sticky, root's) of root's own files", async () => {
    expect(await trustProblems(await trustedPaths(layout, '/usr/bin/jupyterhub'))).to.deep.equal([])
    await assertTrusted(layout, '/usr/bin/jupyterhub')
  })

  it("lists the .d folder's files, the executable, its singleuser and its Python", async () => {
    await fs.writeFile(layout.hubConfigDFile('10-mine.py'), '')
    const paths = await trustedPaths(layout, '/usr/bin/jupyterhub')
    expect(paths).to.include.members([
      layout.etcDir,
      layout.hubConfig,
      layout.hubConfigD,
      layout.hubConfigDFile('10-mine.py'),
      layout.srvDir,
      layout.settings,
      '/usr/bin/jupyterhub',
      '/usr/bin/jupyterhub-singleuser',
    ])
    expect(paths.some((p) => /python3/.test(p))).to.equal(true)
  })

  it('checks hubctl_hub, which the config imports: a module others may write, a file another user put beside them', async () => {
    await installHubPython(layout)
    const paths = await trustedPaths(layout)
    expect(paths).to.include.members([layout.hubPythonPath, layout.hubPythonPackage, layout.hubPythonFile('ports.py')])
    expect(await trustProblems(paths)).to.deep.equal([])
    await fs.chmod(layout.hubPythonFile('ports.py'), 0o664)
    const planted = layout.hubPythonFile('planted.py')
    await fs.writeFile(planted, '')
    await fs.chown(planted, uid, uid)
    const problems = await trustProblems(await trustedPaths(layout))
    expect(problems.map((p) => p.fix)).to.deep.equal([
      `chown root:root ${planted}`,
      `chmod go-w ${layout.hubPythonFile('ports.py')}`,
    ])
  })

  it('names a file of another user, a group- or world-writable directory, each with its exact fix, from / down', async () => {
    const extra = layout.hubConfigDFile('50-x.py')
    await fs.writeFile(extra, '')
    await fs.chown(extra, uid, uid)
    await fs.chmod(layout.etcDir, 0o777)
    const problems = await trustProblems(await trustedPaths(layout))
    expect(problems.map((p) => p.fix)).to.deep.equal([`chmod go-w ${layout.etcDir}`, `chown root:root ${extra}`])
    expect(problems[0].problem).to.match(/is writable by its group and others/)
    expect(problems[1].problem).to.include(`belongs to uid ${uid}`)
  })

  it('names a root-owned file that its group or others may write (a .d file at 0664, the config at 0646), each with its fix', async () => {
    const extra = layout.hubConfigDFile('50-x.py')
    await fs.writeFile(extra, '')
    await fs.chmod(extra, 0o664)
    await fs.chmod(layout.hubConfig, 0o646)
    const problems = await trustProblems(await trustedPaths(layout))
    expect(problems.map((p) => p.fix)).to.deep.equal([`chmod go-w ${layout.hubConfig}`, `chmod go-w ${extra}`])
    expect(problems[0].problem).to.equal(
      `${layout.hubConfig} is writable by others, and hubctl (as root) loads what it holds: they could run code as root`,
    )
    expect(problems[1].problem).to.match(/50-x\.py is writable by its group, and/)
    let error: {exitCode?: number; message?: string} | undefined
    try {
      await assertTrusted(layout)
    } catch (error_) {
      error = error_ as {exitCode?: number}
    }
    expect(error?.exitCode).to.equal(3)
    expect(error?.message).to.include(layout.hubConfig)
    await fs.writeFile(layout.settings, '{}')
    await fs.chmod(layout.settings, 0o660)
    let one: {exitCode?: number; fix?: string} | undefined
    try {
      await assertTrustedFile(layout.settings, 'the deploy hooks were not run')
    } catch (error_) {
      one = error_ as {exitCode?: number}
    }
    expect(one?.exitCode).to.equal(3)
    expect(one?.fix).to.equal(`chmod go-w ${layout.settings}, then run the command again`)
  })

  it('a sticky directory is fine above, not as something root loads from', async () => {
    await fs.chmod(layout.hubConfigD, 0o1777)
    expect((await trustProblems(await trustedPaths(layout))).map((p) => p.fix)).to.deep.equal([
      `chmod go-w ${layout.hubConfigD}`,
    ])
  })

  it('follows a link to where it leads', async () => {
    const elsewhere = await tempPrefix('hubctl-trust-elsewhere')
    try {
      await fs.chown(elsewhere, uid, uid)
      await fs.symlink(elsewhere, layout.hubConfigDFile('linked'))
      expect((await trustProblems(await trustedPaths(layout))).map((p) => p.fix)).to.deep.equal([
        `chown root:root ${elsewhere}`,
      ])
    } finally {
      await fs.rm(elsewhere, {recursive: true, force: true})
    }
  })

  it("is not enforced when hubctl does not run as root (local mode: the files are the user's own)", async () => {
    await fs.chown(layout.hubConfig, uid, uid)
    expect(await trustProblems(await trustedPaths(layout), uid)).to.deep.equal([])
    await assertTrusted(layout, undefined, uid)
    let error: {exitCode?: number; message?: string} | undefined
    try {
      await assertTrusted(layout)
    } catch (error_) {
      error = error_ as {exitCode?: number}
    }
    expect(error?.exitCode).to.equal(3)
    expect(error?.message).to.include(layout.hubConfig)
  })

  it('one file (hubctl.json before its deploy hooks run): refused with what was not done when its directory is writable by others', async () => {
    await fs.writeFile(layout.settings, '{}', {mode: 0o640})
    await assertTrustedFile(layout.settings, 'the deploy hooks were not run')
    await fs.chmod(layout.etcDir, 0o777)
    let error: {exitCode?: number; message?: string; fix?: string} | undefined
    try {
      await assertTrustedFile(layout.settings, 'the deploy hooks were not run')
    } catch (error_) {
      error = error_ as {exitCode?: number}
    }
    expect(error?.exitCode).to.equal(3)
    expect(error?.message).to.match(/is writable by its group and others.*; the deploy hooks were not run$/)
    expect(error?.fix).to.equal(`chmod go-w ${layout.etcDir}, then run the command again`)
  })
})
