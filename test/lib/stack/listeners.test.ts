import {expect} from 'chai'
import {ChildProcess, spawn} from 'node:child_process'
import net from 'node:net'

import {listenersOn, portHolder, portOwnedBy} from '../../../src/lib/stack/listeners.js'
import {freePort} from '../../helpers/cli.js'

/*
 * Who listens on a port, from /proc (Linux): real sockets of this process and of child processes
 * of the test, never a fake.
 */

/** A node process that listens on 127.0.0.1:port and says so on its standard output. */
async function listener(port: number): Promise<ChildProcess> {
  const child = spawn(
    process.execPath,
    ['-e', `require('net').createServer().listen(${port}, '127.0.0.1', () => console.log('up'))`],
    {stdio: ['ignore', 'pipe', 'inherit']},
  )
  await new Promise<void>((resolve, reject) => {
    child.stdout!.once('data', () => resolve())
    child.once('exit', (code) => reject(new Error(`the listener exited (${code})`)))
  })
  return child
}

/** A process that only sleeps (a pid that holds no socket). */
function sleeper(): ChildProcess {
  return spawn(process.execPath, ['-e', 'setTimeout(() => {}, 60000)'], {stdio: 'ignore'})
}

describe('listeners (socket owners from /proc)', () => {
  const children: ChildProcess[] = []
  afterEach(() => {
    for (const child of children.splice(0)) child.kill('SIGKILL')
  })

  it('a port nobody listens on: not owned, "nothing listens"', async () => {
    const port = await freePort()
    expect(await listenersOn(port)).to.deep.equal([])
    const owner = await portOwnedBy(port, process.pid)
    expect(owner.owned).to.equal(false)
    expect(owner.problem).to.match(/nothing listens/)
  })

  it("this process's own listener is its own; another process's pid does not own it", async () => {
    const port = await freePort()
    const server = net.createServer()
    await new Promise<void>((resolve) => server.listen(port, '127.0.0.1', resolve))
    try {
      expect(await listenersOn(port)).to.have.length(1)
      expect((await portOwnedBy(port, process.pid)).owned).to.equal(true)
      const other = sleeper()
      children.push(other)
      const owner = await portOwnedBy(port, other.pid)
      expect(owner.owned).to.equal(false)
      expect(owner.problem).to.match(
        new RegExp(`port ${port} is held by another program \\(pid ${process.pid}, uid \\d+\\)`),
      )
    } finally {
      server.close()
    }
  })

  it('a listener in a child process counts for its parent (a descendant), not for a sibling', async () => {
    const port = await freePort()
    const child = await listener(port)
    children.push(child)
    expect((await portOwnedBy(port, child.pid)).owned).to.equal(true)
    expect((await portOwnedBy(port, process.pid)).owned, 'the test process is its parent').to.equal(true)
    const sibling = sleeper()
    children.push(sibling)
    expect((await portOwnedBy(port, sibling.pid)).owned).to.equal(false)
    expect((await portOwnedBy(port, undefined)).owned).to.equal(false)
  })

  it('portHolder names the process behind a port (pid, parent, program) for a message; nothing for a free port', async () => {
    const port = await freePort()
    expect(await portHolder(port)).to.equal(undefined)
    const child = await listener(port)
    children.push(child)
    expect(await portHolder(port)).to.deep.equal({uid: 0, pid: child.pid, ppid: process.pid, name: 'node'})
  })
})
