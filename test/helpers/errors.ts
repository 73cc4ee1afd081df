import {expect} from 'chai'

import {HubctlError} from '../../src/lib/errors.js'

/** The HubctlError `promise` rejects with (a test fails when it resolves, or rejects with anything else). */
export async function rejection(promise: Promise<unknown>): Promise<HubctlError> {
  try {
    await promise
  } catch (error) {
    expect(error).to.be.instanceOf(HubctlError)
    return error as HubctlError
  }
  throw new Error('expected a rejection')
}

/** The HubctlError `fn` throws (a test fails when it returns, or throws anything else). */
export function thrown(fn: () => unknown): HubctlError {
  try {
    fn()
  } catch (error) {
    expect(error).to.be.instanceOf(HubctlError)
    return error as HubctlError
  }
  throw new Error('expected an error')
}
