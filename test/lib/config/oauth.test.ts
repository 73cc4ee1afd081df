import {expect} from 'chai'
import {execFileSync} from 'node:child_process'
import fs from 'node:fs/promises'
import os from 'node:os'
import path from 'node:path'

import {HubctlError} from '../../../src/lib/errors.js'
import {renderHubConfig} from '../../../src/lib/config/hubconfig.js'
import {installHubPython} from '../../../src/lib/config/hubpython.js'
import {Layout} from '../../../src/lib/config/layout.js'
import {oauthAllowAll, oauthCallbackUrl, oauthSecretProblem, parseEndpointUrl} from '../../../src/lib/config/oauth.js'
import {parseSettings, type Settings} from '../../../src/lib/config/settings.js'
import {testSettings} from '../../helpers/settings.js'
import {RawInitFlags, resolveInitRequest} from '../../../src/lib/setup/init-request.js'
import {VENV_JUPYTERHUB} from '../../helpers/cli.js'

const base = testSettings({
  domains: ['hub.example.org', 'other.example.org'],
  allowedUsers: ['bob'],
  executables: {jupyterhub: VENV_JUPYTERHUB, singleuser: '/x/jupyterhub-singleuser'},
})
const v6 = {
  executable: VENV_JUPYTERHUB,
  version: '6.1.1',
  major: 6,
  minor: 1,
  singleuser: '/x/jupyterhub-singleuser',
  python: path.join(path.dirname(VENV_JUPYTERHUB), 'python3'),
}
const noOAuth = {scopes: [], allowedOrgs: [], allowedDomains: []}

/** What JupyterHub's config loader sets: the rendered file run by the venv's Python, the traits printed as JSON. */
function loadedTraits(text: string): Record<string, Record<string, unknown>> {
  const code = `
import json, sys
from traitlets.config.loader import PyFileConfigLoader
import os
path = sys.argv[1]
config = PyFileConfigLoader(os.path.basename(path), os.path.dirname(path)).load_config()
out = {}
for section in ("OAuthenticator", "GenericOAuthenticator", "GitHubOAuthenticator", "GoogleOAuthenticator", "Authenticator", "JupyterHub"):
    out[section] = {k: (sorted(v) if isinstance(v, set) else v) for k, v in config[section].items() if not callable(v) and k != "services" and k != "load_roles"}
print(json.dumps(out, default=str))
`
  return JSON.parse(execFileSync(v6.python, ['-I', '-c', code, currentFile], {encoding: 'utf8', input: text}))
}
let currentFile = ''

