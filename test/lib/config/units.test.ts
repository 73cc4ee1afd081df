import {expect} from 'chai'
import {execa} from 'execa'
import fs from 'node:fs/promises'
import path from 'node:path'

import {Layout} from '../../../src/lib/config/layout.js'
import {
  planBackupSchedule,
  planLogrotate,
  planNginxOomDropIn,
  planRenewalSchedule,
  planServiceUnit,
} from '../../../src/lib/config/units.js'
import {tempPrefix} from '../../helpers/cli.js'
import {needTool} from '../../helpers/tools.js'

/*
 * The systemd units and the root cron line run hubctl by the paths of node and bin/run.js and the
 * prefix. A space, `;`, `%`, `$` or a quote in one of them must reach the program as one argument,
 * unchanged: cron turns an unescaped `%` into a newline and hands the rest to `sh -c`; systemd
 * expands `%` specifiers and `$VARIABLES` in ExecStart and splits it on whitespace.
 */

const HOSTILE = 'a b;touch PWNED%n$HOME\'"x\\y'

/** What cron does to a command: an unescaped `%` ends it (the rest is standard input), `\%` is a `%` (Debian's cron, do_command.c). */
function cronCommand(line: string): string {
  let out = ''
  let escaped = false
  for (const ch of line) {
    if (escaped) {
      if (ch === '%') out = out.slice(0, -1)
      out += ch
      escaped = false
      continue
    }
    if (ch === '\\') escaped = true
    if (ch === '%') break
    out += ch
  }
  return out
}

/** systemd's reading of an ExecStart= value: specifiers (%%), variables ($$), words with quotes and C escapes. */
function systemdArgv(value: string): string[] {
  const words: string[] = []
  let i = 0
  const unescape: Record<string, string> = {n: '\n', t: '\t', '\\': '\\', '"': '"', "'": "'", ' ': ' '}
  while (i < value.length) {
    while (value[i] === ' ') i++
    if (i >= value.length) break
    let word = ''
    let quote: string | undefined
    for (; i < value.length; i++) {
      const ch = value[i]
      if (ch === '%') {
        if (value[i + 1] !== '%') throw new Error(`a specifier %${value[i + 1]} in ${value}`)
        word += '%'
        i++
      } else if (ch === '$') {
        if (value[i + 1] !== '$') throw new Error(`a variable in ${value}`)
        word += '$'
        i++
      } else if (ch === '\\') {
        const next = value[++i]
        if (!(next in unescape)) throw new Error(`an unknown escape \\${next}`)
        word += unescape[next]
      } else if (quote) {
        if (ch === quote) quote = undefined
        else word += ch
      } else if (ch === '"' || ch === "'") {
        quote = ch
      } else if (ch === ' ') {
        break
      } else if (ch === ';' && word === '') {
        throw new Error(`a command separator in ${value}`)
      } else {
        word += ch
      }
    }
    if (quote) throw new Error(`an unbalanced quote in ${value}`)
    words.push(word)
  }
  return words
}

