import {expect} from 'chai'
import fs from 'node:fs/promises'

import {Layout} from '../../../src/lib/config/layout.js'
import {SettingsStore} from '../../../src/lib/config/settings.js'
import {Doctor} from '../../../src/lib/setup/doctor.js'
import type {Runner} from '../../../src/lib/runner.js'
import {tempPrefix} from '../../helpers/cli.js'
import {testSettings} from '../../helpers/settings.js'

describe('doctor --no-server-check', () => {
  let layout: Layout

  beforeEach(async () => {
    layout = new Layout(await tempPrefix('hcd-doctor-noserver'))
    await new SettingsStore(layout).save(testSettings())
  })
  afterEach(async () => {
    await fs.rm(layout.prefix, {recursive: true, force: true})
  })

  it('starts no user server, runs no program for it, and warns that the check was not run, with the command that runs it', async () => {
    const ran: string[] = []
    const runner: Runner = {
      run: async (command, args) => {
        ran.push([command, ...args].join(' '))
        return {exitCode: 1, stdout: '', stderr: 'not expected', notFound: false}
      },
    }
    let trials = 0
    const doctor = new Doctor({
      layout,
      runner,
      serverCheck: false,
      trial: {
        run: async () => {
          trials++
          throw new Error('no trial expected')
        },
      },
    })
    await doctor.checkSettings()
    const result = await doctor.checkUserServer()
    expect(trials).to.equal(0)
    expect(ran).to.deep.equal([])
    expect(result).to.deep.equal({
      check: 'user server',
      status: 'warn',
      message: 'not checked (--no-server-check): no user server was started',
      fix: `run \`hubctl doctor --prefix ${layout.prefix}\` without --no-server-check`,
    })
  })
})
