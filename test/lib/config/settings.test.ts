import {expect} from 'chai'

import {HubctlError} from '../../../src/lib/errors.js'
import {SETTINGS_VERSION, parseSettings} from '../../../src/lib/config/settings.js'

const valid = {
  version: 1,
  domains: ['a.org'],
  admins: ['alice'],
  allowedUsers: [],
  authenticator: 'pam',
  tls: {mode: 'self-signed'},
  ports: {http: 80, https: 443, proxy: 8000, proxyApi: 8001, hub: 8081},
  dhparam: {mode: 'ffdhe2048', bits: 2048},
  executables: {},
}

describe('settings', () => {
  it('parses and fills defaults of older versions', () => {
    const settings = parseSettings(JSON.stringify(valid), 'hubctl.json')
    expect(settings.version).to.equal(SETTINGS_VERSION)
    expect(settings.spawner).to.equal('local')
  })

  it('refuses corrupt, foreign and newer files with a fix', () => {
    const cases: Array<[string, RegExp]> = [
      ['{"version": 1,', /not valid JSON/],
      ['[1,2]', /does not hold a JSON object/],
      ['{"domains": []}', /no valid "version"/],
      [JSON.stringify({...valid, version: 99}), /written by a newer hubctl/],
      [JSON.stringify({version: 1}), /lacks domains/],
    ]
    for (const [text, message] of cases) {
      expect(() => parseSettings(text, 'hubctl.json'), text).to.throw(HubctlError, message)
    }
  })

  it('reads the spawn settings when present, files without them as before, and refuses bad ones', () => {
    expect(parseSettings(JSON.stringify(valid), 'hubctl.json').spawn).to.equal(undefined)
    expect(
      parseSettings(JSON.stringify({...valid, spawn: {maxConcurrent: 4, timeoutSeconds: 120}}), 'hubctl.json').spawn,
    ).to.deep.equal({maxConcurrent: 4, timeoutSeconds: 120})
    for (const spawn of [
      {maxConcurrent: 0, timeoutSeconds: 120},
      {maxConcurrent: 2, timeoutSeconds: '120'},
      {maxConcurrent: 2.5, timeoutSeconds: 120},
      {maxConcurrent: 2},
      [1, 2],
    ]) {
      expect(() => parseSettings(JSON.stringify({...valid, spawn}), 'hubctl.json'), JSON.stringify(spawn)).to.throw(
        HubctlError,
        /"spawn(\.\w+)?" is not/,
      )
    }
  })
})
