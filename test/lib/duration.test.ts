import {expect} from 'chai'

import {formatDuration, parseDuration} from '../../src/lib/duration.js'
import {ExitCode, HubctlError} from '../../src/lib/errors.js'

describe('parseDuration (--cull-idle)', () => {
  it('reads seconds, minutes, hours, days and their sums', () => {
    expect(parseDuration('90s', '--cull-idle')).to.equal(90_000)
    expect(parseDuration('30m', '--cull-idle')).to.equal(1_800_000)
    expect(parseDuration('2h', '--cull-idle')).to.equal(7_200_000)
    expect(parseDuration('1d', '--cull-idle')).to.equal(86_400_000)
    expect(parseDuration('1h30m', '--cull-idle')).to.equal(5_400_000)
    expect(parseDuration(' 1.5H ', '--cull-idle')).to.equal(5_400_000)
    expect(parseDuration('1500ms', '--cull-idle')).to.equal(1500)
  })

  it('refuses bad values with exit code 2, the flag and an example', () => {
    for (const bad of ['', '30', '30x', 'm', '-5m', '5 m', '1h-', 'h1', '0s', '500ms', '400d', '1e3s', '30m;rm']) {
      let caught: unknown
      try {
        parseDuration(bad, '--cull-idle')
      } catch (error) {
        caught = error
      }
      expect(caught, JSON.stringify(bad)).to.be.instanceOf(HubctlError)
      const error = caught as HubctlError
      expect(error.exitCode, bad).to.equal(ExitCode.USAGE)
      expect(error.message, bad).to.include('--cull-idle')
      expect(error.fix, bad).to.include('30m')
    }
  })

  it('formatDuration writes what parseDuration reads back', () => {
    for (const ms of [1000, 90_000, 5_400_000, 86_400_000 + 61_000])
      expect(parseDuration(formatDuration(ms), '--x')).to.equal(ms)
    expect(formatDuration(7_200_000)).to.equal('2h')
  })
})
