import {Flags} from '@oclif/core'
import {fileURLToPath} from 'node:url'

import {BaseCommand} from '../base-command.js'
import {formatDuration, parseDuration} from '../lib/duration.js'
import {cullingSummary, describeCulling} from '../lib/config/culler.js'
import {checkBeforeStart} from '../lib/setup/preflight.js'
import {execaRunner} from '../lib/runner.js'
import {SettingsStore} from '../lib/config/settings.js'
import {DetachResult, startDetached} from '../lib/stack/control.js'
import {Supervisor, SupervisorResult, installSignalHandlers} from '../lib/stack/supervisor.js'
import {SupervisorEvent, claimPidFile} from '../lib/stack/state.js'

export default class Start extends BaseCommand<typeof Start> {
  static override summary =
    'Run the hub: configurable-http-proxy, JupyterHub and (for a --prefix other than /) nginx, supervised.'

  static override description = `Starts configurable-http-proxy (its token in its environment only), then JupyterHub, then nginx when hubctl runs it itself, and waits until /hub/health answers through the proxy. A program that exits is restarted with exponential backoff; after the proxy restarts the hub re-adds every route at once. Each program writes to its own log under var/log/jupyterhub; hubctl's own events go to standard output (with --json, one JSON object per line).
Every 30 seconds hubctl lists the user servers through the hub API and checks each one's route (the proxy's routing table, then the route's target; \`hubctl status\` shows the result); a server whose port refuses connections three checks in a row is stopped through the API. Idle servers are stopped by jupyterhub-idle-culler, a service of the hub set up by \`hubctl init --cull-idle\` (default 1h).
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
    // The background hubctl that --detach starts: its parent ran checkBeforeStart a moment ago.
    'checked-by-parent': Flags.boolean({hidden: true}),
  }

  async run(): Promise<((SupervisorResult | DetachResult) & {detached: boolean}) | undefined> {
    // A bad duration is refused (exit 2) before anything starts.
    const cullIdle = this.flags['cull-idle']
    const cullIdleMs = cullIdle === undefined ? undefined : parseDuration(cullIdle, '--cull-idle')
    const settings = await new SettingsStore(this.layout).load()
    if (!this.flags['checked-by-parent']) await checkBeforeStart(this.layout, settings, execaRunner)
    if (this.flags.detach) {
      const bin = fileURLToPath(new URL('../../bin/run.js', import.meta.url))
      const result = await startDetached(this.layout, {
        bin,
        args: ['--checked-by-parent', ...(cullIdle === undefined ? [] : ['--cull-idle', cullIdle])],
      })
      this.log(
        `hubctl supervises the hub under ${this.layout.prefix} in the background (pid ${result.pid}); ready in ${result.readySeconds}s.`,
      )
      this.log(`  events: ${result.log}`)
      this.log(`  stop it with: hubctl stop --prefix ${this.layout.prefix}`)
      return {...result, detached: true}
    }
    await claimPidFile(this.layout)
    const json = this.jsonEnabled()
    const print = (event: SupervisorEvent) => {
      process.stdout.write(
        json ? `${JSON.stringify(event)}\n` : `${event.at} hubctl[${process.pid}] ${event.level}: ${event.message}\n`,
      )
    }
    const supervisor = new Supervisor({layout: this.layout, settings, log: print, cullIdleMs})
    if (cullIdleMs !== undefined)
      print({
        at: new Date().toISOString(),
        level: 'info',
        event: 'cull',
        message: `user servers idle longer than ${formatDuration(cullIdleMs)} will be stopped`,
      })
    if (cullIdleMs !== undefined)
      print({
        at: new Date().toISOString(),
        level: 'warn',
        event: 'deprecated',
        message: `\`hubctl start --cull-idle\` is deprecated: hubctl's supervisor culls after ${formatDuration(cullIdleMs)} beside jupyterhub-idle-culler (${describeCulling(cullingSummary(settings))}). Fix: run \`hubctl init --cull-idle ${formatDuration(cullIdleMs)}\` with your other init flags, then drop --cull-idle from \`hubctl start\``,
      })
    const removeHandlers = installSignalHandlers(supervisor)
    try {
      const result = await supervisor.run()
      if (json) process.stdout.write(`${JSON.stringify({event: 'exit', ...result, detached: false})}\n`)
      return undefined
    } finally {
      removeHandlers()
      // Idle keep-alive sockets of fetch() would hold the process for seconds after everything
      // stopped (and `hubctl stop` waits for this pid): leave once oclif has written its output.
      setTimeout(() => process.exit(), 500).unref()
    }
  }
}
