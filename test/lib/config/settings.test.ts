import {expect} from 'chai'

import {HubctlError} from '../../../src/lib/errors.js'
import {SERVER_WATCH_SECONDS, SETTINGS_VERSION, parseSettings} from '../../../src/lib/config/settings.js'

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

  it('reads serverWatchSeconds when present (absent: the supervisor checks every 30 s), and refuses bad ones', () => {
    expect(parseSettings(JSON.stringify(valid), 'hubctl.json').serverWatchSeconds).to.equal(undefined)
    expect(SERVER_WATCH_SECONDS.default).to.equal(30)
    expect(parseSettings(JSON.stringify({...valid, serverWatchSeconds: 5}), 'hubctl.json').serverWatchSeconds).to.equal(
      5,
    )
    for (const bad of [0, 2.5, '5', 3601, null]) {
      expect(
        () => parseSettings(JSON.stringify({...valid, serverWatchSeconds: bad}), 'hubctl.json'),
        JSON.stringify(bad),
      ).to.throw(HubctlError, /"serverWatchSeconds" is not a whole number of seconds from 1 to 3600/)
    }
  })

  it('reads the cull settings; a file of an older hubctl has none (no culling until init runs again); bad ones are refused', () => {
    expect(parseSettings(JSON.stringify(valid), 'hubctl.json').cull).to.equal(undefined)
    const cull = {idleSeconds: 3600, maxAgeSeconds: null, by: 'jupyterhub-idle-culler'}
    const withCuller = {...valid, cull, executables: {idleCuller: '/opt/jupyterhub/envs/x/bin/python3'}}
    expect(parseSettings(JSON.stringify(withCuller), 'hubctl.json').cull).to.deep.equal(cull)
    expect(
      parseSettings(
        JSON.stringify({...valid, cull: {idleSeconds: null, maxAgeSeconds: 60, by: 'hubctl'}}),
        'hubctl.json',
      ).cull,
    ).to.deep.equal({idleSeconds: null, maxAgeSeconds: 60, by: 'hubctl'})
    const cases: Array<[unknown, RegExp]> = [
      [{...withCuller, cull: {...cull, idleSeconds: 0}}, /"cull.idleSeconds" is neither null/],
      [{...withCuller, cull: {...cull, idleSeconds: '1h'}}, /"cull.idleSeconds" is neither null/],
      [{...withCuller, cull: {...cull, maxAgeSeconds: 1.5}}, /"cull.maxAgeSeconds" is neither null/],
      [{...withCuller, cull: {...cull, maxAgeSeconds: undefined}}, /"cull.maxAgeSeconds" is neither null/],
      [{...withCuller, cull: {...cull, by: 'cron'}}, /"cull.by" is not one of/],
      [{...valid, cull}, /"executables.idleCuller" is missing/],
      [{...withCuller, executables: {idleCuller: 'python3'}}, /"executables.idleCuller" is not an absolute path/],
      [{...valid, cull: [1]}, /"cull" is not an object/],
    ]
    for (const [file, message] of cases)
      expect(() => parseSettings(JSON.stringify(file), 'hubctl.json'), JSON.stringify(file)).to.throw(
        HubctlError,
        message,
      )
  })
})
