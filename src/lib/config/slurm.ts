import net from 'node:net'

import {usageError} from '../errors.js'
import {hasControlChar} from '../validate.js'

/**
 * --spawner slurm (issue #26): each user's server is a Slurm job, started by batchspawner's
 * SlurmSpawner. This module knows the flags' formats and the config's view of them; it runs
 * nothing (the cluster's checks are setup/slurm.ts's).
 */

/** What hubctl.json keeps of a Slurm spawner. */
export interface SlurmSettings {
  partition: string
  /** Memory per server as Slurm's --mem takes it (a number and a unit K, M, G or T). */
  memory: string
  cpus: number
  /** The job's time limit, a Slurm time (e.g. 8:00:00, 1-00:00:00). */
  runtime: string
  /** GPUs per server (--gres=gpu:N); absent: none. */
  gpus?: number
  /** Extra lines of the job script, each an `#SBATCH ...` line. */
  extra: string[]
  /** Where the jobs reach the hub's API: c.JupyterHub.hub_connect_ip; the hub listens there (0.0.0.0: everywhere). */
  hubConnectIp: string
  /** The address the jobs are given when hubConnectIp is 0.0.0.0 (a private one of this machine). */
  connectAddress: string
}

/** The batchspawner version hubctl installs and tests with (python/constraints.txt pins it). */
export const BATCHSPAWNER_VERSION = '1.3.0'

const PARTITION = /^[A-Za-z0-9_.-]{1,64}$/

export function parsePartition(input: string): string {
  if (!PARTITION.test(input))
    throw usageError(
      `--slurm-partition ${JSON.stringify(input)} is not a Slurm partition name`,
      'give the name of a partition `sinfo -s` lists (letters, digits, _ . -)',
    )
  return input
}

const UNITS: Record<string, number> = {K: 1 / 1024, M: 1, G: 1024, T: 1024 * 1024}

/** --slurm-memory: a number with K, M, G or T (no unit: megabytes, as Slurm reads it), in megabytes. */
export function parseMemory(input: string): {memory: string; megabytes: number} {
  const match = /^(\d{1,9})([KMGT]?)$/i.exec(input.trim())
  const megabytes = match ? Number(match[1]) * UNITS[(match[2] || 'M').toUpperCase()] : 0
  if (!match || megabytes < 1)
    throw usageError(
      `--slurm-memory ${JSON.stringify(input)} is not an amount of memory`,
      'give a whole number with a unit, as Slurm takes it: 512M, 2G, 64G',
    )
  return {memory: `${match[1]}${(match[2] || 'M').toUpperCase()}`, megabytes: Math.ceil(megabytes)}
}

/** A whole number flag from `min` to `max`. */
export function parseCount(input: string | number, flag: string, min: number, max: number, example: string): number {
  const text = String(input).trim()
  const value = /^\d{1,7}$/.test(text) ? Number(text) : Number.NaN
  if (!(value >= min && value <= max))
    throw usageError(
      `${flag} ${JSON.stringify(String(input))} is not a whole number from ${min} to ${max}`,
      `give e.g. ${example}`,
    )
  return value
}

/**
 * --slurm-runtime: a Slurm time (sbatch --time): minutes, minutes:seconds, hours:minutes:seconds,
 * days-hours, days-hours:minutes or days-hours:minutes:seconds. Returns it and its seconds.
 */
export function parseRuntime(input: string): {runtime: string; seconds: number} {
  const text = input.trim()
  let seconds = Number.NaN
  const parts = /^(?:(\d{1,4})-)?(\d{1,6})(?::(\d{1,2}))?(?::(\d{1,2}))?$/.exec(text)
  if (parts) {
    const [, days, a, b, c] = parts
    const n = (s: string | undefined) => (s === undefined ? 0 : Number(s))
    if (days !== undefined) {
      // days-hours[:minutes[:seconds]]
      if (n(a) < 24 && n(b) < 60 && n(c) < 60) seconds = ((n(days) * 24 + n(a)) * 60 + n(b)) * 60 + n(c)
    } else if (c !== undefined) {
      // hours:minutes:seconds
      if (n(b) < 60 && n(c) < 60) seconds = (n(a) * 60 + n(b)) * 60 + n(c)
    } else if (b !== undefined) {
      // minutes:seconds
      if (n(b) < 60) seconds = n(a) * 60 + n(b)
    } else seconds = n(a) * 60
  }
  if (!(seconds > 0))
    throw usageError(
      `--slurm-runtime ${JSON.stringify(input)} is not a Slurm time`,
      'give the time limit as sbatch --time takes it: 8:00:00 (hours:minutes:seconds), 90 (minutes), 1-00:00:00 (days-hours:minutes:seconds)',
    )
  return {runtime: text, seconds}
}

/**
 * --slurm-extra: lines added to the job script, each one `#SBATCH --option...`. Anything else
 * (a command, a blank-looking line with a control character, a template's braces) would run in
 * every user's job or change the script batchspawner fills in: refused.
 */
