import {expect} from 'chai'
import {PassThrough} from 'node:stream'

import {parentSaysGo} from '../../../src/lib/stack/control.js'

describe('control: the background hubctl waits for its parent', () => {
  it('starts once the parent says go, even in pieces', async () => {
    const stdin = new PassThrough()
    const answer = parentSaysGo(stdin)
    stdin.write('g')
    stdin.write('o\n')
    expect(await answer).to.equal(true)
  })

  it('starts nothing when stdin ends without the word (the checks failed, or the parent is gone)', async () => {
    const stdin = new PassThrough()
    const answer = parentSaysGo(stdin)
    stdin.end('g')
    expect(await answer).to.equal(false)
  })
})
