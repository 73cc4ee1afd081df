import {expect} from 'chai'

import {HubctlError} from '../../src/lib/errors.js'
import {assertDistinctPorts, parseDomain, parseEmail, parsePort, parseUserName} from '../../src/lib/validate.js'

describe('validate', () => {
  it('accepts host names and lower-cases them', () => {
    expect(parseDomain('Hub.Example.org')).to.equal('hub.example.org')
    expect(parseDomain('localhost')).to.equal('localhost')
    expect(parseDomain('hub.example.org.')).to.equal('hub.example.org')
  })

  it('converts internationalized domains to punycode', () => {
    expect(parseDomain('bücher.example')).to.equal('xn--bcher-kva.example')
  })

  it('refuses malformed domains with the flag and a fix', () => {
    for (const bad of [
      '',
      'https://hub.example.org',
      'hub.example.org:443',
      '*.example.org',
      '-bad.example',
      'a..b',
      'exa mple.org',
      '127.0.0.1',
      'a;b.org',
      `${'a'.repeat(64)}.org`,
    ]) {
      let error: unknown
      try {
        parseDomain(bad)
      } catch (error_) {
        error = error_
      }
      expect(error, bad).to.be.instanceOf(HubctlError)
      expect((error as HubctlError).line, bad).to.match(/--domain.*Fix: /)
      expect((error as HubctlError).exitCode).to.equal(2)
    }
  })

  it('checks e-mail addresses', () => {
    expect(parseEmail('admin@Example.org')).to.equal('admin@example.org')
    for (const bad of ['admin', '@example.org', 'a b@example.org', 'admin@localhost', 'a"b@example.org'])
      expect(() => parseEmail(bad), bad).to.throw(HubctlError, /--email/)
  })

  it('refuses user names with quotes, backslashes, newlines, shell and nginx metacharacters', () => {
    expect(parseUserName('alice', '--admin')).to.equal('alice')
    expect(parseUserName('a.b-c_d@x', '--admin')).to.equal('a.b-c_d@x')
    for (const bad of [
      `'); import os; #`,
      'a"b',
      'a\\b',
      'a\nb',
      'a b',
      '$(id)',
      '`id`',
      'a;b',
      'a{b}',
      'a|b',
      '',
      ' alice',
      '-x',
      'x'.repeat(65),
    ]) {
      expect(() => parseUserName(bad, '--admin'), JSON.stringify(bad)).to.throw(
        HubctlError,
        /--admin .* is not a valid user name/,
      )
    }
    expect(() => parseUserName('Alice', '--admin')).to.throw(/lower case: use alice/)
  })

  it('checks ports and that they differ', () => {
    expect(parsePort('443', '--https-port')).to.equal(443)
    for (const bad of ['0', '65536', '-1', '80a', '1e3', '', '8.5'])
      expect(() => parsePort(bad, '--https-port'), bad).to.throw(HubctlError, /--https-port/)
    expect(() => assertDistinctPorts({'--http-port': 80, '--proxy-port': 80})).to.throw(
      /--http-port and --proxy-port are both 80/,
    )
  })
})