describe('units and cron: paths with spaces, ;, %, $ and quotes', function () {
  this.timeout(60_000)
  let dir: string
  let node: string
  /** systemd runs no executable whose path has a quote, a backslash or a `$`: the units' node has only the others. */
  let unitNode: string
  let hubctl: string
  let layout: Layout

  before(async () => {
    dir = await tempPrefix('hubctl-units')
    const odd = path.join(dir, HOSTILE)
    await fs.mkdir(odd, {recursive: true})
    // A "node" that records the arguments it was given, one per line.
    node = path.join(odd, 'node')
    await fs.writeFile(node, `#!/bin/sh\nfor a in "$@"; do printf '%s\\n' "$a"; done > "$(dirname "$0")/argv"\n`, {
      mode: 0o755,
    })
    unitNode = path.join(dir, 'a b;touch PWNED%n', 'node')
    await fs.mkdir(path.dirname(unitNode))
    await fs.copyFile(node, unitNode)
    await fs.chmod(unitNode, 0o755)
    hubctl = path.join(odd, 'run.js')
    await fs.writeFile(hubctl, '')
    layout = new Layout(path.join(dir, `prefix ${HOSTILE}`))
  })
  after(async () => {
    await fs.rm(dir, {recursive: true, force: true})
  })

  it('the cron line runs exactly node, run.js, cert renew --prefix PREFIX under cron and sh (was: cut at the %, ; ran a command)', async () => {
    const [cron] = await planRenewalSchedule(layout, {node, hubctl}, false)
    const line = cron.content.split('\n').find((l) => /^\d/.test(l))!
    const command = line.replace(/^\S+ \S+ \* \* \* root /, '')
    const ran = await execa('/bin/sh', ['-c', cronCommand(command)], {cwd: dir, reject: false})
    expect(ran.exitCode, ran.stderr).to.equal(0)
    expect(await fs.readFile(path.join(path.dirname(node), 'argv'), 'utf8')).to.equal(
      [hubctl, 'cert', 'renew', '--prefix', layout.prefix, ''].join('\n'),
    )
    await fs.access(path.join(dir, 'PWNED')).then(
      () => expect.fail('the ; in a path ran a command'),
      () => {},
    )
  })

  it('every ExecStart= reads back as node, run.js and the arguments, unchanged (was: split at spaces, %n and $HOME expanded)', async () => {
    const files = [
      await planServiceUnit(layout, {node: unitNode, hubctl}),
      ...(await planRenewalSchedule(layout, {node: unitNode, hubctl}, true)),
    ]
    const execs = files.flatMap((f) =>
      f.content
        .split('\n')
        .filter((l) => /^Exec\w+=/.test(l))
        .map((l) => l.replace(/^Exec\w+=/, '')),
    )
    expect(execs).to.have.length(3)
    const expected = [['start'], ['restart'], ['cert', 'renew']]
    for (const [i, exec] of execs.entries())
      expect(systemdArgv(exec)).to.deep.equal([unitNode, hubctl, ...expected[i], '--prefix', layout.prefix])
  })

  it('the service is not restarted after exit 7 (an old database, a crash loop: restarting loops), and is after any other exit', async () => {
    const unit = (await planServiceUnit(layout, {node: unitNode, hubctl})).content
    expect(unit).to.match(/^Restart=always$/m)
    expect(unit.match(/^RestartPreventExitStatus=.*$/gm)).to.deep.equal(['RestartPreventExitStatus=7'])
  })

  it('systemd-analyze verify accepts the units, when it is installed', async function () {
    const which = await execa('sh', ['-c', 'command -v systemd-analyze'], {reject: false})
    needTool(this, which.exitCode === 0, 'systemd-analyze is not installed (apt-get install systemd)')
    const unitDir = path.join(dir, 'units')
    await fs.mkdir(unitDir, {recursive: true})
    for (const planned of [
      await planServiceUnit(layout, {node: unitNode, hubctl}),
      ...(await planRenewalSchedule(layout, {node: unitNode, hubctl}, true)),
      ...(await planBackupSchedule(layout, {node: unitNode, hubctl}, true, {every: 'weekly', keep: 7})),
    ]) {
      await fs.writeFile(path.join(unitDir, path.basename(planned.file)), planned.content)
    }
    const verify = await execa(
      'systemd-analyze',
      [
        'verify',
        '--man=no',
        ...['jupyterhub.service', 'hubctl-renew.service', 'hubctl-backup.service', 'hubctl-backup.timer'].map((f) =>
          path.join(unitDir, f),
        ),
      ],
      {reject: false},
    )
    expect(
      verify.stderr
        .split('\n')
        .filter(
          (l) =>
            /jupyterhub\.service|hubctl-renew|hubctl-backup/.test(l) &&
            !/Failed to create|not found|Unit .* not found/.test(l),
        ),
    ).to.deep.equal([])
  })

  it('the backup cron line runs exactly nice node, run.js, backup --include-homes --keep N --prefix PREFIX, at 3 daily or on Sundays, its minute kept', async () => {
    const [daily] = await planBackupSchedule(layout, {node, hubctl}, false, {every: 'daily', keep: 4})
    expect(daily.file).to.equal(layout.backupCronFile)
    const line = daily.content.split('\n').find((l) => /^\d/.test(l))!
    const match = /^(\d{1,2}) 3 \* \* \* root nice (.*)$/.exec(line)
    expect(match, line).to.not.equal(null)
    await fs.rm(path.join(path.dirname(node), 'argv'), {force: true})
    const ran = await execa('/bin/sh', ['-c', cronCommand(match![2])], {cwd: dir, reject: false})
    expect(ran.exitCode, ran.stderr).to.equal(0)
    expect(await fs.readFile(path.join(path.dirname(node), 'argv'), 'utf8')).to.equal(
      [hubctl, 'backup', '--include-homes', '--keep', '4', '--prefix', layout.prefix, ''].join('\n'),
    )
    const [weekly] = await planBackupSchedule(layout, {node, hubctl}, false, {every: 'weekly', keep: 4}, daily.content)
    expect(weekly.content).to.match(new RegExp(`^${match![1]} 3 \\* \\* 0 root nice `, 'm'))
  })

  it('the backup timer runs hubctl backup daily or weekly; its ExecStart reads back unchanged', async () => {
    for (const every of ['daily', 'weekly'] as const) {
      const [service, timer] = await planBackupSchedule(layout, {node: unitNode, hubctl}, true, {every, keep: 9})
      expect([service.file, timer.file]).to.deep.equal([layout.backupService, layout.backupTimer])
      const exec = service.content.split('\n').find((l) => l.startsWith('ExecStart='))!
      expect(systemdArgv(exec.replace(/^ExecStart=/, ''))).to.deep.equal([
        unitNode,
        hubctl,
        'backup',
        '--include-homes',
        '--keep',
        '9',
        '--prefix',
        layout.prefix,
      ])
      const calendar = timer.content.split('\n').filter((l) => l.startsWith('OnCalendar='))
      expect(calendar).to.deep.equal([
        every === 'daily' ? 'OnCalendar=*-*-* 03:00:00' : 'OnCalendar=Sun *-*-* 03:00:00',
      ])
    }
  })

  it('a line break in a path, or a node systemd cannot run (a quote, a backslash, a $ in its path), is refused with exit 2', async () => {
    for (const bad of ['/usr/bin/node\nExecStartPre=/bin/sh -c id', node]) {
      let error: {exitCode?: number; message?: string} | undefined
      try {
        await planServiceUnit(layout, {node: bad, hubctl})
      } catch (error_) {
        error = error_ as {exitCode?: number}
      }
      expect(error?.exitCode, `${bad}: ${error?.message}`).to.equal(2)
    }
  })
})

