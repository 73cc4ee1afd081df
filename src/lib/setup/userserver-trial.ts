import {spawn} from 'node:child_process'
import fs from 'node:fs/promises'
import http from 'node:http'
import type {AddressInfo} from 'node:net'
import path from 'node:path'

import {asIdentity, type ServerLaunch, type ServerTrial, type TrialResult} from './userserver.js'

/** The most of the server's output kept for the report (its last lines matter). */
const OUTPUT_LIMIT = 64 * 1024

/**
 * The real trial: a stand-in hub API on a loopback port (it answers every request with the hub's
 * version, which is all a starting server asks), the server started in its own process group as the
 * identity (setpriv), its URL asked every 200 ms until it answers, the server exits, or the time is
 * up; then the whole group is stopped (TERM, KILL after 5 s) and the stand-in closed.
 */
export const realTrial: ServerTrial = {
  async run(launch: ServerLaunch): Promise<TrialResult> {
    const started = Date.now()
    const hub = http.createServer((request, response) => {
      request.resume()
      const body = JSON.stringify({version: launch.hubVersion})
      response.writeHead(200, {'Content-Type': 'application/json', 'Content-Length': Buffer.byteLength(body)})
      response.end(body)
    })
    await listen(hub)
    const port = await freeLoopbackPort()
    const hubApi = `http://127.0.0.1:${(hub.address() as AddressInfo).port}/hub/api`
    const [program, ...args] = asIdentity(launch.identity, launch.command, launch.args)
    let output = ''
    const keep = (chunk: Buffer) => {
      output = (output + chunk.toString('utf8')).slice(-OUTPUT_LIMIT)
    }
    const child = spawn(program, args, {
      cwd: await existingDir(launch.cwd),
      env: launch.env(hubApi, port),
      detached: true,
      stdio: ['ignore', 'pipe', 'pipe'],
    })
    child.stdout.on('data', keep)
    child.stderr.on('data', keep)
    const exited = new Promise<number | undefined>((resolve) => {
      child.once('error', (error: NodeJS.ErrnoException) => {
        // The hub's own user (no setpriv): the same words setpriv uses when it cannot execute.
        keep(Buffer.from(`\nhubctl: failed to execute ${launch.command}: ${strerror(error)}\n`))
        resolve(127)
      })
      child.once('close', (code) => resolve(code ?? undefined))
    })
    let exitCode: number | undefined
    let done = false
    void exited.then((code) => {
      exitCode = code
      done = true
    })
    const stopGroup = () => {
      if (child.pid !== undefined && !done)
        try {
          process.kill(-child.pid, 'SIGKILL')
        } catch {
          // already gone
        }
    }
    // hubctl stopped meanwhile (Ctrl-C, a TERM): the server, in its own session, goes too.
    const onSignal = (signal: NodeJS.Signals) => {
      stopGroup()
      removeListeners()
      if (process.listenerCount(signal) === 0) process.kill(process.pid, signal)
    }
    const removeListeners = () => {
      process.removeListener('exit', stopGroup)
      process.removeListener('SIGINT', onSignal)
      process.removeListener('SIGTERM', onSignal)
    }
    process.once('exit', stopGroup)
    process.once('SIGINT', onSignal)
    process.once('SIGTERM', onSignal)
    try {
      const url = `http://127.0.0.1:${port}${launch.probePath}`
      const deadline = started + launch.timeoutMs
      while (!done && Date.now() < deadline) {
        if (await answers(url)) return {answered: true, ms: Date.now() - started}
        await Promise.race([exited, new Promise((resolve) => setTimeout(resolve, 200))])
      }
      if (done) await exited
      return {answered: false, timedOut: !done, exitCode, output, ms: Date.now() - started}
    } finally {
      await stop(child.pid, exited, () => done)
      removeListeners()
      const closed = new Promise((resolve) => hub.close(resolve))
      hub.closeAllConnections()
      await closed
    }
  },
}

async function stop(pid: number | undefined, exited: Promise<unknown>, done: () => boolean): Promise<void> {
  if (pid === undefined) return
  const signal = (name: NodeJS.Signals) => {
    try {
      process.kill(-pid, name)
    } catch {
      // the group is gone
    }
  }
  if (!done()) {
    signal('SIGTERM')
    const timer = new Promise((resolve) => setTimeout(resolve, 5000, 'late'))
    if ((await Promise.race([exited, timer])) === 'late') signal('SIGKILL')
    await exited
  }
  // Whatever the server left in its group (a kernel, a child): nothing outlives the check.
  signal('SIGKILL')
}

async function answers(url: string): Promise<boolean> {
  try {
    const response = await fetch(url, {signal: AbortSignal.timeout(2000), redirect: 'manual'})
    await response.arrayBuffer().catch(() => undefined)
    return response.status === 200
  } catch {
    return false
  }
}

function listen(server: http.Server): Promise<void> {
  return new Promise((resolve, reject) => {
    server.once('error', reject)
    server.listen(0, '127.0.0.1', () => resolve())
  })
}

async function freeLoopbackPort(): Promise<number> {
  const server = http.createServer()
  await listen(server)
  const {port} = server.address() as AddressInfo
  await new Promise((resolve) => server.close(resolve))
  return port
}

/** The directory, or the nearest one above it that exists (LocalProcessSpawner walks up the same way). */
async function existingDir(dir: string): Promise<string> {
  for (let current = dir; ; current = path.dirname(current)) {
    if ((await fs.stat(current).catch(() => undefined))?.isDirectory()) return current
    if (path.dirname(current) === current) return '/'
  }
}

function strerror(error: NodeJS.ErrnoException): string {
  if (error.code === 'EACCES') return 'Permission denied'
  if (error.code === 'ENOENT') return 'No such file or directory'
  return error.message
}
