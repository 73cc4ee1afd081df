import {expect} from 'chai'
import fs from 'node:fs/promises'

import {Layout} from '../../../src/lib/config/layout.js'
import {SettingsStore, type Settings} from '../../../src/lib/config/settings.js'
import {DEFAULT_TEST_PORTS, testSettings} from '../../helpers/settings.js'
import {Doctor} from '../../../src/lib/setup/doctor.js'
import {CertStore} from '../../../src/lib/tls/certstore.js'
import {writeRenewalState} from '../../../src/lib/tls/renewal-state.js'
import {makeSelfSigned} from '../../../src/lib/tls/selfsigned.js'
import type {Runner} from '../../../src/lib/runner.js'
import {tempPrefix} from '../../helpers/cli.js'

const runner: Runner = {run: async () => ({exitCode: 1, stdout: '', stderr: 'unused', notFound: false})}

const DAY = 86_400_000
/** The certificates below are issued at T0 (a fake clock: `at(d)` is d days after). */
const T0 = Date.UTC(2026, 0, 1)
const at = (days: number) => new Date(T0 + days * DAY)

function settingsFor(domains: string[]): Settings {
  return testSettings({
    domains,
    admins: ['hdcadmin'],
    ports: {...DEFAULT_TEST_PORTS, https: 8443},
    executables: {singleuser: '/x', proxy: '/x'},
    nginxSupervised: true,
  })
}

/* doctor's certificate check on a real certificate in a real prefix, with a fake clock: it passes, warns and fails. */
describe('doctor: the certificate', () => {
  let layout: Layout

  beforeEach(async () => {
    layout = new Layout(await tempPrefix('hdc-doctor-cert'))
    await new CertStore(layout).install(await makeSelfSigned(['hub.example.org'], {days: 90, now: at(0)}))
  })
  afterEach(async () => {
    await fs.rm(layout.prefix, {recursive: true, force: true})
  })

  async function check(domains: string[], now: Date) {
    await new SettingsStore(layout).save(settingsFor(domains))
    const doctor = new Doctor({layout, runner, now: () => now})
    await doctor.checkSettings()
    return doctor.checkCertificate()
  }

  it('passes a certificate that covers every domain, before its renewal time', async () => {
    const result = await check(['hub.example.org'], at(10))
    expect(result).to.include({check: 'certificate', status: 'pass'})
    expect(result.message).to.match(/^80 days left/)
  })

  it('fails an expired certificate, with the fix', async () => {
    const result = await check(['hub.example.org'], at(91))
    expect(result).to.deep.equal({
      check: 'certificate',
      status: 'fail',
      message: `the certificate expired on ${at(90).toISOString()}`,
      fix: 'run `hubctl cert renew --force`',
    })
  })

  it('fails a certificate that does not cover a configured domain, naming it', async () => {
    const result = await check(['hub.example.org', 'jupyter.example.org'], at(10))
    expect(result).to.deep.equal({
      check: 'certificate',
      status: 'fail',
      message: 'the certificate does not cover jupyter.example.org',
      fix: 'run `hubctl cert obtain` to get one for every domain',
    })
  })

  it('warns past the renewal time, and fails once a renewal attempt recorded an error', async () => {
    const due = await check(['hub.example.org'], at(70))
    expect(due).to.include({status: 'warn'})
    expect(due.message).to.match(/due for renewal/)
    await writeRenewalState(layout, {lastAttempt: at(69.5).toISOString(), lastError: 'cannot reach the ACME server'})
    const failing = await check(['hub.example.org'], at(70))
    expect(failing).to.deep.equal({
      check: 'certificate',
      status: 'fail',
      message: '20 days left, past its renewal time, and the last renewal failed: cannot reach the ACME server',
      fix: 'fix the cause, then run `hubctl cert renew`',
    })
    // The same recorded error before the renewal time is not a failure: the next attempt is not due yet.
    expect((await check(['hub.example.org'], at(10))).status).to.equal('pass')
  })
})
