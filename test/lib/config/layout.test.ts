import {expect} from 'chai'

import {Layout} from '../../../src/lib/config/layout.js'

describe('layout', () => {
  it('puts every file under the prefix, at the documented place', () => {
    const layout = new Layout('/tmp/x/')
    expect(layout.prefix).to.equal('/tmp/x')
    expect(layout.isSystem).to.equal(false)
    expect(layout.cookieSecret).to.equal('/tmp/x/srv/jupyterhub/jupyterhub_cookie_secret')
    expect(layout.proxyAuthToken).to.equal('/tmp/x/srv/jupyterhub/proxy_auth_token')
    expect(layout.apiToken).to.equal('/tmp/x/srv/jupyterhub/hubctl_api_token')
    expect(layout.dhparam).to.equal('/tmp/x/srv/jupyterhub/dhparam.pem')
    expect(layout.fullchain).to.equal('/tmp/x/srv/jupyterhub/ssl/fullchain.pem')
    expect(layout.hubConfig).to.equal('/tmp/x/etc/jupyterhub/jupyterhub_config.py')
    expect(layout.hubConfigD).to.equal('/tmp/x/etc/jupyterhub/jupyterhub_config.d')
    expect(layout.settings).to.equal('/tmp/x/etc/jupyterhub/hubctl.json')
    expect(layout.nginxSite).to.equal('/tmp/x/etc/nginx/sites-available/jupyterhub.conf')
    expect(layout.nginxSiteLink).to.equal('/tmp/x/etc/nginx/sites-enabled/jupyterhub.conf')
    expect(layout.logDir).to.equal('/tmp/x/var/log/jupyterhub')
  })

  it("puts the homes of servers run as the hub's user in srv/jupyterhub/home, their template with the prefix's braces doubled", () => {
    const layout = new Layout('/tmp/x')
    expect(layout.serverHomesDir).to.equal('/tmp/x/srv/jupyterhub/home')
    expect(layout.serverHome('ada')).to.equal('/tmp/x/srv/jupyterhub/home/ada')
    expect(layout.serverHomeMarker('ada')).to.equal('/tmp/x/srv/jupyterhub/home/ada/.hubctl-home')
    expect(layout.serverHomeTemplate).to.equal('/tmp/x/srv/jupyterhub/home/{username}')
    expect(new Layout('/').serverHome('ada')).to.equal('/srv/jupyterhub/home/ada')
    expect(new Layout('/tmp/a{b}c').serverHomeTemplate).to.equal('/tmp/a{{b}}c/srv/jupyterhub/home/{username}')
  })

  it('is the real system with prefix /', () => {
    const layout = new Layout('/')
    expect(layout.isSystem).to.equal(true)
    expect(layout.database).to.equal('/srv/jupyterhub/jupyterhub.sqlite')
    expect(layout.systemdUnit).to.equal('/etc/systemd/system/jupyterhub.service')
  })

  it('keeps every path inside the prefix', () => {
    const layout = new Layout('/tmp/p')
    const proto = Object.getOwnPropertyDescriptors(Layout.prototype)
    for (const [name, descriptor] of Object.entries(proto)) {
      if (!descriptor.get || name === 'isSystem' || name === 'secretFiles') continue
      const value = (layout as unknown as Record<string, string | string[]>)[name]
      for (const one of [value].flat()) expect(one.startsWith('/tmp/p/') || one === '/tmp/p', name).to.equal(true)
    }
  })
})
