// e2e-lane: parallel
import {expect} from 'chai'
import type {ChildProcess} from 'node:child_process'
import {randomBytes} from 'node:crypto'
import fs from 'node:fs/promises'
import path from 'node:path'

import {Layout} from '../../src/lib/config/layout.js'
import {BrowserSession, runCellInLab, waitForServerPage} from '../helpers/browser.js'
import {
  CommandJson,
  DEBIAN_JUPYTERHUB,
  ROOT,
  VENV_JUPYTERHUB,
  freePort,
  hubctl,
  jsonOf,
  modeOf,
  portFlags,
  snapshot,
  tempPrefix,
  testHubInitArgs,
  walkTree,
} from '../helpers/cli.js'
import {httpStatus, liveProcesses, spawnLogged, stopProcess, waitUntil} from '../helpers/processes.js'
import {addUser, removeUser} from '../helpers/users.js'

/*
 * Logging in with an institution's accounts, end to end against a real OAuth2 provider on
 * loopback: a second JupyterHub (the PyPI one, DummyAuthenticator, its own proxy) is one for its
 * services, so a service registered in it (client ID, secret = its api_token, redirect URI = the
 * callback URL hubctl printed) is the OAuth app. The hub under test is set up by `hubctl init
 * --authenticator oauth` (GenericOAuthenticator: the provider's authorize, token and /hub/api/user
 * URLs, user name claim `name`), the client secret piped on standard input, and runs behind nginx
 * with a self-signed certificate. In Chromium: open the hub, "Sign in with OAuth 2.0", the
 * provider's login page, its "Authorize access" page, back logged in, JupyterLab, print(6*7) is 42.
 * A user the provider knows but the hub does not allow is refused. The secret is in no process's
 * argv, not in hubctl.json, not in any log. On failure the browser's pages are kept in
 * test-output/browser/.
 */

