import {expect} from 'chai'
import {execa} from 'execa'
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

/** Kill every process of the user (by pid), then remove the user and its home. */
export async function removeUser(name: string, uid: number): Promise<void> {
  killPids(await userPids(uid))
  await execa('userdel', ['-r', name], {reject: false})
}
