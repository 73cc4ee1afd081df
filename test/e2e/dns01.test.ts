// e2e-lane: parallel
import {expect} from 'chai'
import {ChildProcess} from 'node:child_process'
import {X509Certificate, randomBytes} from 'node:crypto'
import fs from 'node:fs/promises'
import path from 'node:path'

import {Layout} from '../../src/lib/config/layout.js'
import {txtQuery} from '../../src/lib/tls/dns01.js'
import {
  CliResult,
  DEBIAN_JUPYTERHUB,
  freePort,
  hubctl,
  jsonOf,
  portFlags,
  tempPrefix,
  failed,
  ok,
} from '../helpers/cli.js'
import {Pebble, PebbleLab, liveSerial, untouched, servedSerial, startNginx} from '../helpers/pebble.js'
import {spawnLogged, stopProcess, waitUntil} from '../helpers/processes.js'
import {needTool} from '../helpers/tools.js'
import {which} from '../../src/lib/runner.js'

/**
 * A certificate for hub.localhost and *.hub.localhost through ACME DNS-01 against a real Pebble:
 * --dns-hook publishes the TXT records with a script calling pebble-challtestsrv's management API
 * (Pebble's DNS), --dns rfc2136 with nsupdate and a TSIG key to a real Knot DNS that Pebble asks.
 * nginx serves the result; renewals from hubctl.json take the same path; failures keep the old
 * certificate and hubctl.json.
 */

const DOMAIN = 'hub.localhost'
const WILDCARD = `*.${DOMAIN}`
const RECORD = `_acme-challenge.${DOMAIN}`

/** The TXT values a server answers for a name ([] when none). */
async function txt(server: string, name = RECORD): Promise<string[]> {
  return txtQuery(server, name).catch(() => [])
}

function covered(pem: string): string[] {
  return (new X509Certificate(pem).subjectAltName ?? '').split(', ').map((entry) => entry.replace(/^DNS:/, ''))
}

/** nginx serves the live certificate for the hub's name (after its reload). */
async function served(layout: Layout): Promise<void> {
  const serial = await liveSerial(layout)
  const https = Number((JSON.parse(await fs.readFile(layout.settings, 'utf8')) as {ports: {https: number}}).ports.https)
  await waitUntil('nginx serving the new certificate', async () => servedSerial(https, DOMAIN) === serial)
}

/** What hubctl.json holds, with the wildcard added to the domains (as `init --subdomains` does). */
async function addWildcard(layout: Layout): Promise<void> {
  const settings = JSON.parse(await fs.readFile(layout.settings, 'utf8')) as {domains: string[]; subdomains?: boolean}
  settings.domains = [DOMAIN, WILDCARD]
  settings.subdomains = true
  await fs.writeFile(layout.settings, JSON.stringify(settings, null, 2) + '\n')
}

