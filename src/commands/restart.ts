import {BaseCommand} from '../base-command.js'
import {RestartResult, restartStack} from '../lib/stack/control.js'

export default class Restart extends BaseCommand<typeof Restart> {
  static override summary = 'Restart the proxy and the hub; user servers and their routes stay.'

  static override description = `Sends SIGHUP to the running supervisor, which restarts configurable-http-proxy (and has the hub restore every route at once), then JupyterHub (which finds the user servers again), and has nginx reload its configuration. Returns once the hub answers /hub/health. The hub must be running (\`hubctl start\`).`

  static override examples = ['<%= config.bin %> restart', '<%= config.bin %> restart --prefix /tmp/hub --json']

  async run(): Promise<RestartResult> {
    const result = await restartStack(this.layout)
    this.log(
      `hubctl restarted the proxy (pid ${result.proxy.pid}) and the hub (pid ${result.hub.pid}) in ${result.seconds}s; user servers kept running.`,
    )
    return result
  }
}
