import {expect} from 'chai'
import path from 'node:path'

import {detachedStartPrefix} from '../../../src/lib/stack/prewarm.js'

describe('prewarm: the command lines whose background hubctl starts before oclif loads', () => {
  it('reads the prefix as BaseCommand does: --prefix, then HUBCTL_PREFIX, then /; --local alone: the local folder', () => {
    expect(detachedStartPrefix(['start', '--detach', '--prefix', '/tmp/h'], {})).to.deep.equal({prefix: '/tmp/h'})
    expect(detachedStartPrefix(['start', '-d', '--prefix=/tmp/h', '--json'], {})).to.deep.equal({prefix: '/tmp/h'})
    expect(detachedStartPrefix(['start', '--detach'], {HUBCTL_PREFIX: '/srv/x'})).to.deep.equal({prefix: '/srv/x'})
    expect(detachedStartPrefix(['start', '--detach'], {})).to.deep.equal({prefix: '/'})
    expect(detachedStartPrefix(['start', '--detach', '--local'], {})).to.deep.equal({
      prefix: path.resolve('hubctl-local'),
    })
    expect(detachedStartPrefix(['start', '--detach', '--cull-idle', '2h', '--prefix', '/p'], {})).to.deep.equal({
      prefix: '/p',
      cullIdle: '2h',
    })
  })

  it('leaves every other command line to oclif: no --detach, --help, an unknown flag, a missing value', () => {
    for (const argv of [
      ['start', '--prefix', '/tmp/h'],
      ['start', '--detach', '--help'],
      ['start', '--detach', '--bogus'],
      ['start', '--detach', '--prefix'],
      ['stop', '--detach'],
      ['start', '--detach', '--prefix', ''],
    ])
      expect(detachedStartPrefix(argv, {}), argv.join(' ')).to.equal(undefined)
  })
})
