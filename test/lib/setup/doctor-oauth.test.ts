import {expect} from 'chai'
import fs from 'node:fs/promises'

import {Layout} from '../../../src/lib/config/layout.js'
import {SettingsStore} from '../../../src/lib/config/settings.js'
import {DEFAULT_TEST_PORTS, testSettings} from '../../helpers/settings.js'
import {SecretStore} from '../../../src/lib/files/secrets.js'
import {Doctor} from '../../../src/lib/setup/doctor.js'
import type {Runner} from '../../../src/lib/runner.js'
import {tempPrefix} from '../../helpers/cli.js'

const runner: Runner = {run: async () => ({exitCode: 1, stdout: '', stderr: 'unused', notFound: false})}

const settings = testSettings({
  authenticator: 'oauth',
  oauth: {
    clientId: 'hub',
    authorizeUrl: 'https://id.example.org/authorize',
    tokenUrl: 'https://id.example.org/token',
    userdataUrl: 'https://id.example.org/userinfo',
    usernameClaim: 'preferred_username',
    scopes: [],
    allowedOrgs: [],
    allowedDomains: [],
  },
  ports: {...DEFAULT_TEST_PORTS, https: 8443},
  executables: {singleuser: '/x', proxy: '/x'},
  nginxSupervised: true,
})

/** A provider that answers each endpoint with the status given (or refuses the connection). */
function fakeProvider(answers: Record<string, number | 'refused'>, seen: Request[] = []): typeof fetch {
  return (async (input: string | URL | Request, init?: RequestInit) => {
    const request = new Request(input, init)
    seen.push(request)
    const key = Object.keys(answers).find((path) => new URL(request.url).pathname === path)
    const answer = key ? answers[key] : 404
    if (answer === 'refused') throw new TypeError('fetch failed', {cause: {code: 'ECONNREFUSED'}})
    return new Response('{}', {status: answer})
  }) as typeof fetch
}

describe('doctor: OAuth logins', () => {
  let layout: Layout

  beforeEach(async () => {
    layout = new Layout(await tempPrefix('hco-doctor-oauth'))
    await new SettingsStore(layout).save(settings)
    await new SecretStore(layout).writeOAuthClientSecret('the-client-secret')
  })
  afterEach(async () => {
    await fs.rm(layout.prefix, {recursive: true, force: true})
  })

  async function checks(fetcher: typeof fetch) {
    const doctor = new Doctor({layout, runner, fetch: fetcher})
    await doctor.checkSettings()
    return doctor.checkOAuth()
  }

  it('passes when each endpoint answers as one (a redirect to a login, an OAuth error for a made-up code, 401 without a token); the secret is never sent', async () => {
    const seen: Request[] = []
    const results = await checks(fakeProvider({'/authorize': 302, '/token': 400, '/userinfo': 401}, seen))
    expect(results.map((r) => [r.check, r.status])).to.deep.equal([
      ['oauth secret', 'pass'],
      ['oauth provider', 'pass'],
    ])
    expect(new URL(seen[0].url).searchParams.get('redirect_uri')).to.equal(
      'https://hub.example.org:8443/hub/oauth_callback',
    )
    for (const request of seen) {
      expect(request.url).not.to.include('the-client-secret')
      expect(await request.clone().text()).not.to.include('the-client-secret')
      expect(request.headers.get('authorization')).to.equal(null)
    }
  })

  it('fails naming the endpoint and the flag to correct: a 404 token URL, an unreachable provider', async () => {
    const [, wrong] = await checks(fakeProvider({'/authorize': 302, '/userinfo': 401}))
    expect(wrong.status).to.equal('fail')
    expect(wrong.message).to.include('token https://id.example.org/token answers 404')
    expect(wrong.fix).to.match(/check --oauth-token-url against/)
    const [, down] = await checks(fakeProvider({'/authorize': 'refused', '/token': 'refused', '/userinfo': 'refused'}))
    expect(down.message).to.include('cannot be reached (ECONNREFUSED)')
    expect(down.fix).to.match(/this machine reaches it/)
  })

  it('fails when the secret file is readable by others, with the chmod', async () => {
    await fs.chmod(layout.oauthClientSecret, 0o644)
    const [secret] = await checks(fakeProvider({'/authorize': 302, '/token': 400, '/userinfo': 401}))
    expect(secret).to.include({check: 'oauth secret', status: 'fail', fix: `chmod 600 ${layout.oauthClientSecret}`})
  })
})
