import {expect} from 'chai'
import fs from 'node:fs/promises'

import {setWriteFaults} from '../../../src/lib/files/atomic.js'
import {FFDHE2048_PEM} from '../../../src/lib/tls/dhparam.js'
import {HubctlError} from '../../../src/lib/errors.js'
import {Layout} from '../../../src/lib/config/layout.js'
import {SecretStore, validateSecret} from '../../../src/lib/files/secrets.js'
import {modeOf, tempPrefix} from '../../helpers/cli.js'

describe('secrets', () => {
  let layout: Layout
  let store: SecretStore
  const ffdhe = () => Promise.resolve(FFDHE2048_PEM)

  beforeEach(async () => {
    layout = new Layout(await tempPrefix('hubctl-secrets'))
    store = new SecretStore(layout)
  })

  afterEach(async () => {
    setWriteFaults({})
    await fs.rm(layout.prefix, {recursive: true, force: true})
  })

  it('creates every secret 0600 in 0700 directories, from 32 random bytes as hex', async () => {
    const result = await store.generateMissing(ffdhe)
    expect(result.created).to.have.members(['cookieSecret', 'proxyAuthToken', 'apiToken', 'dhparam'])
    expect(await modeOf(layout.srvDir)).to.equal(0o700)
    expect(await modeOf(layout.sslDir)).to.equal(0o700)
    for (const file of Object.values(layout.secretFiles)) expect(await modeOf(file), file).to.equal(0o600)
    expect(await fs.readFile(layout.cookieSecret, 'utf8')).to.match(/^[0-9a-f]{64}\n$/)
    expect(await fs.readFile(layout.proxyAuthToken, 'utf8')).to.match(/^[0-9a-f]{64}$/)
    expect(await store.check()).to.deep.equal([])
  })

  it('never replaces a valid secret', async () => {
    await store.generateMissing(ffdhe)
    const before = await fs.readFile(layout.cookieSecret, 'utf8')
    const again = await store.generateMissing(ffdhe)
    expect(again.created).to.deep.equal([])
    expect(await fs.readFile(layout.cookieSecret, 'utf8')).to.equal(before)
  })

  it('creates only what is missing', async () => {
    await store.generateMissing(ffdhe)
    await fs.rm(layout.apiToken)
    const result = await store.generateMissing(ffdhe)
    expect(result.created).to.deep.equal(['apiToken'])
  })

  const broken: Array<[string, (file: string) => Promise<void>, RegExp]> = [
    ['empty', (f) => fs.writeFile(f, ''), /is empty/],
    ['truncated', (f) => fs.writeFile(f, 'abcdef'), /6 hex characters, not 64/],
    ['not hex', (f) => fs.writeFile(f, 'z'.repeat(64)), /not 64 lowercase hex/],
    ['mode 0644', (f) => fs.chmod(f, 0o644), /mode 0644, not 0600.*chmod 600/],
    [
      'a symlink',
      async (f) => {
        await fs.rm(f)
        await fs.symlink('/etc/hostname', f)
      },
      /symbolic link/,
    ],
    ['owned by another user', (f) => fs.chown(f, 65_534, 65_534), /belongs to uid 65534.*chown/],
    [
      'a directory',
      async (f) => {
        await fs.rm(f)
        await fs.mkdir(f)
      },
      /not a regular file/,
    ],
  ]
  for (const [label, breakIt, message] of broken) {
    it(`reports a cookie secret that is ${label}, with a fix, and does not overwrite it`, async () => {
      await store.generateMissing(ffdhe)
      await breakIt(layout.cookieSecret)
      const problems = await store.check()
      expect(problems).to.have.length(1)
      expect(`${problems[0].problem}. Fix: ${problems[0].fix}`).to.match(message)
      const before = await fs.lstat(layout.cookieSecret)
      let error: unknown
      try {
        await store.generateMissing(ffdhe)
      } catch (error_) {
        error = error_
      }
      expect(error).to.be.instanceOf(HubctlError)
      expect((error as HubctlError).line).to.match(message)
      const after = await fs.lstat(layout.cookieSecret)
      expect(after.ino).to.equal(before.ino)
    })
  }

  it('reads a secret without following a symbolic link', async () => {
    await store.generateMissing(ffdhe)
    await fs.rm(layout.apiToken)
    await fs.symlink(layout.cookieSecret, layout.apiToken)
    let error: unknown
    try {
      await store.read('apiToken')
    } catch (error_) {
      error = error_
    }
    expect((error as HubctlError).line).to.match(/symbolic link/)
  })

  it('flags a group-readable directory', async () => {
    await store.generateMissing(ffdhe)
    await fs.chmod(layout.srvDir, 0o750)
    const problems = await store.check()
    expect(problems.map((p) => p.fix)).to.include(`chmod 700 ${layout.srvDir}`)
  })

  it('keeps the old secret when a write fails half way (full disk)', async () => {
    await store.generateMissing(ffdhe)
    const before = await fs.readFile(layout.proxyAuthToken, 'utf8')
    setWriteFaults({
      beforeRename: () => {
        throw Object.assign(new Error('no space'), {code: 'ENOSPC'})
      },
    })
    let error: unknown
    try {
      await store.write('proxyAuthToken', store.newToken())
    } catch (error_) {
      error = error_
    }
    expect((error as HubctlError).line).to.match(/no space left.*nothing was replaced/)
    expect(await fs.readFile(layout.proxyAuthToken, 'utf8')).to.equal(before)
    expect((await fs.readdir(layout.srvDir)).filter((f) => f.endsWith('.tmp'))).to.deep.equal([])
  })

  it('never quotes a secret value in a problem', () => {
    const value = 'Z'.repeat(64)
    expect(validateSecret('cookieSecret', value)).not.to.include(value)
  })
  it('keeps the OAuth client secret 0600, rewrites it only when it changed, and refuses a link or a bad mode without quoting it', async () => {
    expect((await store.checkOAuthClientSecret())[0].problem).to.match(/oauth_client_secret is missing/)
    expect(await store.writeOAuthClientSecret('client-secret-1\n')).to.deep.equal({changed: true})
    expect(await modeOf(layout.oauthClientSecret)).to.equal(0o600)
    expect(await modeOf(layout.srvDir)).to.equal(0o700)
    expect(await fs.readFile(layout.oauthClientSecret, 'utf8')).to.equal('client-secret-1\n')
    expect(await store.writeOAuthClientSecret('client-secret-1')).to.deep.equal({changed: false})
    expect(await store.checkOAuthClientSecret()).to.deep.equal([])
    await fs.chmod(layout.oauthClientSecret, 0o644)
    const [loose] = await store.checkOAuthClientSecret()
    expect(loose.problem).to.match(/has mode 0644, not 0600/)
    expect(loose.fix).to.equal(`chmod 600 ${layout.oauthClientSecret}`)
    expect(await store.writeOAuthClientSecret('client-secret-2')).to.deep.equal({changed: true})
    expect(await modeOf(layout.oauthClientSecret)).to.equal(0o600)
    await fs.rm(layout.oauthClientSecret)
    await fs.symlink('/etc/passwd', layout.oauthClientSecret)
    let error: unknown
    await store.writeOAuthClientSecret('client-secret-3').catch((error_: unknown) => (error = error_))
    expect(error).to.be.instanceOf(HubctlError)
    expect((error as HubctlError).message).to.match(/symbolic link/)
    expect((await fs.lstat(layout.oauthClientSecret)).isSymbolicLink()).to.equal(true)
    await fs.rm(layout.oauthClientSecret)
    error = undefined
    await store.writeOAuthClientSecret('two\nlines').catch((error_: unknown) => (error = error_))
    expect((error as HubctlError).line).to.match(/holds a line break/)
    expect((error as HubctlError).line).not.to.include('two')
  })
})
