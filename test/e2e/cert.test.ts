// e2e-lane: parallel
import {expect} from 'chai'
import {execa} from 'execa'
import {ChildProcess} from 'node:child_process'
import {X509Certificate, createPrivateKey} from 'node:crypto'
import fs from 'node:fs/promises'
import path from 'node:path'

import {Layout} from '../../src/lib/config/layout.js'
import {
  CliResult,
  CommandJson,
  DEBIAN_JUPYTERHUB,
  hubctl,
  jsonOf,
  modeOf,
  portFlags,
  snapshot,
  tempPrefix,
  testHubInitArgs,
} from '../helpers/cli.js'
import {
  Pebble,
  PebbleLab,
  liveFiles,
  liveSerial,
  servedSerial,
  startNginx as startNginxProcess,
} from '../helpers/pebble.js'
import {stopProcess, waitUntil} from '../helpers/processes.js'

/**
 * Certificates end to end against a real Pebble (Let's Encrypt's test CA) and pebble-challtestsrv
 * (its DNS: every name resolves to 127.0.0.1), real nginx, the built hubctl. Pebble's HTTPS
 * certificate is made here and given to hubctl with --acme-ca-cert: TLS is verified throughout.
 */

const json = jsonOf

function ok(result: CliResult): void {
  expect(result.exitCode, `${result.stdout}\n${result.stderr}`).to.equal(0)
}

