import {expect} from 'chai'
import fs from 'node:fs/promises'

import {Layout} from '../../src/lib/layout.js'
import {DEBIAN_JUPYTERHUB, hubctl, portFlags, tempPrefix} from '../helpers/cli.js'

describe('hubctl doctor (real JupyterHub and nginx)', () => {
  let layout: Layout

  before(async () => {
    layout = new Layout(await tempPrefix('hubctl-doctor'))
    const {flags} = await portFlags()
    const result = await hubctl(['init', '--prefix', layout.prefix, '--yes', '--domain', 'localhost', '--admin', 'alice', '--tls', 'self-signed', '--dhparam', 'ffdhe2048', '--jupyterhub', DEBIAN_JUPYTERHUB, ...flags])
    expect(result.exitCode, result.stderr).to.equal(0)
  })
  after(async () => { await fs.rm(layout.prefix, {recursive: true, force: true}) })

  it('passes every check on a fresh init', async () => {
    const result = await hubctl(['doctor', '--prefix', layout.prefix, '--json'])
    expect(result.exitCode, result.stdout).to.equal(0)
    const json = JSON.parse(result.stdout) as {ok: boolean; checks: Array<{check: string; status: string}>}
    expect(json.ok).to.equal(true)
    expect(json.checks.map((c) => c.check)).to.include.members(['settings', 'secrets', 'certificate', 'jupyterhub config', 'nginx config', 'dns', 'ports', 'node', 'jupyterhub', 'nginx', 'configurable-http-proxy'])
  })

  it('fails with the exact fix when a secret is world-readable', async () => {
    await fs.chmod(layout.cookieSecret, 0o644)
    try {
      const result = await hubctl(['doctor', '--prefix', layout.prefix])
      expect(result.exitCode).to.equal(1)
      expect(result.stdout).to.match(/FAIL secrets: the cookie secret .* has mode 0644, not 0600/)
      expect(result.stdout).to.include(`fix: chmod 600 ${layout.cookieSecret}`)
    } finally {
      await fs.chmod(layout.cookieSecret, 0o600)
    }
  })

  it('fails when hubctl.json is corrupt, naming the fix', async () => {
    const saved = await fs.readFile(layout.settings, 'utf8')
    await fs.writeFile(layout.settings, '{"version": 1,')
    try {
      const result = await hubctl(['doctor', '--prefix', layout.prefix])
      expect(result.exitCode).to.equal(1)
      expect(result.stdout).to.match(/FAIL settings: .*hubctl.json is not valid JSON/)
    } finally {
      await fs.writeFile(layout.settings, saved)
    }
  })
})
