import {expect} from 'chai'

import {UninstallService} from '../../../src/lib/backup/uninstall.js'
import {Layout} from '../../../src/lib/config/layout.js'
import {ExitCode, HubctlError} from '../../../src/lib/errors.js'
import type {Runner} from '../../../src/lib/runner.js'

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
