import {expect} from 'chai'

import {HubApi, fallbackWarning} from '../../../src/lib/stack/hubapi.js'

/** A hub that accepts one token only; records the tokens it was sent. */
function hubAccepting(accepted: string, sent: string[]) {
  return async (_url: string, init?: RequestInit): Promise<Response> => {
    const token = String((init?.headers as Record<string, string>).Authorization).replace(/^token /, '')
    sent.push(token)
    return token === accepted
      ? new Response(JSON.stringify({version: '5.0.0'}), {status: 200})
      : new Response(JSON.stringify({message: 'Missing or invalid credentials'}), {status: 403})
  }
}

describe('HubApi: the fallback to the previous API token', () => {
  const base = {baseUrl: 'http://127.0.0.1:1/hub/api', verify: async () => {}}

  it('is used when the hub refuses the current token, and is never silent: onFallback is told', async () => {
    const sent: string[] = []
    const told: string[] = []
    const api = new HubApi({
      ...base,
      token: 'new',
      fallbackToken: async () => 'old',
      onFallback: (request) => told.push(request),
      fetch: hubAccepting('old', sent),
    })
    expect(await api.version()).to.equal('5.0.0')
    expect(sent).to.deep.equal(['new', 'old'])
    expect(told).to.deep.equal(['GET /'])
    expect(fallbackWarning(told[0])).to.match(/accepted the previous one.*Fix: run `hubctl restart`/)
  })

  it('is not used, and nothing is told, when the hub takes the current token', async () => {
    const sent: string[] = []
    const told: string[] = []
    const api = new HubApi({
      ...base,
      token: 'new',
      fallbackToken: async () => 'old',
      onFallback: (request) => told.push(request),
      fetch: hubAccepting('new', sent),
    })
    await api.version()
    expect(sent).to.deep.equal(['new'])
    expect(told).to.deep.equal([])
  })

  it('refused with both tokens: the 403 is the answer, and no fallback is told', async () => {
    const told: string[] = []
    const api = new HubApi({
      ...base,
      token: 'new',
      fallbackToken: async () => 'old',
      onFallback: (request) => told.push(request),
      fetch: hubAccepting('other', []),
    })
    let error: {status?: number} | undefined
    await api.version().catch((error_) => (error = error_))
    expect(error?.status).to.equal(403)
    expect(told).to.deep.equal([])
  })
})
