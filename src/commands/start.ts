import {Flags} from '@oclif/core'
import {fileURLToPath} from 'node:url'

import {BaseCommand} from '../base-command.js'
import {parseDuration} from '../lib/duration.js'
import {finishInterrupted} from '../lib/backup/journal.js'
import {checkBeforeStart} from '../lib/setup/preflight.js'
import {execaRunner} from '../lib/runner.js'
import {SettingsStore} from '../lib/config/settings.js'
import {DetachResult, parentSaysGo, startDetached} from '../lib/stack/control.js'
import type {SupervisorResult} from '../lib/stack/supervisor/supervisor.js'

export default class Start extends BaseCommand<typeof Start> {
  static override summary =
    'Run the hub: configurable-http-proxy, JupyterHub and (for a --prefix other than /) nginx, supervised.'

  static override description = `Starts configurable-http-proxy (its token in its environment only), then JupyterHub, then nginx when hubctl runs it itself, and waits until /hub/health answers through the proxy. A program that exits is restarted with exponential backoff; after the proxy restarts the hub re-adds every route at once. Each program writes to its own log under var/log/jupyterhub; hubctl's own events go to standard output (with --json, one JSON object per line).
Every 30 seconds (hubctl.json's serverWatchSeconds) hubctl lists the user servers through the hub API and checks each one's route (the proxy's routing table, then the route's target; \`hubctl status\` shows the result); a server whose port refuses connections three checks in a row is stopped through the API. Idle servers are stopped by jupyterhub-idle-culler, a service of the hub set up by \`hubctl init --cull-idle\` (default 1h).
--cull-idle here is deprecated and kept so that existing units and scripts still start: hubctl's supervisor then also stops servers idle longer than the duration itself, beside the culler; set the time with \`hubctl init --cull-idle\` instead.
SIGTERM or SIGINT stops the hub, then the proxy, then nginx; user servers keep running (use \`hubctl stop\` to stop them too). SIGHUP restarts the proxy and the hub (what \`hubctl restart\` sends).
Runs in the foreground, as a service manager expects; --detach runs it in the background and returns once the hub is ready.`

  static override examples = [
    '<%= config.bin %> start',
    '<%= config.bin %> start --detach --prefix /tmp/hub',
    '<%= config.bin %> start --detach --json',
  ]

  static override flags = {
    detach: Flags.boolean({
      char: 'd',
      description: 'run in the background (pid in srv/jupyterhub/run/hubctl.pid) and return once the hub is ready',
    }),
    'cull-idle': Flags.string({
      description:
        'deprecated: use `hubctl init --cull-idle`. hubctl itself also stops user servers idle longer than this (e.g. 90s, 30m, 2h)',
      helpValue: 'DURATION',
    }),
    // The background hubctl that --detach starts (bin/run.js runs it without oclif: lib/stack/background.ts):
    // it loads while its parent runs checkBeforeStart, then starts only once the parent says go on its stdin.
    'checked-by-parent': Flags.boolean({hidden: true}),
  }

  async run(): Promise<((SupervisorResult | DetachResult) & {detached: boolean}) | undefined> {
    // A bad duration is refused (exit 2) before anything starts.
    const cullIdle = this.flags['cull-idle']
    const cullIdleMs = cullIdle === undefined ? undefined : parseDuration(cullIdle, '--cull-idle')
    // A restore or an upgrade killed half way through its renames: finished before hubctl.json is read.
    for (const what of await finishInterrupted(this.layout, execaRunner))
      this.logToStderr(`hubctl finished an interrupted ${what}`)
    const settings = await new SettingsStore(this.layout).load()
    if (this.flags['checked-by-parent']) {
      if (!(await parentSaysGo(process.stdin))) return undefined
    } else if (!this.flags.detach) await checkBeforeStart(this.layout, settings, execaRunner)
    if (this.flags.detach) {
      const bin = fileURLToPath(new URL('../../bin/run.js', import.meta.url))
      const result = await startDetached(this.layout, {
        bin,
        args: ['--checked-by-parent', ...(cullIdle === undefined ? [] : ['--cull-idle', cullIdle])],
        checks: () => checkBeforeStart(this.layout, settings, execaRunner),
      })
      this.log(
        `hubctl supervises the hub under ${this.layout.prefix} in the background (pid ${result.pid}); ready in ${result.readySeconds}s.`,
      )
      this.log(`  events: ${result.log}`)
      this.log(`  stop it with: hubctl stop --prefix ${this.layout.prefix}`)
      return {...result, detached: true}
    }
    // The supervisor is loaded only here: `start --detach` leaves it to its background hubctl.
    const {superviseHere} = await import('../lib/stack/foreground.js')
    await superviseHere({layout: this.layout, settings, cullIdleMs, json: this.jsonEnabled()})
    return undefined
  }
}
