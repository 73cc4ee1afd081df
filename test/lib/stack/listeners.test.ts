import {expect} from 'chai'
import {ChildProcess, spawn} from 'node:child_process'
import fs from 'node:fs/promises'
import net from 'node:net'
import os from 'node:os'
import path from 'node:path'

import {Layout} from '../../../src/lib/config/layout.js'
import {procStartTime} from '../../../src/lib/processes.js'
import {listenersOn, portHolder, portOwnedBy, verifyServerListener} from '../../../src/lib/stack/listeners.js'
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

  it("a user server's route target: only the process the hub recorded for that server (same start time) holds it", async () => {
    const prefix = await fs.mkdtemp(path.join(os.tmpdir(), 'hubctl-listeners-'))
    const layout = new Layout(prefix)
    const record = async (records: object) => {
      await fs.mkdir(path.dirname(layout.serverProcesses), {recursive: true})
      await fs.writeFile(layout.serverProcesses, JSON.stringify(records))
    }
    const squat = net.createServer()
    try {
      const port = await freePort()
      const server = await listener(port)
      children.push(server)
      const target = `http://127.0.0.1:${port}`
      const alice = {user: 'alice', name: ''}
      const startTime = (await procStartTime(server.pid!))!
      expect(await verifyServerListener(layout, alice, target)).to.match(/the hub recorded no process for this server/)
      await record({'alice/': {pid: server.pid, startTime, port}})
      expect(await verifyServerListener(layout, alice, target)).to.equal(undefined)
      expect(await verifyServerListener(layout, {user: 'alice', name: 'gpu'}, target)).to.match(/recorded no process/)
      expect(await verifyServerListener(layout, alice, `http://10.0.0.9:${port}`)).to.match(/not on this machine/)
      // The same pid with another start time: another process (a reused pid).
      await record({'alice/': {pid: server.pid, startTime: '1', port}})
      expect(await verifyServerListener(layout, alice, target)).to.match(
        new RegExp(`^the server's process \\(pid ${server.pid}\\) is gone`),
      )
      // The server dies; another program takes its port and would answer as a Jupyter server.
      const other = await freePort()
      await new Promise<void>((resolve) => squat.listen(other, '127.0.0.1', resolve))
      const idle = sleeper()
      children.push(idle)
      await record({'alice/': {pid: idle.pid, startTime: await procStartTime(idle.pid!), port: other}})
      expect(await verifyServerListener(layout, alice, `http://127.0.0.1:${other}`)).to.equal(
        `port ${other} is held by another program (pid ${process.pid}, uid ${process.getuid!()}), not by the server's process (pid ${idle.pid})`,
      )
      idle.kill('SIGKILL')
      await new Promise((resolve) => idle.once('exit', resolve))
      expect(await verifyServerListener(layout, alice, `http://127.0.0.1:${other}`)).to.equal(
        `the server's process (pid ${idle.pid}) is gone; port ${other} is held by another program (pid ${process.pid}, uid ${process.getuid!()}), not by a process hubctl started`,
      )
    } finally {
      squat.close()
      await fs.rm(prefix, {recursive: true, force: true})
    }
  })
})
