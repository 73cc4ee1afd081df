import {expect} from 'chai'
import {spawn} from 'node:child_process'
import fs from 'node:fs/promises'
import os from 'node:os'
import path from 'node:path'

import {endOrphans, orphanedServices} from '../../../src/lib/stack/orphans.js'
import {procStartTime} from '../../../src/lib/processes.js'

const API = 'http://127.0.0.1:18081/hub/api'
const HUB = 4000

async function fakeProcess(dir: string, pid: number, p: {uid: number; ppid: number; environ: string[]}) {
  await fs.mkdir(path.join(dir, String(pid)))
  await fs.writeFile(
    path.join(dir, String(pid), 'status'),
    `Name:\tpython3\nPPid:\t${p.ppid}\nUid:\t${p.uid}\t${p.uid}\t${p.uid}\t${p.uid}\n`,
  )
  await fs.writeFile(path.join(dir, String(pid), 'environ'), `${p.environ.join('\0')}\0`)
}

describe('orphans: services a hub that is gone left running', () => {
  let dir = ''
  beforeEach(async () => {
    dir = await fs.mkdtemp(path.join(os.tmpdir(), 'hubctl-orphans-'))
  })
  afterEach(async () => fs.rm(dir, {recursive: true, force: true}))

  it("finds this hub's services whose parent is not the hub running now, and nothing else", async () => {
    const service = ['JUPYTERHUB_SERVICE_NAME=idle-culler', `JUPYTERHUB_API_URL=${API}`]
    await fakeProcess(dir, 100, {uid: 0, ppid: 1, environ: service}) // re-parented: the old hub is gone
    await fakeProcess(dir, 101, {uid: 0, ppid: HUB, environ: service}) // the running hub's own culler
    await fakeProcess(dir, 102, {uid: 0, ppid: 1, environ: ['JUPYTERHUB_USER=ann', `JUPYTERHUB_API_URL=${API}`]}) // a user server
    await fakeProcess(dir, 103, {uid: 1000, ppid: 1, environ: service}) // another user's process
    await fakeProcess(dir, 104, {
      uid: 0,
      ppid: 1,
      environ: ['JUPYTERHUB_SERVICE_NAME=idle-culler', 'JUPYTERHUB_API_URL=http://127.0.0.1:18082/hub/api'],
    }) // another hub's
    await fakeProcess(dir, 105, {
      uid: 0,
      ppid: 77,
      environ: ['JUPYTERHUB_SERVICE_NAME=announce', `JUPYTERHUB_API_URL=${API}`],
    })
    const found = await orphanedServices({apiUrl: API, hubPid: HUB, uid: 0}, dir)
    expect(found.map((o) => [o.pid, o.service]).sort()).to.deep.equal([
      [100, 'idle-culler'],
      [105, 'announce'],
    ])
  })

  it('ends each with SIGTERM, and with SIGKILL one that ignores it', async () => {
    const polite = spawn('sleep', ['600'], {stdio: 'ignore'})
    const stubborn = spawn('sh', ['-c', "trap '' TERM; while :; do sleep 1; done"], {stdio: 'ignore'})
    const exits = [polite, stubborn].map((child) => new Promise((resolve) => child.once('exit', (_, s) => resolve(s))))
    await new Promise((resolve) => setTimeout(resolve, 200))
    const orphans = await Promise.all(
      [polite, stubborn].map(async (child) => ({
        pid: child.pid!,
        service: 's',
        startTime: await procStartTime(child.pid!),
      })),
    )
    await endOrphans(orphans, 300)
    expect(await Promise.all(exits)).to.deep.equal(['SIGTERM', 'SIGKILL'])
  })
})
