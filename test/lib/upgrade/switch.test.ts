import {expect} from 'chai'
import fs from 'node:fs/promises'

import {RestoreJournal, applyJournal, finishInterruptedUpgrade} from '../../../src/lib/backup/journal.js'
import {Layout} from '../../../src/lib/config/layout.js'
import {switchOps} from '../../../src/lib/upgrade/upgrade.js'
import {tempPrefix} from '../../helpers/cli.js'

/*
 * `hubctl upgrade --rebuild`'s switch (issue 23): the migrated database, the config, hubctl.json
 * and the `current` link of the hub's environment are one journal (switchOps). Killed after each
 * of its steps, the next `hubctl start` or upgrade finishes it: hubctl.json names the new
 * environment and `current` names it too (`previous` the old one), never hubctl.json on the new
 * environment with `current` still on the one whose Python is gone.
 */
describe('upgrade --rebuild switch journal', () => {
  let prefix = ''
  let layout: Layout
  let ops: RestoreJournal['ops']

  beforeEach(async () => {
    prefix = await tempPrefix('hubctl-switch')
    layout = new Layout(prefix)
    for (const dir of [layout.srvDir, layout.etcDir, layout.hubEnv('old'), layout.hubEnv('new')])
      await fs.mkdir(dir, {recursive: true})
    await fs.symlink('envs/old', layout.hubEnvCurrent)
    for (const [file, text] of [
      [layout.database, 'old-db'],
      [layout.hubConfig, 'old-config'],
      [layout.settings, 'old-settings'],
      [layout.databaseUpgrade, 'migrated-db'],
      [layout.upgradeNew(layout.hubConfig), 'new-config'],
      [layout.upgradeNew(layout.settings), 'new-settings'],
    ])
      await fs.writeFile(file, text)
    ops = switchOps(layout, {
      database: {from: layout.databaseUpgrade, aside: layout.databasePreUpgrade},
      config: layout.upgradeNew(layout.hubConfig),
      settings: layout.upgradeNew(layout.settings),
      link: {target: layout.hubEnvLinkTarget('new'), previous: 'envs/old'},
    })
  })

  afterEach(async () => {
    await fs.rm(prefix, {recursive: true, force: true})
  })

  const state = async () => ({
    db: await fs.readFile(layout.database, 'utf8'),
    config: await fs.readFile(layout.hubConfig, 'utf8'),
    settings: await fs.readFile(layout.settings, 'utf8'),
    current: await fs.readlink(layout.hubEnvCurrent),
    previous: await fs.readlink(layout.hubEnvPrevious).catch(() => 'none'),
  })

  it('holds the link switch (previous, then current) after the files', () => {
    expect(ops.filter((op) => op.op === 'link')).to.deep.equal([
      {op: 'link', to: layout.hubEnvPrevious, target: 'envs/old'},
      {op: 'link', to: layout.hubEnvCurrent, target: 'envs/new'},
    ])
  })

  it('killed before its journal was written: the old hub, its link untouched', async () => {
    expect(await finishInterruptedUpgrade(layout)).to.equal(false)
    expect(await state()).to.deep.equal({
      db: 'old-db',
      config: 'old-config',
      settings: 'old-settings',
      current: 'envs/old',
      previous: 'none',
    })
  })

  for (let done = 0; done <= 8; done++)
    it(`killed after ${done} of its steps: finished whole, the link with hubctl.json`, async () => {
      await fs.writeFile(layout.upgradeJournal, JSON.stringify({version: 1, archive: 'hubctl upgrade', ops}))
      await applyJournal({version: 1, archive: 'hubctl upgrade', ops: ops.slice(0, done)})
      expect(await finishInterruptedUpgrade(layout)).to.equal(true)
      expect(await state()).to.deep.equal({
        db: 'migrated-db',
        config: 'new-config',
        settings: 'new-settings',
        current: 'envs/new',
        previous: 'envs/old',
      })
      expect(await fs.readFile(layout.databasePreUpgrade, 'utf8')).to.equal('old-db')
      expect(await finishInterruptedUpgrade(layout)).to.equal(false)
    })
})
