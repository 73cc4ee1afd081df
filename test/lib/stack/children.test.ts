import {expect} from 'chai'

import {Layout} from '../../../src/lib/config/layout.js'
import type {Settings} from '../../../src/lib/config/settings.js'
import {childSpecs} from '../../../src/lib/stack/children.js'

describe("childSpecs: the operator's environment", () => {
  it("never gives the hub or the proxy JPY_COOKIE_SECRET or the operator's CONFIGPROXY_AUTH_TOKEN (they would override the files); JUPYTERHUB_CRYPT_KEY stays", () => {
    const layout = new Layout('/tmp/hubctl-env-unit')
    const settings = {
      version: 1,
      domains: ['localhost'],
      admins: ['alice'],
      allowedUsers: [],
      authenticator: 'pam',
      spawner: 'local',
      tls: {mode: 'self-signed'},
      ports: {http: 80, https: 443, proxy: 8000, proxyApi: 8001, hub: 8081, proxyStandby: 8002, proxyStandbyApi: 8003},
      dhparam: {mode: 'ffdhe2048', bits: 2048},
      executables: {
        jupyterhub: '/usr/bin/jupyterhub',
        singleuser: '/usr/bin/jupyterhub-singleuser',
        node: process.execPath,
        proxy: '/x/chp',
      },
      jupyterhubVersion: '3.0.0',
      nginxSupervised: true,
    } as unknown as Settings
    const specs = childSpecs(layout, settings, 'from-the-file', {
      PATH: '/usr/bin:/bin',
      JPY_COOKIE_SECRET: 'ab'.repeat(32),
      CONFIGPROXY_AUTH_TOKEN: 'operator',
      JUPYTERHUB_CRYPT_KEY: 'cd'.repeat(32),
    })
    expect(specs.map((s) => s.name)).to.deep.equal(['proxy', 'hub', 'nginx'])
    for (const spec of specs) {
      expect(spec.env.JPY_COOKIE_SECRET, spec.name).to.equal(undefined)
      expect(spec.env.PATH, spec.name).to.equal('/usr/bin:/bin')
    }
    expect(specs[0].env.CONFIGPROXY_AUTH_TOKEN).to.equal('from-the-file')
    expect(specs[1].env.CONFIGPROXY_AUTH_TOKEN).to.equal(undefined)
    expect(specs[1].env.JUPYTERHUB_CRYPT_KEY).to.equal('cd'.repeat(32))
  })
})
