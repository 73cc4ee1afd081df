// e2e-lane: parallel
import {expect} from 'chai'
import {execa} from 'execa'
import {randomBytes} from 'node:crypto'
import fs from 'node:fs/promises'
import path from 'node:path'

import {HubApi} from '../../src/lib/stack/hubapi.js'
import {Layout} from '../../src/lib/config/layout.js'
import {OOM_SCORE_ADJ} from '../../src/lib/config/limits.js'
import {BIN, VENV_JUPYTERHUB, grantHubctlTokens, hubctl, initTestHub, tempPrefix} from '../helpers/cli.js'
import type {TestHubPorts} from '../helpers/cli.js'
import {execute, httpsJson, openChannel, stdoutOf} from '../helpers/kernel.js'
import {needTool} from '../helpers/tools.js'
import {alive, procInfo, waitUntil} from '../helpers/processes.js'
import {addUser, removeUser, testUserName} from '../helpers/users.js'

/*
 * A hub that outlives a runaway kernel, on a machine without systemd (no per-user limits): the
 * whole stack (hubctl's supervisor, both proxies, the hub, nginx, two students' servers and
 * kernels) runs inside a cgroup v1 memory group the test makes, with room for about 512 MB more
 * than it uses once up (this machine has 24 GB), and a pids group (a bound for the fork loop).
 * One student's kernel allocates without bound, then forks children that each allocate: each time
 * the kernel's OOM killer takes the student's processes (oom_score_adj +500, set by the hub's
 * spawner before the server runs, inherited by its kernels), never the supervisor, the proxies,
 * the hub or nginx (-800, the supervisor's own, inherited), and the other student's kernel still
 * answers. The scores are read back from /proc, and the kernel's own ranking (oom_score) of every
 * process in the group is checked, stack below students.
 */

const ROOM = 512 * 2 ** 20

/** The memory cgroup (v1) this process is in; undefined where there is none to write. */
async function memoryCgroupDir(): Promise<string | undefined> {
  const line = (await fs.readFile('/proc/self/cgroup', 'utf8')).split('\n').find((l) => /^\d+:memory:/.test(l))
  if (!line) return undefined
  const dir = path.join('/sys/fs/cgroup/memory', line.split(':')[2])
  try {
    await fs.access(path.join(dir, 'memory.limit_in_bytes'), fs.constants.W_OK)
    return dir
  } catch {
    return undefined
  }
}

async function readNumber(file: string): Promise<number> {
  return Number((await fs.readFile(file, 'utf8')).trim())
}

async function oomKills(group: string): Promise<number> {
  const text = await fs.readFile(path.join(group, 'memory.oom_control'), 'utf8')
  return Number(/^oom_kill (\d+)$/m.exec(text)?.[1] ?? 0)
}

async function procsOf(group: string): Promise<number[]> {
  return (await fs.readFile(path.join(group, 'cgroup.procs'), 'utf8')).split('\n').filter(Boolean).map(Number)
}

/** Whether this machine lets root lower an oom_score_adj (CAP_SYS_RESOURCE): a child tries. */
async function canLowerOomScore(): Promise<boolean> {
  const tried = await execa('/bin/sh', ['-c', 'echo -1 > /proc/self/oom_score_adj'], {reject: false})
  return tried.exitCode === 0
}

