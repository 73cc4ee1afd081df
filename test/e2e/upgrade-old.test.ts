// e2e-lane: parallel
import {expect} from 'chai'
import {execa} from 'execa'
import fs from 'node:fs/promises'
import path from 'node:path'

import {readSchema, schemaState} from '../../src/lib/config/dbschema.js'
import {jupyterhubPython} from '../../src/lib/config/jupyterhub.js'
import {Layout} from '../../src/lib/config/layout.js'
import {SettingsStore} from '../../src/lib/config/settings.js'
import {execaRunner} from '../../src/lib/runner.js'
import {ROOT, hubctl, jsonOf, portFlags, tempPrefix, testHubInitArgs} from '../helpers/cli.js'
import {httpsJson} from '../helpers/kernel.js'
import {MAKE_USERS, tokensMade} from '../helpers/oldhub.js'

/*
 * `hubctl upgrade` of a hub an older hubctl left (issue 23): JupyterHub 4.1.6 from PyPI
 * (test/helpers/build-old-hub.sh builds it once per machine), its database made by that hub's own
 * first start, then users and an API token of each written by JupyterHub 4.1's own ORM. Upgraded by
 * `hubctl upgrade --env .venv` to today's pins (the prebuilt /opt/hubctl-venv: no PyPI build in the
 * test): the database migrated to the new JupyterHub's head, every user's token still answers
 * /hub/api/user with its user through nginx, and the hub starts again on the new JupyterHub after a
 * stop. bench/upgrade-old.ts is the same with 20 users and the build timed.
 */

const OLD_HUB = process.env.HUBCTL_TEST_OLD_HUB ?? '/var/lib/hubctl-test/jupyterhub-4.1'
const VENV = path.join(ROOT, '.venv')
const USERS = ['upold-ada', 'upold-bo', 'upold-cy']

describe("hubctl upgrade of a hub on an older hubctl's JupyterHub 4.1 (its database, users and tokens)", function () {
  this.timeout(900_000)

  let prefix = ''
  let layout: Layout
  let ca = ''
  let origin = ''
  let tokens: Record<string, string> = {}

  /** The users whose token does not answer /hub/api/user with their own name. */
  const refusedTokens = async (): Promise<string[]> => {
    const wrong: string[] = []
    for (const [name, token] of Object.entries(tokens)) {
      const answer = await httpsJson(`${origin}/hub/api/user`, {ca, token})
      if (answer.status !== 200 || (answer.body as {name?: string}).name !== name)
        wrong.push(`${name}: ${answer.status} ${JSON.stringify(answer.body)}`)
    }
    return wrong
  }

  before(async function () {
    this.timeout(600_000)
    await execa('bash', [path.join(ROOT, 'test/helpers/build-old-hub.sh'), OLD_HUB])
    prefix = await tempPrefix('hubctl-upold')
    layout = new Layout(prefix)
    const {flags, ports} = await portFlags()
    const init = await hubctl(
      testHubInitArgs(
        prefix,
        {
          admin: USERS[0],
          jupyterhub: path.join(OLD_HUB, 'bin/jupyterhub'),
          extra: ['--authenticator', 'dummy', '--spawner', 'simple', '--cull-idle', 'off'],
        },
        flags,
      ),
    )
    expect(init.exitCode, init.stderr).to.equal(0)
    // The database as JupyterHub 4.1 makes it at its first start; then the users and tokens.
    const first = await hubctl(['start', '--detach', '--prefix', prefix])
    expect(first.exitCode, first.stderr).to.equal(0)
    expect((await hubctl(['stop', '--prefix', prefix])).exitCode).to.equal(0)
    const made = await execa(path.join(OLD_HUB, 'bin/python3'), ['-I', '-c', MAKE_USERS, layout.database, ...USERS])
    tokens = tokensMade(made.stdout)
    const started = await hubctl(['start', '--detach', '--prefix', prefix])
    expect(started.exitCode, started.stderr).to.equal(0)
    ca = await fs.readFile(layout.fullchain, 'utf8')
    origin = `https://localhost:${ports.https}`
    expect(await refusedTokens(), 'tokens before the upgrade').to.deep.equal([])
  })

  after(async function () {
    this.timeout(120_000)
    if (!prefix) return
    await hubctl(['stop', '--prefix', prefix])
    await fs.rm(prefix, {recursive: true, force: true})
  })

  it('upgrade migrates the database to the new JupyterHub; every token answers as its user, after the upgrade and after a stop and start', async () => {
    const upgraded = await hubctl(['upgrade', '--yes', '--env', VENV, '--prefix', prefix, '--json'], {
      timeoutMs: 600_000,
    })
    expect(upgraded.exitCode, upgraded.stderr + upgraded.stdout).to.equal(0)
    const result = jsonOf(upgraded) as unknown as {
      action: string
      from: {jupyterhub: string}
      to: {jupyterhub: string}
      migrations: string[]
    }
    expect(result.action).to.equal('upgraded')
    expect(result.from.jupyterhub).to.equal('4.1.6')
    expect(result.to.jupyterhub).to.not.match(/^4\./)
    expect(result.migrations, 'the migrations from 4.1 to today').to.not.deep.equal([])
    const settings = await new SettingsStore(layout).load()
    expect(settings.executables.jupyterhub.startsWith(OLD_HUB), 'hubctl.json names the new JupyterHub').to.equal(false)
    const python = (await jupyterhubPython(settings.executables.jupyterhub))!
    expect(schemaState(await readSchema(execaRunner, python, layout.database)), 'the schema').to.equal('current')
    expect(await refusedTokens(), 'tokens after the upgrade').to.deep.equal([])
    // Not only the start the upgrade made: the hub starts again on the new JupyterHub.
    expect((await hubctl(['stop', '--prefix', prefix])).exitCode).to.equal(0)
    const again = await hubctl(['start', '--detach', '--prefix', prefix])
    expect(again.exitCode, again.stderr).to.equal(0)
    expect(await refusedTokens(), 'tokens after a stop and start').to.deep.equal([])
  })
})
