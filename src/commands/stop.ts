import {Flags} from '@oclif/core'

import {BaseCommand} from '../base-command.js'
import {SettingsStore} from '../lib/config/settings.js'
import {StopResult, stopStack} from '../lib/stack/control.js'

export default class Stop extends BaseCommand<typeof Stop> {
  static override summary = 'Stop the user servers, then the hub, the proxy and nginx.'

  static override description = `Asks the hub to stop every user server (DELETE /hub/api/users/NAME/server, with hubctl's service token) and waits for them, then sends SIGTERM to the supervisor, which stops the hub, the proxy and nginx (SIGKILL after a timeout). Processes left by a supervisor that died are stopped too. Stopping a hub that does not run is not an error.`

  static override examples = [
    '<%= config.bin %> stop',
    '<%= config.bin %> stop --prefix /tmp/hub --json',
    '<%= config.bin %> stop --keep-servers',
  ]

  static override flags = {
    'keep-servers': Flags.boolean({
      description: 'leave user servers running (the hub finds them again at its next start)',
    }),
  }

  async run(): Promise<StopResult> {
    const settings = await new SettingsStore(this.layout).load()
    const result = await stopStack(this.layout, settings, {
      keepServers: this.flags['keep-servers'],
      log: (line) => this.logToStderr(line),
    })
    for (const warning of result.warnings) this.logToStderr(`warning: ${warning}`)
    if (!result.wasRunning) {
      this.log(`hubctl: nothing runs under ${this.layout.prefix}.`)
      return result
    }
    const stopped = result.servers.filter((server) => server.result === 'stopped')
    this.log(`hubctl stopped the hub under ${this.layout.prefix}.`)
    this.log(
      `  user servers stopped: ${stopped.length > 0 ? stopped.map((s) => (s.name ? `${s.user}/${s.name}` : s.user)).join(', ') : 'none'}`,
    )
    if (result.supervisor) this.log(`  supervisor (pid ${result.supervisor.pid}): ${result.supervisor.result}`)
    for (const leftover of result.leftovers)
      this.log(`  ${leftover.name} left behind (pid ${leftover.pid}): ${leftover.result}`)
    return result
  }
}