describe('DNS-01 against a real Pebble: --dns-hook and --dns rfc2136', function () {
  let work: string
  let lab: PebbleLab
  const spawned: ChildProcess[] = []
  const cleanup: string[] = []

  before(async () => {
    work = await tempPrefix('hubctl-dns01')
    cleanup.push(work)
    lab = await new PebbleLab(work).setup()
  })

  after(async () => {
    for (const child of spawned.reverse()) await stopProcess(child)
    await lab?.stop()
    for (const dir of cleanup) await fs.rm(dir, {recursive: true, force: true})
  })

  /** `hubctl init --tls letsencrypt --domain hub.localhost` answering DNS-01 with `dnsFlags`, against `pebble`. */
  async function initHub(
    label: string,
    pebble: Pebble,
    dnsFlags: string[],
  ): Promise<{layout: Layout; init: CliResult}> {
    const layout = new Layout(await tempPrefix(label))
    cleanup.push(layout.prefix)
    await fs.chmod(layout.prefix, 0o755)
    const allocated = await portFlags()
    const init = await hubctl([
      'init',
      '--prefix',
      layout.prefix,
      '--yes',
      '--domain',
      DOMAIN,
      '--email',
      'admin@example.org',
      '--admin',
      'dnsadmin',
      '--tls',
      'letsencrypt',
      ...lab.acmeFlags(pebble),
      ...dnsFlags,
      '--dhparam',
      'ffdhe2048',
      '--jupyterhub',
      DEBIAN_JUPYTERHUB,
      '--no-systemd',
      '--no-server-check',
      '--json',
      ...allocated.flags,
    ])
    ok(init)
    return {layout, init}
  }

  describe('--dns-hook (a script calling pebble-challtestsrv, Pebble’s DNS)', () => {
    let pebble: Pebble
    let hook: string
    let hookLog: string
    let dnsServer: string

    /** The hook: the documented environment to the challtestsrv's API, each call logged. */
    async function writeHook(body: string): Promise<void> {
      await fs.writeFile(
        hook,
        `#!/bin/sh\necho "$HUBCTL_DNS_ACTION $HUBCTL_DNS_NAME $HUBCTL_DNS_VALUE" >> ${hookLog}\n${body}\n`,
      )
      await fs.chmod(hook, 0o755)
    }
    const publishingHook = () =>
      writeHook(
        [
          'set -e',
          'case "$HUBCTL_DNS_ACTION" in',
          `  add) curl -sf -X POST -d "{\\"host\\":\\"$HUBCTL_DNS_NAME.\\",\\"value\\":\\"$HUBCTL_DNS_VALUE\\"}" ${lab.challtestsrvUrl}/set-txt ;;`,
          `  remove) curl -sf -X POST -d "{\\"host\\":\\"$HUBCTL_DNS_NAME.\\"}" ${lab.challtestsrvUrl}/clear-txt ;;`,
          'esac',
        ].join('\n'),
      )

    before(async () => {
      pebble = await lab.startPebble('hook', {httpPort: await freePort()})
      hook = path.join(work, 'dns-hook')
      hookLog = path.join(work, 'dns-hook.log')
      dnsServer = `127.0.0.1:${lab.dnsPort}`
      await publishingHook()
    })

    it('init, then cert obtain with the wildcard: TXT records published and removed, nginx serves both names; renew --force the same way', async function () {
      this.timeout(240_000)
      const {layout} = await initHub('hubctl-dns01-hook', pebble, ['--dns-hook', hook, '--dns-resolver', dnsServer])
      const kept = JSON.parse(await fs.readFile(layout.settings, 'utf8')) as {tls: {acme: {dns: unknown}}}
      expect(kept.tls.acme.dns).to.deep.equal({provider: 'hook', hook, resolver: dnsServer, waitSeconds: 120})
      expect(covered(await fs.readFile(layout.fullchain, 'utf8'))).to.deep.equal([DOMAIN])

      await addWildcard(layout)
      await fs.writeFile(hookLog, '')
      const nginx = await startNginx(layout)
      spawned.push(nginx)
      // Every command below asks for challenges: no authorization of the one before may be reused.
      const fresh = () => lab.forgetAuthorizations(pebble, layout)
      await fresh()
      const obtained = await hubctl(['cert', 'obtain', '--prefix', layout.prefix])
      ok(obtained)
      expect(obtained.stdout).to.include('dns-01 answered by TXT records')
      expect(obtained.stderr).to.include(`${RECORD} answers at ${dnsServer}`)
      expect(covered(await fs.readFile(layout.fullchain, 'utf8'))).to.have.members([DOMAIN, WILDCARD])
      await served(layout)
      // Two authorizations (the name and its wildcard), each added then removed, on the same record name.
      const calls = (await fs.readFile(hookLog, 'utf8')).trim().split('\n')
      expect(calls.map((line) => line.split(' ').slice(0, 2).join(' '))).to.deep.equal([
        `add ${RECORD}`,
        `remove ${RECORD}`,
        `add ${RECORD}`,
        `remove ${RECORD}`,
      ])
      expect(await txt(dnsServer)).to.deep.equal([])

      const before = await liveSerial(layout)
      await fs.writeFile(hookLog, '')
      await fresh()
      const renewed = await hubctl(['cert', 'renew', '--prefix', layout.prefix, '--force', '--json'])
      ok(renewed)
      expect(jsonOf(renewed).action).to.equal('renewed')
      expect(jsonOf(renewed).responder).to.equal('dns')
      expect(await liveSerial(layout)).to.not.equal(before)
      await served(layout)
      expect(covered(await fs.readFile(layout.fullchain, 'utf8'))).to.have.members([DOMAIN, WILDCARD])
      expect((await fs.readFile(hookLog, 'utf8')).trim().split('\n')).to.have.length(4)
      expect(await txt(dnsServer)).to.deep.equal([])

      // A hook that fails: its exit status and stderr in the error, the old certificate kept.
      await writeHook('echo "zone hub.localhost refused the change" >&2\nexit 3')
      await fresh()
      const hookFails = await untouched(layout, () => hubctl(['cert', 'obtain', '--prefix', layout.prefix]))
      failed(
        hookFails,
        5,
        /the DNS hook .*dns-hook failed \(exit 3\) on HUBCTL_DNS_ACTION=add .*zone hub\.localhost refused the change/,
      )

      // A hook that publishes nothing: the record never appears; the error names it, the value and the server.
      await writeHook('exit 0')
      await fs.writeFile(hookLog, '')
      await fresh()
      const never = await untouched(layout, () =>
        hubctl(['cert', 'obtain', '--prefix', layout.prefix, '--dns-wait', '3']),
      )
      const line = failed(
        never,
        5,
        new RegExp(
          `the TXT record ${RECORD} with the value [A-Za-z0-9_-]{43} did not appear at ${dnsServer} \\(no TXT record\\)`,
        ),
      )
      expect(line).to.include('the CA was not asked to validate')
      // Removed on failure too.
      expect(
        (await fs.readFile(hookLog, 'utf8'))
          .trim()
          .split('\n')
          .map((l) => l.split(' ')[0]),
      ).to.deep.equal(['add', 'remove'])
      await publishingHook()
    })

    it('refuses a wildcard without DNS-01, a public suffix, a hook that is not executable or is writable by others: nothing written', async function () {
      this.timeout(120_000)
      const {layout} = await initHub('hubctl-dns01-bad', pebble, ['--dns-hook', hook, '--dns-resolver', dnsServer])
      await addWildcard(layout)
      const account = await fs.readFile(layout.acmeAccountKey, 'utf8')

      const noDns = await untouched(layout, () =>
        hubctl(['cert', 'obtain', '--prefix', layout.prefix, '--dns', 'none']),
      )
      failed(
        noDns,
        2,
        /\*\.hub\.localhost is a wildcard name, which a CA validates only through DNS-01.*Fix: give --dns rfc2136 .*--dns-hook PATH/,
      )

      const notExecutable = path.join(work, 'not-executable-hook')
      await fs.writeFile(notExecutable, '#!/bin/sh\nexit 0\n', {mode: 0o644})
      const notExec = await untouched(layout, () =>
        hubctl(['cert', 'obtain', '--prefix', layout.prefix, '--dns-hook', notExecutable]),
      )
      failed(notExec, 2, /--dns-hook .*not-executable-hook is not an executable file/)

      const writable = path.join(work, 'writable-hook')
      await fs.writeFile(writable, '#!/bin/sh\nexit 0\n')
      await fs.chmod(writable, 0o777)
      const open = await untouched(layout, () =>
        hubctl(['cert', 'obtain', '--prefix', layout.prefix, '--dns-hook', writable]),
      )
      failed(open, 3, /writable-hook is writable by its group and others.*Fix: chmod go-w/)

      const suffix = await tempPrefix('hubctl-dns01-suffix')
      cleanup.push(suffix)
      const init = await hubctl([
        'init',
        '--prefix',
        suffix,
        '--yes',
        '--domain',
        'co.uk',
        '--email',
        'admin@example.org',
        '--admin',
        'dnsadmin',
        '--tls',
        'letsencrypt',
        ...lab.acmeFlags(pebble),
        '--dns-hook',
        hook,
        '--no-systemd',
      ])
      failed(init, 2, /co\.uk is the public suffix co\.uk/)
      expect(await fs.readdir(suffix)).to.deep.equal([])
      expect(await fs.readFile(layout.acmeAccountKey, 'utf8')).to.equal(account)
    })
  })

  describe('--dns rfc2136 (nsupdate with a TSIG key to a real Knot DNS)', () => {
    let knotServer: string
    let keyFile: string
    let secret: string
    let pebble: Pebble

    before(async function () {
      needTool(this, Boolean(await which('knotd')), 'knotd (Debian package knot) is not installed')
      needTool(this, Boolean(await which('nsupdate')), 'nsupdate (Debian package bind9-dnsutils) is not installed')
      this.timeout(60_000)
      const dir = path.join(work, 'knot')
      await fs.mkdir(path.join(dir, 'zones'), {recursive: true})
      await fs.mkdir(path.join(dir, 'db'), {recursive: true})
      const port = await freePort()
      knotServer = `127.0.0.1:${port}`
      secret = randomBytes(32).toString('base64')
      await fs.writeFile(
        path.join(dir, 'knot.conf'),
        [
          'server:',
          `    rundir: "${dir}"`,
          `    listen: 127.0.0.1@${port}`,
          'database:',
          `    storage: "${dir}/db"`,
          'control:',
          `    listen: "${dir}/knot.sock"`,
          'key:',
          '  - id: hubctl-test',
          '    algorithm: hmac-sha256',
          `    secret: ${secret}`,
          'acl:',
          '  - id: update',
          '    key: hubctl-test',
          '    action: update',
          'template:',
          '  - id: default',
          `    storage: "${dir}/zones"`,
          '    file: "%s.zone"',
          'zone:',
          `  - domain: ${DOMAIN}`,
          '    acl: update',
          '',
        ].join('\n'),
        {mode: 0o600},
      )
      await fs.writeFile(
        path.join(dir, 'zones', `${DOMAIN}.zone`),
        `$ORIGIN ${DOMAIN}.\n$TTL 60\n@ SOA ns.${DOMAIN}. admin.${DOMAIN}. 1 3600 600 86400 60\n@ NS ns\nns A 127.0.0.1\n@ A 127.0.0.1\n`,
      )
      keyFile = path.join(work, 'tsig.key')
      await fs.writeFile(keyFile, `key "hubctl-test" {\n  algorithm hmac-sha256;\n  secret "${secret}";\n};\n`, {
        mode: 0o600,
      })
      spawned.push(spawnLogged('knotd', ['-c', path.join(dir, 'knot.conf')], {log: path.join(dir, 'knot.log')}))
      const {Resolver} = await import('node:dns/promises')
      const resolver = new Resolver({timeout: 500, tries: 1})
      resolver.setServers([knotServer])
      await waitUntil(
        'knotd answering',
        async () => (await resolver.resolveSoa(DOMAIN).catch(() => undefined)) !== undefined,
      )
      pebble = await lab.startPebble('knot', {httpPort: await freePort(), dnsServer: knotServer})
    })

    it('init and cert obtain with the wildcard through nsupdate; nginx serves it; records gone; renew --force the same way; the key in no output', async function () {
      this.timeout(240_000)
      const {layout, init} = await initHub('hubctl-dns01-knot', pebble, [
        '--dns',
        'rfc2136',
        '--dns-server',
        knotServer,
        '--dns-tsig-key-file',
        keyFile,
      ])
      const outputs = [init]
      await addWildcard(layout)
      const nginx = await startNginx(layout)
      spawned.push(nginx)
      await lab.forgetAuthorizations(pebble, layout)
      const obtained = await hubctl(['cert', 'obtain', '--prefix', layout.prefix])
      ok(obtained)
      outputs.push(obtained)
      expect(obtained.stderr).to.include(`${RECORD} answers at ${knotServer}`)
      expect(covered(await fs.readFile(layout.fullchain, 'utf8'))).to.have.members([DOMAIN, WILDCARD])
      await served(layout)
      expect(await txt(knotServer)).to.deep.equal([])

      const before = await liveSerial(layout)
      await lab.forgetAuthorizations(pebble, layout)
      const renewed = await hubctl(['cert', 'renew', '--prefix', layout.prefix, '--force', '--json'])
      ok(renewed)
      outputs.push(renewed)
      expect(jsonOf(renewed).responder).to.equal('dns')
      expect(await liveSerial(layout)).to.not.equal(before)
      await served(layout)
      expect(await txt(knotServer)).to.deep.equal([])

      // The key file too open: refused with the fix, before anything is asked or written.
      await fs.chmod(keyFile, 0o644)
      const open = await untouched(layout, () => hubctl(['cert', 'renew', '--prefix', layout.prefix, '--force']))
      outputs.push(open)
      failed(open, 2, /--dns-tsig-key-file .*tsig\.key has mode 0644: other users can read the key.*Fix: chmod 600/)
      await fs.chmod(keyFile, 0o600)
      const missing = await untouched(layout, () =>
        hubctl(['cert', 'obtain', '--prefix', layout.prefix, '--dns-tsig-key-file', path.join(work, 'no-such.key')]),
      )
      failed(missing, 2, /--dns-tsig-key-file .*no-such\.key cannot be read \(ENOENT\)/)

      for (const result of outputs) expect(`${result.stdout}\n${result.stderr}`).to.not.include(secret)
      for (const file of [layout.settings, layout.renewalState])
        expect(await fs.readFile(file, 'utf8').catch(() => '')).to.not.include(secret)
    })
  })
})
