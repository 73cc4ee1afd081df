import {expect} from 'chai'
import {execa} from 'execa'
import fs from 'node:fs/promises'

import type {Runner} from '../../../src/lib/runner.js'
import {protectRunningService} from '../../../src/lib/stack/oom.js'
import {waitUntil} from '../../helpers/processes.js'

/*
 * A drop-in's OOMScoreAdjust applies from a service's next start: init lowers the nginx that runs
 * already (its master and workers) without restarting it. Here a process tree of this test stands
 * for nginx (systemctl's MainPID answered by a fake runner). It starts at +600 and is lowered to
 * +100, which needs no privilege (below 0 needs CAP_SYS_RESOURCE, which this machine's root lacks).
 */
describe('protectRunningService: a running service lowered without a restart', () => {
  it("gives the score to the unit's MainPID and all its descendants, and leaves a lower one alone", async () => {
    const tree = execa(
      'sh',
      ['-c', 'echo 600 > /proc/self/oom_score_adj; sh -c "sleep 60 & sleep 60; wait" & sleep 60 & wait'],
      {reject: false, detached: true},
    )
    try {
      const main = tree.pid!
      const children = async (pid: number) =>
        (await fs.readFile(`/proc/${pid}/task/${pid}/children`, 'utf8')).split(/\s+/).filter(Boolean).map(Number)
      const pids = await waitUntil('the tree of processes', async () => {
        const first = await children(main)
        const second = (await Promise.all(first.map(children))).flat()
        return first.length === 2 && second.length === 2 ? [main, ...first, ...second] : undefined
      })
      const score = async (pid: number) => Number((await fs.readFile(`/proc/${pid}/oom_score_adj`, 'utf8')).trim())
      expect(await Promise.all(pids.map(score))).to.deep.equal([600, 600, 600, 600, 600])
      await fs.writeFile(`/proc/${pids[4]}/oom_score_adj`, '50\n')
      const calls: string[][] = []
      const runner: Runner = {
        async run(command, args) {
          calls.push([command, ...args])
          return {exitCode: 0, stdout: `${main}\n`, stderr: '', notFound: false}
        },
      }
      expect(await protectRunningService(runner, 'nginx.service', 100)).to.equal(4)
      expect(calls).to.deep.equal([['systemctl', 'show', '--property', 'MainPID', '--value', 'nginx.service']])
      expect(await Promise.all(pids.map(score))).to.deep.equal([100, 100, 100, 100, 50])
    } finally {
      process.kill(-tree.pid!, 'SIGKILL')
      await tree
    }
  })

  it('does nothing when the unit runs no process (MainPID 0)', async () => {
    const runner: Runner = {run: async () => ({exitCode: 0, stdout: '0\n', stderr: '', notFound: false})}
    expect(await protectRunningService(runner, 'nginx.service', -800)).to.equal(0)
  })
})
