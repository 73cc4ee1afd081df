// e2e-lane: parallel
import {expect} from 'chai'
import fs from 'node:fs/promises'

import {Layout} from '../../src/lib/config/layout.js'
import {BrowserSession, personSession} from '../helpers/browser.js'
import {DEBIAN_JUPYTERHUB, hubctl, portFlags, tempPrefix, testHubInitArgs} from '../helpers/cli.js'

/*
 * A person in a real browser (Debian's Chromium) on Debian's JupyterHub 3.0, where a person still
 * uses it: the classic notebook at /tree (what browser.test.ts does on the README's commands, here
 * on a hub of the test's own: its prefix, kernel-picked ports, local mode's generated login).
 */

describe("a person in Chromium on Debian's JupyterHub 3.0 (classic notebook at /tree)", function () {
  this.timeout(900_000)
  let prefix = ''
  let session: BrowserSession | undefined
  // The classic server runs as root in hubctl's home for it under the prefix: removed with it.
  after(async () => {
    await session?.close()
    if (prefix) {
      await hubctl(['stop', '--prefix', prefix])
      await fs.rm(prefix, {recursive: true, force: true})
    }
  })

  it('init warns of CVE-2024-28233 and sends users to /tree; a person runs a cell there; doctor warns too', async function () {
    prefix = await tempPrefix('hubctl-browser3')
    const {flags, ports} = await portFlags()
    const init = await hubctl(
      testHubInitArgs(
        prefix,
        {local: true, jupyterhub: DEBIAN_JUPYTERHUB, systemd: true, schedule: true, serverCheck: true},
        flags,
      ),
    )
    expect(init.exitCode, init.stderr).to.equal(0)
    expect(init.stderr).to.match(
      /warning: JupyterHub 3\.0\.\d+ .* is affected by CVE-2024-28233 .*fixed in JupyterHub 4\.1\.0/,
    )
    expect(await fs.readFile(new Layout(prefix).hubConfig, 'utf8')).to.include('c.Spawner.default_url = "/tree"')
    const password = /with the password ([0-9a-f]+)/.exec(init.stdout)?.[1] ?? ''
    const start = await hubctl(['start', '--prefix', prefix, '--detach'])
    expect(start.exitCode, start.stderr).to.equal(0)
    session = await BrowserSession.start({acceptSelfSigned: true})
    try {
      await personSession(session.page, `https://localhost:${ports.https}`, 'admin', password, 'tree')
    } catch (error) {
      console.log(`kept: ${(await session.keep(this.test?.fullTitle() ?? 'jupyterhub3')).join(', ')}`)
      throw error
    }
    const doctor = await hubctl(['doctor', '--prefix', prefix, '--json'])
    const checks = (JSON.parse(doctor.stdout) as {checks: Array<{check: string; status: string; message: string}>})
      .checks
    expect(
      checks.find((c) => c.check === 'jupyterhub security'),
      doctor.stdout,
    ).to.include({status: 'warn'})
    expect(
      checks.find((c) => c.check === 'user interface'),
      doctor.stdout,
    ).to.include({status: 'pass'})
    expect(
      checks.find((c) => c.check === 'browser path'),
      doctor.stdout,
    ).to.include({status: 'pass'})
  })
})
