/**
 * Bench row for `hubctl env add`: three packages (ENV_PACKAGES, default pandas scikit-learn
 * matplotlib) added to the users' environment of a hub (init --users-env from the test virtualenv;
 * the hub need not run), against `pip install` of the same into a copy of that environment made by
 * hand beforehand (the copy is not timed; the by-hand install has no constraints and no pip check).
 * The wheels are downloaded once (pip download, with the constraints) into a folder (ENV_WHEELS to
 * reuse one), and both sides install from it alone (PIP_NO_INDEX, PIP_FIND_LINKS): the index's speed
 * is not measured (pip caches nothing behind a proxy that says no-store). One untimed by-hand
 * install first; then the runs alternate.
 * After each hubctl run, `env rollback` puts the base back, so every run builds from the same one.
 */
import {execa} from 'execa'
import fs from 'node:fs/promises'
import path from 'node:path'
import {fileURLToPath} from 'node:url'

import {Layout} from '../src/lib/config/layout.js'
import {CONSTRAINTS_FILE} from '../src/lib/env/userenv.js'
import {BIN, portFlags, testHubInitArgs, VENV_JUPYTERHUB} from '../test/helpers/cli.js'
import {BenchRow, run, tempDir, timed} from './lib.js'

const PACKAGES = (process.env.ENV_PACKAGES ?? 'pandas scikit-learn matplotlib').split(/\s+/).filter(Boolean)

async function hubctl(args: string[], env?: Record<string, string>): Promise<string> {
  return (await run(process.execPath, [BIN, ...args], {env})).stdout
}

export async function envAddRows(runs: number): Promise<BenchRow[]> {
  const prefix = await tempDir('env')
  const layout = new Layout(prefix)
  const hubctlTimes: number[] = []
  const build: number[] = []
  const byHand: number[] = []
  try {
    const {flags} = await portFlags()
    await hubctl(
      testHubInitArgs(
        prefix,
        {admin: 'benv-ada', jupyterhub: VENV_JUPYTERHUB, extra: ['--authenticator', 'dummy', '--users-env']},
        flags,
      ),
    )
    const base = await fs.realpath(layout.usersEnvCurrent)
    const wheels = process.env.ENV_WHEELS ?? path.join(prefix, 'wheels')
    if (!process.env.ENV_WHEELS)
      await run(
        path.join(base, 'bin/python3'),
        ['-m', 'pip', 'download', '-q', '-d', wheels, '-c', fileURLToPath(CONSTRAINTS_FILE), ...PACKAGES],
        {cwd: '/'},
      )
    const offline = {PIP_NO_INDEX: '1', PIP_FIND_LINKS: wheels}
    // The copy by hand: cp -a then the same pip install (its scripts keep naming the base: pip runs
    // from the copy's python all the same, as an operator's `copy/bin/pip install` would).
    const byHandOnce = async (warm: boolean) => {
      const copy = path.join(prefix, 'by-hand')
      await run('cp', ['-a', '--', base, copy])
      try {
        const t = await timed(() =>
          run(path.join(copy, 'bin/python3'), ['-m', 'pip', 'install', '--disable-pip-version-check', ...PACKAGES], {
            env: offline,
            cwd: '/',
          }),
        )
        if (!warm) byHand.push(t)
      } finally {
        await fs.rm(copy, {recursive: true, force: true})
      }
    }
    // ENV_WARMUP=0: no untimed install first (the wheels' pages read already by another run).
    if (process.env.ENV_WARMUP !== '0') await byHandOnce(true)
    for (let i = 0; i < runs; i++) {
      await byHandOnce(false)
      let output = ''
      hubctlTimes.push(
        await timed(
          async () => (output = await hubctl(['env', 'add', ...PACKAGES, '--prefix', prefix, '--json'], offline)),
        ),
      )
      const result = JSON.parse(output) as {seconds: {build: number; switch: number}; phases?: Record<string, number>}
      build.push(result.seconds.build * 1000)
      process.stderr.write(
        `bench: env add run ${i + 1}: ${(hubctlTimes[i] / 1000).toFixed(1)} s (by hand ${(byHand[i] / 1000).toFixed(1)} s), ${JSON.stringify(result.seconds)}${result.phases ? ` phases ${JSON.stringify(result.phases)}` : ''}\n`,
      )
      await hubctl(['env', 'rollback', '--prefix', prefix])
    }
  } finally {
    await execa(process.execPath, [BIN, 'stop', '--prefix', prefix], {reject: false, stdin: 'ignore'})
    await fs.rm(prefix, {recursive: true, force: true})
  }
  const what = PACKAGES.join(' ')
  return [
    {
      name: `env add ${what} (users' environment: copy, pip install with the constraints, pip check, switch)`,
      hubctl: hubctlTimes,
      other: {name: `pip install ${what} into a copy of the environment by hand`, times: byHand},
    },
    {name: '  of which the build (hubctl env add --json: seconds.build)', hubctl: build},
  ]
}