describe('OAuth logins (oauthenticator)', () => {
  let dir = ''
  before(async () => {
    dir = await fs.mkdtemp(path.join(os.tmpdir(), 'hco-oauth-unit-'))
    await fs.mkdir(path.join(dir, 'srv/jupyterhub'), {recursive: true})
    await fs.writeFile(path.join(dir, 'srv/jupyterhub/oauth_client_secret'), 'the-secret\n')
    for (const name of ['proxy_auth_token', 'hubctl_api_token'])
      await fs.writeFile(path.join(dir, 'srv/jupyterhub', name), 'x\n')
    await installHubPython(new Layout(dir))
  })
  after(async () => {
    await fs.rm(dir, {recursive: true, force: true})
  })

  async function render(settings: Settings): Promise<Record<string, Record<string, unknown>>> {
    const text = await renderHubConfig(new Layout(dir), settings, v6, '/lab')
    currentFile = path.join(dir, `config-${settings.authenticator}.py`)
    await fs.writeFile(currentFile, text)
    expect(text).not.to.include('the-secret')
    return loadedTraits(text)
  }

  it('the callback URL is the primary domain over https, with the HTTPS port unless 443', () => {
    expect(oauthCallbackUrl(base)).to.equal('https://hub.example.org/hub/oauth_callback')
    expect(oauthCallbackUrl({...base, ports: {...base.ports, https: 8443}})).to.equal(
      'https://hub.example.org:8443/hub/oauth_callback',
    )
  })

  it('oauth (GenericOAuthenticator): the endpoints, claim, scopes, the secret read from its 0600 file, allow_all False', async () => {
    const traits = await render({
      ...base,
      ports: {...base.ports, https: 8443},
      authenticator: 'oauth',
      oauth: {
        ...noOAuth,
        clientId: 'hub-client',
        authorizeUrl: 'https://id.example.org/authorize',
        tokenUrl: 'https://id.example.org/token',
        userdataUrl: 'https://id.example.org/userinfo',
        usernameClaim: 'preferred_username',
        scopes: ['openid', 'profile'],
      },
    })
    expect(traits.JupyterHub.authenticator_class).to.equal('oauthenticator.generic.GenericOAuthenticator')
    expect(traits.OAuthenticator).to.deep.equal({
      client_id: 'hub-client',
      client_secret: 'the-secret',
      oauth_callback_url: 'https://hub.example.org:8443/hub/oauth_callback',
      allow_all: false,
      allow_existing_users: false,
      scope: ['openid', 'profile'],
    })
    expect(traits.GenericOAuthenticator).to.deep.equal({
      authorize_url: 'https://id.example.org/authorize',
      token_url: 'https://id.example.org/token',
      userdata_url: 'https://id.example.org/userinfo',
      username_claim: 'preferred_username',
    })
    expect(traits.Authenticator.allowed_users).to.deep.equal(['alice', 'bob'])
    expect(traits.Authenticator.admin_users).to.deep.equal(['alice'])
  })

  it('github: allowed organizations, never allow_all; google: hosted_domain, allow_all only with it', async () => {
    const github = await render({
      ...base,
      authenticator: 'github',
      oauth: {...noOAuth, clientId: 'Iv1.abc', scopes: ['read:org'], allowedOrgs: ['my-lab', 'my-lab:tas']},
    })
    expect(github.JupyterHub.authenticator_class).to.equal('oauthenticator.github.GitHubOAuthenticator')
    expect(github.GitHubOAuthenticator.allowed_organizations).to.deep.equal(['my-lab', 'my-lab:tas'])
    expect(github.OAuthenticator.allow_all).to.equal(false)
    expect(github.GenericOAuthenticator).to.deep.equal({})

    const google = await render({
      ...base,
      authenticator: 'google',
      oauth: {...noOAuth, clientId: '1.apps.googleusercontent.com', allowedDomains: ['example.edu']},
    })
    expect(google.GoogleOAuthenticator.hosted_domain).to.deep.equal(['example.edu'])
    expect(google.OAuthenticator.allow_all).to.equal(true)
    expect(google.OAuthenticator).not.to.have.property('scope')
    expect(oauthAllowAll('google', {allowedDomains: []})).to.equal(false)
    expect(oauthAllowAll('github', {allowedDomains: ['x.org']})).to.equal(false)
  })

  it('JupyterHub loads each rendered config with the pinned oauthenticator (the classes import)', async () => {
    for (const [authenticator, oauth] of [
      ['github', {...noOAuth, clientId: 'a'}],
      [
        'oauth',
        {
          ...noOAuth,
          clientId: 'a',
          authorizeUrl: 'https://x.org/a',
          tokenUrl: 'https://x.org/t',
          userdataUrl: 'https://x.org/u',
          usernameClaim: 'sub',
        },
      ],
    ] as const) {
      const text = await renderHubConfig(new Layout(dir), {...base, authenticator, oauth}, v6, '/lab')
      const file = path.join(dir, `load-${authenticator}.py`)
      await fs.writeFile(file, text)
      const out = execFileSync(
        v6.python,
        [
          '-I',
          '-c',
          'import sys\nfrom jupyterhub.app import JupyterHub\napp = JupyterHub()\napp.load_config_file(sys.argv[1])\nprint(app.authenticator_class.__name__)',
          file,
        ],
        {encoding: 'utf8', cwd: '/'},
      )
      expect(out.trim()).to.match(authenticator === 'github' ? /^GitHubOAuthenticator$/ : /^GenericOAuthenticator$/)
    }
  })

  it('a value from a hand-edited hubctl.json cannot inject Python', async () => {
    const render = (url: string) =>
      renderHubConfig(
        new Layout(dir),
        {
          ...base,
          authenticator: 'oauth',
          oauth: {...noOAuth, clientId: 'a', authorizeUrl: url, tokenUrl: url, userdataUrl: url, usernameClaim: 'x'},
        },
        v6,
        '/lab',
      )
    const imports = (text: string) =>
      execFileSync(
        'python3',
        ['-c', 'import ast, sys; print(sum(isinstance(n, ast.Import) for n in ast.walk(ast.parse(sys.stdin.read()))))'],
        {input: text, encoding: 'utf8'},
      ).trim()
    // The injected "import os" would be one more import statement than the config has of its own.
    const evil = 'https://x.org/a"\nimport os\nos.system("id")\n"'
    expect(imports(await render(evil))).to.equal(imports(await render('https://x.org/a')))
  })

  describe('init flags', () => {
    const common: RawInitFlags = {domain: ['hub.example.org'], admin: ['alice'], tls: 'self-signed'}
    const generic: RawInitFlags = {
      ...common,
      authenticator: 'oauth',
      'oauth-client-id': 'hub',
      'oauth-authorize-url': 'https://id.example.org/authorize',
      'oauth-token-url': 'https://id.example.org/token',
      'oauth-userdata-url': 'https://id.example.org/userinfo',
    }
    const refused = async (flags: RawInitFlags, message: RegExp, stdin?: string) => {
      let error: unknown
      try {
        await resolveInitRequest(flags, undefined, {cores: 2}, {stdin: async () => stdin ?? ''})
      } catch (error_) {
        error = error_
      }
      expect(error, JSON.stringify(flags)).to.be.instanceOf(HubctlError)
      expect((error as HubctlError).line).to.match(message)
      expect((error as HubctlError).line).to.match(/\. Fix: /)
      if (stdin?.trim()) expect((error as HubctlError).line).not.to.include(stdin.trim())
    }

    it('oauth: defaults to the OIDC claim preferred_username and scopes openid profile; reads the secret from stdin', async () => {
      const request = await resolveInitRequest(
        {...generic, 'oauth-client-secret-stdin': true},
        undefined,
        {cores: 2},
        {stdin: async () => 's3cret-value\n'},
      )
      expect(request.oauth).to.deep.include({
        clientId: 'hub',
        clientSecret: 's3cret-value',
        usernameClaim: 'preferred_username',
        scopes: ['openid', 'profile'],
      })
    })

    it('github asks read:org with allowed organizations; google takes allowed domains', async () => {
      const github = await resolveInitRequest(
        {...common, authenticator: 'github', 'oauth-client-id': 'Iv1.x', 'oauth-allowed-org': ['my-lab']},
        undefined,
        {cores: 2},
      )
      expect(github.oauth).to.deep.include({scopes: ['read:org'], allowedOrgs: ['my-lab'], clientSecret: undefined})
      const google = await resolveInitRequest(
        {...common, authenticator: 'google', 'oauth-client-id': 'x', 'oauth-allowed-domain': ['Example.EDU']},
        undefined,
        {cores: 2},
      )
      expect(google.oauth?.allowedDomains).to.deep.equal(['example.edu'])
    })

    it('refuses bad or misplaced flags, naming the flag and the fix, never quoting the secret', async () => {
      await refused({...common, authenticator: 'github'}, /--authenticator github needs --oauth-client-id/)
      await refused(
        {...common, 'oauth-client-id': 'x'},
        /--oauth-client-id goes with --authenticator github or google or oauth/,
      )
      await refused(
        {...common, authenticator: 'github', 'oauth-client-id': 'x', 'oauth-allowed-domain': ['x.org']},
        /--oauth-allowed-domain goes with --authenticator google, not github/,
      )
      await refused(
        {...common, authenticator: 'google', 'oauth-client-id': 'x', 'oauth-allowed-org': ['lab']},
        /--oauth-allowed-org goes with --authenticator github, not google/,
      )
      await refused(
        {...common, authenticator: 'github', 'oauth-client-id': 'x', 'oauth-token-url': 'https://x.org/t'},
        /--oauth-token-url goes with --authenticator oauth/,
      )
      await refused({...generic, 'oauth-token-url': undefined}, /--authenticator oauth needs --oauth-token-url/)
      await refused({...generic, 'oauth-token-url': 'http://id.example.org/token'}, /--oauth-token-url .* is not https/)
      await refused({...generic, 'oauth-authorize-url': 'not a url'}, /--oauth-authorize-url holds spaces/)
      await refused({...generic, 'oauth-userdata-url': 'https://u:p@id.example.org/u'}, /holds a user name or password/)
      await refused({...generic, 'oauth-client-id': 'has space'}, /--oauth-client-id "has space" is not a client ID/)
      await refused({...generic, 'oauth-scope': ['a b']}, /--oauth-scope "a b" is not one OAuth scope/)
      await refused({...generic, 'oauth-username-claim': 'x"y'}, /--oauth-username-claim/)
      await refused(
        {...common, authenticator: 'github', 'oauth-client-id': 'x', 'oauth-allowed-org': ['bad org']},
        /--oauth-allowed-org "bad org" is not a GitHub organization/,
      )
      await refused(
        {...generic, 'oauth-client-secret-stdin': true, 'oauth-client-secret-file': '/x'},
        /both give the client secret/,
      )
      await refused(
        {...generic, 'oauth-client-secret-stdin': true},
        /the OAuth client secret from standard input holds a line break/,
        'line-one\nline-two\n',
      )
      await refused({...generic, 'oauth-client-secret-stdin': true}, /from standard input is empty/, '\n')
      await refused(
        {...generic, 'oauth-client-secret-file': '/nonexistent/hco'},
        /--oauth-client-secret-file \/nonexistent\/hco cannot be read/,
      )
    })

    it('http is accepted only for a provider on loopback', () => {
      expect(parseEndpointUrl('http://127.0.0.1:9/hub/api/user', '--oauth-userdata-url')).to.equal(
        'http://127.0.0.1:9/hub/api/user',
      )
      expect(() => parseEndpointUrl('http://10.0.0.1/x', '--oauth-userdata-url')).to.throw(HubctlError, /not https/)
      expect(oauthSecretProblem('ok-secret\n')).to.equal(undefined)
      expect(oauthSecretProblem(' padded ')).to.match(/spaces around/)
    })
  })

  it('hubctl.json: OAuth settings are checked like the flags; a secret-less, hand-broken one is named', () => {
    const json = (over: object) =>
      JSON.stringify({...base, authenticator: 'oauth', oauth: {...noOAuth, clientId: 'a', ...over}})
    const urls = {authorizeUrl: 'https://x.org/a', tokenUrl: 'https://x.org/t', userdataUrl: 'https://x.org/u'}
    expect(parseSettings(json(urls), 'hubctl.json').oauth?.clientId).to.equal('a')
    expect(() => parseSettings(json({...urls, tokenUrl: 'ftp://x'}), 'hubctl.json')).to.throw(
      HubctlError,
      /"oauth.tokenUrl" is invalid/,
    )
    expect(() => parseSettings(json({}), 'hubctl.json')).to.throw(HubctlError, /"oauth.authorizeUrl" is invalid/)
    expect(() => parseSettings(JSON.stringify({...base, authenticator: 'github'}), 'hubctl.json')).to.throw(
      HubctlError,
      /"oauth" is missing/,
    )
    expect(() => parseSettings(JSON.stringify({...base, oauth: {...noOAuth, clientId: 'a'}}), 'hubctl.json')).to.throw(
      HubctlError,
      /"oauth" is set, but "authenticator" is pam/,
    )
  })
})
