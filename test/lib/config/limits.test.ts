import {expect} from 'chai'
import {execFileSync} from 'node:child_process'

import {renderHubConfig} from '../../../src/lib/config/hubconfig.js'
import {Layout} from '../../../src/lib/config/layout.js'
import {
  OOM_SCORE_ADJ,
  assertLimitsPossible,
  describeLimits,
  formatSize,
  limitsShapeProblem,
  parseLimits,
  parseSize,
} from '../../../src/lib/config/limits.js'
import {parseSettings} from '../../../src/lib/config/settings.js'
import {planServiceUnit} from '../../../src/lib/config/units.js'
import {ExitCode} from '../../../src/lib/errors.js'
import {resolveInitRequest} from '../../../src/lib/setup/init-request.js'
import {rejection, thrown} from '../../helpers/errors.js'
import {testSettings} from '../../helpers/settings.js'

const GiB = 2 ** 30
const machine = {cores: 2, memoryBytes: 8 * GiB}
const base = {domain: ['hub.example.org'], admin: ['alice'], tls: 'self-signed'}
const v6 = {
  executable: '/opt/jupyterhub/bin/jupyterhub',
  version: '6.1.1',
  major: 6,
  minor: 1,
  singleuser: '/opt/jupyterhub/bin/jupyterhub-singleuser',
  python: 'python3',
}

