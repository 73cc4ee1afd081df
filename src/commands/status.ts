import {BaseCommand} from '../base-command.js'
import {formatDuration} from '../lib/duration.js'
import {describeCulling} from '../lib/config/culler.js'
import {describeLimits} from '../lib/config/limits.js'
import {SettingsStore} from '../lib/config/settings.js'
import {ChildStatus, StatusReport, stackStatus} from '../lib/stack/control.js'
import {BackupStatus, backupStatus, describeBackups} from '../lib/backup/archives.js'

export default class Status extends BaseCommand<typeof Status> {
  static override summary = 'Show what runs: supervisor, proxy, hub, nginx and the user servers.'

  static override description = `Checks the recorded pids against the running processes, asks the hub for /hub/health, and lists user servers through the hub API. Works whether or not the hub runs, and exits 0 either way: read "running" and "healthy" (or the JSON) for the answer.`

  static override examples = ['<%= config.bin %> status', '<%= config.bin %> status --prefix /tmp/hub --json']

  async run(): Promise<StatusReport & {backups: BackupStatus}> {
    const settings = await new SettingsStore(this.layout).load()
    const report = await stackStatus(this.layout, settings)
    const line = (name: string, child: ChildStatus, extra = '') => {
      const what = child.running ? `running, pid ${child.pid}${extra}` : 'stopped'
      const restarts =
        child.restarts > 0
          ? `, ${child.restarts} restart${child.restarts > 1 ? 's' : ''}${child.crashLoop ? ' (crash loop)' : ''}`
          : ''
      this.log(`  ${name.padEnd(7)} ${what}${restarts}`)
    }
    this.log(
      `hubctl under ${report.prefix}: ${report.supervisor.running ? `supervised (pid ${report.supervisor.pid})` : report.running ? 'running WITHOUT a supervisor' : 'not running'}`,
    )
    line('proxy', report.proxy)
    line('hub', report.hub, report.hub.healthy ? ', healthy' : ', NOT healthy')
    if (report.nginx) line('nginx', report.nginx)
    if (report.servers.length > 0) {
      this.log('  user servers:')
      for (const server of report.servers) {
        const route =
          server.routeOk === null
            ? 'route not checked yet'
            : server.routeOk
              ? 'route ok'
              : `route FAILS (${server.routeProblem ?? 'no answer'})`
        this.log(
          `    ${server.name ? `${server.user}/${server.name}` : server.user}  ${server.ready ? 'ready' : 'starting'}  ${server.url}  last activity ${server.lastActivity ?? 'never'}  ${route}`,
        )
        for (const job of server.slurmJobs ?? [])
          this.log(
            `      Slurm job ${job.id}: ${job.state}${job.node ? ` on ${job.node}` : ''}${job.state === 'PENDING' && job.reason !== 'None' ? ` (${job.reason})` : ''}`,
          )
      }
    } else if (report.hub.healthy) {
      this.log('  user servers: none')
    }
    this.log(`  culling: ${describeCulling(report.culling)}`)
    this.log(`  limits: ${describeLimits(report.limits ?? undefined)}`)
    if (report.serverWatch) {
      const watch = report.serverWatch
      this.log(
        `  servers checked by the supervisor at ${watch.checkedAt}${watch.ok ? '' : ` (FAILED: ${watch.error})`}${watch.cullIdleSeconds === null ? '' : `; hubctl culls servers idle after ${formatDuration(watch.cullIdleSeconds * 1000)}`}`,
      )
      for (const action of watch.actions.slice(-5)) {
        this.log(
          `    ${action.at} ${action.action} ${action.name ? `${action.user}/${action.name}` : action.user}: ${action.reason} (${action.result}${action.error ? `: ${action.error}` : ''})`,
        )
      }
    }
    const backups = await backupStatus(this.layout, settings)
    this.log(`  ${describeBackups(backups)}`)
    return {...report, backups}
  }
}
