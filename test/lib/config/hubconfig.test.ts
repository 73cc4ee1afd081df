import {expect} from 'chai'
import {execFileSync} from 'node:child_process'

import {HubctlError} from '../../../src/lib/errors.js'
import {assertNoRootServers, authenticatorClass, renderHubConfig} from '../../../src/lib/config/hubconfig.js'
import {Layout} from '../../../src/lib/config/layout.js'
import type {Settings} from '../../../src/lib/config/settings.js'

const settings: Settings = {
  version: 1, domains: ['hub.example.org'], admins: ['alice'], allowedUsers: ['bob'], authenticator: 'pam', spawner: 'local',
  tls: {mode: 'self-signed'}, ports: {http: 80, https: 443, proxy: 8000, proxyApi: 8001, hub: 8081, proxyStandby: 8002, proxyStandbyApi: 8003}, dhparam: {mode: 'ffdhe2048', bits: 2048},
  executables: {jupyterhub: '/usr/bin/jupyterhub', singleuser: '/usr/bin/jupyterhub-singleuser', node: '/usr/bin/node', proxy: '/x/chp'},
  jupyterhubVersion: '3.0.0', nginxSupervised: false, proxyTls: false,
}
const v3 = {executable: '/usr/bin/jupyterhub', version: '3.0.0', major: 3, minor: 0, singleuser: '/usr/bin/jupyterhub-singleuser', python: 'python3'}
const v6 = {...v3, version: '6.1.1', major: 6, minor: 1}

describe('hubconfig', () => {
  it('renders valid Python with no secret value, reading each secret from its file', async () => {
    const text = await renderHubConfig(new Layout('/'), settings, v3, '/lab')
    execFileSync('python3', ['-c', 'import ast, sys; ast.parse(sys.stdin.read())'], {input: text})
    expect(text).to.include('c.JupyterHub.cookie_secret_file = "/srv/jupyterhub/jupyterhub_cookie_secret"')
    expect(text).to.include('_hubctl_secret("/srv/jupyterhub/proxy_auth_token")')
    expect(text).to.include('c.ConfigurableHTTPProxy.should_start = False')
    expect(text).to.include('c.JupyterHub.cleanup_servers = False')
    expect(text).to.include('load_subconfig')
  })

  it('renders the allow rules each version needs (allow_all exists from 5.0)', async () => {
    expect(await renderHubConfig(new Layout('/'), settings, v3, '/lab')).not.to.include('allow_all')
    expect(await renderHubConfig(new Layout('/'), settings, v6, '/lab')).to.include('c.Authenticator.allow_all = False')
  })

  it('admits admins and allowed users', async () => {
    const text = await renderHubConfig(new Layout('/'), settings, v6, '/lab')
    expect(text).to.include('c.Authenticator.admin_users = { "alice",  }')
    expect(text).to.include('c.Authenticator.allowed_users = { "alice", "bob",  }')
  })

  it('cannot be injected into, even by a value that validation would have refused', async () => {
    const evil = `x" }; import os; os.system("id"); {"`
    const text = await renderHubConfig(new Layout('/'), {...settings, admins: [evil]}, v6, '/lab')
    const out = execFileSync('python3', ['-c', 'import ast, sys; tree = ast.parse(sys.stdin.read()); print(sum(isinstance(n, ast.Import) for n in ast.walk(tree)))'], {input: text, encoding: 'utf8'})
    expect(out.trim()).to.equal('2') // glob and os, from the template itself
  })

  it('maps authenticator choices and refuses what the version lacks', () => {
    expect(authenticatorClass('pam', v3)).to.equal('pam')
    expect(authenticatorClass('oauthenticator.GitHubOAuthenticator', v3)).to.equal('oauthenticator.GitHubOAuthenticator')
    expect(() => authenticatorClass('shared-password', v3)).to.throw(HubctlError, /needs JupyterHub 5.1/)
    expect(authenticatorClass('shared-password', v6)).to.equal('shared-password')
    expect(() => authenticatorClass('x; import os', v6)).to.throw(HubctlError, /not one hubctl knows/)
  })

  it('refuses --spawner simple as root unless the one login is hubctl\'s generated one (servers would run as root)', async () => {
    const simple = {...settings, spawner: 'simple' as const}
    expect(() => assertNoRootServers(simple, 0)).to.throw(HubctlError, /--spawner simple with hubctl run as root .*alice, bob/)
    expect(() => assertNoRootServers({...simple, authenticator: 'dummy'}, 0)).to.throw(HubctlError, /alice, bob/)
    expect(() => assertNoRootServers({...simple, allowedUsers: []}, 0)).to.throw(HubctlError, /whoever --authenticator pam lets in/)
    for (const authenticator of ['dummy', 'shared-password']) assertNoRootServers({...simple, authenticator, allowedUsers: []}, 0)
    assertNoRootServers({...simple, authenticator: 'dummy', allowedUsers: ['alice']}, 0)
    assertNoRootServers(simple, 1000)
    assertNoRootServers(settings, 0)
    try {
      await renderHubConfig(new Layout('/'), simple, v3, '/lab')
      expect.fail('rendered')
    } catch (error) {
      expect((error as HubctlError).exitCode).to.equal(2)
      expect((error as HubctlError).line).to.match(/Fix: use --spawner local/)
    }
  })
})
