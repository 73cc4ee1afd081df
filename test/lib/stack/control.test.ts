import {expect} from 'chai'
import fs from 'node:fs/promises'
import path from 'node:path'
import {PassThrough} from 'node:stream'

import {Layout} from '../../../src/lib/config/layout.js'
import {parentSaysGo, startDetached} from '../../../src/lib/stack/control.js'
import {prewarm} from '../../../src/lib/stack/prewarm.js'
import {modeOf, tempPrefix} from '../../helpers/cli.js'

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

  describe("start --detach: an existing supervisor log at 0644 is made 0640 (the parent's checks fail, so nothing starts)", () => {
    let layout: Layout
    /** The background hubctl's stand-in: it waits for its parent's word, and leaves when stdin ends. */
    let bin: string
    const refused = async () => {
      throw new Error('checks refused')
    }

    beforeEach(async () => {
      layout = new Layout(await tempPrefix('hubctl-detach-log'))
      bin = path.join(layout.prefix, 'background.cjs')
      await fs.writeFile(bin, "process.stdin.resume(); process.stdin.on('end', () => process.exit(0))\n")
      await fs.mkdir(path.dirname(layout.supervisorLog), {recursive: true})
      await fs.writeFile(layout.supervisorLog, 'an earlier start\n')
      await fs.chmod(layout.supervisorLog, 0o644)
    })
    afterEach(async () => {
      await fs.rm(layout.prefix, {recursive: true, force: true})
    })

    async function expectRefused(run: Promise<unknown>): Promise<void> {
      let error: Error | undefined
      try {
        await run
      } catch (error_) {
        error = error_ as Error
      }
      expect(error?.message).to.equal('checks refused')
    }

    it('when hubctl starts the background hubctl itself', async () => {
      await expectRefused(startDetached(layout, {bin, args: ['--checked-by-parent'], checks: refused}))
      expect(await modeOf(layout.supervisorLog)).to.equal(0o640)
      expect(await fs.readFile(layout.supervisorLog, 'utf8')).to.equal('an earlier start\n')
    })

    it('when bin/run.js started it early (prewarm), on the existing log', async () => {
      prewarm(['start', '--detach', '--prefix', layout.prefix], bin, refused)
      await expectRefused(startDetached(layout, {bin, args: ['--checked-by-parent'], checks: refused}))
      expect(await modeOf(layout.supervisorLog)).to.equal(0o640)
      expect(await fs.readFile(layout.supervisorLog, 'utf8')).to.equal('an earlier start\n')
    })
  })
})
