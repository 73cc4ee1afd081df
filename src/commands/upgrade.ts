import {Flags} from '@oclif/core'
import {fileURLToPath} from 'node:url'

import {BaseCommand} from '../base-command.js'
import {usageError} from '../lib/errors.js'
import {execaRunner} from '../lib/runner.js'
import {confirmOnTerminal, isInteractive} from '../lib/setup/prompts.js'
import {hubControl} from '../lib/upgrade/stack.js'
import {UpgradeResult, UpgradeService} from '../lib/upgrade/upgrade.js'

export default class Upgrade extends BaseCommand<typeof Upgrade> {
  static override summary = 'Upgrade the hub to the JupyterHub this hubctl pins, with a rollback at every step.'

  static override description = `A backup first (\`hubctl backup\`); the pinned environment (python/constraints.txt) built beside the live one; the database migrated on a copy (\`jupyterhub upgrade-db\`'s alembic upgrade) and the new config loaded, while the hub runs; then the hub stopped (user servers keep running), the database migrated again and switched, the hub started on the new environment, and checked (its API with hubctl's token, the login page through nginx). Any failure: the old environment, config and database back, the hub started as before, exit 7 naming what failed. Nothing to do at the pins: exit 0 saying so. Works from hubctl's older environments and from another JupyterHub given to init (Debian's /usr/bin/jupyterhub).
--rebuild builds the environments again (the hub's, and the users' with the course's packages) with the system's python3 and the same pins, after an OS upgrade removed the Python they were built with (\`hubctl doctor\` and \`hubctl start\` say so). Its rollback puts back the links, config and database and reports the failure, but cannot start the old hub (its Python is gone). With the Python still there and the hub at the pins: nothing to rebuild, exit 0.
--env DIR upgrades to an environment already built from the pins (DIR/bin/jupyterhub) instead of building one: a machine without PyPI, and the tests.`

  static override examples = [
    '<%= config.bin %> upgrade',
    '<%= config.bin %> upgrade --yes --json',
    '<%= config.bin %> upgrade --rebuild --yes',
  ]

  static override flags = {
    yes: Flags.boolean({char: 'y', description: 'do not ask'}),
    rebuild: Flags.boolean({
      description:
        "build the environments again with the system's python3 when the Python they were built with is gone",
    }),
    env: Flags.string({
      description: 'an environment already built from the pins to upgrade to, instead of building one',
      helpValue: 'DIR',
    }),
  }

  async run(): Promise<UpgradeResult> {
    const ask = !this.flags.yes && isInteractive() && !this.jsonEnabled()
    const log = this.jsonEnabled() ? () => {} : (line: string) => this.logToStderr(line)
    const service = new UpgradeService({
      layout: this.layout,
      runner: execaRunner,
      control: hubControl(this.layout, execaRunner, fileURLToPath(new URL('../../bin/run.js', import.meta.url)), log),
      log,
      env: this.flags.env,
      confirm: async (summary) => {
        if (this.flags.yes) return true
        if (!ask)
          throw usageError(
            'upgrade restarts the hub and asks first; this is not a terminal. Nothing was changed',
            'give --yes',
          )
        return confirmOnTerminal(summary)
      },
    })
    const result = await service.upgrade({rebuild: this.flags.rebuild})
    const users = result.usersEnv
    const usersLine = !users
      ? undefined
      : users.action === 'rebuilt'
        ? `  users' environment built again (${users.why}): ${users.current}, course packages: ${users.packages?.join(' ') || 'none'}`
        : `  WARNING: kept the old users' environment (${users.why}): ${users.error}; ${users.fix}`
    if (result.action === 'nothing') {
      this.log(`hubctl upgrade: nothing to do: ${result.why}.`)
      if (usersLine) this.log(usersLine)
      return result
    }
    this.log(
      `hubctl upgraded the hub under ${this.layout.prefix}: JupyterHub ${result.from.jupyterhub} → ${result.to.jupyterhub} (${result.to.executable}) in ${result.seconds}s${result.downtimeSeconds === undefined ? '' : `; the hub was down ${result.downtimeSeconds}s`}.`,
    )
    if (result.migrations.length > 0) this.log(`  database migrated: ${result.migrations.join(', ')}`)
    this.log(`  backup: ${result.backup}`)
    for (const server of result.servers) this.log(`  server kept running: ${server}`)
    if (usersLine) this.log(usersLine)
    return result
  }
}