describe('hubctl cert against a real Pebble CA and nginx', function () {
  let work: string
  let tlsFiles: {ca: string; cert: string; key: string}
  let lab: PebbleLab
  /** What the tests started and made, stopped and removed after. */
  const spawned: ChildProcess[] = []
  const cleanup: string[] = []

  async function startNginx(layout: Layout): Promise<ChildProcess> {
    const child = await startNginxProcess(layout)
    spawned.push(child)
    return child
  }

  before(async () => {
    work = await tempPrefix('hubctl-pebble')
    cleanup.push(work)
    lab = await new PebbleLab(work).setup()
    tlsFiles = lab.tls
  })

  after(async () => {
    for (const child of spawned.reverse()) await stopProcess(child)
    await lab?.stop()
    for (const dir of cleanup) await fs.rm(dir, {recursive: true, force: true})
  })

  const acmeFlags = (pebble: Pebble) => lab.acmeFlags(pebble)

  /** A Pebble whose http-01 port is the hub's --http-port, and `hubctl init --tls letsencrypt` against it. */
  async function initHub(
    label: string,
    validitySeconds: number,
  ): Promise<{
    layout: Layout
    ports: Awaited<ReturnType<typeof portFlags>>['ports']
    pebble: Pebble
    init: CommandJson
  }> {
    const layout = new Layout(await tempPrefix(label))
    cleanup.push(layout.prefix)
    // nginx's workers run as nobody: they must reach the webroot, as under / (mkdtemp makes 0700).
    await fs.chmod(layout.prefix, 0o755)
    const allocated = await portFlags()
    const pebble = await lab.startPebble(label, {httpPort: allocated.ports.http, validitySeconds})
    const result = await hubctl(
      testHubInitArgs(
        layout.prefix,
        {
          admin: 'alice',
          jupyterhub: DEBIAN_JUPYTERHUB,
          tls: ['--tls', 'letsencrypt', ...acmeFlags(pebble)],
          schedule: true,
          extra: ['--email', 'admin@example.org', '--json'],
        },
        allocated.flags,
      ),
    )
    ok(result)
    return {layout, ports: allocated.ports, pebble, init: json(result)}
  }

  describe('a 90-day certificate', () => {
    let layout: Layout
    let ports: Awaited<ReturnType<typeof portFlags>>['ports']
    let pebble: Pebble
    let init: CommandJson
    let nginx: ChildProcess | undefined
    let accountKey: string

    before(async () => {
      ;({layout, ports, pebble, init} = await initHub('hubctl-cert', 90 * 86_400))
    })

    after(async () => {
      await stopProcess(nginx)
    })

    it("init --tls letsencrypt gets a Pebble certificate through hubctl's own listener; key and issuer match", async () => {
      expect(init.certificate.mode).to.equal('letsencrypt')
      expect(init.certificate.reused).to.equal(false)
      const chain = await fs.readFile(layout.fullchain, 'utf8')
      const leaf = new X509Certificate(chain)
      expect(leaf.subjectAltName).to.equal('DNS:localhost')
      const intermediate = await lab.intermediate(pebble)
      expect(leaf.issuer).to.equal(intermediate.subject)
      expect(leaf.verify(intermediate.publicKey)).to.equal(true)
      expect(init.certificate.issuer).to.equal(intermediate.subject)
      const key = createPrivateKey(await fs.readFile(layout.privkey, 'utf8'))
      expect(leaf.checkPrivateKey(key)).to.equal(true)
      expect(key.asymmetricKeyType).to.equal('ec')
      expect(key.asymmetricKeyDetails?.namedCurve).to.equal('prime256v1')
      for (const file of [layout.fullchain, layout.privkey, layout.acmeAccountKey])
        expect(await modeOf(file), file).to.equal(0o600)
      expect(await modeOf(layout.sslDir)).to.equal(0o700)
      // The account key is its own key, never the certificate's.
      accountKey = await fs.readFile(layout.acmeAccountKey, 'utf8')
      const account = createPrivateKey(accountKey)
      expect(leaf.checkPrivateKey(account)).to.equal(false)
      const settings = JSON.parse(await fs.readFile(layout.settings, 'utf8'))
      expect(settings.tls).to.deep.equal({
        mode: 'letsencrypt',
        acme: {directory: pebble.directory, caCert: tlsFiles.ca, keyType: 'ecdsa-p256', deployHooks: []},
      })
      const status = await hubctl(['cert', 'status', '--prefix', layout.prefix, '--json'])
      ok(status)
      expect(json(status)).to.include({
        installed: true,
        ok: true,
        serial: leaf.serialNumber,
        issuer: intermediate.subject,
        due: false,
      })
      expect(json(status).daysLeft).to.be.within(88, 90)
    })

    it("fullchain.pem holds the leaf and Pebble's intermediate, and verifies against Pebble's root (openssl verify)", async () => {
      const chain = await fs.readFile(layout.fullchain, 'utf8')
      const pems = chain.match(/-----BEGIN CERTIFICATE-----[\s\S]+?-----END CERTIFICATE-----\n/g) ?? []
      expect(pems.join('')).to.equal(chain)
      expect(pems).to.have.length(2)
      const [leaf, sent] = pems.map((pem) => new X509Certificate(pem))
      const intermediate = await lab.intermediate(pebble)
      expect(sent.fingerprint256).to.equal(intermediate.fingerprint256)
      const root = await lab.root(pebble)
      expect(intermediate.verify(root.publicKey)).to.equal(true)
      const dir = await tempPrefix('hubctl-chain')
      cleanup.push(dir)
      await fs.writeFile(path.join(dir, 'root.pem'), root.toString())
      await fs.writeFile(path.join(dir, 'rest.pem'), pems.slice(1).join(''))
      await fs.writeFile(path.join(dir, 'leaf.pem'), leaf.toString())
      // The leaf with only what fullchain.pem sent beside it, against Pebble's root as the one trust anchor.
      const verified = await execa(
        'openssl',
        ['verify', '-CAfile', 'root.pem', '-untrusted', 'rest.pem', '-purpose', 'sslserver', 'leaf.pem'],
        {cwd: dir, reject: false},
      )
      expect(verified.exitCode, verified.stderr).to.equal(0)
      expect(verified.stdout).to.equal('leaf.pem: OK')
      expect(leaf.checkIssued(intermediate)).to.equal(true)
    })

    it("cert obtain with nginx running answers from nginx's webroot, and nginx serves the new certificate", async () => {
      nginx = await startNginx(layout)
      const before = await liveSerial(layout)
      await waitUntil('nginx serving the first certificate', async () => servedSerial(ports.https) === before)
      expect(await lab.forgetAuthorizations(pebble, layout), "init's valid authorization, deactivated").to.equal(1)
      const result = await hubctl(['cert', 'obtain', '--prefix', layout.prefix, '--json'])
      ok(result)
      const out = json(result)
      expect(out).to.include({action: 'obtained', responder: 'webroot', nginxReloaded: true})
      expect(out.serial).to.not.equal(before)
      expect(await liveSerial(layout)).to.equal(out.serial)
      await waitUntil('nginx serving the new certificate', async () => servedSerial(ports.https) === out.serial)
      // Pebble fetched the token from nginx (the access log), and the token file is gone again.
      const access = await fs.readFile(layout.nginxAccessLog, 'utf8')
      expect(access).to.match(/"GET \/\.well-known\/acme-challenge\/[A-Za-z0-9_-]+ HTTP\/1\.1" 200/)
      expect(await fs.readdir(layout.acmeChallengeDir)).to.deep.equal([])
    })

    it('cert renew when nothing is due changes nothing, exits 0, and loads neither acme-client, execa nor node-forge', async () => {
      // The live pair and everything beside it stay; renewal.json may keep the CA's ARI answer.
      const certFiles = async () =>
        Object.fromEntries(Object.entries(await snapshot(layout.sslDir)).filter(([name]) => name !== 'renewal.json'))
      const before = await certFiles()
      // Every module the run loads, through a resolve hook (node:module register).
      const trace = path.join(work, 'modules.txt')
      const hooks = path.join(work, 'trace-hooks.mjs')
      const hook = path.join(work, 'trace-register.mjs')
      await fs.writeFile(
        hooks,
        `import fs from 'node:fs'\nexport async function resolve(specifier, context, next) {\n  const result = await next(specifier, context)\n  fs.appendFileSync(${JSON.stringify(trace)}, result.url + '\\n')\n  return result\n}\n`,
      )
      await fs.writeFile(hook, `import {register} from 'node:module'\nregister(${JSON.stringify(`file://${hooks}`)})\n`)
      const result = await hubctl(['cert', 'renew', '--prefix', layout.prefix, '--json'], {
        env: {NODE_OPTIONS: `--import ${hook}`},
      })
      ok(result)
      expect(json(result).action).to.equal('not-due')
      expect(await certFiles()).to.deep.equal(before)
      const state = await fs.readFile(layout.renewalState, 'utf8').catch(() => '')
      // The CA's answer (its ARI window, or that it has none) is kept until its Retry-After: required here.
      expect(state, 'renewal.json after a renewal that asked the CA').to.not.equal('')
      const kept = JSON.parse(state) as {ari?: {checkedAt?: string; nextCheck?: string}}
      expect(kept.ari?.checkedAt, state).to.be.a('string')
      expect(Date.parse(kept.ari!.nextCheck ?? ''), `nextCheck in ${state}`).to.be.above(Date.now())
      const loaded = await fs.readFile(trace, 'utf8')
      expect(loaded).to.include('/dist/commands/cert/renew.js')
      expect(loaded).not.to.match(/acme-client|execa|node-forge/)
      const text = await hubctl(['cert', 'renew', '--prefix', layout.prefix])
      ok(text)
      expect(text.stdout).to.match(/not due for renewal: \d+ days left; due on /)
      // Within the CA's Retry-After the kept answer is used: renewal.json is not even rewritten.
      expect(await fs.readFile(layout.renewalState, 'utf8').catch(() => '')).to.equal(state)
      expect(await certFiles()).to.deep.equal(before)
    })

    it('cert renew --force gets a new serial, reloads nginx, which serves it', async () => {
      const before = await liveSerial(layout)
      const result = await hubctl([
        'cert',
        'renew',
        '--prefix',
        layout.prefix,
        '--http-port',
        String(pebble.httpPort),
        '--force',
        '--no-random-sleep',
        '--json',
      ])
      ok(result)
      const out = json(result)
      expect(out).to.include({action: 'renewed', reason: 'forced (--force)', nginxReloaded: true})
      expect(out.serial).to.not.equal(before)
      expect(await liveSerial(layout)).to.equal(out.serial)
      await waitUntil('nginx serving the renewed certificate', async () => servedSerial(ports.https) === out.serial)
      const state = JSON.parse(await fs.readFile(layout.renewalState, 'utf8'))
      expect(state.lastSerial).to.equal(out.serial)
      expect(state.lastError).to.equal(undefined)
      expect(await modeOf(layout.renewalState)).to.equal(0o600)
      // The same ACME account throughout: its key was made once.
      expect(await fs.readFile(layout.acmeAccountKey, 'utf8')).to.equal(accountKey)
    })

    it('a renewal while another hubctl holds the lock exits 0 saying so, and changes nothing', async () => {
      await fs.writeFile(layout.lockFile, JSON.stringify({pid: process.pid, what: 'test holding the lock'}), {
        mode: 0o600,
      })
      try {
        const before = await liveFiles(layout)
        const result = await hubctl([
          'cert',
          'renew',
          '--prefix',
          layout.prefix,
          '--http-port',
          String(pebble.httpPort),
          '--force',
          '--no-random-sleep',
        ])
        ok(result)
        expect(result.stdout).to.match(/not renewing now: another hubctl \(pid \d+, test holding the lock\)/)
        expect(await liveFiles(layout)).to.deep.equal(before)
      } finally {
        await fs.rm(layout.lockFile, {force: true})
      }
    })

    it('two renewals at once: one renews, the other waits for it or leaves it the work; both exit 0', async () => {
      const args = [
        'cert',
        'renew',
        '--prefix',
        layout.prefix,
        '--http-port',
        String(pebble.httpPort),
        '--force',
        '--no-random-sleep',
        '--json',
      ]
      // Decided, not left to the machine's load: the second starts once the first holds the lock,
      // which the first keeps longer than the second waits for it (LOCK_WAIT_MS, 3 s: its deploy
      // hook sleeps 8 s under the lock). The second must leave the work to the first: 'locked'.
      // (Two started together may otherwise run one after the other and both renew, rightly.)
      const settingsBefore = await fs.readFile(layout.settings, 'utf8')
      await fs.rm(layout.lockFile, {force: true})
      const first = hubctl([...args, '--deploy-hook', 'sleep 8'])
      await waitUntil(
        'the first renewal to hold the lock',
        async () =>
          fs.readFile(layout.lockFile, 'utf8').then(
            (text) => text.includes('cert renew'),
            () => false,
          ),
        {intervalMs: 20, tries: 3000},
      )
      const results = await Promise.all([first, hubctl(args)])
      await fs.writeFile(layout.settings, settingsBefore)
      for (const result of results) ok(result)
      const actions = results.map((r) => json(r).action)
      for (const action of actions) expect(action).to.be.oneOf(['renewed', 'locked'])
      expect(actions).to.include('renewed')
      expect(
        actions,
        'the first renews; the second, started while it holds the lock, leaves it the work',
      ).to.deep.equal(['renewed', 'locked'])
      const renewed = results
        .map((r) => json(r))
        .filter((r) => r.action === 'renewed')
        .map((r) => r.serial)
      expect(new Set(renewed).size).to.equal(renewed.length)
      const leaf = new X509Certificate(await fs.readFile(layout.fullchain, 'utf8'))
      expect(renewed).to.include(leaf.serialNumber)
      expect(leaf.checkPrivateKey(createPrivateKey(await fs.readFile(layout.privkey, 'utf8')))).to.equal(true)
      await fs.access(layout.lockFile).then(
        () => expect.fail('the lock file was left behind'),
        () => {},
      )
    })

    it("deploy hooks run with a minimal environment, never the rest of root's; hubctl.json, which holds them, is 0640 (was: all of it, 0644)", async () => {
      const marker = path.join(layout.prefix, 'hook-env')
      // The hook is kept in hubctl.json: put the settings back afterwards, for the tests that count the hooks.
      const settingsBefore = await fs.readFile(layout.settings, 'utf8')
      const result = await hubctl(
        [
          'cert',
          'renew',
          '--prefix',
          layout.prefix,
          '--http-port',
          String(pebble.httpPort),
          '--force',
          '--no-random-sleep',
          '--json',
          '--deploy-hook',
          `env > ${marker}`,
          // What the hook reads through the names it is given: the renewed pair, readable by it.
          '--deploy-hook',
          `cat "$HUBCTL_PRIVKEY" > ${marker}.key && cat "$RENEWED_LINEAGE/fullchain.pem" > ${marker}.chain`,
        ],
        {env: {HUBCTL_TEST_ROOT_ONLY: "a value of root's", LANG: 'C.UTF-8'}},
      )
      const mode = await modeOf(layout.settings)
      await fs.writeFile(layout.settings, settingsBefore)
      ok(result)
      const env = Object.fromEntries(
        (await fs.readFile(marker, 'utf8'))
          .trim()
          .split('\n')
          .map((line) => [line.slice(0, line.indexOf('=')), line.slice(line.indexOf('=') + 1)]),
      )
      expect(env).to.include({
        PATH: '/usr/sbin:/usr/bin:/sbin:/bin',
        LANG: 'C.UTF-8',
        RENEWED_LINEAGE: layout.sslDir,
        RENEWED_DOMAINS: 'localhost',
        HUBCTL_FULLCHAIN: layout.fullchain,
        HUBCTL_PRIVKEY: layout.privkey,
      })
      const allowed = [
        'PATH',
        'LANG',
        'LC_ALL',
        'RENEWED_LINEAGE',
        'RENEWED_DOMAINS',
        'HUBCTL_FULLCHAIN',
        'HUBCTL_PRIVKEY',
        'HUBCTL_PREFIX',
        'PWD',
        'OLDPWD',
        'SHLVL',
        '_',
      ]
      expect(Object.keys(env).filter((name) => !allowed.includes(name))).to.deep.equal([])
      expect(mode).to.equal(0o640)
      // The files those names lead to are the renewed key and chain, as the hook saw them.
      const renewedSerial = json(result).serial
      const seenKey = await fs.readFile(`${marker}.key`, 'utf8')
      const seenChain = await fs.readFile(`${marker}.chain`, 'utf8')
      await fs.rm(`${marker}.key`)
      expect(seenKey).to.equal(await fs.readFile(layout.privkey, 'utf8'))
      expect(seenChain).to.equal(await fs.readFile(layout.fullchain, 'utf8'))
      expect(new X509Certificate(seenChain).serialNumber).to.equal(renewedSerial)
      expect(new X509Certificate(seenChain).checkPrivateKey(createPrivateKey(seenKey))).to.equal(true)
    })

    it('a failing --deploy-hook is reported with a non-zero exit; the hooks run with the renewed files named', async () => {
      const marker = path.join(layout.prefix, 'hook-ran')
      const before = await liveSerial(layout)
      const result = await hubctl([
        'cert',
        'renew',
        '--prefix',
        layout.prefix,
        '--http-port',
        String(pebble.httpPort),
        '--force',
        '--no-random-sleep',
        '--deploy-hook',
        `echo "$RENEWED_DOMAINS $HUBCTL_FULLCHAIN" > ${marker}`,
        '--deploy-hook',
        'echo hook-broke >&2; exit 3',
      ])
      expect(result.exitCode, result.stderr).to.equal(7)
      expect(result.stderr).to.match(/deploy hook failed \(exit 3\): echo hook-broke >&2; exit 3\nhook-broke/)
      expect(result.stdout).to.match(/renewed a certificate for localhost/)
      expect(await liveSerial(layout)).to.not.equal(before)
      expect((await fs.readFile(marker, 'utf8')).trim()).to.equal(`localhost ${layout.fullchain}`)
      const settings = JSON.parse(await fs.readFile(layout.settings, 'utf8'))
      expect(settings.tls.acme.deployHooks).to.have.length(2)
    })

    it('with the CA down, renewal fails with exit code 5 and the live files are untouched', async () => {
      await stopProcess(pebble.process)
      const before = await liveFiles(layout)
      // nginx's old workers may serve the previous certificate for a moment after a reload.
      const live = await liveSerial(layout)
      await waitUntil('nginx serving the live certificate', async () => servedSerial(ports.https) === live)
      const served = servedSerial(ports.https)
      const result = await hubctl([
        'cert',
        'renew',
        '--prefix',
        layout.prefix,
        '--http-port',
        String(pebble.httpPort),
        '--force',
        '--no-random-sleep',
      ])
      expect(result.exitCode, result.stderr).to.equal(5)
      expect(result.stderr).to.match(/hubctl: cannot reach the ACME server https:\/\/127\.0\.0\.1:\d+ \(ECONNREFUSED\)/)
      expect(result.stderr).not.to.match(/deploy hook/)
      expect(await liveFiles(layout)).to.deep.equal(before)
      expect(servedSerial(ports.https)).to.equal(served)
      const state = JSON.parse(await fs.readFile(layout.renewalState, 'utf8'))
      expect(state.lastError).to.match(/cannot reach the ACME server/)
      // Not due yet, so status is still fine, but shows the failed attempt.
      const status = await hubctl(['cert', 'status', '--prefix', layout.prefix, '--json'])
      ok(status)
      expect(json(status).lastError).to.match(/cannot reach the ACME server/)
    })
  })

  describe('a short-lived certificate', () => {
    let layout: Layout
    let ports: Awaited<ReturnType<typeof portFlags>>['ports']
    let pebble: Pebble
    let nginx: ChildProcess | undefined

    before(async () => {
      // 4 s: Pebble issues notBefore = now, notAfter = now + 3 s; short-lived, so due at half (1.5 s).
      ;({layout, ports, pebble} = await initHub('hubctl-cert-short', 4))
      nginx = await startNginx(layout)
    })

    after(async () => {
      await stopProcess(nginx)
    })

    it('is renewed by a plain `cert renew` once due, and nginx serves the new one', async () => {
      const before = await liveSerial(layout)
      await waitUntil(
        'the certificate to become due',
        async () => json(await hubctl(['cert', 'status', '--prefix', layout.prefix, '--json'])).due === true,
      )
      await lab.forgetAuthorizations(pebble, layout)
      const result = await hubctl([
        'cert',
        'renew',
        '--prefix',
        layout.prefix,
        '--http-port',
        String(pebble.httpPort),
        '--no-random-sleep',
        '--json',
      ])
      ok(result)
      const out = json(result)
      expect(out.action).to.equal('renewed')
      expect(out.reason).to.match(/half of its lifetime remains|expired/)
      expect(out.responder).to.equal('webroot')
      expect(out.serial).to.not.equal(before)
      await waitUntil('nginx serving the renewed certificate', async () => servedSerial(ports.https) === out.serial)
    })

    it('cert status exits 1 once it is past its renewal time and the last attempt failed', async () => {
      await stopProcess(pebble.process)
      await waitUntil(
        'the certificate to become due',
        async () => json(await hubctl(['cert', 'status', '--prefix', layout.prefix, '--json'])).due === true,
      )
      const failed = await hubctl([
        'cert',
        'renew',
        '--prefix',
        layout.prefix,
        '--http-port',
        String(pebble.httpPort),
        '--no-random-sleep',
      ])
      expect(failed.exitCode, failed.stderr).to.equal(5)
      const status = await hubctl(['cert', 'status', '--prefix', layout.prefix])
      expect(status.exitCode, status.stdout + status.stderr).to.equal(1)
      expect(status.stderr).to.match(
        /problem: the certificate (expired|was due for renewal .* and the last attempt failed: cannot reach the ACME server)/,
      )
      expect(status.stdout).to.match(/last attempt: .*, failed: cannot reach the ACME server/)
    })
  })

  describe('a CA that requires external account binding', () => {
    const kid = 'hubctl-test-kid'
    const hmac = 'zWNDZM6eQGHWpSRTPal5eIUYFTu7EajVIoguysqZ9wG44nMEtx3MUAsUDkMTQ12W'
    let layout: Layout
    let pebble: Pebble

    before(async () => {
      layout = new Layout(await tempPrefix('hubctl-cert-eab'))
      cleanup.push(layout.prefix)
      const allocated = await portFlags()
      pebble = await lab.startPebble('hubctl-cert-eab', {
        httpPort: allocated.ports.http,
        validitySeconds: 90 * 86_400,
        eab: {[kid]: hmac},
      })
      ok(
        await hubctl(
          testHubInitArgs(
            layout.prefix,
            {admin: 'alice', jupyterhub: DEBIAN_JUPYTERHUB, schedule: true, extra: ['--json']},
            allocated.flags,
          ),
        ),
      )
    })

    it('says so when the binding is missing, and works with --eab-kid and the HMAC key from the environment, which is never stored or printed', async () => {
      const before = await liveFiles(layout)
      const missing = await hubctl(['cert', 'obtain', '--prefix', layout.prefix, ...acmeFlags(pebble)])
      expect(missing.exitCode, missing.stderr).to.equal(2)
      expect(missing.stderr).to.match(/requires an external account binding.*--eab-kid/)
      expect(await liveFiles(layout)).to.deep.equal(before)
      const result = await hubctl(
        [
          'cert',
          'obtain',
          '--prefix',
          layout.prefix,
          ...acmeFlags(pebble),
          '--eab-kid',
          kid,
          '--key-type',
          'rsa2048',
          '--json',
        ],
        {env: {HUBCTL_EAB_HMAC_KEY: hmac}},
      )
      ok(result)
      expect(json(result).action).to.equal('obtained')
      expect(result.stdout + result.stderr).not.to.include(hmac)
      const settingsText = await fs.readFile(layout.settings, 'utf8')
      expect(settingsText).not.to.include(hmac)
      expect(JSON.parse(settingsText).tls).to.deep.equal({
        mode: 'letsencrypt',
        acme: {directory: pebble.directory, caCert: tlsFiles.ca, keyType: 'rsa2048', eabKid: kid, deployHooks: []},
      })
      const key = createPrivateKey(await fs.readFile(layout.privkey, 'utf8'))
      expect(key.asymmetricKeyType).to.equal('rsa')
      expect(key.asymmetricKeyDetails?.modulusLength).to.equal(2048)
      // A renewal reuses the bound account: no HMAC key needed any more.
      const renewed = await hubctl([
        'cert',
        'renew',
        '--prefix',
        layout.prefix,
        '--force',
        '--no-random-sleep',
        '--json',
      ])
      ok(renewed)
      expect(json(renewed).action).to.equal('renewed')
    })
  })
})
