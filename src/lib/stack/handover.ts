import fs from 'node:fs/promises'
import path from 'node:path'

import {Layout} from '../config/layout.js'
import {Runner, execaRunner} from '../runner.js'
import {processAlive} from '../processes.js'
import {PortOwner} from './listeners.js'
import {SupervisorState} from './state.js'

/*
 * `systemctl restart jupyterhub` without a lost request through nginx (issue 20).
 *
 * systemd restarts the unit by stopping it (SIGTERM to `hubctl start`, KillMode=process) and
 * starting it again. When the supervisor sees, at its SIGTERM, that systemd's job on its unit is a
 * restart, it hands its standby proxy over to the next supervisor: the standby's routes are brought
 * in step with the proxy's and written to the proxy's seed file (0600), the hub and the proxy stop,
 * the standby keeps running (nginx sends it whatever the proxy's port refuses), and state.json
 * records the handover (the standby's pid and start time). The next supervisor adopts it instead of
 * stopping it as a leftover: its own proxy starts seeded with those routes, then the hub, then its
 * own standby replaces the adopted one. A plain stop (`systemctl stop`, `hubctl stop`) hands
 * nothing over; a handover no supervisor claims in time is a leftover as before.
 */

/** What state.json records of a handover: the standby left running for the next supervisor. */
export type HandoverRecord = NonNullable<SupervisorState['handover']>

/** The standby the previous supervisor handed over, adopted by this one until its own replaces it. */
export interface AdoptedStandby {
  pid: number
  startTime: string
}

/** A handover older than this is not claimed: its standby is a leftover. */
export const HANDOVER_MAX_AGE_MS = 120_000

/** The job types of `unit` in `systemctl list-jobs --no-legend --plain` output ("ID UNIT TYPE STATE" lines). */
export function jobTypes(listJobs: string, unit: string): string[] {
  return listJobs
    .split('\n')
    .map((line) => line.trim().split(/\s+/))
    .filter((fields) => fields.length >= 4 && fields[1] === unit)
    .map((fields) => fields[2])
}

/** The unit hubctl installed, when this process runs in it: its cgroup (v1 or v2) names it. */
export function unitOfCgroup(cgroup: string | undefined, unit: string): string | undefined {
  return cgroup?.split('\n').some((line) => line.endsWith(`/${unit}`)) ? unit : undefined
}

/**
 * Whether systemd is restarting the unit this supervisor runs in (`systemctl restart`,
 * `try-restart`, `reload-or-restart`): during the stop phase of a restart its job on the unit is of
 * type `restart` (a plain stop's is `stop`, `systemctl kill` has none). Only under systemd
 * ($INVOCATION_ID) and in the unit hubctl installed; anything unclear is not a restart.
 */
export async function systemdRestarting(deps: {
  layout: Layout
  env?: NodeJS.ProcessEnv
  runner?: Runner
  readCgroup?: () => Promise<string | undefined>
}): Promise<boolean> {
  const env = deps.env ?? process.env
  if (!deps.layout.isSystem || !env.INVOCATION_ID) return false
  const readCgroup = deps.readCgroup ?? (() => fs.readFile('/proc/self/cgroup', 'utf8').catch(() => undefined))
  const unit = unitOfCgroup(await readCgroup(), path.basename(deps.layout.systemdUnit))
  if (!unit) return false
  const runner = deps.runner ?? execaRunner
  const jobs = await runner.run('systemctl', ['list-jobs', '--no-legend', '--plain', unit], {timeoutMs: 5000})
  return jobs.exitCode === 0 && jobTypes(jobs.stdout, unit).includes('restart')
}

/**
 * The standby a supervisor that is gone handed over, when it may be adopted: recorded in
 * `previous` (state.json) less than HANDOVER_MAX_AGE_MS ago, with a start time, and still that
 * very process (pid and start time).
 */
export async function handedOverStandby(
  previous: SupervisorState | undefined,
  deps: {now: number; alive?: (pid: number, startTime: string) => Promise<boolean>; maxAgeMs?: number},
): Promise<AdoptedStandby | undefined> {
  const record = previous?.handover
  if (!previous || !record?.standby?.pid || !record.standby.startTime) return undefined
  const age = deps.now - Date.parse(record.at)
  if (!(age >= 0 && age <= (deps.maxAgeMs ?? HANDOVER_MAX_AGE_MS))) return undefined
  // The standby the state names is the one handed over (nothing else was recorded since).
  if (previous.standby?.pid !== record.standby.pid || previous.standby.startTime !== record.standby.startTime)
    return undefined
  const alive = deps.alive ?? ((pid, startTime) => processAlive(pid, startTime))
  if (!(await alive(record.standby.pid, record.standby.startTime))) return undefined
  return {pid: record.standby.pid, startTime: record.standby.startTime}
}

/**
 * Whether an answer on `port` (one of the standby's) is the adopted standby's: only when one was
 * adopted and it is what holds the port (listeners.ts's proof, on its recorded pid).
 */
export async function adoptedHolds(
  port: number,
  adopted: AdoptedStandby | undefined,
  ownsPort: (port: number, pid: number | undefined) => Promise<PortOwner>,
  alive: (pid: number, startTime: string) => Promise<boolean> = (pid, startTime) => processAlive(pid, startTime),
): Promise<boolean> {
  if (!adopted || !(await alive(adopted.pid, adopted.startTime))) return false
  return (await ownsPort(port, adopted.pid)).owned
}