describe('per-user limits', () => {
  it('reads sizes as systemd writes them, powers of 1024', () => {
    expect(parseSize('2G')).to.equal(2 * GiB)
    expect(parseSize('1.5g')).to.equal(1.5 * GiB)
    expect(parseSize('512M')).to.equal(512 * 2 ** 20)
    expect(parseSize('512MiB')).to.equal(512 * 2 ** 20)
    expect(parseSize('1048576')).to.equal(2 ** 20)
    for (const bad of ['', 'two', '2 GB extra', '-1G', '2X', '1e9']) expect(parseSize(bad), bad).to.equal(undefined)
    expect(formatSize(1.5 * GiB)).to.equal('1.5G')
    expect(formatSize(512 * 2 ** 20)).to.equal('512M')
  })

  it('takes the three flags, checked against the machine', () => {
    expect(parseLimits({'mem-limit': '2G', 'cpu-limit': '1.5', 'tasks-limit': '512'}, machine)).to.deep.equal({
      memoryBytes: 2 * GiB,
      cpu: 1.5,
      tasks: 512,
    })
    expect(parseLimits({}, machine)).to.equal(undefined)
    expect(parseLimits({'cpu-limit': '2'}, machine)).to.deep.equal({cpu: 2})
    expect(describeLimits({memoryBytes: 2 * GiB, cpu: 1.5, tasks: 512})).to.equal(
      "memory 2G, CPU 1.5 cores, 512 tasks per user's server",
    )
    expect(describeLimits(undefined)).to.equal('none')
  })

  it('refuses what is not a size or a number, more than the machine has, with the fix', () => {
    const cases: Array<[Record<string, string>, RegExp, RegExp]> = [
      [{'mem-limit': 'lots'}, /--mem-limit "lots" is not a size/, /e\.g\. "2G"/],
      [{'mem-limit': '2GB0'}, /is not a size/, /unit/],
      [{'mem-limit': '16G'}, /more than this machine's memory \(8G\)/, /at most 8G/],
      [{'mem-limit': '100M'}, /below 256M/, /at least 256M/],
      [{'cpu-limit': 'half'}, /--cpu-limit "half" is not a number of cores/, /e\.g\. "1"/],
      [{'cpu-limit': '0'}, /is not a number of cores above 0/, /"1\.5"/],
      [{'cpu-limit': '3'}, /more than this machine's 2 cores/, /at most 2/],
      [{'tasks-limit': 'many'}, /--tasks-limit "many" is not a whole number/, /"512"/],
      [{'tasks-limit': '2'}, /from 16 to/, /"512"/],
    ]
    for (const [flags, message, fix] of cases) {
      const error = thrown(() => parseLimits(flags, machine))
      expect(error.exitCode, JSON.stringify(flags)).to.equal(ExitCode.USAGE)
      expect(error.message).to.match(message)
      expect(error.fix).to.match(fix)
    }
  })

  it('are refused where systemd is not PID 1, or servers do not run as their users', async () => {
    const limits = {memoryBytes: 2 * GiB}
    const noSystemd = thrown(() => assertLimitsPossible(limits, {systemdBooted: false, local: false}))
    expect(noSystemd.message).to.match(/need systemd as PID 1/)
    expect(noSystemd.fix).to.match(/drop the limit flags/)
    expect(() => assertLimitsPossible(limits, {systemdBooted: true, spawner: 'simple', local: false})).to.throw(
      /--spawner local/,
    )
    expect(() => assertLimitsPossible(limits, {systemdBooted: true, local: true})).to.throw(/--spawner local/)
    // Slurm's jobs get their limits from the cluster (--slurm-memory, --slurm-cpus), not from this machine's systemd.
    const slurm = thrown(() => assertLimitsPossible(limits, {systemdBooted: true, spawner: 'slurm', local: false}))
    expect(slurm.message).to.match(/--spawner slurm runs them as jobs/)
    expect(slurm.fix).to.match(/--slurm-memory/)
    assertLimitsPossible(limits, {systemdBooted: true, local: false})
    assertLimitsPossible(undefined, {systemdBooted: false, local: true})
    // init's request: refused before anything is written, or taken.
    const refused = await rejection(
      resolveInitRequest({...base, 'mem-limit': '2G'}, undefined, {...machine, systemdBooted: false}),
    )
    expect(refused.message).to.match(/need systemd as PID 1/)
    const bad = await rejection(
      resolveInitRequest({...base, 'cpu-limit': '9'}, undefined, {...machine, systemdBooted: true}),
    )
    expect(bad.message).to.match(/more than this machine's 2 cores/)
    const request = await resolveInitRequest(
      {...base, 'mem-limit': '2G', 'cpu-limit': '1.5', 'tasks-limit': '512'},
      undefined,
      {...machine, systemdBooted: true},
    )
    expect(request.limits).to.deep.equal({memoryBytes: 2 * GiB, cpu: 1.5, tasks: 512})
    expect((await resolveInitRequest(base, undefined, {...machine, systemdBooted: false})).limits).to.equal(undefined)
  })

  it('are kept in hubctl.json, and a bad hand edit is named', () => {
    const settings = testSettings({limits: {memoryBytes: 2 * GiB, cpu: 1.5, tasks: 512}})
    expect(parseSettings(JSON.stringify(settings), 'hubctl.json').limits).to.deep.equal(settings.limits)
    expect(limitsShapeProblem({memoryBytes: 'two'})).to.match(/memoryBytes/)
    expect(limitsShapeProblem({tasks: 1.5})).to.match(/tasks/)
    expect(() => parseSettings(JSON.stringify({...settings, limits: {cpu: -1}}), 'hubctl.json')).to.throw(
      /"limits" has a cpu/,
    )
  })

  it('make each server a systemd unit with them; without, servers start at a positive oom_score_adj', async () => {
    const limited = await renderHubConfig(
      new Layout('/'),
      testSettings({limits: {memoryBytes: 2 * GiB, cpu: 1.5, tasks: 512}}),
      v6,
      '/lab',
    )
    execFileSync('python3', ['-c', 'import ast, sys; ast.parse(sys.stdin.read())'], {input: limited})
    expect(limited).to.include('c.JupyterHub.spawner_class = hubctl_hub.limits.systemd_spawner()')
    expect(limited).to.include(`c.SystemdSpawner.mem_limit = ${2 * GiB}`)
    expect(limited).to.include('c.SystemdSpawner.cpu_limit = 1.5')
    expect(limited).to.include('c.SystemdSpawner.isolate_tmp = True')
    expect(limited).to.include('"TasksMax": "512"')
    expect(limited).to.include(`"OOMScoreAdjust": "${OOM_SCORE_ADJ.server}"`)
    const plain = await renderHubConfig(new Layout('/'), testSettings({}), v6, '/lab')
    expect(plain).not.to.include('SystemdSpawner')
    expect(plain).to.include(
      `c.JupyterHub.spawner_class = hubctl_hub.limits.oom_adjusted("jupyterhub.spawner.LocalProcessSpawner", ${OOM_SCORE_ADJ.server})`,
    )
    expect(OOM_SCORE_ADJ.hub).to.be.below(0)
    expect(OOM_SCORE_ADJ.server).to.be.above(0)
  })

  it('the service keeps the hub, the proxy and nginx from the OOM killer', async () => {
    const unit = await planServiceUnit(new Layout('/'), {node: '/usr/bin/node', hubctl: '/opt/hubctl/bin/run.js'})
    expect(unit.content).to.match(new RegExp(`^OOMScoreAdjust=${OOM_SCORE_ADJ.hub}$`, 'm'))
  })
})
