import {expect} from 'chai'

import {HubctlError} from '../../../src/lib/errors.js'
import {Prompter, resolveInitRequest} from '../../../src/lib/setup/init-request.js'

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
    expect(request.ports).to.deep.equal({http: 80, https: 443, proxy: 8000, proxyApi: 8001, hub: 8081, proxyStandby: 8002, proxyStandbyApi: 8003})
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
      await resolveInitRequest({domain: ['a.org'], admin: ['x'], tls: 'self-signed', dhparam: 'ffdhe2048', 'dhparam-bits': '4096'})
    } catch (error_) {
      error = error_
    }
    expect(String((error as Error).message)).to.match(/ffdhe2048 is a 2048-bit group/)
  })
})