describe('OAuth logins: hubctl init --authenticator oauth against a second JupyterHub as the provider', function () {
  this.timeout(900_000)
  const tag = randomBytes(2).toString('hex')
  // The user the hub allows (a system user: LocalProcessSpawner runs their server), and one the provider knows but the hub does not.
  const alice = `hcoa${tag}`
  const mallory = `hcom${tag}`
  const providerPassword = randomBytes(12).toString('hex')
  const clientId = 'service-hubctl-oauth-test'
  const clientSecret = `hco-${randomBytes(24).toString('hex')}`
  let aliceUid = -1
  let providerDir = ''
  let provider: ChildProcess | undefined
  let providerUrl = ''
  let prefix = ''
  let layout: Layout
  let https = 0
  let init: CommandJson = {}
  let initArgs: string[] = []
  let session: BrowserSession | undefined

  before(async function () {
    aliceUid = await addUser(alice)
    prefix = await tempPrefix('hco-oauth-hub')
    layout = new Layout(prefix)
    const {flags, ports} = await portFlags()
    https = ports.https
    const callback = `https://localhost:${https}/hub/oauth_callback`

    // The provider: its own proxy on loopback, the hub under test registered as an OAuth client.
    providerDir = await tempPrefix('hco-oauth-provider')
    const [publicPort, apiPort, hubPort] = [await freePort(), await freePort(), await freePort()]
    providerUrl = `http://127.0.0.1:${publicPort}`
    const py = (value: unknown) => JSON.stringify(value)
    await fs.writeFile(
      path.join(providerDir, 'jupyterhub_config.py'),
      [
        'c = get_config()  # noqa',
        `c.JupyterHub.bind_url = ${py(`${providerUrl}/`)}`,
        `c.JupyterHub.hub_ip = "127.0.0.1"`,
        `c.JupyterHub.hub_port = ${hubPort}`,
        `c.ConfigurableHTTPProxy.api_url = ${py(`http://127.0.0.1:${apiPort}`)}`,
        `c.ConfigurableHTTPProxy.command = [${py(path.join(ROOT, 'node_modules/.bin/configurable-http-proxy'))}]`,
        `c.JupyterHub.db_url = ${py(`sqlite:///${providerDir}/provider.sqlite`)}`,
        `c.JupyterHub.cookie_secret_file = ${py(`${providerDir}/cookie_secret`)}`,
        'c.JupyterHub.authenticator_class = "dummy"',
        `c.DummyAuthenticator.password = ${py(providerPassword)}`,
        `c.Authenticator.allowed_users = {${py(alice)}, ${py(mallory)}}`,
        'c.JupyterHub.services = [',
        '    {',
        '        "name": "hub-under-test",',
        `        "oauth_client_id": ${py(clientId)},`,
        `        "api_token": ${py(clientSecret)},`,
        `        "oauth_redirect_uri": ${py(callback)},`,
        // The token may read its owner's name (/hub/api/user), nothing more.
        '        "oauth_client_allowed_scopes": ["read:users:name!user"],',
        '    },',
        ']',
        // Every user of the provider may log in to its services (the hub under test decides who gets in).
        'c.JupyterHub.load_roles = [',
        '    {"name": "user", "scopes": ["self", "access:services!service=hub-under-test"]},',
        ']',
        '',
      ].join('\n'),
    )
    provider = spawnLogged(VENV_JUPYTERHUB, ['-f', path.join(providerDir, 'jupyterhub_config.py')], {
      cwd: providerDir,
      env: {...process.env, PATH: `${path.dirname(process.execPath)}:${process.env.PATH}`},
      log: path.join(providerDir, 'provider.log'),
    })
    await waitUntil('the provider hub to answer', async () => (await httpStatus(`${providerUrl}/hub/health`)) === 200, {
      tries: 600,
      intervalMs: 200,
    })

    initArgs = [
      ...testHubInitArgs(prefix, {admin: `hcoboss${tag}`, allowUsers: [alice], jupyterhub: VENV_JUPYTERHUB}, flags),
      '--json',
      '--authenticator',
      'oauth',
      '--oauth-client-id',
      clientId,
      '--oauth-authorize-url',
      `${providerUrl}/hub/api/oauth2/authorize`,
      '--oauth-token-url',
      `${providerUrl}/hub/api/oauth2/token`,
      '--oauth-userdata-url',
      `${providerUrl}/hub/api/user`,
      '--oauth-username-claim',
      'name',
      '--oauth-scope',
      'read:users:name!user',
    ]
    const result = await hubctl([...initArgs, '--oauth-client-secret-stdin'], {input: `${clientSecret}\n`})
    expect(result.exitCode, result.stderr + result.stdout).to.equal(0)
    init = jsonOf(result)
    const started = await hubctl(['start', '--detach', '--prefix', prefix, '--json'])
    expect(started.exitCode, started.stderr + started.stdout).to.equal(0)
  })

  afterEach(async function () {
    if (this.currentTest?.state === 'failed' && session)
      console.log(`kept: ${(await session.keep(this.currentTest.fullTitle())).join(', ')}`)
    await session?.close()
    session = undefined
  })

  after(async function () {
    this.timeout(120_000)
    if (prefix) await hubctl(['stop', '--prefix', prefix, '--json'])
    await stopProcess(provider)
    if (aliceUid >= 0) await removeUser(alice, aliceUid)
    for (const dir of [prefix, providerDir]) if (dir) await fs.rm(dir, {recursive: true, force: true})
  })

  it('init prints the callback URL to register (https, the primary domain, the HTTPS port) and keeps the secret 0600 out of hubctl.json', async () => {
    expect(init.oauth).to.deep.equal({
      provider: 'oauth',
      clientId,
      callbackUrl: `https://localhost:${https}/hub/oauth_callback`,
      clientSecret: 'written',
    })
    expect(await modeOf(layout.oauthClientSecret)).to.equal(0o600)
    expect((await fs.readFile(layout.oauthClientSecret, 'utf8')).trim()).to.equal(clientSecret)
    const settings = await fs.readFile(layout.settings, 'utf8')
    expect(settings).to.include(clientId)
    expect(settings).not.to.include(clientSecret)
    const config = await fs.readFile(layout.hubConfig, 'utf8')
    expect(config).not.to.include(clientSecret)
    expect(config).to.include(
      `c.OAuthenticator.client_secret = _hubctl_secret(${JSON.stringify(layout.oauthClientSecret)})`,
    )
    expect(config).to.include('c.OAuthenticator.allow_all = False')
  })

  it('doctor: the secret is 0600 and the provider endpoints answer as OAuth endpoints', async () => {
    // Only the OAuth checks are read: no user server is started (doctor.test.ts runs that check).
    const doctor = jsonOf(await hubctl(['doctor', '--prefix', prefix, '--no-server-check', '--json']))
    const checks = doctor.checks as Array<{check: string; status: string; message: string}>
    expect(
      checks.find((c) => c.check === 'oauth secret'),
      JSON.stringify(checks),
    ).to.include({status: 'pass'})
    expect(
      checks.find((c) => c.check === 'oauth provider'),
      JSON.stringify(checks),
    ).to.include({status: 'pass'})
  })

  it('a person signs in through the provider in Chromium, authorizes, comes back logged in, and JupyterLab runs print(6*7): 42', async () => {
    session = await BrowserSession.start({acceptSelfSigned: true})
    const {page} = session
    await page.goto(`https://localhost:${https}/hub/login`)
    await page.locator('a', {hasText: 'Sign in with OAuth 2.0'}).click()
    // The provider's own login page.
    await page.waitForURL((url) => url.href.startsWith(`${providerUrl}/hub/login`))
    await page.locator('#username_input').fill(alice)
    await page.locator('#password_input').fill(providerPassword)
    await page.locator('#login_submit').click()
    // The provider asks whether the hub under test may know who this is.
    await page.waitForURL((url) => url.href.startsWith(`${providerUrl}/hub/api/oauth2/authorize`))
    await page.locator('button[type="submit"]', {hasText: 'Authorize'}).click()
    await waitForServerPage(page, alice, 'lab')
    expect(new URL(page.url()).origin).to.equal(`https://localhost:${https}`)
    expect(await runCellInLab(page, 'print(6*7)')).to.equal('42')
  })

  it('a user the provider knows but the hub does not allow is refused (403), and gets no server', async () => {
    session = await BrowserSession.start({acceptSelfSigned: true})
    const {page} = session
    await page.goto(`https://localhost:${https}/hub/login`)
    await page.locator('a', {hasText: 'Sign in with OAuth 2.0'}).click()
    await page.waitForURL((url) => url.href.startsWith(`${providerUrl}/hub/login`))
    await page.locator('#username_input').fill(mallory)
    await page.locator('#password_input').fill(providerPassword)
    const callback = page.waitForResponse((response) => response.url().includes('/hub/oauth_callback'))
    await page.locator('#login_submit').click()
    await page.waitForURL((url) => url.href.startsWith(`${providerUrl}/hub/api/oauth2/authorize`))
    await page.locator('button[type="submit"]', {hasText: 'Authorize'}).click()
    expect((await callback).status()).to.equal(403)
    await page.goto(`https://localhost:${https}/hub/home`)
    await page.waitForURL(/\/hub\/login/)
    const status = jsonOf(await hubctl(['status', '--prefix', prefix, '--json']))
    expect((status.servers as Array<{user: string}>).map((s) => s.user)).not.to.include(mallory)
  })

  it('the client secret is in no process argv, not in hubctl.json, and in no log', async () => {
    for (const proc of await liveProcesses())
      expect(proc.cmdline.join(' '), `pid ${proc.pid}`).not.to.include(clientSecret)
    const leaks: string[] = []
    for (const dir of [layout.logDir, layout.etcDir]) {
      await walkTree(dir, async (full, _relative, entry) => {
        if (entry.isFile() && (await fs.readFile(full, 'utf8')).includes(clientSecret)) leaks.push(full)
      })
    }
    expect(leaks).to.deep.equal([])
    // The login did reach the hub's log (so the search above read a real one).
    expect(await fs.readFile(layout.hubLog, 'utf8')).to.include(alice)
  })

  it('init again without a secret flag keeps the secret and the config; a bad secret file is refused with nothing changed', async () => {
    const again = await hubctl(initArgs)
    expect(again.exitCode, again.stderr).to.equal(0)
    const result = jsonOf(again)
    expect(result.oauth.clientSecret).to.equal('kept')
    expect(result.files).to.deep.include({file: layout.hubConfig, action: 'unchanged'})
    expect((await fs.readFile(layout.oauthClientSecret, 'utf8')).trim()).to.equal(clientSecret)

    const before = await snapshot(layout.etcDir)
    const secretBefore = await fs.readFile(layout.oauthClientSecret, 'utf8')
    const badFile = path.join(providerDir, 'two-lines')
    await fs.writeFile(badFile, 'first-line\nsecond-line\n', {mode: 0o600})
    const bad = await hubctl([...initArgs, '--oauth-client-secret-file', badFile])
    expect(bad.exitCode, bad.stderr).to.equal(2)
    const error = jsonOf(bad).error as {message: string; fix: string}
    expect(error.message).to.match(/^the OAuth client secret from --oauth-client-secret-file .* holds a line break/)
    expect(error.fix).to.match(/on one line/)
    expect(bad.stdout + bad.stderr).not.to.include('first-line')
    expect(await snapshot(layout.etcDir)).to.deep.equal(before)
    expect(await fs.readFile(layout.oauthClientSecret, 'utf8')).to.equal(secretBefore)
  })
})

describe("OAuth logins with Debian's JupyterHub 3.0, which has no oauthenticator", function () {
  this.timeout(300_000)
  let prefix = ''
  after(async () => {
    if (prefix) await fs.rm(prefix, {recursive: true, force: true})
  })

  it('init --authenticator github is refused before anything is written, naming the fix (exit 3)', async () => {
    prefix = await tempPrefix('hco-oauth-debian')
    const {flags} = await portFlags()
    const result = await hubctl(
      [
        ...testHubInitArgs(prefix, {admin: 'hcoboss', jupyterhub: DEBIAN_JUPYTERHUB}, flags),
        '--json',
        '--authenticator',
        'github',
        '--oauth-client-id',
        'Iv1.hco',
        '--oauth-client-secret-stdin',
      ],
      {input: 'hco-debian-secret\n'},
    )
    expect(result.exitCode, result.stdout + result.stderr).to.equal(3)
    const error = jsonOf(result).error as {message: string; fix: string}
    expect(error.message).to.match(
      /--authenticator github needs the oauthenticator package, which JupyterHub 3\.0\.\d+'s Python/,
    )
    expect(error.fix).to.match(/run init without --jupyterhub/)
    expect(await snapshot(prefix)).to.deep.equal({})
  })
})
