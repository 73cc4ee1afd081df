import {expect} from 'chai'

import {needTool} from './tools.js'

describe('needTool: a missing program skips a test, except in CI', () => {
  const saved = process.env.CI
  afterEach(() => {
    if (saved === undefined) delete process.env.CI
    else process.env.CI = saved
  })

  function outcome(found: boolean): string {
    let skipped = false
    try {
      needTool({skip: () => (skipped = true)}, found, 'logrotate is not installed')
    } catch (error) {
      return (error as Error).message
    }
    return skipped ? 'skipped' : 'runs'
  }

  it('runs the test when the program is there, CI or not', () => {
    process.env.CI = 'true'
    expect(outcome(true)).to.equal('runs')
    delete process.env.CI
    expect(outcome(true)).to.equal('runs')
  })

  it('skips without it outside CI (CI unset or false), and fails naming it in CI', () => {
    delete process.env.CI
    expect(outcome(false)).to.equal('skipped')
    process.env.CI = 'false'
    expect(outcome(false)).to.equal('skipped')
    process.env.CI = 'true'
    expect(outcome(false)).to.equal(
      'logrotate is not installed: this test cannot run, and CI (CI=true) does not skip it',
    )
  })
})
