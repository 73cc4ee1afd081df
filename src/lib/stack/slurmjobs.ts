import {messageOf} from '../errors.js'
import type {Runner} from '../runner.js'

/**
 * The Slurm jobs of user servers (--spawner slurm), as squeue shows them: for `hubctl status`,
 * each server's job id, state and node (or, pending, the reason Slurm gives). batchspawner names
 * every job jupyterhub-singleuser (the job script config/slurm.ts renders) and submits it as the user.
 */

export const SERVER_JOB_NAME = 'jupyterhub-singleuser'

export interface SlurmJob {
  id: string
  user: string
  /** PENDING, RUNNING, COMPLETING, ... (squeue's long form). */
  state: string
  /** The node it runs on; empty while pending. */
  node: string
  /** Why it waits (Resources, Priority, ...), or None. */
  reason: string
}

/** Every job of a user server in the queue; an error names what squeue said. */
export async function serverJobs(runner: Runner): Promise<{jobs: SlurmJob[]; error?: string}> {
  try {
    const result = await runner.run('squeue', ['--noheader', `--name=${SERVER_JOB_NAME}`, '--format=%i|%u|%T|%N|%r'], {
      cwd: '/',
      timeoutMs: 15_000,
    })
    if (result.exitCode !== 0)
      return {jobs: [], error: `squeue failed (exit ${result.exitCode}): ${(result.stderr || result.stdout).trim()}`}
    return {jobs: parseSqueue(result.stdout)}
  } catch (error) {
    return {jobs: [], error: `squeue failed: ${messageOf(error)}`}
  }
}

export function parseSqueue(output: string): SlurmJob[] {
  return output
    .split('\n')
    .map((line) => line.trim().split('|'))
    .filter((fields) => fields.length >= 5 && /^\d+/.test(fields[0]))
    .map(([id, user, state, node, reason]) => ({id, user, state, node, reason}))
}
