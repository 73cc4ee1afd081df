import {expect} from 'chai'
import fs from 'node:fs/promises'
import path from 'node:path'

import {
  checkOrderNames,
  challengeRecordName,
  dnsSettingsFrom,
  hookPublisher,
  isPublicSuffix,
  nsupdateScript,
  parseDnsServer,
  rfc2136Publisher,
  waitForTxt,
} from '../../../src/lib/tls/dns01.js'
import {ExitCode, HubctlError} from '../../../src/lib/errors.js'
import type {RunOptions, Runner} from '../../../src/lib/runner.js'
import {tempPrefix} from '../../helpers/cli.js'
import {rejection, thrown} from '../../helpers/errors.js'

/** A runner that records each call and answers `result`. */
function recordingRunner(result = {exitCode: 0, stdout: '', stderr: ''}) {
  const calls: Array<{command: string; args: string[]; options: RunOptions}> = []
  const runner: Runner = {
    async run(command, args, options = {}) {
      calls.push({command, args, options})
      return {...result, notFound: false}
    },
  }
  return {runner, calls}
}

const VALUE = 'LPJNul-wow4m6DsqxbninhsWHlwfp0JecwQzYpOLmCQ'
const SECRET = 'c2VjcmV0LXRzaWcta2V5LWZvci1odWJjdGwtdGVzdHM='

