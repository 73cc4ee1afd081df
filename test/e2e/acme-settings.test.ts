// e2e-lane: parallel
import {expect} from 'chai'
import {X509Certificate, createPrivateKey} from 'node:crypto'
import fs from 'node:fs/promises'
import path from 'node:path'

import {Layout} from '../../src/lib/config/layout.js'
import {
  DEBIAN_JUPYTERHUB,
  CliResult,
  freePort,
  hubctl,
  portFlags,
  tempPrefix,
  jsonOf,
  testHubInitArgs,
} from '../helpers/cli.js'
import {Pebble, PebbleLab} from '../helpers/pebble.js'

/**
 * The ACME settings given to `init` or `cert obtain` are the ones the renewals use: kept in
 * hubctl.json even when init keeps a valid certificate, and a changed --email becomes the ACME
 * account's contact. Real Pebbles (two CAs, to tell which one a renewal went to), the built hubctl.
 */

const json = jsonOf

function ok(result: CliResult): void {
  expect(result.exitCode, `${result.stdout}\n${result.stderr}`).to.equal(0)
}

describe('ACME settings kept for the renewals (Pebble)', function () {
  let work: string
  let lab: PebbleLab
  let layout: Layout
  let portArgs: string[]
  let hubHttpPort: number
  let first: Pebble
  let second: Pebble
  const marker = () => path.join(layout.prefix, 'hook-marker')
  const hook = () => `echo "$RENEWED_DOMAINS" >> ${marker()}`

  const settings = async () => JSON.parse(await fs.readFile(layout.settings, 'utf8'))
  const leaf = async () => new X509Certificate(await fs.readFile(layout.fullchain, 'utf8'))
  const init = (extra: string[]) =>
    hubctl(
      testHubInitArgs(
        layout.prefix,
        {
          admin: 'alice',
          jupyterhub: DEBIAN_JUPYTERHUB,
          tls: ['--tls', 'letsencrypt'],
          schedule: true,
          extra: ['--json', ...extra],
        },
        portArgs,
      ),
    )

  /** The contact the CA holds for hubctl's ACME account, asked with the account key. */
  async function accountContact(pebble: Pebble): Promise<string[]> {
    return lab.asAccount(pebble, layout, async (client) => {
      const account = await client.createAccount({onlyReturnExisting: true})
      return (account.contact ?? []).map(String)
    })
  }

  before(async () => {
    work = await tempPrefix('hubctl-acme-settings')
    lab = await new PebbleLab(work).setup()
    layout = new Layout(await tempPrefix('hubctl-acme-settings-hub'))
    const allocated = await portFlags()
    portArgs = allocated.flags
    hubHttpPort = allocated.ports.http
    first = await lab.startPebble('first', {httpPort: hubHttpPort})
    second = await lab.startPebble('second', {httpPort: hubHttpPort})
    const result = await init([...lab.acmeFlags(first), '--email', 'first@example.org'])
    ok(result)
    expect(json(result).certificate).to.include({mode: 'letsencrypt', reused: false})
    expect((await leaf()).issuer).to.equal((await lab.intermediate(first)).subject)
  })

  after(async () => {
    await lab?.stop()
    for (const dir of [work, layout?.prefix]) if (dir) await fs.rm(dir, {recursive: true, force: true})
  })

  it('init again with other ACME flags keeps the valid certificate and keeps the flags; the next renewal uses them', async () => {
    const serial = (await leaf()).serialNumber
    const result = await init([
      ...lab.acmeFlags(second),
      '--email',
      'first@example.org',
      '--key-type',
      'rsa2048',
      '--eab-kid',
      'kid-kept',
      '--deploy-hook',
      hook(),
    ])
    ok(result)
    expect(json(result).certificate).to.include({reused: true, serial})
    expect((await settings()).tls).to.deep.equal({
      mode: 'letsencrypt',
      acme: {
        directory: second.directory,
        caCert: lab.tls.ca,
        keyType: 'rsa2048',
        eabKid: 'kid-kept',
        deployHooks: [hook()],
      },
    })
    // A renewal with no flag at all goes to the second CA, with an RSA key, and runs the hook.
    const renewed = await hubctl(['cert', 'renew', '--prefix', layout.prefix, '--force', '--no-random-sleep', '--json'])
    ok(renewed)
    expect(json(renewed).action).to.equal('renewed')
    const cert = await leaf()
    expect(cert.issuer).to.equal((await lab.intermediate(second)).subject)
    const key = createPrivateKey(await fs.readFile(layout.privkey, 'utf8'))
    expect(key.asymmetricKeyType).to.equal('rsa')
    expect(key.asymmetricKeyDetails?.modulusLength).to.equal(2048)
    expect(cert.checkPrivateKey(key)).to.equal(true)
    expect((await fs.readFile(marker(), 'utf8')).trim().split('\n')).to.deep.equal(['localhost'])
  })

  it("init with a changed --email, keeping the certificate, makes it the ACME account's contact", async () => {
    expect(await accountContact(second)).to.deep.equal(['mailto:first@example.org'])
    const before = await fs.readFile(layout.fullchain, 'utf8')
    const result = await init([...lab.acmeFlags(second), '--email', 'second@example.org'])
    ok(result)
    const out = json(result)
    expect(out.certificate.reused).to.equal(true)
    expect(out.certificate.accountContact).to.equal(
      "the ACME account's contact is now mailto:second@example.org (was mailto:first@example.org)",
    )
    expect(out.warnings.join('\n')).not.to.match(/contact/)
    expect(await accountContact(second)).to.deep.equal(['mailto:second@example.org'])
    expect(await fs.readFile(layout.fullchain, 'utf8')).to.equal(before)
    const kept = await settings()
    expect(kept.email).to.equal('second@example.org')
    // The flags of the earlier init are still there: nothing given now replaced them.
    expect(kept.tls.acme).to.include({directory: second.directory, keyType: 'rsa2048', eabKid: 'kid-kept'})
    // Same e-mail again: the CA is not asked, nothing to report.
    const again = await init([...lab.acmeFlags(second), '--email', 'second@example.org'])
    ok(again)
    expect(json(again).certificate).not.to.have.property('accountContact')
  })

  it('cert obtain --email changes the contact during the order, keeps the address, and runs the kept deploy hook', async () => {
    const result = await hubctl(['cert', 'obtain', '--prefix', layout.prefix, '--email', 'third@example.org', '--json'])
    ok(result)
    const out = json(result)
    expect(out.action).to.equal('obtained')
    expect(out.notes).to.include(
      "the ACME account's contact is now mailto:third@example.org (was mailto:second@example.org)",
    )
    expect(out.hooks).to.have.length(1)
    expect(out.hooks[0]).to.include({command: hook(), ok: true})
    expect(await accountContact(second)).to.deep.equal(['mailto:third@example.org'])
    expect((await settings()).email).to.equal('third@example.org')
    expect((await fs.readFile(marker(), 'utf8')).trim().split('\n')).to.have.length(2)
    const bad = await hubctl(['cert', 'obtain', '--prefix', layout.prefix, '--email', 'not-an-address'])
    expect(bad.exitCode, bad.stderr).to.equal(2)
    expect(bad.stderr).to.match(/--email "not-an-address" is not an e-mail address/)
  })

  it("cert obtain --http-port (a CA that reaches another port than the hub's) is kept: a renewal without it answers there", async () => {
    const challengePort = await freePort()
    const third = await lab.startPebble('third', {httpPort: challengePort})
    const result = await hubctl([
      'cert',
      'obtain',
      '--prefix',
      layout.prefix,
      ...lab.acmeFlags(third),
      '--http-port',
      String(challengePort),
      '--json',
    ])
    ok(result)
    expect(json(result).responder).to.equal('hubctl')
    expect((await settings()).tls.acme).to.include({directory: third.directory, httpPort: challengePort})
    await lab.forgetAuthorizations(third, layout)
    const renewed = await hubctl(['cert', 'renew', '--prefix', layout.prefix, '--force', '--no-random-sleep', '--json'])
    ok(renewed)
    expect(json(renewed)).to.include({action: 'renewed', responder: 'hubctl'})
    expect((await leaf()).issuer).to.equal((await lab.intermediate(third)).subject)
    // The hub's own port again: nothing special to keep any more.
    ok(
      await hubctl([
        'cert',
        'obtain',
        '--prefix',
        layout.prefix,
        ...lab.acmeFlags(second),
        '--http-port',
        String(hubHttpPort),
        '--json',
      ]),
    )
    expect((await settings()).tls.acme).not.to.have.property('httpPort')
  })

  it('cert renew with nothing due keeps a new --deploy-hook (and says so) for the next renewal', async () => {
    const second = path.join(layout.prefix, 'second-hook')
    const extra = `touch ${second}`
    const result = await hubctl(['cert', 'renew', '--prefix', layout.prefix, '--deploy-hook', extra, '--json'])
    ok(result)
    const out = json(result)
    expect(out.action).to.equal('not-due')
    expect(out.notes).to.include(`kept the new --deploy-hook in ${layout.settings} for the renewals`)
    expect((await settings()).tls.acme.deployHooks).to.deep.equal([hook(), extra])
    // A plain run of the timer afterwards: nothing to keep, nothing written.
    const settingsBefore = await fs.stat(layout.settings)
    const plain = await hubctl(['cert', 'renew', '--prefix', layout.prefix, '--json'])
    ok(plain)
    expect(json(plain).notes).to.deep.equal([])
    expect((await fs.stat(layout.settings)).mtimeMs).to.equal(settingsBefore.mtimeMs)
    const forced = await hubctl(['cert', 'renew', '--prefix', layout.prefix, '--force', '--no-random-sleep', '--json'])
    ok(forced)
    expect(json(forced).hooks.map((h: {command: string}) => h.command)).to.deep.equal([hook(), extra])
    await fs.access(second)
  })
})