describe("the system nginx's OOM drop-in", () => {
  it("is nginx.service.d/hubctl-oom.conf in systemd's system folder, and gives nginx the hub's OOMScoreAdjust (-800, below users' servers' +500)", async () => {
    const dropIn = await planNginxOomDropIn(new Layout('/'))
    expect(dropIn.file).to.equal('/etc/systemd/system/nginx.service.d/hubctl-oom.conf')
    expect(dropIn.mode).to.equal(0o644)
    const hubUnit = (await planServiceUnit(new Layout('/'), {node: '/usr/bin/node', hubctl: '/opt/hubctl/bin/run.js'}))
      .content
    const settings = (text: string) => text.split('\n').filter((l) => l !== '' && !l.startsWith('#'))
    expect(settings(dropIn.content)).to.deep.equal(['[Service]', 'OOMScoreAdjust=-800'])
    expect(hubUnit).to.match(/^OOMScoreAdjust=-800$/m)
    expect((await planNginxOomDropIn(new Layout('/tmp/a hub'))).file).to.equal(
      '/tmp/a hub/etc/systemd/system/nginx.service.d/hubctl-oom.conf',
    )
  })
})

describe('logrotate configuration', function () {
  this.timeout(60_000)
  let layout: Layout
  before(async () => {
    layout = new Layout(path.join(await tempPrefix('hubctl-logrotate'), 'a prefix'))
  })
  after(async () => {
    await fs.rm(path.dirname(layout.prefix), {recursive: true, force: true})
  })

  it("names every log, creates new ones 0640 root:adm, reopens nginx's; logrotate -d reads it when installed", async function () {
    const planned = await planLogrotate(layout, 0)
    expect(planned.file).to.equal(path.join(layout.prefix, 'etc/logrotate.d/hubctl'))
    for (const log of [
      layout.nginxAccessLog,
      layout.nginxErrorLog,
      layout.auditLog,
      layout.hubLog,
      layout.proxyLog,
      layout.supervisorLog,
    ])
      expect(planned.content).to.include(`"${log}"`)
    expect(planned.content).to.match(/^ {4}create 0640 root adm$/m)
    expect(planned.content).to.include(`kill -USR1 "$(cat "${layout.nginxPid}")"`)
    expect((await planLogrotate(layout, 1000)).content).to.match(/^ {4}create 0640$/m)
    const logrotate = await execa('sh', ['-c', 'command -v logrotate'], {reject: false})
    needTool(this, logrotate.exitCode === 0, 'logrotate is not installed (.ci/run installs it)')
    await fs.mkdir(layout.logDir, {recursive: true})
    for (const log of [layout.nginxAccessLog, layout.hubLog]) await fs.writeFile(log, 'a line\n', {mode: 0o640})
    await fs.mkdir(path.dirname(planned.file), {recursive: true})
    await fs.writeFile(planned.file, planned.content, {mode: 0o644})
    const debug = await execa('logrotate', ['-d', '-f', '-s', path.join(layout.prefix, 'state'), planned.file], {
      reject: false,
    })
    expect(debug.exitCode, debug.stderr).to.equal(0)
    expect(debug.stderr + debug.stdout).to.not.match(/^error:/im)
    expect(debug.stderr + debug.stdout).to.include(layout.nginxAccessLog)
  })

  it('refuses a prefix it cannot write safely (a quote, a $) with exit 2', async () => {
    for (const prefix of ['/tmp/a"b', '/tmp/a$b', '/tmp/a\\b']) {
      let error: {exitCode?: number} | undefined
      try {
        await planLogrotate(new Layout(prefix), 0)
      } catch (error_) {
        error = error_ as {exitCode?: number}
      }
      expect(error?.exitCode, prefix).to.equal(2)
    }
  })
})

describe('the cron line run again', () => {
  let dir: string
  before(async () => {
    dir = await tempPrefix('hubctl-cron')
  })
  after(async () => {
    await fs.rm(dir, {recursive: true, force: true})
  })

  it('keeps the random time of the installed file, so that init run again leaves it as it is (was: a new time at each run)', async () => {
    const layout = new Layout(dir)
    const context = {node: '/usr/bin/node', hubctl: '/opt/hubctl/bin/run.js'}
    const [first] = await planRenewalSchedule(layout, context, false)
    await fs.mkdir(path.dirname(first.file), {recursive: true})
    await fs.writeFile(first.file, first.content)
    for (let i = 0; i < 20; i++) {
      const [again] = await planRenewalSchedule(layout, context, false)
      expect(again.content).to.equal(first.content)
    }
    // A file not in hubctl's form gets a time of its own, in the form.
    await fs.writeFile(first.file, '61 3,15 * * * root true\n')
    const [fresh] = await planRenewalSchedule(layout, context, false)
    expect(fresh.content).to.match(/^([0-5]?\d) (\d|1[01]),(\d+) \* \* \* root /m)
  })
})
