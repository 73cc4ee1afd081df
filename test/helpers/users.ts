import {expect} from 'chai'
import {execa} from 'execa'
import {spawn} from 'node:child_process'
import {randomBytes} from 'node:crypto'

import {killPids, userPids} from './processes.js'

/*
 * System users made for a test (the e2e tests run as root): a user whose servers the hub spawns
 * (LocalProcessSpawner), or who runs hubctl itself.
 */

/**
 * A name for a test's system user: `HUBCTL_TEST_USER_PREFIX` (default `hubctl-e2e`; test runs
 * that share a machine each set their own, so that each can find and remove its own users), a dash,
 * then six random hex digits.
 */
export function testUserName(): string {
  return `${process.env.HUBCTL_TEST_USER_PREFIX ?? 'hubctl-e2e'}-${randomBytes(3).toString('hex')}`
}

/** Make the user, with a home and a shell (useradd -m); its uid. A refusal fails the test with useradd's words. */
export async function addUser(name: string): Promise<number> {
  const created = await execa('useradd', ['-m', '-s', '/bin/sh', name], {reject: false})
  expect(created.exitCode, `useradd ${name}: ${created.stderr}`).to.equal(0)
  return Number((await execa('id', ['-u', name])).stdout)
}

/** setpriv's arguments that make the rest of the command line run as this uid (its group the same number's). */
function asUid(uid: number, gid = uid): string[] {
  // kill -1 as uid 0 or a system account would reach the whole machine: only a person's uid.
  if (!Number.isInteger(uid) || uid < 1000 || uid === 65534) throw new Error(`not a test user's uid: ${uid}`)
  return [`--reuid=${uid}`, `--regid=${gid}`, '--clear-groups', '--']
}

/**
 * Start `command` as the user (setpriv), detached, with no output: a process of that user
 * that the test does not wait for (and that may outlive its first process).
 */
export function runAsUser(uid: number, gid: number, command: string, args: string[]): void {
  const child = spawn('setpriv', [...asUid(uid, gid), command, ...args], {stdio: 'ignore', detached: true, cwd: '/'})
  child.unref()
}

/** Send `signal` to every process of the uid at once: `kill -SIGNAL -1` run as the uid. */
async function signalAllAs(uid: number, signal: 'KILL' | 'STOP' | 'CONT'): Promise<void> {
  await execa('setpriv', [...asUid(uid), '/bin/sh', '-c', `kill -${signal} -1`], {reject: false, cwd: '/'})
}

/**
 * The live processes of this uid (zombies left out), found reliably: a process that forks and exits
 * in a loop slips past a walk of /proc, so every process of the uid is first stopped at once
 * (`kill -STOP -1` as the uid: the kernel walks its task list, and a stopped process cannot fork),
 * then /proc is walked, then they are continued. (`kill -0 -1` cannot tell: as a user it succeeds
 * whenever any other process exists at all.)
 */
export async function processesOfUid(uid: number): Promise<number[]> {
  await signalAllAs(uid, 'STOP')
  try {
    return await userPids(uid)
  } finally {
    await signalAllAs(uid, 'CONT')
  }
}

/** SIGKILL every process of the uid (`kill -KILL -1` as the uid), until none is left (bounded). */
export async function killEveryProcessOf(uid: number): Promise<void> {
  for (let i = 0; i < 100; i++) {
    await signalAllAs(uid, 'KILL')
    if ((await processesOfUid(uid)).length === 0) return
    await new Promise((resolve) => setTimeout(resolve, 100))
  }
}

/** Kill every process of the user (by pid, then as the uid), then remove the user and its home. */
export async function removeUser(name: string, uid: number): Promise<void> {
  killPids(await userPids(uid))
  if (uid >= 1000 && uid !== 65534) await killEveryProcessOf(uid)
  await execa('userdel', ['-r', name], {reject: false})
}
