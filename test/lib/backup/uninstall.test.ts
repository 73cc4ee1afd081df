import {expect} from 'chai'

import fs from 'node:fs/promises'

import {UninstallService} from '../../../src/lib/backup/uninstall.js'
import {Layout} from '../../../src/lib/config/layout.js'
import {SettingsStore} from '../../../src/lib/config/settings.js'
import {ExitCode, HubctlError} from '../../../src/lib/errors.js'
import {exists} from '../../../src/lib/files/atomic.js'
import type {Runner} from '../../../src/lib/runner.js'
import {tempPrefix} from '../../helpers/cli.js'
import {testSettings} from '../../helpers/settings.js'

/*
 * uninstall's refusals that come before anything changes (the rest runs for real in
 * test/e2e/backup.test.ts at a prefix and test/e2e/systemd.test.ts at `/`).
 */

describe('uninstall: refused before anything changes', () => {
  it('at prefix / as a user other than root: a preflight error saying to use sudo, and no program run', async () => {
    const ran: string[] = []
    const runner: Runner = {
      run: (command, args) => {
        ran.push([command, ...args].join(' '))
        return Promise.resolve({exitCode: 0, stdout: '', stderr: '', notFound: false})
      },
    }
    const error = await new UninstallService({layout: new Layout('/'), runner, uid: 1000}).uninstall().then(
      () => undefined,
      (e: unknown) => e,
    )
    expect(error).to.be.instanceOf(HubctlError)
    expect((error as HubctlError).exitCode).to.equal(ExitCode.PREFLIGHT)
    expect((error as HubctlError).message).to.match(/must run as root to uninstall.*Nothing was changed/)
    expect((error as HubctlError).fix).to.equal('run it with sudo')
    expect(ran).to.deep.equal([])
  })
})

describe("uninstall: init's drop-in of the system's nginx.service", () => {
  it('is removed with its folder when hubctl put nothing else there; another drop-in of the operator stays', async () => {
    const layout = new Layout(await tempPrefix('hubctl-uninstall-dropin'))
    try {
      await new SettingsStore(layout).save(testSettings())
      // nginx -v answers a version; nothing else is asked (no nginx runs for this prefix).
      const runner: Runner = {
        run: async () => ({exitCode: 0, stdout: '', stderr: 'nginx version: nginx/1.22.1\n', notFound: false}),
      }
      await fs.mkdir(layout.nginxDropInDir, {recursive: true})
      await fs.writeFile(layout.nginxOomDropIn, '[Service]\nOOMScoreAdjust=-800\n')
      const first = await new UninstallService({layout, runner}).uninstall()
      expect(first.removed).to.include(layout.nginxOomDropIn)
      expect(await exists(layout.nginxDropInDir)).to.equal(false)

      const theirs = `${layout.nginxDropInDir}/limits.conf`
      await fs.mkdir(layout.nginxDropInDir, {recursive: true})
      await fs.writeFile(layout.nginxOomDropIn, '[Service]\nOOMScoreAdjust=-800\n')
      await fs.writeFile(theirs, '[Service]\nLimitNOFILE=65536\n')
      await new UninstallService({layout, runner}).uninstall()
      expect(await exists(layout.nginxOomDropIn)).to.equal(false)
      expect(await fs.readFile(theirs, 'utf8')).to.include('LimitNOFILE')
    } finally {
      await fs.rm(layout.prefix, {recursive: true, force: true})
    }
  })
})
