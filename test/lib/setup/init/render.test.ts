import {expect} from 'chai'
import fs from 'node:fs/promises'

import {Layout} from '../../../../src/lib/config/layout.js'
import type {Settings} from '../../../../src/lib/config/settings.js'
import {render, renderConfigs, settingsFor} from '../../../../src/lib/setup/init/render.js'
import {resolveInitRequest} from '../../../../src/lib/setup/init-request.js'
import {tempPrefix} from '../../../helpers/cli.js'
import {JUPYTERHUB, NGINX, initContext} from './context.js'

describe('init: the render step', () => {
  let prefix: string
  beforeEach(async () => {
    prefix = await tempPrefix('hubctl-initrender')
  })
  afterEach(async () => {
    await fs.rm(prefix, {recursive: true, force: true})
  })

  it('renders once: asked again with the same inputs it reuses the text, with other inputs it renders anew', async () => {
    const ctx = await initContext(prefix)
    const {settings} = ctx.plan.rendered
    const first = ctx.plan.rendered
    expect(first.hubConfig).to.include(JUPYTERHUB.version)
    // Marked texts: what comes back unmarked was rendered again.
    const marked = {...first, hubConfig: '# marked config', site: '# marked site'}
    const same = await renderConfigs(ctx.layout, settings, JUPYTERHUB, NGINX, 'lab', marked)
    expect([same.hubConfig, same.site]).to.deep.equal(['# marked config', '# marked site'])
    // What the software step installed differs from what preflight planned: both are rendered again.
    const installed = {...JUPYTERHUB, version: '5.4.4'}
    const newer = {...NGINX, version: '1.26.0', http2Directive: true}
    const again = await renderConfigs(ctx.layout, settings, installed, newer, 'lab', marked)
    expect(again.hubConfig).to.include('5.4.4')
    expect(again.site).to.include('1.26.0')
    // Another interface is another config (the default URL), the same site.
    const classic = await renderConfigs(ctx.layout, settings, JUPYTERHUB, NGINX, 'notebook', marked)
    expect(classic.hubConfig).to.include('# jupyterhub_config.py')
    expect(classic.site).to.equal('# marked site')
  })

  it('keeps the allowed users and ACME settings an earlier init or `hubctl users` kept', async () => {
    const request = await resolveInitRequest(
      {domain: ['hub.localhost'], admin: ['initstep-admin'], 'allow-user': ['initstep-b'], tls: 'self-signed'},
      undefined,
      {cores: 2},
    )
    const acme = {directory: 'https://ca.example/dir', keyType: 'ecdsa-p256' as const, deployHooks: []}
    const previous = {allowedUsers: ['initstep-a'], tls: {mode: 'letsencrypt', acme}} as unknown as Settings
    const settings = settingsFor({layout: new Layout(prefix)}, request, JUPYTERHUB, NGINX, previous, '/x/python3')
    expect(settings.allowedUsers).to.deep.equal(['initstep-a', 'initstep-b'])
    expect(settings.tls.acme).to.deep.equal(acme)
    expect(settings.cull?.by).to.equal('jupyterhub-idle-culler')
    expect(settings.executables).to.include({nginx: NGINX.executable, idleCuller: '/x/python3'})
  })

  it("keeps hubctl.json's serverWatchSeconds (set by hand, no init flag); a file without it gets none", async () => {
    const request = await resolveInitRequest(
      {domain: ['hub.localhost'], admin: ['initstep-admin'], tls: 'self-signed'},
      undefined,
      {cores: 2},
    )
    const previous = {allowedUsers: [], tls: {mode: 'self-signed'}, serverWatchSeconds: 5} as unknown as Settings
    const layout = new Layout(prefix)
    expect(settingsFor({layout}, request, JUPYTERHUB, NGINX, previous).serverWatchSeconds).to.equal(5)
    expect(
      settingsFor({layout}, request, JUPYTERHUB, NGINX, {...previous, serverWatchSeconds: undefined}),
    ).not.to.have.property('serverWatchSeconds')
  })

  it('--dry-run: lists the config, the site and its link, nginx.conf and hubctl.json, and the two validations', async () => {
    const ctx = await initContext(prefix, {deps: {dryRun: true}})
    await render.plan?.(ctx)
    const {layout} = ctx
    expect(ctx.result.files).to.deep.equal(
      [layout.hubConfig, layout.nginxSite, layout.nginxSiteLink, layout.nginxMainConf, layout.settings].map((file) => ({
        file,
        action: 'would write',
      })),
    )
    expect(ctx.result.commands).to.deep.equal([
      `${JUPYTERHUB.executable} (load ${layout.hubConfig})`,
      `${NGINX.executable} -t`,
    ])
    expect(await fs.readdir(prefix)).to.deep.equal([])
  })
})
