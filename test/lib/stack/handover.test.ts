import {expect} from 'chai'

import {Layout} from '../../../src/lib/config/layout.js'
import {RunOptions, RunResult, Runner} from '../../../src/lib/runner.js'
import {
  HANDOVER_MAX_AGE_MS,
  adoptedHolds,
  handedOverStandby,
  jobTypes,
  systemdRestarting,
  unitOfCgroup,
} from '../../../src/lib/stack/handover.js'
import {SupervisorState} from '../../../src/lib/stack/state.js'

/*
 * handover.ts with fakes: systemctl's answers (as a Debian 12 systemd prints them during the stop
 * phase of `systemctl restart`, `stop` and `kill`), the process's cgroup, liveness and port owners.
 */

const CGROUP_V1 = '9:name=systemd:/system.slice/jupyterhub.service\n1:cpu:/\n0::/system.slice/jupyterhub.service\n'
const CGROUP_OTHER = '0::/user.slice/user-0.slice/session-3.scope\n'

function fakeRunner(stdout: string, exitCode = 0): Runner & {calls: Array<{command: string; args: string[]}>} {
  const calls: Array<{command: string; args: string[]}> = []
  return {
    calls,
    async run(command: string, args: string[], _options?: RunOptions): Promise<RunResult> {
      calls.push({command, args})
      return {exitCode, stdout, stderr: '', notFound: false}
    },
  }
}

describe('handover: systemctl restart without a lost request', () => {
  describe('systemdRestarting', () => {
    const layout = new Layout('/')
    const env = {INVOCATION_ID: 'ed46e25e0c974db7a7647edbafddd097'}
    const readCgroup = async () => CGROUP_V1

    it('is true when systemd’s job on the unit hubctl runs in is a restart', async () => {
      const runner = fakeRunner('184 jupyterhub.service restart running\n')
      expect(await systemdRestarting({layout, env, runner, readCgroup})).to.equal(true)
      expect(runner.calls).to.deep.equal([
        {command: 'systemctl', args: ['list-jobs', '--no-legend', '--plain', 'jupyterhub.service']},
      ])
    })

    it('is false for a plain stop, for `systemctl kill` (no job) and for a restart of another unit', async () => {
      for (const jobs of [
        '234 jupyterhub.service stop running\n',
        '',
        '12 nginx.service restart running\n',
        'No jobs running.\n',
      ])
        expect(await systemdRestarting({layout, env, runner: fakeRunner(jobs), readCgroup}), jobs).to.equal(false)
    })

    it('is false when systemctl fails', async () => {
      const runner = fakeRunner('184 jupyterhub.service restart running\n', 1)
      expect(await systemdRestarting({layout, env, runner, readCgroup})).to.equal(false)
    })

    it('asks systemd nothing outside systemd, outside the unit or for a prefix', async () => {
      const runner = fakeRunner('184 jupyterhub.service restart running\n')
      expect(await systemdRestarting({layout, env: {}, runner, readCgroup})).to.equal(false)
      expect(await systemdRestarting({layout, env, runner, readCgroup: async () => CGROUP_OTHER})).to.equal(false)
      expect(await systemdRestarting({layout, env, runner, readCgroup: async () => undefined})).to.equal(false)
      expect(await systemdRestarting({layout: new Layout('/tmp/hub'), env, runner, readCgroup})).to.equal(false)
      expect(runner.calls).to.deep.equal([])
    })
  })

  it('jobTypes and unitOfCgroup read systemctl’s lines and the cgroup file', () => {
    expect(
      jobTypes('1 a.service start waiting\n2 jupyterhub.service restart running\n', 'jupyterhub.service'),
    ).to.deep.equal(['restart'])
    expect(jobTypes('2 jupyterhub.service.d restart running', 'jupyterhub.service')).to.deep.equal([])
    expect(unitOfCgroup(CGROUP_V1, 'jupyterhub.service')).to.equal('jupyterhub.service')
    expect(unitOfCgroup('0::/system.slice/other-jupyterhub.service\n', 'jupyterhub.service')).to.equal(undefined)
  })

  describe('handedOverStandby', () => {
    const now = Date.parse('2026-12-07T12:00:00Z')
    const standby = {pid: 4242, startTime: '987654'}
    const state = (over: Partial<SupervisorState> = {}): SupervisorState =>
      ({
        version: 1,
        standby: {...standby, restarts: 0},
        handover: {at: new Date(now - 3000).toISOString(), standby, routes: 3},
        ...over,
      }) as SupervisorState
    const alive = (pid: number, startTime: string) => Promise.resolve(pid === 4242 && startTime === '987654')

    it('adopts the recorded standby while it is that process (pid and start time)', async () => {
      expect(await handedOverStandby(state(), {now, alive})).to.deep.equal(standby)
    })

    it('adopts nothing without a handover (a supervisor killed, or stopped for good)', async () => {
      expect(await handedOverStandby(state({handover: null}), {now, alive})).to.equal(undefined)
      expect(await handedOverStandby(undefined, {now, alive})).to.equal(undefined)
    })

    it('adopts nothing when the process is gone or its pid is another process now', async () => {
      expect(await handedOverStandby(state(), {now, alive: async () => false})).to.equal(undefined)
      const reused = (pid: number, startTime: string) => Promise.resolve(pid === 4242 && startTime === '111')
      expect(await handedOverStandby(state(), {now, alive: reused})).to.equal(undefined)
    })

    it('adopts nothing without a start time, or when the state names another standby than the handover', async () => {
      const noStart = state({
        handover: {at: new Date(now).toISOString(), standby: {pid: 4242, startTime: ''}, routes: 1},
      })
      expect(await handedOverStandby(noStart, {now, alive: async () => true})).to.equal(undefined)
      const other = state({standby: {pid: 5151, startTime: '1'}})
      expect(await handedOverStandby(other, {now, alive: async () => true})).to.equal(undefined)
    })

    it('adopts nothing no supervisor claimed in time: that standby is a leftover', async () => {
      const old = state({handover: {at: new Date(now - HANDOVER_MAX_AGE_MS - 1).toISOString(), standby, routes: 3}})
      expect(await handedOverStandby(old, {now, alive})).to.equal(undefined)
      const future = state({handover: {at: new Date(now + 60_000).toISOString(), standby, routes: 3}})
      expect(await handedOverStandby(future, {now, alive})).to.equal(undefined)
    })
  })

  describe('adoptedHolds', () => {
    const adopted = {pid: 4242, startTime: '987654'}
    const alive = async () => true
    const owners = (owner: number) => async (_port: number, pid: number | undefined) =>
      pid === owner ? {owned: true} : {owned: false, problem: `port held by pid ${owner}`}

    it('accepts the standby ports only when the adopted standby holds them', async () => {
      expect(await adoptedHolds(8001, adopted, owners(4242), alive)).to.equal(true)
      expect(await adoptedHolds(8001, adopted, owners(999), alive)).to.equal(false)
    })

    it('accepts nothing without an adopted standby, or when it is no longer that process', async () => {
      expect(await adoptedHolds(8001, undefined, owners(4242), alive)).to.equal(false)
      expect(await adoptedHolds(8001, adopted, owners(4242), async () => false)).to.equal(false)
    })
  })
})
