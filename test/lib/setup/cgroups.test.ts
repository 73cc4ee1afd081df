import {expect} from 'chai'
import fs from 'node:fs/promises'
import os from 'node:os'
import path from 'node:path'

import {memoryEnforcement} from '../../../src/lib/setup/cgroups.js'

/*
 * Whether the kernel enforces a process's memory limit, read from its cgroup: trees laid out as the
 * kernel shows them (cgroup v1 with its memory hierarchy, v2 with or without the memory
 * controller), and this machine's own /proc and /sys/fs/cgroup.
 */

async function tree(files: Record<string, string>): Promise<string> {
  const dir = await fs.mkdtemp(path.join(os.tmpdir(), 'hubctl-cgroups-'))
  for (const [file, content] of Object.entries(files)) {
    await fs.mkdir(path.dirname(path.join(dir, file)), {recursive: true})
    await fs.writeFile(path.join(dir, file), content)
  }
  return dir
}

const UNIT = '/system.slice/jupyter-alice-singleuser.service'

describe('memory enforcement read from a cgroup', () => {
  const dirs: string[] = []
  after(async () => {
    for (const dir of dirs) await fs.rm(dir, {recursive: true, force: true})
  })
  const check = async (files: Record<string, string>) => {
    const dir = await tree(files)
    dirs.push(dir)
    return memoryEnforcement(42, path.join(dir, 'sys'), path.join(dir, 'proc'))
  }

  it('cgroup v2 with the memory controller: memory.max of the unit', async () => {
    const found = await check({
      'proc/42/cgroup': `0::${UNIT}\n`,
      'sys/cgroup.controllers': 'cpuset cpu io memory pids\n',
      [`sys${UNIT}/memory.max`]: `${2 ** 31}\n`,
    })
    expect(found).to.deep.equal({enforced: true, limitBytes: 2 ** 31, cgroup: UNIT, version: 2})
  })

  it('cgroup v2 without it, or not enabled for the group, or "max": not enforced, and why', async () => {
    const none = await check({'proc/42/cgroup': `0::${UNIT}\n`, 'sys/cgroup.controllers': 'cpu pids\n'})
    expect(none.enforced).to.equal(false)
    expect(none.reason).to.match(/memory controller is not available/)
    const notEnabled = await check({
      'proc/42/cgroup': `0::${UNIT}\n`,
      'sys/cgroup.controllers': 'cpu memory pids\n',
      [`sys${UNIT}/cgroup.procs`]: '42\n',
    })
    expect(notEnabled.reason).to.match(/not enabled for .*jupyter-alice-singleuser.service/)
    const unlimited = await check({
      'proc/42/cgroup': `0::${UNIT}\n`,
      'sys/cgroup.controllers': 'memory\n',
      [`sys${UNIT}/memory.max`]: 'max\n',
    })
    expect(unlimited.reason).to.match(/"max" \(no limit\)/)
  })

  it('cgroup v1 (hybrid: systemd on v2 beside it): the memory hierarchy decides', async () => {
    const limited = await check({
      'proc/42/cgroup': `4:memory:${UNIT}\n1:name=systemd:${UNIT}\n0::${UNIT}\n`,
      [`sys/memory${UNIT}/memory.limit_in_bytes`]: `${2 ** 30}\n`,
      'sys/unified/cgroup.controllers': '\n',
    })
    expect(limited).to.deep.equal({enforced: true, limitBytes: 2 ** 30, cgroup: UNIT, version: 1})
    const unlimited = await check({
      'proc/42/cgroup': `4:memory:/\n0::${UNIT}\n`,
      'sys/memory/memory.limit_in_bytes': '9223372036854771712\n',
    })
    expect(unlimited.enforced).to.equal(false)
    expect(unlimited.reason).to.match(/memory group \/ has no limit/)
  })

  it("reads this machine's own: this process's group, and a gone process", async () => {
    const mine = await memoryEnforcement(process.pid)
    const text = await fs.readFile('/proc/self/cgroup', 'utf8')
    expect(mine.cgroup === undefined || text.includes(mine.cgroup), JSON.stringify(mine)).to.equal(true)
    expect((await memoryEnforcement(2 ** 22 + 1)).reason).to.match(/is gone/)
  })
})
