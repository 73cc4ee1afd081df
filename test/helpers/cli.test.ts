import {expect} from 'chai'
import fs from 'node:fs/promises'
import net from 'node:net'

import {freePort, portFlags} from './cli.js'

describe('test helpers: freePort', () => {
  it("hands out ports of this mocha's block, below hubctl's server ports and the kernel's ephemeral range, never the same twice", async () => {
    const low = Number((await fs.readFile('/proc/sys/net/ipv4/ip_local_port_range', 'utf8')).trim().split(/\s+/)[0])
    const blocks = Number(process.env.HUBCTL_TEST_PORT_BLOCKS) || 8
    const block =
      process.env.HUBCTL_TEST_PORT_BLOCK === undefined
        ? process.pid % blocks
        : Number(process.env.HUBCTL_TEST_PORT_BLOCK)
    const size = Math.floor(10_000 / blocks)
    const ports: number[] = []
    for (let i = 0; i < 200; i++) ports.push(await freePort())
    expect(new Set(ports).size).to.equal(ports.length)
    for (const port of ports) {
      expect(port).to.be.below(Math.min(low, 20_000))
      expect(port).to.be.within(10_000 + block * size, 10_000 + (block + 1) * size - 1)
    }
    const {ports: flags} = await portFlags()
    expect(new Set(Object.values(flags)).size).to.equal(7)
  })

  it('skips a port someone listens on', async () => {
    const next = await freePort()
    // The cursor's next port, held: freePort gives the one after it.
    const held = net.createServer()
    await new Promise<void>((resolve) => held.listen(next + 1, '127.0.0.1', resolve))
    try {
      const port = await freePort()
      expect(port).to.not.equal(next + 1)
    } finally {
      await new Promise((resolve) => held.close(resolve))
    }
  })
})
