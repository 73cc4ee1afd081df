/**
 * Bench row for `hubctl users sync`: a 200-user roster on a running hub with PAM (Debian's
 * JupyterHub, nginx, the proxy), every user new, so each run makes 200 system accounts (hcub…,
 * removed after the run). The phases hubctl reports (--json "phases") say what dominates.
 */
import {execa} from 'execa'
import fs from 'node:fs/promises'
import path from 'node:path'

import {BIN, DEBIAN_JUPYTERHUB, portFlags, testHubInitArgs} from '../test/helpers/cli.js'
import {BenchRow, run, tempDir, timed} from './lib.js'

const USERS = 200

async function hubctl(args: string[]): Promise<string> {
  return (await run(process.execPath, [BIN, ...args])).stdout
}

export async function usersSyncRows(runs: number): Promise<BenchRow[]> {
  const total: number[] = []
  const phases: Record<string, number[]> = {}
  const again: number[] = []
  for (let i = 0; i < runs; i++) {
    const prefix = await tempDir('users')
    const {flags} = await portFlags()
    const names = Array.from({length: USERS}, (_, n) => `hcub${i}x${n}`)
    try {
      await hubctl(testHubInitArgs(prefix, {admin: names[0], jupyterhub: DEBIAN_JUPYTERHUB}, flags))
      await hubctl(['start', '--detach', '--prefix', prefix])
      const file = path.join(prefix, 'roster.csv')
      await fs.writeFile(
        file,
        ['username,admin', ...names.map((name, n) => `${name},${n < 3 ? 'yes' : 'no'}`)].join('\n'),
      )
      let output = ''
      total.push(
        await timed(
          async () => (output = await hubctl(['users', 'sync', file, '--yes', '--prefix', prefix, '--json'])),
        ),
      )
      const result = JSON.parse(output) as {phases: Record<string, number>; accounts: {created: string[]}}
      if (result.accounts.created.length !== USERS)
        throw new Error(`users sync made ${result.accounts.created.length} accounts`)
      for (const [name, seconds] of Object.entries(result.phases)) (phases[name] ??= []).push(seconds * 1000)
      process.stderr.write(
        `bench: users-sync run ${i + 1}: ${(total[i] / 1000).toFixed(1)} s, phases ${JSON.stringify(result.phases)}\n`,
      )
      again.push(await timed(() => hubctl(['users', 'sync', file, '--yes', '--prefix', prefix])))
    } finally {
      await execa(process.execPath, [BIN, 'stop', '--prefix', prefix], {reject: false, stdin: 'ignore'})
      for (const name of names) await execa('userdel', ['--remove', name], {reject: false})
      await fs.rm(prefix, {recursive: true, force: true})
    }
  }
  return [
    {name: `users sync, ${USERS} new users (PAM: 200 accounts), running hub (JupyterHub 3.0.0)`, hubctl: total},
    ...Object.entries(phases).map(([name, times]) => ({
      name: `  of which ${PHASE_NAMES[name] ?? name}`,
      hubctl: times,
    })),
    {name: `users sync of the same roster again (no change)`, hubctl: again},
  ]
}

const PHASE_NAMES: Record<string, string> = {
  check: 'checks (getent, JupyterHub version and interface, the config rendered)',
  accounts: 'system accounts (useradd, one a user)',
  config: 'the config loaded by JupyterHub and installed, hubctl.json',
  hub: 'the hub restarted (servers kept)',
  removals: 'removals',
}
