import {AssertionError, expect} from 'chai'
import assert from 'node:assert'

import {waitUntil} from './processes.js'

/** The error `promise` rejects with (fails when it resolves). */
async function rejection(promise: Promise<unknown>): Promise<Error> {
  try {
    await promise
  } catch (error) {
    return error as Error
  }
  throw new Error('expected a rejection')
}

describe('waitUntil', () => {
  const quick = {tries: 5, intervalMs: 1}

  it('returns the first value that is neither undefined nor false', async () => {
    const answers = [undefined, false, 0, 'late']
    let calls = 0
    expect(await waitUntil('a value', async () => answers[calls++], quick)).to.equal(0)
    expect(calls).to.equal(3)
  })

  it('withinMs bounds the whole wait: past it, it fails saying so, with tries left', async () => {
    let calls = 0
    const error = await rejection(
      waitUntil(
        'the route',
        async () => {
          calls++
          return undefined
        },
        {tries: 1000, intervalMs: 20, withinMs: 100},
      ),
    )
    expect(error.message).to.equal('the route did not happen within 0.1s')
    expect(calls).to.be.above(1).and.below(1000)
  })

  it('takes any other error for "not yet", and names the last one when it gives up', async () => {
    let calls = 0
    const error = await rejection(
      waitUntil(
        'the thing',
        async () => {
          calls++
          throw new Error(`refused ${calls}`)
        },
        quick,
      ),
    )
    expect(calls).to.equal(5)
    expect(error.message).to.equal('gave up waiting for the thing (last error: refused 5)')
  })

  it('lets a failed chai assertion out at once, not retried', async () => {
    let calls = 0
    const error = await rejection(
      waitUntil(
        'a status that exits 0',
        async () => {
          calls++
          expect(1, 'hubctl status exits 0').to.equal(0)
          return true
        },
        quick,
      ),
    )
    expect(error).to.be.instanceOf(AssertionError)
    expect(error.message).to.match(/^hubctl status exits 0/)
    expect(calls).to.equal(1)
  })

  it('lets a failed node:assert assertion out at once, too', async () => {
    let calls = 0
    const error = await rejection(
      waitUntil(
        'anything',
        async () => {
          calls++
          assert.equal(calls, 0)
          return true
        },
        quick,
      ),
    )
    expect(error).to.be.instanceOf(assert.AssertionError)
    expect(calls).to.equal(1)
  })
})