describe('the OOM killer takes a student’s kernel, not the hub, the proxy or nginx (a memory cgroup smaller than the machine)', function () {
  this.timeout(300_000)

  const students = [testUserName(), testUserName()]
  const uids: number[] = []
  const tokens: string[] = []
  const kernels: string[] = []
  let prefix = ''
  let layout: Layout
  let ports: TestHubPorts
  let ca = ''
  let memory = ''
  let pids = ''
  /** The stack's processes (root's) in the group once up: pid → its command. */
  const stack = new Map<number, string>()

  const base = (i: number) => `https://localhost:${ports.https}/user/${students[i]}/api`
  const channelUrl = (i: number, kernel: string) =>
    `wss://localhost:${ports.https}/user/${students[i]}/api/kernels/${kernel}/channels`
  const run = async (i: number, kernel: string, code: string) =>
    stdoutOf(await execute(channelUrl(i, kernel), {ca, headers: {Authorization: `token ${tokens[i]}`}, code}))
  const newKernel = async (i: number): Promise<string> => {
    const created = await waitUntil(
      'the kernel to be created',
      async () => {
        const answer = await httpsJson(`${base(i)}/kernels`, {
          method: 'POST',
          ca,
          token: tokens[i],
          body: {name: 'python3'},
        })
        if (answer.status === 502) throw new Error('502')
        expect(answer.status, JSON.stringify(answer.body)).to.equal(201)
        return answer.body as {id: string}
      },
      {tries: 10, intervalMs: 1000},
    )
    return created.id
  }
  const kernelPid = async (i: number, kernel: string) => Number(await run(i, kernel, 'import os; print(os.getpid())'))

  before(async function () {
    const parent = await memoryCgroupDir()
    needTool(this, parent !== undefined, 'no writable cgroup v1 memory group for this process (/sys/fs/cgroup/memory)')
    const name = `hubctl-oom-${randomBytes(3).toString('hex')}`
    memory = path.join(parent!, name)
    await fs.mkdir(memory)
    // A bound on the fork loop, whatever happens: the group never holds more than 400 tasks.
    pids = path.join('/sys/fs/cgroup/pids', name)
    await fs.mkdir(pids)
    await fs.writeFile(path.join(pids, 'pids.max'), '400')

    for (const student of students) uids.push(await addUser(student))
    prefix = await tempPrefix('hubctl-oom')
    layout = new Layout(prefix)
    ports = await initTestHub(prefix, {admin: students[0], allowUsers: students, jupyterhub: VENV_JUPYTERHUB})
    await grantHubctlTokens(layout.hubConfigD, 'oom-test-tokens', students)
    // hubctl start in both groups from its first instruction: everything it starts is in them.
    const started = await execa(
      '/bin/sh',
      [
        '-c',
        'echo $$ > "$1/cgroup.procs" && echo $$ > "$2/cgroup.procs" && exec "$3" "$4" start --detach --prefix "$5" --json',
        'sh',
        memory,
        pids,
        process.execPath,
        BIN,
        prefix,
      ],
      {reject: false, cwd: '/'},
    )
    expect(started.exitCode, started.stderr + started.stdout).to.equal(0)
    ca = await fs.readFile(layout.fullchain, 'utf8')
    const api = HubApi.forLayout(layout, {ports}, {timeoutMs: 60_000})
    const apiToken = (await fs.readFile(layout.apiToken, 'utf8')).trim()
    for (const student of students) {
      expect(['started', 'pending']).to.include(await api.startServer(student))
      const response = await fetch(`http://127.0.0.1:${ports.hub}/hub/api/users/${student}/tokens`, {
        method: 'POST',
        headers: {Authorization: `token ${apiToken}`, 'Content-Type': 'application/json'},
        body: JSON.stringify({note: 'hubctl oom e2e', expires_in: 3600, scopes: [`access:servers!user=${student}`]}),
      })
      const body = (await response.json()) as {token?: string; message?: string}
      expect(response.status, body.message).to.equal(201)
      tokens.push(body.token!)
    }
    for (const student of students)
      await waitUntil(
        `the server of ${student} to be ready`,
        async () => (await api.userServers(student)).find((s) => s.name === '' && s.ready),
        {tries: 600, intervalMs: 200},
      )
    for (let i = 0; i < students.length; i++) kernels.push(await newKernel(i))
    for (const pid of await procsOf(memory)) {
      const info = await procInfo(pid)
      if (info && !uids.includes(info.uid)) stack.set(pid, info.cmdline.join(' '))
    }
    // Room for about 512 MB more than the stack uses now (page cache is given back first).
    const usage = await readNumber(path.join(memory, 'memory.usage_in_bytes'))
    await fs.writeFile(path.join(memory, 'memory.limit_in_bytes'), String(usage + ROOM))
  })

  after(async function () {
    this.timeout(120_000)
    if (prefix) await hubctl(['stop', '--prefix', prefix, '--json'])
    for (let i = 0; i < uids.length; i++) await removeUser(students[i], uids[i])
    for (const group of [memory, pids].filter(Boolean)) {
      await waitUntil(`${group} to be empty`, async () => (await procsOf(group).catch(() => [])).length === 0, {
        tries: 100,
        intervalMs: 200,
      }).catch(() => undefined)
      await fs.rmdir(group).catch(() => undefined)
    }
    if (prefix) await fs.rm(prefix, {recursive: true, force: true})
  })

  /** Every process of the group: the stack's (root's) are the OOM killer's last choice, the students' its first. */
  const checkScores = async () => {
    const rows: Array<{pid: number; uid: number; adj: number; score: number; cmd: string}> = []
    for (const pid of await procsOf(memory)) {
      const info = await procInfo(pid)
      const adj = await readNumber(`/proc/${pid}/oom_score_adj`).catch(() => NaN)
      const score = await readNumber(`/proc/${pid}/oom_score`).catch(() => NaN)
      // A process being killed (a fork loop's child the OOM killer just took) has no memory left, no command
      // line, and a score of 0 that ranks nothing: only the living count.
      if (info && info.cmdline.length > 0 && !Number.isNaN(adj))
        rows.push({pid, uid: info.uid, adj, score, cmd: info.cmdline.join(' ')})
    }
    const mine = rows.filter((r) => !uids.includes(r.uid))
    const theirs = rows.filter((r) => uids.includes(r.uid))
    expect(theirs.length, 'the students have servers and kernels').to.be.at.least(4)
    // -800 needs CAP_SYS_RESOURCE, which a container may lack (this machine's does): then all stay at 0.
    const stackAdj = (await canLowerOomScore()) ? OOM_SCORE_ADJ.hub : 0
    for (const r of mine) expect(r.adj, `${r.pid} ${r.cmd}`).to.equal(stackAdj)
    for (const r of theirs) expect(r.adj, `${r.pid} ${r.cmd}`).to.equal(OOM_SCORE_ADJ.server)
    // The kernel's own ranking: every process of the stack below every student's.
    const highestOfStack = Math.max(...mine.map((r) => r.score))
    const lowestOfStudents = Math.min(...theirs.map((r) => r.score))
    expect(highestOfStack, JSON.stringify(rows)).to.be.below(lowestOfStudents)
  }

  const stackAlive = async () => {
    for (const [pid, cmd] of stack) expect(await alive(pid), `${pid} ${cmd} was killed`).to.equal(true)
    expect([...stack.values()].join('\n'))
      .to.match(/jupyterhub/)
      .and.match(/configurable-http-proxy/)
      .and.match(/nginx/)
  }

  it('gives the hub, the proxies and nginx -800, the students’ servers and kernels +500 (the kernel ranks them so)', async () => {
    await checkScores()
  })

  it('a kernel allocating without bound is killed, the stack is not, and the other student’s kernel answers', async () => {
    const victim = await kernelPid(0, kernels[0])
    const before = await oomKills(memory)
    const channel = await openChannel(channelUrl(0, kernels[0]), {ca, headers: {Authorization: `token ${tokens[0]}`}})
    // No reply comes: the kernel dies.
    channel.execute('x = []\nwhile True:\n    x.append(b"x" * (32 << 20))').catch(() => undefined)
    await waitUntil('the allocating kernel to be killed', async () => !(await alive(victim)), {
      tries: 1200,
      intervalMs: 100,
    })
    channel.close()
    expect(await oomKills(memory)).to.be.above(before)
    await stackAlive()
    expect(await run(1, kernels[1], 'print(6*7)')).to.equal('42\n')
  })

  it('a fork loop of allocating children is killed child by child, the stack is not, and the other student’s kernel answers', async () => {
    const kernel = await newKernel(0)
    const parent = await kernelPid(0, kernel)
    const before = await oomKills(memory)
    // 12 children of 160 MB each: three times the room. They sleep once they have it. One child
    // allocates at a time (the loop goes on when it has its memory, or was killed): twelve allocating
    // at once would each hold less than a student's server (about 110 MB) when memory runs out, and the
    // OOM killer, which takes the biggest of the students' processes, could take another student's server.
    const code = [
      'import os, time',
      'for i in range(12):',
      '    r, w = os.pipe()',
      '    if os.fork() == 0:',
      '        os.close(r)',
      '        b = b"x" * (160 << 20)',
      '        os.write(w, b"1")',
      '        time.sleep(600)',
      '        os._exit(0)',
      '    os.close(w)',
      '    os.read(r, 1)',
      '    os.close(r)',
      'print("forked")',
    ].join('\n')
    expect(await run(0, kernel, code)).to.equal('forked\n')
    await waitUntil('the OOM killer to have taken children', async () => (await oomKills(memory)) > before, {
      tries: 300,
      intervalMs: 100,
    })
    expect(await alive(parent), 'the forking kernel itself, smaller than its children').to.equal(true)
    await stackAlive()
    expect(await run(1, kernels[1], 'print(6*7)')).to.equal('42\n')
    await checkScores()
  })
})
