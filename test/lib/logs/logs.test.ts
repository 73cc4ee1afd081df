import {expect} from 'chai'
import fs from 'node:fs/promises'
import os from 'node:os'
import path from 'node:path'

import {Layout} from '../../../src/lib/config/layout.js'
import {HubctlError} from '../../../src/lib/errors.js'
import {
  checkLogsRequest,
  followLogs,
  formatLogs,
  lineTime,
  logFiles,
  parseLines,
  parseLogChoice,
  readLogs,
} from '../../../src/lib/logs/logs.js'
import {waitUntil} from '../../helpers/processes.js'

/** Local time in ms (the programs write local times without a zone). */
const local = (y: number, mo: number, d: number, h: number, mi: number, s: number, ms = 0) =>
  new Date(y, mo - 1, d, h, mi, s, ms).getTime()

const NOW = local(2026, 11, 30, 10, 0, 0)

/** A hub's log as JupyterHub 6 and jupyterhub-idle-culler write it: two users, a traceback, request logs. */
const HUB_LOG = `[I 2026-11-30 09:00:01.100 JupyterHub app:3000] Running JupyterHub version 6.1.1
[I 2026-11-30 09:10:00.000 JupyterHub log:192] 302 GET /hub/ -> /hub/home (alice@127.0.0.1) 1.20ms
[I 2026-11-30 09:10:01.000 JupyterHub log:192] 200 GET /hub/api/users/alice (hubctl@127.0.0.1) 3.00ms
[I 2026-11-30 09:10:02.000 JupyterHub provider:661] Creating oauth client jupyterhub-user-alice
[I 2026-11-30 09:10:05.500 JupyterHub base:1102] User alice took 3.4 seconds to start
[I 2026-11-30 09:10:05.600 JupyterHub proxy:330] Adding user alice to proxy /user/alice/ => http://127.0.0.1:41000
[I 2026-11-30 09:12:00.000 JupyterHub base:1102] User alicex took 2.0 seconds to start
[E 2026-11-30 09:20:00.000 JupyterHub user:900] Unhandled error starting alice's server: boom
    Traceback (most recent call last):
      File "x.py", line 1, in <module>
    RuntimeError: boom
[I 2026-11-30 09:21:00.000 JupyterHub app:3000] bob.alice logged in
[I 2026-11-30 09:50:00.000 JupyterHub-idle-culler __init__:255] Culling server alice (inactive for 00:20:03)
[I 2026-11-30 09:50:00.100 JupyterHub log:192] 204 DELETE /hub/api/users/alice/server (idle-culler@127.0.0.1) 10.00ms
[I 2026-11-30 09:50:00.200 JupyterHub proxy:356] Removing user alice from proxy (/user/alice/)
`

async function fixture(): Promise<Layout> {
  const prefix = await fs.mkdtemp(path.join(os.tmpdir(), 'hubctl-logs-'))
  const layout = new Layout(prefix)
  await fs.mkdir(layout.logDir, {recursive: true})
  await fs.writeFile(layout.hubLog, HUB_LOG)
  await fs.writeFile(`${layout.hubLog}.1`, '[I 2026-11-23 08:00:00.000 JupyterHub app:3000] last week\n')
  await fs.writeFile(
    layout.proxyLog,
    '09:00:00.500 [ConfigProxy] info: Proxying http://127.0.0.1:8000 to http://127.0.0.1:8081\n09:59:00.000 [ConfigProxy] info: 200 GET /api/routes\n',
  )
  await fs.writeFile(
    layout.supervisorLog,
    `${new Date(local(2026, 11, 30, 9, 0, 0)).toISOString()} hubctl[10] info: the hub is ready\n${new Date(local(2026, 11, 30, 9, 55, 0)).toISOString()} hubctl[10] info: cleaned up the server of alice: its route's target refused 3 checks in a row (stopped)\n`,
  )
  await fs.writeFile(
    layout.nginxAccessLog,
    '127.0.0.1 - - [30/Nov/2026:09:58:00 +0000] "GET /hub/health HTTP/1.1" 200 0 "-" "curl"\n',
  )
  return layout
}

