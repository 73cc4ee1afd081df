/**
 * Bench `upgrade from an older hubctl's pins` (issue 23): a hub built on JupyterHub 4.1.x (a
 * virtualenv of `jupyterhub==4.1.6 jupyterlab==4.1.8` from PyPI, what an older hubctl installed),
 * with a real database holding BENCH_OLD_USERS users (default 20) and an API token of each, is
 * upgraded by `hubctl upgrade --env .venv` to today's pins (python/constraints.txt, the prebuilt
 * /opt/hubctl-venv). Checked: the database was migrated (the upgrade's migrations, the schema at
 * the new JupyterHub's head), every user and every token survives (each token still answers
 * /hub/api/user with its user's name through nginx), the hub started by the upgrade answers, and
 * it starts again after a stop. Reported: the seconds of the PyPI build, of the upgrade, and the
 * hub's downtime. The build of both old pins takes minutes (8m15s here on a loaded machine): this
 * is a bench, run by hand. test/e2e/upgrade-old.test.ts is the same upgrade in the suite, with 3
 * users, from JupyterHub 4.1.6 alone (test/helpers/build-old-hub.sh, once per machine).
 *
 *   node --import tsx --no-warnings bench/upgrade-old.ts
 *
 * BENCH_OLD_ENV=DIR reuses a virtualenv built before (a directory with bin/jupyterhub 4.1.x).
 */
import {execa} from 'execa'
import {randomBytes} from 'node:crypto'
import fs from 'node:fs/promises'
import path from 'node:path'

import {readSchema, schemaState} from '../src/lib/config/dbschema.js'
import {jupyterhubPython} from '../src/lib/config/jupyterhub.js'
import {Layout} from '../src/lib/config/layout.js'
import {SettingsStore} from '../src/lib/config/settings.js'
import {execaRunner} from '../src/lib/runner.js'
import {ROOT, portFlags, testHubInitArgs} from '../test/helpers/cli.js'
import {httpsJson} from '../test/helpers/kernel.js'
import {MAKE_USERS, tokensMade} from '../test/helpers/oldhub.js'
import {hubctl, run, tempDir, timed} from './lib.js'

const USERS = Number(process.env.BENCH_OLD_USERS ?? 20)
const OLD_PINS = ['jupyterhub==4.1.6', 'jupyterlab==4.1.8']
const VENV = path.join(ROOT, '.venv')

async function main(): Promise<void> {
  const work = await tempDir('upgrade-old')
  let oldEnv = process.env.BENCH_OLD_ENV ?? ''
  let buildSeconds: number | undefined
  if (!oldEnv) {
    oldEnv = path.join(work, 'jh41')
    buildSeconds =
      (await timed(async () => {
        await run('/usr/bin/python3', ['-m', 'venv', oldEnv])
        await run(path.join(oldEnv, 'bin/pip'), ['install', '-q', '--only-binary', ':all:', ...OLD_PINS])
      })) / 1000
  }
  const oldVersion = (await run(path.join(oldEnv, 'bin/jupyterhub'), ['--version'])).stdout.trim()
  const admin = `upo${randomBytes(3).toString('hex')}`
  const prefix = path.join(work, 'prefix')
  const layout = new Layout(prefix)
  const names = [admin, ...Array.from({length: USERS - 1}, (_, n) => `upo-student${n + 1}`)]
  try {
    const {flags, ports} = await portFlags()
    await hubctl(
      testHubInitArgs(
        prefix,
        {admin, jupyterhub: path.join(oldEnv, 'bin/jupyterhub'), extra: ['--create-users', '--cull-idle', 'off']},
        flags,
      ),
    )
    // The database made by JupyterHub 4.1 at its first start; then users and tokens in it.
    await hubctl(['start', '--detach', '--prefix', prefix])
    await hubctl(['stop', '--prefix', prefix])
    const made = await run(path.join(oldEnv, 'bin/python3'), ['-I', '-c', MAKE_USERS, layout.database, ...names])
    const tokens = tokensMade(made.stdout)
    await hubctl(['start', '--detach', '--prefix', prefix])
    const ca = await fs.readFile(layout.fullchain, 'utf8')
    const origin = `https://localhost:${ports.https}`
    const whoamiAll = async () => {
      const wrong: string[] = []
      for (const [name, token] of Object.entries(tokens)) {
        const answer = await httpsJson(`${origin}/hub/api/user`, {ca, token})
        if (answer.status !== 200 || (answer.body as {name?: string}).name !== name)
          wrong.push(`${name}: ${answer.status}`)
      }
      return wrong
    }
    const before = await whoamiAll()
    if (before.length > 0) throw new Error(`before the upgrade, tokens refused: ${before.join(', ')}`)

    let json = ''
    const upgradeSeconds =
      (await timed(async () => {
        json = await hubctl(['upgrade', '--yes', '--env', VENV, '--prefix', prefix, '--json'])
      })) / 1000
    const result = JSON.parse(json) as {
      action: string
      from: {jupyterhub: string}
      to: {jupyterhub: string; executable: string}
      migrations: string[]
      downtimeSeconds?: number
      backup?: string
    }
    if (result.action !== 'upgraded') throw new Error(`upgrade did nothing: ${json}`)
    const settings = await new SettingsStore(layout).load()
    const python = (await jupyterhubPython(settings.executables.jupyterhub))!
    const schema = schemaState(await readSchema(execaRunner, python, layout.database))
    const after = await whoamiAll()
    // The hub starts again on the new JupyterHub (not only the start the upgrade made).
    await hubctl(['stop', '--prefix', prefix])
    await hubctl(['start', '--detach', '--prefix', prefix])
    const restarted = await whoamiAll()
    console.log(`upgrade from an older hubctl's pins (${USERS} users, a token each)`)
    console.log(`  old environment: JupyterHub ${oldVersion} (${OLD_PINS.join(' ')})`)
    console.log(
      `  PyPI build of it: ${buildSeconds === undefined ? `reused ${oldEnv}` : `${buildSeconds.toFixed(1)} s`}`,
    )
    console.log(
      `  hubctl upgrade: JupyterHub ${result.from.jupyterhub} → ${result.to.jupyterhub}, ${upgradeSeconds.toFixed(1)} s, hub down ${result.downtimeSeconds ?? '?'} s`,
    )
    console.log(`  migrations: ${result.migrations.join(', ') || 'none'}; schema after: ${schema}`)
    console.log(`  hubctl.json: ${settings.executables.jupyterhub} (JupyterHub ${settings.jupyterhubVersion})`)
    console.log(
      `  tokens answering /hub/api/user with their user: after the upgrade ${USERS - after.length}/${USERS}, after a stop and start ${USERS - restarted.length}/${USERS}`,
    )
    if (schema !== 'current' || after.length > 0 || restarted.length > 0 || result.migrations.length === 0)
      throw new Error(`the upgrade lost something: ${JSON.stringify({schema, after, restarted, result})}`)
  } finally {
    await hubctl(['stop', '--prefix', prefix]).catch(() => {})
    await execa('userdel', ['--remove', admin], {reject: false})
    await fs.rm(work, {recursive: true, force: true})
  }
}

await main()
