/**
 * Bench row for `hubctl env add`: three packages (ENV_PACKAGES, default pandas scikit-learn
 * matplotlib) added to the users' environment of a hub (init --users-env from the test virtualenv;
 * the hub need not run), against `pip install` of the same into a copy of that environment made by
 * hand beforehand (the copy is not timed; the by-hand install has no constraints and no pip check).
 * One untimed install first fills pip's cache, so both sides download nothing; the runs alternate.
 * After each hubctl run, `env rollback` puts the base back, so every run builds from the same one.
 */
import {execa} from 'execa'
import fs from 'node:fs/promises'
import path from 'node:path'

import {Layout} from '../src/lib/config/layout.js'
import {BIN, portFlags, testHubInitArgs, VENV_JUPYTERHUB} from '../test/helpers/cli.js'
import {BenchRow, run, tempDir, timed} from './lib.js'

const PACKAGES = (process.env.ENV_PACKAGES ?? 'pandas scikit-learn matplotlib').split(/\s+/).filter(Boolean)

async function hubctl(args: string[]): Promise<string> {
  return (await run(process.execPath, [BIN, ...args])).stdout
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
    // The copy by hand: cp -a then the same pip install (its scripts keep naming the base: pip runs
    // from the copy's python all the same, as an operator's `copy/bin/pip install` would).
    const byHandOnce = async (warm: boolean) => {
      const copy = path.join(prefix, 'by-hand')
      await run('cp', ['-a', '--', base, copy])
      try {
        const t = await timed(() =>
          run(path.join(copy, 'bin/python3'), ['-m', 'pip', 'install', '--disable-pip-version-check', ...PACKAGES]),
        )
        if (!warm) byHand.push(t)
      } finally {
        await fs.rm(copy, {recursive: true, force: true})
      }
    }
    await byHandOnce(true)
    for (let i = 0; i < runs; i++) {
      await byHandOnce(false)
      let output = ''
      hubctlTimes.push(
        await timed(async () => (output = await hubctl(['env', 'add', ...PACKAGES, '--prefix', prefix, '--json']))),
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
