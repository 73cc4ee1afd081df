import fs from 'node:fs/promises'

import {preflightError} from '../errors.js'
import {Runner, which} from '../runner.js'

/**
 * The system packages init needs and does not find: installed with apt-get on Debian and Ubuntu
 * as root (after asking on a terminal; --yes agrees), otherwise named with the exact command.
 */
export interface MissingPackage {
  /** The Debian package. */
  name: string
  why: string
}

export interface PackagePlan {
  missing: MissingPackage[]
  /** The command that installs them (apt-get on Debian/Ubuntu). */
  command: string
  /** apt-get is here and hubctl runs as root. */
  canInstall: boolean
}

export async function planPackages(missing: MissingPackage[], uid = process.getuid?.() ?? 0): Promise<PackagePlan> {
  const names = [...new Set(missing.map((m) => m.name))]
  const apt =
    (await which('apt-get')) !== undefined &&
    (await fs.access('/etc/debian_version').then(
      () => true,
      () => false,
    ))
  return {
    missing,
    command: apt
      ? `apt-get install -y ${names.join(' ')}`
      : `install ${names.join(', ')} with this system's package manager`,
    canInstall: apt && uid === 0 && names.length > 0,
  }
}

/** Why hubctl stops when it may not install what is missing. */
export function packagesError(plan: PackagePlan, reason: string): Error {
  const what = plan.missing.map((m) => `${m.name} (${m.why})`).join(', ')
  return preflightError(
    `this machine lacks ${what}${reason ? `; ${reason}` : ''}`,
    `run \`${plan.command}\` as root, then run the command again (or run hubctl init as root with --yes to let it do so)`,
  )
}

/** apt-get update, then apt-get install; returns the commands run. */
export async function installPackages(
  runner: Runner,
  plan: PackagePlan,
  onProgress: (text: string) => void = () => {},
): Promise<string[]> {
  const names = [...new Set(plan.missing.map((m) => m.name))]
  const env = {...process.env, DEBIAN_FRONTEND: 'noninteractive'}
  onProgress('apt-get update')
  const update = await runner.run('apt-get', ['update', '-q'], {env, cwd: '/', timeoutMs: 900_000})
  if (update.exitCode !== 0) throw packagesError(plan, `apt-get update failed: ${lastLine(update.stderr)}`)
  onProgress(`apt-get install -y ${names.join(' ')}`)
  const install = await runner.run('apt-get', ['install', '-y', '-q', ...names], {env, cwd: '/', timeoutMs: 1_800_000})
  if (install.exitCode !== 0) throw packagesError(plan, `apt-get install failed: ${lastLine(install.stderr)}`)
  return ['apt-get update', `apt-get install -y ${names.join(' ')}`]
}

function lastLine(text: string): string {
  return text.trim().split('\n').filter(Boolean).pop() ?? 'no output'
}