export function parseExtra(inputs: string[]): string[] {
  const lines: string[] = []
  for (const input of inputs) {
    for (const raw of input.split(/\r?\n/)) {
      const line = raw.trim()
      if (line === '') continue
      if (!/^#SBATCH\s+-\S/.test(line) || hasControlChar(line) || /[{}]/.test(line))
        throw usageError(
          `--slurm-extra holds ${JSON.stringify(line)}, which is not an #SBATCH line`,
          "give only lines like '#SBATCH --account=physics' (one option each, no braces); commands that every job should run belong in the users' environment, not here",
        )
      lines.push(line)
    }
  }
  return lines
}

/** Whether an IP address is private to a site (RFC 1918, CGNAT, link-local, loopback, IPv6 ULA/link-local). */
export function isPrivateAddress(address: string): boolean {
  if (net.isIPv4(address)) {
    const [a, b] = address.split('.').map(Number)
    return (
      a === 10 ||
      a === 127 ||
      (a === 172 && b >= 16 && b <= 31) ||
      (a === 192 && b === 168) ||
      (a === 100 && b >= 64 && b <= 127) ||
      (a === 169 && b === 254)
    )
  }
  if (net.isIPv6(address)) {
    const lower = address.toLowerCase()
    return lower === '::1' || /^f[cd]/.test(lower) || /^fe[89ab]/.test(lower)
  }
  return false
}

/**
 * --hub-connect-ip, against this machine's addresses (`addresses`: every address of its
 * interfaces, loopback included): an address of this machine that is private to the site, or
 * 0.0.0.0 (the hub's API on every address, the jobs given the first private one), refused when
 * this machine has no private address besides loopback. Returns the address the jobs use and
 * warnings.
 */
export function checkHubConnectIp(
  input: string,
  addresses: string[],
): {hubConnectIp: string; connectAddress: string; warnings: string[]} {
  const ip = input.trim()
  const others = addresses.filter((a) => !a.startsWith('127.') && a !== '::1')
  const privateOnes = others.filter(isPrivateAddress)
  const publicOnes = others.filter((a) => !isPrivateAddress(a))
  if (ip === '0.0.0.0') {
    if (privateOnes.length === 0)
      throw usageError(
        `--hub-connect-ip 0.0.0.0 would put the hub's API on every address of this machine, and its only other address${publicOnes.length === 1 ? ' is' : 'es are'} public (${publicOnes.join(', ') || 'none'})`,
        'put the login node and the compute nodes on a private network and give its address here, e.g. --hub-connect-ip 10.0.0.5',
      )
    return {
      hubConnectIp: ip,
      connectAddress: privateOnes[0],
      warnings: [
        `--hub-connect-ip 0.0.0.0: the hub's API listens on every address of this machine${publicOnes.length > 0 ? `, the public ${publicOnes.join(', ')} too (block port of the hub there with a firewall)` : ''}; the jobs reach it at ${privateOnes[0]}. Give that private address instead to listen there only`,
      ],
    }
  }
  if (!net.isIP(ip))
    throw usageError(
      `--hub-connect-ip ${JSON.stringify(input)} is not an IP address`,
      'give an address of this machine on the network the compute nodes share, e.g. 10.0.0.5',
    )
  if (!addresses.includes(ip))
    throw usageError(
      `--hub-connect-ip ${ip} is not an address of this machine (it has ${addresses.join(', ')})`,
      'give one of these addresses, on the network the compute nodes share with this machine',
    )
  if (!isPrivateAddress(ip))
    throw usageError(
      `--hub-connect-ip ${ip} is a public address: the hub's API would listen where anyone can reach it`,
      `give an address of this machine on a private network the compute nodes share${privateOnes.length > 0 ? ` (${privateOnes.join(', ')})` : ''}`,
    )
  const warnings =
    ip.startsWith('127.') || ip === '::1'
      ? [
          `--hub-connect-ip ${ip}: only jobs on this machine reach the hub there; a cluster whose nodes are other machines needs an address on their network`,
        ]
      : []
  return {hubConnectIp: ip, connectAddress: ip, warnings}
}

/** batchspawner's wrapper, which tells the hub the port the server chose: beside jupyterhub-singleuser, by absolute path. */
export function batchspawnerWrapper(singleuser: string): string {
  return `${singleuser.slice(0, singleuser.lastIndexOf('/'))}/batchspawner-singleuser`
}

/** The template's view of the Slurm spawner. */
export function slurmView(slurm: SlurmSettings, executables: {singleuser: string}): object {
  return {
    hubIp: slurm.hubConnectIp,
    connectIp: slurm.connectAddress,
    partition: slurm.partition,
    memory: slurm.memory,
    cpus: String(slurm.cpus),
    runtime: slurm.runtime,
    gres: slurm.gpus ? `gpu:${slurm.gpus}` : '',
    wrapper: batchspawnerWrapper(executables.singleuser),
    batchScript: batchScript(slurm.extra),
  }
}

/**
 * The job script (a jinja2 template batchspawner fills in with its req_* values): batchspawner's
 * own SlurmSpawner script, with the operator's #SBATCH lines after its own (checked by parseExtra:
 * no braces, so nothing of theirs is a template).
 */
export function batchScript(extra: string[]): string {
  return [
    '#!/bin/bash',
    '#SBATCH --output={{homedir}}/jupyterhub_slurmspawner_%j.log',
    '#SBATCH --job-name=jupyterhub-singleuser',
    '#SBATCH --chdir={{homedir}}',
    '#SBATCH --export={{keepvars}}',
    '#SBATCH --get-user-env=L',
    '#SBATCH --partition={{partition}}',
    '#SBATCH --time={{runtime}}',
    '#SBATCH --mem={{memory}}',
    '#SBATCH --cpus-per-task={{nprocs}}',
    '{% if gres %}#SBATCH --gres={{gres}}{% endif %}',
    ...extra,
    '',
    'set -euo pipefail',
    "trap 'echo SIGTERM received' TERM",
    '{{prologue}}',
    '{% if srun %}{{srun}} {% endif %}{{cmd}}',
    'echo "jupyterhub-singleuser ended gracefully"',
    '{{epilogue}}',
    '',
  ].join('\n')
}
