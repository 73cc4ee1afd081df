import {expect} from 'chai'
import fs from 'node:fs/promises'

import {install, plannedUnits} from '../../../../src/lib/setup/init/install.js'
import {settingsFor} from '../../../../src/lib/setup/init/render.js'
import {systemdRuns} from '../../../../src/lib/config/units.js'
import {tempPrefix} from '../../../helpers/cli.js'
import {JUPYTERHUB, NGINX, initContext} from './context.js'

describe('init: the install step', () => {
  let prefix: string
  beforeEach(async () => {
    prefix = await tempPrefix('hubctl-initinstall')
  })
  afterEach(async () => {
    await fs.rm(prefix, {recursive: true, force: true})
  })

  it("plans logrotate's file always, the renewal schedule unless --no-schedule", async () => {
    const ctx = await initContext(prefix)
    const all = await plannedUnits({...ctx.deps, systemd: false})
    expect(all.map((u) => u.file)).to.include.members([ctx.layout.logrotateConf])
    expect(all.length).to.be.greaterThan(1)
    const none = await plannedUnits({...ctx.deps, systemd: false, schedule: false})
    expect(none.map((u) => u.file)).to.deep.equal([ctx.layout.logrotateConf])
  })

  it('writes the planned files, then leaves them alone; nginx not running under a prefix is left to `hubctl start`', async () => {
    const ctx = await initContext(prefix)
    ctx.plan.units = await plannedUnits({...ctx.deps, systemd: false, schedule: false})
    await install.run(ctx)
    expect(ctx.result.files).to.deep.equal([{file: ctx.layout.logrotateConf, action: 'written'}])
    expect(ctx.result.commands).to.deep.equal([])
    expect(ctx.reporter.lines).to.deep.equal(['start install', 'done install: files in place'])
    const again = await initContext(prefix)
    again.plan.units = ctx.plan.units
    await install.run(again)
    expect(again.result.files).to.deep.equal([{file: ctx.layout.logrotateConf, action: 'unchanged'}])
  })

  it('--schedule-backup daily --backup-keep 3: the schedule kept in hubctl.json and installed; init without the flag keeps it; off removes it', async () => {
    const ctx = await initContext(prefix, {flags: {'schedule-backup': 'daily', 'backup-keep': '3'}})
    const settings = ctx.plan.rendered.settings
    expect(settings.backupSchedule).to.deep.equal({every: 'daily', keep: 3})
    ctx.plan.units = await plannedUnits({...ctx.deps, systemd: false, schedule: false}, settings)
    const installed = (await systemdRuns()) ? ctx.layout.backupTimer : ctx.layout.backupCronFile
    await install.run(ctx)
    expect(ctx.result.files).to.deep.include({file: installed, action: 'written'})
    const units = await Promise.all(
      ctx.plan.units.map(async (u) => ({file: u.file, content: await fs.readFile(u.file, 'utf8')})),
    )
    expect(units.map((u) => u.content).join('\n')).to.include('backup --include-homes --keep 3 --prefix')
    // init again without the flag: hubctl.json's schedule stays.
    const plain = await initContext(prefix)
    expect(settingsFor(plain.deps, plain.request, JUPYTERHUB, NGINX, settings).backupSchedule).to.deep.equal({
      every: 'daily',
      keep: 3,
    })
    // off: none in hubctl.json, the files removed.
    const off = await initContext(prefix, {flags: {'schedule-backup': 'off'}})
    const offSettings = settingsFor(off.deps, off.request, JUPYTERHUB, NGINX, settings)
    expect(offSettings.backupSchedule).to.equal(undefined)
    off.plan.units = await plannedUnits({...off.deps, systemd: false, schedule: false}, offSettings)
    expect(off.plan.units.map((u) => u.file)).to.deep.equal([off.layout.logrotateConf])
    const dry = await initContext(prefix, {deps: {dryRun: true}, units: off.plan.units})
    await install.plan?.(dry)
    expect(dry.result.files).to.deep.include({file: installed, action: 'would remove'})
    expect(await fs.stat(installed).then(() => true)).to.equal(true)
    await install.run(off)
    expect(off.result.files).to.deep.include({file: installed, action: 'removed'})
    expect(await fs.stat(installed).catch(() => undefined)).to.equal(undefined)
  })

  it('--dry-run: lists the units, and the reload only when nginx runs', async () => {
    const units = [{file: '/x/unit', content: '', mode: 0o644}]
    const stopped = await initContext(prefix, {deps: {dryRun: true}, units})
    await install.plan?.(stopped)
    expect(stopped.result.files).to.deep.equal([{file: '/x/unit', action: 'would write'}])
    expect(stopped.result.commands).to.deep.equal([])
    const running = await initContext(prefix, {deps: {dryRun: true}, units, nginxRunning: true})
    await install.plan?.(running)
    expect(running.result.commands).to.deep.equal(['/x/sbin/nginx -s reload'])
    expect(await fs.readdir(prefix)).to.deep.equal([])
  })
})
