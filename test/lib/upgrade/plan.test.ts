import {expect} from 'chai'

import {Stage, UpgradeFacts, compareVersions, planUpgrade, undoSteps} from '../../../src/lib/upgrade/plan.js'

/* hubctl upgrade's decisions: what to do from what it found, and what a rollback undoes from how far it got. */

const ENV = '/opt/jupyterhub/envs/abc/bin/jupyterhub'
const facts = (fields: Partial<UpgradeFacts>): UpgradeFacts => ({
  live: {executable: ENV, version: '6.1.1'},
  pinned: {jupyterhub: '6.1.1', jupyterlab: '4.6.6'},
  target: {executable: ENV, dir: '/opt/jupyterhub/envs/abc', built: true},
  liveSchema: 'current',
  rebuild: false,
  pythonGone: false,
  ...fields,
})

describe('upgrade/plan: what hubctl upgrade does', () => {
  it('nothing at the pins: the same executable, built, its database at its schema', () => {
    const plan = planUpgrade(facts({}))
    expect(plan).to.include({action: 'nothing', build: false, switchEnv: false})
    expect(plan.why).to.include('6.1.1')
  })

  it("Debian's JupyterHub 3.0: switch to the pinned environment, built first when it is not", () => {
    const debian = {executable: '/usr/bin/jupyterhub', version: '3.0.0'}
    expect(planUpgrade(facts({live: debian}))).to.include({action: 'upgrade', build: false, switchEnv: true})
    const unbuilt = planUpgrade(facts({live: debian, target: {executable: ENV, dir: '/x', built: false}}))
    expect(unbuilt).to.include({action: 'upgrade', build: true, switchEnv: true})
    expect(unbuilt.why).to.include('3.0.0').and.include('6.1.1')
  })

  it('at the pins but its database older (init switched the JupyterHub): migrate, no build, no switch', () => {
    const plan = planUpgrade(facts({liveSchema: 'older'}))
    expect(plan).to.include({action: 'upgrade', build: false, switchEnv: false})
    expect(plan.why).to.include('database is older')
  })

  it('--rebuild while the Python runs, at the pins: nothing to rebuild (the same Python and pins make the same environment)', () => {
    const plan = planUpgrade(facts({rebuild: true}))
    expect(plan).to.include({action: 'nothing', build: false})
    expect(plan.why).to.include('nothing to rebuild')
  })

  it("only the users' environment's Python gone: it is built again from the hub's, nothing else built", () => {
    const plan = planUpgrade(facts({usersPythonGone: true}))
    expect(plan).to.include({action: 'upgrade', build: false, rebuildUsers: true, switchEnv: false})
  })

  it('the Python of the environment gone: build again', () => {
    const gone = planUpgrade(
      facts({
        pythonGone: true,
        target: {executable: '/opt/jupyterhub/envs/def/bin/jupyterhub', dir: '/d', built: false},
      }),
    )
    expect(gone).to.include({action: 'upgrade', build: true, switchEnv: true})
    expect(gone.why).to.include('Python')
  })

  it('versions compare by number', () => {
    expect(compareVersions('6.1.1', '5.10.0')).to.equal(1)
    expect(compareVersions('3.0.0', '6.1.1')).to.equal(-1)
    expect(compareVersions('6.1.1', '6.1.1')).to.equal(0)
  })
})

describe('upgrade/plan: the rollback', () => {
  const upTo = (...stages: Stage[]) => undoSteps(new Set(stages))

  it('nothing to undo before the hub stopped (a failed build or trial migration), or once the new hub passed its check', () => {
    expect(upTo('backup', 'built', 'trial-migrated')).to.deep.equal([])
    expect(
      upTo('backup', 'stopped', 'database-swapped', 'config-written', 'settings-written', 'started', 'checked'),
    ).to.deep.equal([])
  })

  it('a failed migration after the stop: the old hub started again, nothing else to put back', () => {
    expect(upTo('backup', 'trial-migrated', 'stopped')).to.deep.equal(['start-old-hub'])
  })

  it('a new hub that fails its check: stopped, every file put back (settings, config, link, database), the old hub started', () => {
    expect(
      upTo('stopped', 'database-swapped', 'config-written', 'settings-written', 'link-switched', 'started'),
    ).to.deep.equal(['stop-new-hub', 'settings-back', 'config-back', 'link-back', 'database-back', 'start-old-hub'])
    expect(upTo('stopped', 'config-written', 'settings-written', 'link-switched', 'users-switched')).to.include(
      'users-links-back',
    )
  })

  it('only what was done is undone (no database swap without a migration, no link with --env)', () => {
    expect(upTo('stopped', 'config-written', 'settings-written')).to.deep.equal([
      'stop-new-hub',
      'settings-back',
      'config-back',
      'start-old-hub',
    ])
  })
})