describe('tls/dns01', () => {
  let dir: string
  beforeEach(async () => {
    dir = await tempPrefix('hubctl-dns01-unit')
  })
  afterEach(async () => {
    await fs.rm(dir, {recursive: true, force: true})
  })

  describe('the names of an order', () => {
    it('refuses a wildcard without DNS-01, naming --dns and --dns-hook; accepts it with DNS-01', () => {
      const error = thrown(() => checkOrderNames(['hub.example.org', '*.hub.example.org'], undefined))
      expect(error.exitCode).to.equal(ExitCode.USAGE)
      expect(error.message).to.include('*.hub.example.org is a wildcard name')
      expect(error.fix).to.include('--dns rfc2136').and.include('--dns-hook PATH')
      checkOrderNames(['hub.example.org', '*.hub.example.org'], {provider: 'hook', hook: '/x', waitSeconds: 1})
      checkOrderNames(['hub.example.org', 'localhost'], undefined)
    })

    it('refuses a public suffix, or a wildcard over one', () => {
      for (const name of ['co.uk', 'com', '*.co.uk', '*.github.io', 'org']) {
        const error = thrown(() => checkOrderNames([name], {provider: 'hook', hook: '/x', waitSeconds: 1}))
        expect(error.exitCode).to.equal(ExitCode.USAGE)
        expect(error.message).to.match(/public suffix/)
      }
      expect(isPublicSuffix('example.co.uk')).to.equal(false)
      expect(isPublicSuffix('localhost')).to.equal(false)
    })

    it('puts the wildcard’s record at the base name', () => {
      expect(challengeRecordName('*.hub.example.org')).to.equal('_acme-challenge.hub.example.org')
      expect(challengeRecordName('hub.example.org')).to.equal('_acme-challenge.hub.example.org')
    })
  })

  describe('propagation', () => {
    /** A fake clock the fake sleep advances. */
    function clock() {
      let t = 0
      const sleeps: number[] = []
      return {
        now: () => t,
        sleep: async (ms: number) => {
          sleeps.push(ms)
          t += ms
        },
        sleeps,
      }
    }

    it('asks until every server answers the value, sleeping between rounds', async () => {
      const c = clock()
      const asked: string[] = []
      const rounds = await waitForTxt({
        name: '_acme-challenge.hub.example.org',
        value: VALUE,
        servers: ['192.0.2.1', '192.0.2.2'],
        timeoutMs: 60_000,
        intervalMs: 2000,
        now: c.now,
        sleep: c.sleep,
        query: async (server) => {
          asked.push(server)
          if (server === '192.0.2.1' && c.now() >= 2000) return ['other', VALUE]
          if (server === '192.0.2.2' && c.now() >= 4000) return [VALUE]
          throw Object.assign(new Error('queryTxt ENODATA'), {code: 'ENODATA'})
        },
      })
      expect(rounds).to.equal(3)
      expect(c.sleeps).to.deep.equal([2000, 2000])
      // A server that answered is not asked again.
      expect(asked).to.deep.equal(['192.0.2.1', '192.0.2.2', '192.0.2.1', '192.0.2.2', '192.0.2.2'])
    })

    it('gives up when the time is up, naming the record, the value, the server and its answer', async () => {
      const c = clock()
      let queries = 0
      const error = await rejection(
        waitForTxt({
          name: '_acme-challenge.hub.example.org',
          value: VALUE,
          servers: ['127.0.0.1:5353'],
          timeoutMs: 10_000,
          intervalMs: 2000,
          now: c.now,
          sleep: c.sleep,
          query: async () => {
            queries++
            return ['stale-value']
          },
        }),
      )
      expect(error.exitCode).to.equal(ExitCode.ACME)
      expect(error.message).to.equal(
        `the TXT record _acme-challenge.hub.example.org with the value ${VALUE} did not appear at 127.0.0.1:5353 (other values: stale-value) after 10s (6 lookups); the CA was not asked to validate`,
      )
      expect(error.fix).to.include('--dns-wait')
      expect(queries).to.equal(6)
      expect(c.now()).to.be.at.most(10_000)
    })
  })

  describe('rfc2136: nsupdate', () => {
    async function keyFile(mode = 0o600): Promise<string> {
      const file = path.join(dir, 'tsig.key')
      await fs.writeFile(file, `key "hub" {\n  algorithm hmac-sha256;\n  secret "${SECRET}";\n};\n`, {mode})
      await fs.chmod(file, mode)
      return file
    }

    it('gives the key only as a file name in argv, and the update commands on stdin', async () => {
      const file = await keyFile()
      const {runner, calls} = recordingRunner()
      const publisher = rfc2136Publisher(
        {provider: 'rfc2136', server: '127.0.0.1:5353', tsigKeyFile: file, waitSeconds: 5},
        runner,
      )
      await publisher.add('_acme-challenge.hub.example.org', VALUE)
      await publisher.remove('_acme-challenge.hub.example.org', VALUE)
      expect(calls.map((call) => [call.command, ...call.args])).to.deep.equal([
        ['nsupdate', '-k', file, '-t', '20'],
        ['nsupdate', '-k', file, '-t', '20'],
      ])
      expect(calls[0].options.input).to.equal(
        `server 127.0.0.1 5353\nupdate add _acme-challenge.hub.example.org. 60 IN TXT "${VALUE}"\nsend\nquit\n`,
      )
      expect(calls[1].options.input).to.equal(
        `server 127.0.0.1 5353\nupdate delete _acme-challenge.hub.example.org. IN TXT "${VALUE}"\nsend\nquit\n`,
      )
      for (const call of calls) expect(JSON.stringify(call)).to.not.include(SECRET)
    })

    it('reports a failure with its exit status and output, the key cut out', async () => {
      const file = await keyFile()
      const {runner} = recordingRunner({
        exitCode: 2,
        stdout: '',
        stderr: `; TSIG error with server: tsig verify failure\nkey ${SECRET}`,
      })
      const error = await rejection(
        rfc2136Publisher(
          {provider: 'rfc2136', server: 'ns1.example.org', tsigKeyFile: file, waitSeconds: 5},
          runner,
        ).add('_acme-challenge.hub.example.org', VALUE),
      )
      expect(error.exitCode).to.equal(ExitCode.ACME)
      expect(error.message).to.include('nsupdate (to ns1.example.org) failed (exit 2) adding the TXT record')
      expect(error.message).to.include('tsig verify failure').and.include('key <key>')
      expect(error.message).to.not.include(SECRET)
    })

    it('refuses a value or name that could break out of the update script', () => {
      expect(() => nsupdateScript('127.0.0.1', 'add', '_acme-challenge.x', 'a"\nupdate delete x')).to.throw(HubctlError)
      expect(() => nsupdateScript('127.0.0.1', 'add', 'x\nsend', VALUE)).to.throw(HubctlError)
    })

    it('refuses a key file that is missing, too open, or someone else’s, with the fix; keeps settings otherwise', async () => {
      const missing = await rejection(
        dnsSettingsFrom({dns: 'rfc2136', 'dns-server': '127.0.0.1', 'dns-tsig-key-file': path.join(dir, 'nope')}),
      )
      expect(missing.exitCode).to.equal(ExitCode.USAGE)
      expect(missing.message).to.match(/cannot be read \(ENOENT\)/)
      const open = await keyFile(0o640)
      const tooOpen = await rejection(
        dnsSettingsFrom({dns: 'rfc2136', 'dns-server': '127.0.0.1', 'dns-tsig-key-file': open}),
      )
      expect(tooOpen.message).to.include('has mode 0640')
      expect(tooOpen.fix).to.include(`chmod 600 ${open}`)
      await fs.chmod(open, 0o600)
      await fs.chown(open, 65534, 65534)
      const others = await rejection(
        dnsSettingsFrom({dns: 'rfc2136', 'dns-server': '127.0.0.1', 'dns-tsig-key-file': open}),
      )
      expect(others.message).to.include('belongs to uid 65534')
      expect(others.fix).to.include(`chown root:root ${open}`)
      await fs.chown(open, 0, 0)
      const settings = await dnsSettingsFrom({'dns-server': '[::1]:5353', 'dns-tsig-key-file': open})
      expect(settings).to.deep.equal({provider: 'rfc2136', server: '[::1]:5353', tsigKeyFile: open, waitSeconds: 120})
      // Kept for the renewals: no flags, the same settings; --dns none turns it off.
      expect(await dnsSettingsFrom({}, settings)).to.deep.equal(settings)
      expect(await dnsSettingsFrom({dns: 'none'}, settings)).to.equal(undefined)
      const noServer = await rejection(dnsSettingsFrom({dns: 'rfc2136', 'dns-tsig-key-file': open}))
      expect(noServer.message).to.equal('--dns rfc2136 needs --dns-server')
    })

    it('reads DNS servers as HOST[:PORT]', () => {
      expect(parseDnsServer('ns1.example.org', '--dns-server')).to.equal('ns1.example.org')
      expect(parseDnsServer('192.0.2.53:5353', '--dns-server')).to.equal('192.0.2.53:5353')
      expect(parseDnsServer('2001:db8::53', '--dns-server')).to.equal('[2001:db8::53]')
      for (const bad of ['', 'a b', 'host:0', 'host:x', '-k'])
        expect(() => parseDnsServer(bad, '--dns-server')).to.throw(HubctlError)
    })
  })

  describe('the hook', () => {
    async function hookFile(mode = 0o755): Promise<string> {
      const file = path.join(dir, 'hook')
      await fs.writeFile(file, '#!/bin/sh\nexit 0\n')
      await fs.chmod(file, mode)
      return file
    }

    it('gets the action, name and value in its own environment only, no argv', async () => {
      const hook = await hookFile()
      const {runner, calls} = recordingRunner()
      await hookPublisher({provider: 'hook', hook, waitSeconds: 5}, runner).add(
        '_acme-challenge.hub.example.org',
        VALUE,
      )
      expect(calls).to.have.length(1)
      expect(calls[0].command).to.equal(hook)
      expect(calls[0].args).to.deep.equal([])
      expect(calls[0].options.extendEnv).to.equal(false)
      const env = {...calls[0].options.env}
      delete env.LANG
      delete env.LC_ALL
      expect(env).to.deep.equal({
        PATH: '/usr/sbin:/usr/bin:/sbin:/bin',
        HUBCTL_DNS_ACTION: 'add',
        HUBCTL_DNS_NAME: '_acme-challenge.hub.example.org',
        HUBCTL_DNS_VALUE: VALUE,
        HUBCTL_DNS_DOMAIN: 'hub.example.org',
      })
    })

    it('reports a failing hook with its exit status and stderr', async () => {
      const hook = await hookFile()
      const {runner} = recordingRunner({exitCode: 4, stdout: '', stderr: 'API said: zone not found\n'})
      const error = await rejection(
        hookPublisher({provider: 'hook', hook, waitSeconds: 5}, runner).remove(
          '_acme-challenge.hub.example.org',
          VALUE,
        ),
      )
      expect(error.exitCode).to.equal(ExitCode.ACME)
      expect(error.message).to.equal(
        `the DNS hook ${hook} failed (exit 4) on HUBCTL_DNS_ACTION=remove for the TXT record _acme-challenge.hub.example.org: API said: zone not found`,
      )
    })

    it('refuses a hook that is missing, not executable, or writable by others', async () => {
      const missing = await rejection(dnsSettingsFrom({'dns-hook': path.join(dir, 'none')}))
      expect(missing.message).to.match(/--dns-hook .* does not exist/)
      const hook = await hookFile(0o644)
      const notExecutable = await rejection(dnsSettingsFrom({'dns-hook': hook}))
      expect(notExecutable.exitCode).to.equal(ExitCode.USAGE)
      expect(notExecutable.message).to.include('is not an executable file')
      await fs.chmod(hook, 0o775)
      const writable = await rejection(dnsSettingsFrom({'dns-hook': hook}))
      expect(writable.exitCode).to.equal(ExitCode.PREFLIGHT)
      expect(writable.message).to.include('is writable by its group')
      await fs.chmod(hook, 0o755)
      expect(await dnsSettingsFrom({'dns-hook': hook, 'dns-resolver': '127.0.0.1:53', 'dns-wait': '30'})).to.deep.equal(
        {
          provider: 'hook',
          hook,
          resolver: '127.0.0.1:53',
          waitSeconds: 30,
        },
      )
      const both = await rejection(dnsSettingsFrom({'dns-hook': hook, 'dns-server': '127.0.0.1'}))
      expect(both.exitCode).to.equal(ExitCode.USAGE)
    })
  })
})