describe('logs', () => {
  let layout: Layout
  beforeEach(async () => {
    layout = await fixture()
  })
  afterEach(async () => {
    await fs.rm(layout.prefix, {recursive: true, force: true})
  })

  it("reads each program's time: JupyterHub's, the culler's, hubctl's, nginx's, the proxy's time of day", () => {
    expect(lineTime('[I 2026-11-30 09:10:05.500 JupyterHub base:1102] x', NOW)).to.equal(
      local(2026, 11, 30, 9, 10, 5, 500),
    )
    expect(lineTime('2026-11-30T09:00:00.000Z hubctl[1] info: x', NOW)).to.equal(Date.UTC(2026, 10, 30, 9))
    expect(lineTime('2026/11/30 09:01:02 [error] 12#12: x', NOW)).to.equal(local(2026, 11, 30, 9, 1, 2))
    expect(lineTime('1.2.3.4 - - [30/Nov/2026:09:58:00 +0100] "GET / HTTP/1.1" 200', NOW)).to.equal(
      Date.UTC(2026, 10, 30, 8, 58),
    )
    expect(lineTime('09:59:00.000 [ConfigProxy] info: x', NOW)).to.equal(local(2026, 11, 30, 9, 59, 0))
    // A time of day later than now is yesterday's.
    expect(lineTime('23:00:00.000 [ConfigProxy] info: x', NOW)).to.equal(local(2026, 11, 29, 23, 0, 0))
    expect(lineTime('    Traceback (most recent call last):', NOW)).to.equal(undefined)
  })

  it("shows a source's files in order, the previous week (FILE.1) first; all of them under tail's headers", async () => {
    const hub = await readLogs(layout, {source: 'hub', now: NOW})
    expect(hub.lines[0].text).to.equal('[I 2026-11-23 08:00:00.000 JupyterHub app:3000] last week')
    expect(hub.lines.at(-1)?.text).to.match(/Removing user alice from proxy/)
    expect(formatLogs(hub)).not.to.include('==>')
    const all = await readLogs(layout, {source: 'all', now: NOW})
    expect(all.files.map((f) => [f.source, path.basename(f.file), f.exists])).to.deep.equal([
      ['hubctl', 'hubctl.log', true],
      ['hubctl', 'hubctl-audit.log', false],
      ['proxy', 'proxy.log', true],
      ['hub', 'jupyterhub.log', true],
      ['nginx', 'nginx-error.log', false],
      ['nginx', 'nginx-access.log', true],
    ])
    const text = formatLogs(all)
    const headers = [...text.matchAll(/^==> (.*) <==$/gm)].map((m) => path.basename(m[1]))
    expect(headers).to.deep.equal(['hubctl.log', 'proxy.log', 'jupyterhub.log', 'nginx-access.log'])
    expect(text.indexOf('[ConfigProxy] info: Proxying')).to.be.greaterThan(text.indexOf('==> ' + layout.proxyLog))
  })

  it('--since keeps the lines written since then, a traceback with its line; --lines the last N of each file', async () => {
    const since = await readLogs(layout, {source: 'hub', sinceMs: local(2026, 11, 30, 9, 20, 0), now: NOW})
    expect(since.lines.map((l) => l.text.slice(0, 40))).to.deep.equal([
      '[E 2026-11-30 09:20:00.000 JupyterHub us',
      '    Traceback (most recent call last):',
      '      File "x.py", line 1, in <module>',
      '    RuntimeError: boom',
      '[I 2026-11-30 09:21:00.000 JupyterHub ap',
      '[I 2026-11-30 09:50:00.000 JupyterHub-id',
      '[I 2026-11-30 09:50:00.100 JupyterHub lo',
      '[I 2026-11-30 09:50:00.200 JupyterHub pr',
    ])
    const proxy = await readLogs(layout, {source: 'proxy', sinceMs: local(2026, 11, 30, 9, 30, 0), now: NOW})
    expect(proxy.lines.map((l) => l.text)).to.deep.equal(['09:59:00.000 [ConfigProxy] info: 200 GET /api/routes'])
    const two = await readLogs(layout, {source: 'all', lines: 1, now: NOW})
    expect(two.lines.map((l) => path.basename(l.file))).to.deep.equal([
      'hubctl.log',
      'proxy.log',
      'jupyterhub.log',
      'nginx-access.log',
    ])
  })

  it("--user: that user's spawns, stops, culls, errors (with the traceback) and hubctl's clean-ups, not another's or plain reads", async () => {
    const result = await readLogs(layout, {source: 'all', user: 'alice', now: NOW})
    expect(result.files.map((f) => path.basename(f.file))).to.deep.equal(['hubctl.log', 'jupyterhub.log'])
    const message = (text: string) => text.replace(/^\[[^\]]*\] |^\S+ hubctl\[\d+\] \w+: /, '').slice(0, 60)
    expect(result.lines.map((l) => message(l.text))).to.deep.equal(
      [
        "cleaned up the server of alice: its route's target refused 3",
        'User alice took 3.4 seconds to start',
        'Adding user alice to proxy /user/alice/ => http://127.0.0.1:41',
        "Unhandled error starting alice's server: boom",
        '    Traceback (most recent call last):',
        '      File "x.py", line 1, in <module>',
        '    RuntimeError: boom',
        'Culling server alice (inactive for 00:20:03)',
        '204 DELETE /hub/api/users/alice/server (idle-culler@127.0.0.1)',
        'Removing user alice from proxy (/user/alice/)',
      ].map((t) => t.slice(0, 60)),
    )
  })

  it('refuses an unknown log, a bad --lines, a bad user name, and --user with the proxy or nginx (exit 2)', () => {
    expect(parseLogChoice(undefined)).to.equal('all')
    expect(parseLogChoice('Hub')).to.equal('hub')
    for (const bad of [() => parseLogChoice('kernel'), () => parseLines('0'), () => parseLines('ten')]) {
      expect(bad).to.throw(HubctlError).with.property('exitCode', 2)
    }
    expect(parseLines('20')).to.equal(20)
    expect(() => checkLogsRequest({source: 'proxy', user: 'alice'})).to.throw(HubctlError, /--user reads the hub's/)
    expect(() => checkLogsRequest({source: 'hub', user: 'Alice Smith'})).to.throw(HubctlError)
    expect(logFiles(layout, 'nginx').map((f) => path.basename(f.file))).to.deep.equal([
      'nginx-error.log',
      'nginx-access.log',
    ])
  })

  it('-f prints lines written after it started, reopens a truncated file, filters --user, and stops when aborted', async () => {
    const out: string[] = []
    const abort = new AbortController()
    const following = followLogs(layout, {source: 'hub', user: 'alice'}, (text) => out.push(text), {
      signal: abort.signal,
      intervalMs: 20,
    })
    await new Promise((resolve) => setTimeout(resolve, 100))
    await fs.appendFile(
      layout.hubLog,
      '[I 2026-11-30 10:00:01.000 JupyterHub base:1102] User bob took 1.0 seconds to start\n[I 2026-11-30 10:00:02.000 JupyterHub base:1102] User alice took 1.0 seconds to start\n',
    )
    await waitUntil('the new line', async () => (out.join('').includes('User alice took 1.0') ? true : undefined), {
      tries: 100,
      intervalMs: 20,
    })
    // logrotate's copytruncate: the file starts again.
    await fs.writeFile(layout.hubLog, '[W 2026-11-30 10:01:00.000 JupyterHub user:1] alice server gone\n')
    await waitUntil(
      'the line after truncation',
      async () => (out.join('').includes('alice server gone') ? true : undefined),
      {
        tries: 100,
        intervalMs: 20,
      },
    )
    abort.abort()
    await following
    expect(out.join('')).not.to.include('bob')
    expect(out.join('')).not.to.include('Culling server alice (inactive for 00:20:03)')
  })
})
