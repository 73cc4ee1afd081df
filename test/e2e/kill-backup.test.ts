// e2e-lane: parallel
import {expect} from 'chai'
import {execa} from 'execa'
import {randomBytes} from 'node:crypto'
import fs from 'node:fs/promises'
import path from 'node:path'

import {ARCHIVE_NAME} from '../../src/lib/backup/archives.js'
import {finishInterrupted} from '../../src/lib/backup/journal.js'
import {readSchema, schemaState} from '../../src/lib/config/dbschema.js'
import {jupyterhubPython} from '../../src/lib/config/jupyterhub.js'
import {Layout} from '../../src/lib/config/layout.js'
import {PORT_FLAGS, PORT_NAMES, SettingsStore} from '../../src/lib/config/settings.js'
import {exists} from '../../src/lib/files/atomic.js'
import {HubEnvService, systemPython} from '../../src/lib/setup/hubenv.js'
import {validateSecret} from '../../src/lib/files/secrets.js'
import {execaRunner} from '../../src/lib/runner.js'
import {checkHealth, hubHealthUrl} from '../../src/lib/stack/hubapi.js'
import {DEBIAN_JUPYTERHUB, ROOT, hubctl, jsonOf, portFlags, tempPrefix, testHubInitArgs} from '../helpers/cli.js'
import {holdEachWrite, killInsideWrite} from '../helpers/processes.js'
import {killEveryProcessOf} from '../helpers/users.js'

/*
 * kill -9 of `hubctl backup`, `restore` and `upgrade` (issue 23), at every moment that matters:
 * each command is run held at each of its atomic writes and each of its fault points (a journal's
 * rename, every program it runs, held while that program runs: tar, the database's copy, the
 * migration), the files copied aside there: what a SIGKILL at that moment leaves. One hub
 * (Debian's JupyterHub 3.0, PAM, an account hubctl made with a home), in order:
 * - backup: no archive under its final name until it is whole; the hub keeps answering; a real
 *   kill's leftovers (staging directory, temp archive) are removed by the next backup;
 * - restore (of that archive, onto other ports): after a kill at each point, the hub is the old or
 *   the restored one (cookie secret, hubctl.json, database, the home, the account's password
 *   hash), never a mix: a kill once chpasswd set the archive's hash, before the renames' journal,
 *   is rolled back by `hubctl start` (the old hash, the old hub); from the middle
 *   of the journal `hubctl start` starts the restored hub, and after a real kill there the next
 *   `hubctl restore` completes;
 * - upgrade (3.0 to the pinned JupyterHub, in an environment of hubctl's own, envs/<id>, made here
 *   complete from the prebuilt packages: no PyPI build): at each point the hub's hubctl.json,
 *   config and database are one JupyterHub's, whose schema the database is at, and the `current`
 *   link names the new environment once hubctl.json does; `hubctl start` starts it from the middle
 *   of the switch.
 */

const VENV = path.join(ROOT, '.venv')
const STEPS = {HUBCTL_TEST_PAUSE_STEPS: '1'}

