import {formatDuration} from '../duration.js'
import {cullingSummary, describeCulling} from '../config/culler.js'
import {Layout} from '../config/layout.js'
import {Settings} from '../config/settings.js'
import {SupervisorEvent, claimPidFile} from './state.js'
import {Supervisor} from './supervisor/supervisor.js'
import {protectFromOomKiller} from './oom.js'
import {installSignalHandlers} from './supervisor/channel.js'

/*
 * The supervisor run in this process until it stops: what `hubctl start` does in the foreground,
 * and what the background hubctl of `start --detach` does once its parent says go. Its events go to
 * standard output, one line each (JSON with `json`).
 */
export async function superviseHere(options: {
  layout: Layout
  settings: Settings
  /** Deprecated `start --cull-idle`: the supervisor also culls. */
  cullIdleMs?: number
  json: boolean
}): Promise<void> {
  const {layout, settings, cullIdleMs, json} = options
  await claimPidFile(layout)
  const print = (event: SupervisorEvent) => {
    process.stdout.write(
      json ? `${JSON.stringify(event)}\n` : `${event.at} hubctl[${process.pid}] ${event.level}: ${event.message}\n`,
    )
  }
  // Before the first child: the proxy, the hub and nginx inherit it.
  const oom = await protectFromOomKiller()
  if (oom.action !== 'kept')
    print({
      at: new Date().toISOString(),
      level: oom.action === 'set' ? 'info' : 'warn',
      event: 'oom',
      message:
        oom.action === 'set'
          ? `oom_score_adj ${oom.score} for hubctl, the proxy, the hub and nginx: the OOM killer takes users' servers (+500) first`
          : `oom_score_adj stays ${oom.score}: lowering it needs CAP_SYS_RESOURCE (root, outside a container that drops it); users' servers still start at +500, so the OOM killer takes them first. Fix: run \`hubctl start\` as root, or under the jupyterhub.service unit (OOMScoreAdjust)`,
    })
  const supervisor = new Supervisor({layout, settings, log: print, cullIdleMs})
  if (cullIdleMs !== undefined) {
    print({
      at: new Date().toISOString(),
      level: 'info',
      event: 'cull',
      message: `user servers idle longer than ${formatDuration(cullIdleMs)} will be stopped`,
    })
    print({
      at: new Date().toISOString(),
      level: 'warn',
      event: 'deprecated',
      message: `\`hubctl start --cull-idle\` is deprecated: hubctl's supervisor culls after ${formatDuration(cullIdleMs)} beside jupyterhub-idle-culler (${describeCulling(cullingSummary(settings))}). Fix: run \`hubctl init --cull-idle ${formatDuration(cullIdleMs)}\` with your other init flags, then drop --cull-idle from \`hubctl start\``,
    })
  }
  const removeHandlers = installSignalHandlers(supervisor)
  try {
    const result = await supervisor.run()
    if (json) process.stdout.write(`${JSON.stringify({event: 'exit', ...result, detached: false})}\n`)
  } finally {
    removeHandlers()
    // Idle keep-alive sockets of fetch() would hold the process for seconds after everything
    // stopped (and `hubctl stop` waits for this pid): leave once the output is written.
    setTimeout(() => process.exit(), 500).unref()
  }
}
