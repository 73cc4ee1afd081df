/**
 * Bench `upgrade downtime` (issue 23): the seconds a person's login page does not answer during an
 * upgrade of a hub on Debian's JupyterHub 3.0 to today's pins (the prebuilt .venv, so no build is
 * timed on either side), `hubctl upgrade --yes --env .venv` against the same by hand: `hubctl stop`,
 * `jupyterhub upgrade-db` with the new JupyterHub on the live database, `hubctl init` again with
 * `--jupyterhub` of the new one (the config rendered for it), `hubctl start`. Each run upgrades a
 * fresh hub (dummy login, no users), the two ways alternating; the login page is polled through
 * nginx every 100 ms (test/helpers/downtime.ts). Not part of `npm run bench`'s rows.
 *
 *   node --import tsx --no-warnings bench/upgrade-downtime.ts      (BENCH_RUNS=N, default 2)
 */
import fs from 'node:fs/promises'
import path from 'node:path'

import {Layout} from '../src/lib/config/layout.js'
import {DEBIAN_JUPYTERHUB, ROOT, portFlags, testHubInitArgs} from '../test/helpers/cli.js'
import {loginAnswers, loginOutage} from '../test/helpers/downtime.js'
import {hubctl, run, tempDir} from './lib.js'

const RUNS = Number(process.env.BENCH_RUNS ?? 2)
const VENV = path.join(ROOT, '.venv')
const NEW_JUPYTERHUB = path.join(VENV, 'bin/jupyterhub')

type Way = 'hubctl upgrade' | 'by hand'

async function once(way: Way): Promise<number> {
  const work = await tempDir('upgrade-downtime')
  const prefix = path.join(work, 'prefix')
  const layout = new Layout(prefix)
  const {flags, ports} = await portFlags()
  const initArgs = (jupyterhub: string) =>
    testHubInitArgs(
      prefix,
      {
        admin: 'downtime-admin',
        jupyterhub,
        extra: ['--authenticator', 'dummy', '--spawner', 'simple', '--cull-idle', 'off'],
      },
      flags,
    )
  try {
    await hubctl(initArgs(DEBIAN_JUPYTERHUB))
    await hubctl(['start', '--detach', '--prefix', prefix])
    const ca = await fs.readFile(layout.fullchain, 'utf8')
    if (!(await loginAnswers(ports.https, ca))) throw new Error('the login page does not answer before the upgrade')
    const {longestDownMs} = await loginOutage(ports.https, ca, async () => {
      if (way === 'hubctl upgrade') {
        await hubctl(['upgrade', '--yes', '--env', VENV, '--prefix', prefix])
        return
      }
      await hubctl(['stop', '--prefix', prefix])
      // With the environment's bin first on PATH, as an operator who activated it: upgrade-db runs `alembic`.
      await run(NEW_JUPYTERHUB, ['upgrade-db', `--JupyterHub.db_url=sqlite:///${layout.database}`], {
        cwd: work,
        env: {PATH: `${path.join(VENV, 'bin')}:${process.env.PATH ?? '/usr/bin:/bin'}`},
      })
      await hubctl(initArgs(NEW_JUPYTERHUB))
      await hubctl(['start', '--detach', '--prefix', prefix])
    })
    if (!(await loginAnswers(ports.https, ca))) throw new Error(`${way}: the login page does not answer after`)
    return longestDownMs
  } finally {
    await hubctl(['stop', '--prefix', prefix]).catch(() => {})
    await fs.rm(work, {recursive: true, force: true})
  }
}

const results: Record<Way, number[]> = {'hubctl upgrade': [], 'by hand': []}
for (let i = 0; i < RUNS; i++) {
  for (const way of ['hubctl upgrade', 'by hand'] as const) {
    const ms = await once(way)
    results[way].push(ms)
    console.log(`bench: upgrade-downtime run ${i + 1}, ${way}: the login page down ${(ms / 1000).toFixed(1)} s`)
  }
}
const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]
console.log(`upgrade of a JupyterHub 3.0 hub to the pins, the login page's longest outage (${RUNS} runs each):`)
for (const way of ['hubctl upgrade', 'by hand'] as const)
  console.log(
    `  ${way}: median ${(median(results[way]) / 1000).toFixed(1)} s (${results[way].map((ms) => (ms / 1000).toFixed(1)).join(', ')})`,
  )
