import {expect} from 'chai'

import {HubctlError} from '../../../src/lib/errors.js'
import {Prompter, SERVER_START_CPU_SECONDS, resolveInitRequest} from '../../../src/lib/setup/init-request.js'

function fakePrompter(answers: Record<string, string>): Prompter & {asked: string[]} {
  const asked: string[] = []
  return {
    asked,
    async input(message, validate) {
      asked.push(message)
      const key = Object.keys(answers).find((k) => message.includes(k))
      const value = key ? answers[key] : ''
      const verdict = validate(value)
      if (verdict !== true) throw new Error(`invalid answer: ${verdict}`)
      return value
    },
  }
}

describe('init request', () => {
  it('applies the documented defaults', async () => {
    const request = await resolveInitRequest({domain: ['hub.example.org'], admin: ['alice'], email: 'a@example.org'})
    expect(request.tls).to.equal('letsencrypt')
    expect(request.ports).to.deep.equal({
      http: 80,
      https: 443,
      proxy: 8000,
      proxyApi: 8001,
      hub: 8081,
      proxyStandby: 8002,
      proxyStandbyApi: 8003,
    })
    expect(request.dhparam).to.equal('generate')
    expect(request.dhparamBits).to.equal(2048)
    expect(request.authenticator).to.equal('pam')
  })

  it('asks for missing required values on a terminal, validating each answer', async () => {
    const prompter = fakePrompter({Domain: 'Hub.Example.org', 'E-mail': 'a@example.org', Admin: 'alice'})
    const request = await resolveInitRequest({}, prompter)
    expect(prompter.asked).to.have.length(3)
    expect(request.domains).to.deep.equal(['hub.example.org'])
    expect(request.admins).to.deep.equal(['alice'])
  })

  it('without a terminal, a missing value is an error naming the flag', async () => {
    let error: unknown
    try {
      await resolveInitRequest({domain: ['hub.example.org'], tls: 'self-signed'})
    } catch (error_) {
      error = error_
    }
    expect(error).to.be.instanceOf(HubctlError)
    expect((error as HubctlError).line).to.match(/--admin is required\. Fix: give --admin/)
  })

  it('removes duplicates and refuses contradictions', async () => {
    const request = await resolveInitRequest({domain: ['a.org', 'A.org'], admin: ['x', 'x'], tls: 'self-signed'})
    expect(request.domains).to.deep.equal(['a.org'])
    expect(request.admins).to.deep.equal(['x'])
    let error: unknown
    try {
      await resolveInitRequest({
        domain: ['a.org'],
        admin: ['x'],
        tls: 'self-signed',
        dhparam: 'ffdhe2048',
        'dhparam-bits': '4096',
      })
    } catch (error_) {
      error = error_
    }
    expect(String((error as Error).message)).to.match(/ffdhe2048 is a 2048-bit group/)
  })

  it('culls servers idle for an hour by default, takes --cull-idle and --cull-max-age, off turns either off', async () => {
    const base = {domain: ['hub.example.org'], admin: ['alice'], tls: 'self-signed'}
    expect((await resolveInitRequest(base)).cull).to.deep.equal({idleSeconds: 3600, maxAgeSeconds: null})
    expect((await resolveInitRequest({...base, 'cull-idle': 'off', 'cull-max-age': '1d'})).cull).to.deep.equal({
      idleSeconds: null,
      maxAgeSeconds: 86_400,
    })
    expect((await resolveInitRequest({...base, 'cull-idle': '20s'})).cull.idleSeconds).to.equal(20)
    for (const [flag, bad] of [
      ['cull-idle', '30'],
      ['cull-max-age', 'never'],
    ]) {
      try {
        await resolveInitRequest({...base, [flag]: bad})
        expect.fail(`${flag} ${bad} accepted`)
      } catch (error) {
        expect((error as HubctlError).exitCode).to.equal(2)
        expect((error as HubctlError).message).to.include(`--${flag}`)
      }
    }
  })

  it('chooses the spawn limit and timeout from the cores, or takes them from the flags', async () => {
    const base = {domain: ['a.org'], admin: ['x'], tls: 'self-signed'}
    expect((await resolveInitRequest(base, undefined, {cores: 1})).spawn).to.deep.equal({
      maxConcurrent: 2,
      timeoutSeconds: 120,
    })
    expect((await resolveInitRequest(base, undefined, {cores: 2})).spawn).to.deep.equal({
      maxConcurrent: 2,
      timeoutSeconds: 120,
    })
    expect((await resolveInitRequest(base, undefined, {cores: 16})).spawn).to.deep.equal({
      maxConcurrent: 16,
      timeoutSeconds: 120,
    })
    // Many starts per core: the timeout grows with them (4 x their CPU time per core).
    const crowded = await resolveInitRequest({...base, 'max-concurrent-spawns': '100'}, undefined, {cores: 2})
    expect(crowded.spawn).to.deep.equal({
      maxConcurrent: 100,
      timeoutSeconds: Math.ceil((4 * 100 * SERVER_START_CPU_SECONDS) / 2),
    })
    expect(
      (await resolveInitRequest({...base, 'max-concurrent-spawns': ' 8 ', 'spawn-timeout': 45}, undefined, {cores: 2}))
        .spawn,
    ).to.deep.equal({maxConcurrent: 8, timeoutSeconds: 45})
    // The documented local defaults do not touch them.
    expect((await resolveInitRequest({local: true}, undefined, {cores: 4})).spawn).to.deep.equal({
      maxConcurrent: 4,
      timeoutSeconds: 120,
    })
  })

  it('takes --login-burst as a whole number from 1 to 10000 (absent: not set, the site uses 100)', async () => {
    const base = {domain: ['a.org'], admin: ['x'], tls: 'self-signed'}
    expect((await resolveInitRequest(base)).loginBurst).to.equal(undefined)
    expect((await resolveInitRequest({...base, 'login-burst': '250'})).loginBurst).to.equal(250)
    for (const bad of ['0', '10001', 'lots', '']) {
      let error: unknown
      try {
        await resolveInitRequest({...base, 'login-burst': bad})
      } catch (error_) {
        error = error_
      }
      expect(error, bad).to.be.instanceOf(HubctlError)
      expect((error as HubctlError).line, bad).to.match(
        /^--login-burst ".*" is not a whole number from 1 to 10000\. Fix: /,
      )
      expect((error as HubctlError).exitCode).to.equal(2)
    }
  })

  it('refuses a spawn limit or timeout that is not a whole number in range, with the fix', async () => {
    const base = {domain: ['a.org'], admin: ['x'], tls: 'self-signed'}
    const cases: Array<[Record<string, string>, RegExp]> = [
      [
        {'max-concurrent-spawns': '0'},
        /^--max-concurrent-spawns "0" is not a whole number from 1 to 1000\. Fix: give how many servers may start at once, e\.g\. 2 \(one per core\), or leave the flag out$/,
      ],
      [{'max-concurrent-spawns': '2.5'}, /--max-concurrent-spawns "2\.5" is not a whole number/],
      [{'max-concurrent-spawns': '-3'}, /--max-concurrent-spawns "-3" is not a whole number/],
      [{'max-concurrent-spawns': 'many'}, /--max-concurrent-spawns "many" is not a whole number/],
      [{'max-concurrent-spawns': '1001'}, /from 1 to 1000/],
      [
        {'spawn-timeout': '5'},
        /^--spawn-timeout "5" is not a whole number from 10 to 3600\. Fix: give the seconds a server may take to start, e\.g\. 120, or leave the flag out$/,
      ],
      [{'spawn-timeout': '2m'}, /--spawn-timeout "2m" is not a whole number/],
      [{'spawn-timeout': ''}, /--spawn-timeout "" is not a whole number/],
      [{'spawn-timeout': '1e3'}, /--spawn-timeout "1e3" is not a whole number/],
    ]
    for (const [flags, message] of cases) {
      let error: unknown
      try {
        await resolveInitRequest({...base, ...flags}, undefined, {cores: 2})
      } catch (error_) {
        error = error_
      }
      expect(error, JSON.stringify(flags)).to.be.instanceOf(HubctlError)
      expect((error as HubctlError).line, JSON.stringify(flags)).to.match(message)
      expect((error as HubctlError).exitCode).to.equal(2)
    }
  })

  it('takes --server-ports as FIRST-LAST, defaults to 20000-32767, and refuses anything else with the fix', async () => {
    const base = {domain: ['a.org'], admin: ['x'], tls: 'self-signed'}
    expect((await resolveInitRequest(base, undefined, {cores: 2})).serverPorts).to.deep.equal({
      first: 20000,
      last: 32767,
    })
    expect(
      (await resolveInitRequest({...base, 'server-ports': ' 25000 - 25099 '}, undefined, {cores: 2})).serverPorts,
    ).to.deep.equal({first: 25000, last: 25099})
    for (const bad of ['25000', '80-90', '30000-20000', '20000-70000', 'a-b', '']) {
      let error: unknown
      try {
        await resolveInitRequest({...base, 'server-ports': bad}, undefined, {cores: 2})
      } catch (error_) {
        error = error_
      }
      expect(error, bad).to.be.instanceOf(HubctlError)
      expect((error as HubctlError).exitCode).to.equal(2)
      expect((error as HubctlError).line, bad).to.match(
        /^--server-ports ".*" is not a range of ports FIRST-LAST from 1024 to 65535\. Fix: give a range outside the kernels' ephemeral ports .*e\.g\. 20000-32767, or leave the flag out$/,
      )
    }
  })
})