describe('hubctl backup, restore and upgrade killed with SIGKILL at each step', function () {
  this.timeout(1_500_000)
  const user = `k9a${randomBytes(3).toString('hex')}`
  let prefix = ''
  let layout: Layout
  let stash = ''
  let log = ''
  let home = ''
  let archive = ''

  const python = (code: string, ...args: string[]) => execa('python3', ['-I', '-c', code, ...args])
  const userVersion = async () =>
    Number(
      (
        await python(
          'import sqlite3, sys; print(sqlite3.connect(sys.argv[1]).execute("PRAGMA user_version").fetchone()[0])',
          layout.database,
        )
      ).stdout,
    )
  const setUserVersion = (n: number) =>
    python(
      'import sqlite3, sys; c = sqlite3.connect(sys.argv[1], timeout=60); c.execute("PRAGMA user_version = %d" % int(sys.argv[2])); c.commit()',
      layout.database,
      String(n),
    )
  /** The account's password hash (/etc/shadow), and one set by chpasswd --encrypted. */
  const shadowOf = async () => (await execa('getent', ['shadow', user])).stdout.split(':')[1]
  const setShadow = (hash: string) => execa('chpasswd', ['--encrypted'], {input: `${user}:${hash}\n`})
  const ARCHIVED_HASH = '$6$hubctlk9$archived'
  /** The hub as a restore decides it: the cookie secret, hubctl.json, the database's mark, the home's mark, the password hash. */
  const hubState = async () => ({
    shadow: await shadowOf(),
    cookie: await fs.readFile(layout.cookieSecret, 'utf8'),
    settings: await fs.readFile(layout.settings, 'utf8'),
    database: await userVersion(),
    home: await fs.readFile(path.join(home, 'marker'), 'utf8'),
  })
  const homeEntries = () => [home, layout.restoreNew(home), layout.restoreOld(home)]

  /** The prefix, the home (with a restore's entries beside it) and the password hash copied to `dir`. */
  async function saveState(dir: string): Promise<void> {
    await fs.mkdir(path.join(dir, 'homes'), {recursive: true})
    await fs.writeFile(path.join(dir, 'shadow'), await shadowOf())
    await copyLive(prefix, path.join(dir, 'prefix'))
    for (const entry of homeEntries())
      if (await exists(entry)) await execa('cp', ['-a', entry, path.join(dir, 'homes', path.basename(entry))])
  }
  /**
   * `cp -a` of a tree that a program hubctl runs may be writing (held at a step, the program runs:
   * SQLite's journal beside the staged database comes and goes): copied again when a file vanished
   * under cp, as a kill at that moment would find one state or the next.
   */
  async function copyLive(from: string, to: string): Promise<void> {
    for (let tries = 1; ; tries++) {
      const copied = await execa('cp', ['-a', from, to], {reject: false})
      if (copied.exitCode === 0) return
      await fs.rm(to, {recursive: true, force: true})
      if (tries === 5 || !/No such file or directory/.test(String(copied.stderr)))
        throw new Error(String(copied.stderr))
    }
  }
  /** The prefix, the home and the password hash back to a saved state (no hub runs). */
  async function loadState(dir: string): Promise<void> {
    await setShadow(await fs.readFile(path.join(dir, 'shadow'), 'utf8'))
    await fs.rm(prefix, {recursive: true, force: true})
    await execa('cp', ['-a', path.join(dir, 'prefix'), prefix])
    for (const entry of homeEntries()) {
      await fs.rm(entry, {recursive: true, force: true})
      const saved = path.join(dir, 'homes', path.basename(entry))
      if (await exists(saved)) await execa('cp', ['-a', saved, entry])
    }
  }
  const healthy = async () => checkHealth(hubHealthUrl(await new SettingsStore(layout).load(), 'proxy'))
  async function startAndStop(what: string): Promise<void> {
    const started = await hubctl(['start', '--detach', '--prefix', prefix, '--json'])
    const hubLog = started.exitCode === 0 ? '' : (await fs.readFile(layout.hubLog, 'utf8').catch(() => '')).slice(-3000)
    expect(started.exitCode, `${what}: hubctl start: ${started.stderr}${started.stdout}\n${hubLog}`).to.equal(0)
    expect(await healthy(), `${what}: the hub answers through the proxy`).to.equal(true)
    const stopped = await hubctl(['stop', '--prefix', prefix, '--json'])
    expect(stopped.exitCode, stopped.stderr).to.equal(0)
  }

  before(async function () {
    prefix = await tempPrefix('hubctl-kill9')
    layout = new Layout(prefix)
    stash = await tempPrefix('hubctl-kill9-stash')
    log = path.join(stash, 'writes.log')
    const {flags} = await portFlags()
    const init = await hubctl(
      testHubInitArgs(
        prefix,
        {admin: user, jupyterhub: DEBIAN_JUPYTERHUB, extra: ['--create-users', '--cull-idle', 'off']},
        flags,
      ),
    )
    expect(init.exitCode, init.stderr).to.equal(0)
    home = (await execa('getent', ['passwd', user])).stdout.split(':')[5]
    await fs.writeFile(path.join(home, 'marker'), 'archived')
    await setShadow(ARCHIVED_HASH)
    const started = await hubctl(['start', '--detach', '--prefix', prefix, '--json'])
    expect(started.exitCode, started.stderr + started.stdout).to.equal(0)
    await setUserVersion(7)
  })

  after(async function () {
    this.timeout(120_000)
    if (prefix) await hubctl(['stop', '--prefix', prefix, '--json'])
    const uid = Number((await execa('id', ['-u', user], {reject: false})).stdout)
    if (uid >= 1000) await killEveryProcessOf(uid)
    await execa('userdel', ['--remove', user], {reject: false})
    for (const entry of home ? homeEntries() : []) await fs.rm(entry, {recursive: true, force: true})
    if (prefix) await fs.rm(prefix, {recursive: true, force: true})
    if (stash) await fs.rm(stash, {recursive: true, force: true})
  })

  it('backup: no archive under its final name before it is whole, the hub answering at each step; a real kill is cleaned up by the next backup', async () => {
    const args = ['backup', '--include-homes', '--prefix', prefix, '--json']
    const archives = async () =>
      (await fs.readdir(layout.backupDir).catch(() => [])).filter((n) => ARCHIVE_NAME.test(n))
    const points = await holdEachWrite(
      args,
      log,
      async (n, what) => {
        expect(await archives(), `held at ${n} (${what}): no archive yet`).to.deep.equal([])
        expect(await healthy(), `held at ${n} (${what}): the hub answers`).to.equal(true)
      },
      STEPS,
    )
    expect(points.filter((p) => p === 'step: run tar').length, points.join('\n')).to.be.greaterThan(1)
    const made = await archives()
    expect(made.length).to.equal(1)
    archive = layout.backupFile(made[0])
    // Killed for real while tar writes the archive: a temp file and the staging directory left.
    const last = points.lastIndexOf('step: run tar') + 1
    await killInsideWrite([...args, '--output', path.join(stash, 'killed.tar')], last, log, STEPS)
    const leftovers = async () =>
      [...(await fs.readdir(layout.backupDir)), ...(await fs.readdir(stash))].filter(
        (n) => n.startsWith('.staging-') || n.endsWith('.tmp'),
      )
    expect(await leftovers(), 'what the kill left').to.not.deep.equal([])
    expect(await exists(path.join(stash, 'killed.tar')), 'no archive under its name').to.equal(false)
    expect(await healthy(), 'the hub answers after the kill').to.equal(true)
    const again = await hubctl([...args, '--output', path.join(stash, 'killed.tar')])
    expect(again.exitCode, again.stderr).to.equal(0)
    expect(await leftovers(), 'removed by the next backup').to.deep.equal([])
  })

  it('restore onto other ports: killed at each step, the hub is the old or the restored one, never a mix; `hubctl start` and the next restore finish a killed one', async () => {
    if (!archive) {
      // Run alone (--grep): an archive made here.
      const made = await hubctl(['backup', '--include-homes', '--prefix', prefix, '--json'])
      expect(made.exitCode, made.stderr).to.equal(0)
      archive = (jsonOf(made) as unknown as {archive: string}).archive
    }
    // The old hub differs from the archive's in each part a restore replaces.
    const cookie = `${randomBytes(32).toString('hex')}\n`
    expect(validateSecret('cookieSecret', cookie)).to.equal(undefined)
    await fs.writeFile(layout.cookieSecret, cookie)
    await setUserVersion(42)
    await fs.writeFile(path.join(home, 'marker'), 'old')
    await setShadow('$6$hubctlk9$old')
    const old = await hubState()
    const portArgs = async () => {
      const {ports} = await portFlags()
      return PORT_NAMES.flatMap((name) => [PORT_FLAGS[name].flag, String(ports[name])])
    }
    const args = ['restore', archive, '--yes', '--prefix', prefix, '--json', ...(await portArgs())]
    const states = path.join(stash, 'restore')
    const points = await holdEachWrite(args, log, (n) => saveState(path.join(states, String(n))), STEPS)
    const restored = await hubState()
    expect(restored.settings).to.not.equal(old.settings)
    expect(restored.cookie).to.not.equal(old.cookie)
    expect(restored).to.deep.include({database: 7, home: 'archived', shadow: ARCHIVED_HASH})
    const stopped = await hubctl(['stop', '--prefix', prefix, '--json'])
    expect(stopped.exitCode, stopped.stderr).to.equal(0)
    const journaled = points.findIndex((p) => p.startsWith('step: journal')) + 1
    expect(journaled, points.join('\n')).to.be.greaterThan(0)
    for (let n = 1; n <= points.length; n++) {
      await loadState(path.join(states, String(n)))
      // What `hubctl start` and the next restore do first.
      await finishInterrupted(layout, execaRunner)
      const now = await hubState()
      expect([old, restored], `killed at ${n} (${points[n - 1]}): the old hub or the restored one`).to.deep.include(now)
      if (n >= journaled)
        expect(now, `killed at ${n} (${points[n - 1]}), after the journal: the restored hub`).to.deep.equal(restored)
      for (const entry of [layout.restoreNew(home), layout.restoreOld(home)])
        if (n >= journaled) expect(await exists(entry), `${entry} after ${n}`).to.equal(false)
    }
    // Killed just after chpasswd set the archive's hash (the old hub's files in place): `hubctl start`
    // rolls the account back and starts the old hub.
    const chpassed = points.indexOf('step: run chpasswd') + 2
    expect(chpassed, points.join('\n')).to.be.greaterThan(1)
    expect(chpassed).to.be.lessThan(journaled)
    await loadState(path.join(states, String(chpassed)))
    expect(await shadowOf(), `killed at ${chpassed} (${points[chpassed - 1]}): the archive's hash set`).to.equal(
      ARCHIVED_HASH,
    )
    await startAndStop(`killed at ${chpassed} (${points[chpassed - 1]})`)
    expect(await hubState()).to.deep.equal(old)
    // From the middle of the journal (hubctl.json not renamed yet): `hubctl start` starts the restored hub.
    const middle = points.findIndex((p) => p.startsWith('step: journal rename') && p.endsWith(layout.settings)) + 1
    expect(middle, points.join('\n')).to.be.greaterThan(journaled)
    await loadState(path.join(states, String(middle)))
    await startAndStop(`killed at ${middle} (${points[middle - 1]})`)
    expect(await hubState()).to.deep.equal(restored)
    // Killed for real there, then restored again (onto other ports again): the next restore completes.
    const held = await killInsideWrite(args, middle, log, STEPS)
    expect(held).to.equal(points[middle - 1])
    const again = await hubctl(['restore', archive, '--yes', '--prefix', prefix, '--json', ...(await portArgs())])
    expect(again.exitCode, again.stderr + again.stdout).to.equal(0)
    expect(jsonOf(again)).to.include({healthy: true})
    expect({...(await hubState()), settings: ''}).to.deep.equal({...restored, settings: ''})
  })

  it('upgrade: killed at each step, hubctl.json, the config and the database are one JupyterHub’s, at its schema; `hubctl start` works from the middle of the switch', async () => {
    expect(await healthy(), 'the hub runs').to.equal(true)
    const configOf = async () => fs.readFile(layout.hubConfig, 'utf8')
    const oldSide = {executable: await fs.realpath(DEBIAN_JUPYTERHUB), config: await configOf()}
    // hubctl's environment of the pins, as a build leaves it (complete), its packages the prebuilt ones.
    const plan = await new HubEnvService({layout, runner: execaRunner}).plan(await systemPython())
    await execa('/usr/bin/python3', ['-I', '-m', 'venv', '--without-pip', plan.dir])
    const site = path.join(VENV, 'lib/python3.11/site-packages')
    await fs.writeFile(path.join(plan.dir, 'lib/python3.11/site-packages/hubctl-test.pth'), `${site}\n`)
    for (const script of ['jupyterhub', 'jupyterhub-singleuser']) {
      const text = await fs.readFile(path.join(VENV, 'bin', script), 'utf8')
      await fs.writeFile(path.join(plan.dir, 'bin', script), text.replace(/^#!.*/, `#!${plan.dir}/bin/python3`), {
        mode: 0o755,
      })
    }
    await fs.writeFile(layout.hubEnvMarker, 'This directory is managed by hubctl (kill-backup e2e).\n')
    await fs.writeFile(layout.hubEnvComplete(plan.id), JSON.stringify({versions: plan.versions, python: plan.python}))
    const currentLink = () => fs.readlink(layout.hubEnvCurrent).catch(() => undefined)
    const args = ['upgrade', '--yes', '--prefix', prefix, '--json']
    const states = path.join(stash, 'upgrade')
    const points = await holdEachWrite(args, log, (n) => saveState(path.join(states, String(n))), STEPS)
    const newSide = {
      executable: (await new SettingsStore(layout).load()).executables.jupyterhub,
      config: await configOf(),
    }
    expect(newSide.executable).to.equal(await fs.realpath(path.join(plan.dir, 'bin/jupyterhub')))
    expect(await currentLink()).to.equal(layout.hubEnvLinkTarget(plan.id))
    const stopped = await hubctl(['stop', '--prefix', prefix, '--json'])
    expect(stopped.exitCode, stopped.stderr).to.equal(0)
    const sides: string[] = []
    for (let n = 1; n <= points.length; n++) {
      const what = `killed at ${n} (${points[n - 1]})`
      await loadState(path.join(states, String(n)))
      await finishInterrupted(layout, execaRunner)
      const executable = (await new SettingsStore(layout).load()).executables.jupyterhub
      const side = [oldSide, newSide].find((s) => s.executable === executable)
      expect(side, `${what}: hubctl.json names ${executable}`).to.not.equal(undefined)
      expect(await configOf(), `${what}: the config is that JupyterHub's`).to.equal(side!.config)
      expect(await currentLink(), `${what}: the current link with hubctl.json`).to.equal(
        side === oldSide ? undefined : layout.hubEnvLinkTarget(plan.id),
      )
      const schema = await readSchema(execaRunner, (await jupyterhubPython(executable))!, layout.database)
      expect(schemaState(schema), `${what}: the database is at ${executable}'s schema`).to.equal('current')
      sides.push(side === oldSide ? 'old' : 'new')
    }
    expect(sides[0]).to.equal('old')
    expect(sides.at(-1)).to.equal('new')
    // From the middle of the switch's journal (the database renamed, hubctl.json not yet): the new hub starts.
    const middle = points.findIndex((p) => p.startsWith('step: journal rename') && p.endsWith(layout.settings)) + 1
    expect(middle, points.join('\n')).to.be.greaterThan(0)
    await loadState(path.join(states, String(middle)))
    await startAndStop(`killed at ${middle} (${points[middle - 1]})`)
    expect((await new SettingsStore(layout).load()).executables.jupyterhub).to.equal(newSide.executable)
    expect(await currentLink()).to.equal(layout.hubEnvLinkTarget(plan.id))
  })
})
