import {Args, Flags} from '@oclif/core'

import {BaseCommand} from '../base-command.js'
import {parseDuration} from '../lib/duration.js'
import {usageError} from '../lib/errors.js'
import {
  DEFAULT_LINES,
  LOG_SOURCES,
  LogsResult,
  followLogs,
  formatLogs,
  parseLines,
  parseLogChoice,
  readLogs,
} from '../lib/logs/logs.js'

export default class Logs extends BaseCommand<typeof Logs> {
  static override summary = "Show the hub's logs: the hub, the proxy, nginx, hubctl's own events, or all of them."

  static override description = `Reads the files the stack writes under var/log/jupyterhub (and each one's previous week, FILE.1, kept by logrotate): hub is jupyterhub.log (JupyterHub and jupyterhub-idle-culler), proxy is proxy.log (configurable-http-proxy and the standby proxy), nginx is nginx-error.log and nginx-access.log, hubctl is hubctl.log (the supervisor's events when detached; under systemd they are in the journal) and hubctl-audit.log. all (the default) shows each file in turn under a "==> FILE <==" header, as tail does. Without --since or --lines, the last ${DEFAULT_LINES} lines of each file.
--user NAME shows that user's lines of the hub's log and hubctl's (spawns, stops, culls, clean-ups, errors, with their tracebacks), leaving out the hub's log of answered page and API reads.
-f keeps printing new lines as they are written, until Ctrl-C.`

  static override examples = [
    '<%= config.bin %> logs',
    '<%= config.bin %> logs hub --since 10m',
    '<%= config.bin %> logs --user alice',
    '<%= config.bin %> logs proxy --lines 200',
    '<%= config.bin %> logs hub -f',
    '<%= config.bin %> logs hub --since 1h --json',
  ]

  static override args = {
    source: Args.string({
      description: `which log: ${[...LOG_SOURCES, 'all'].join(', ')}`,
      required: false,
      default: 'all',
    }),
  }

  static override flags = {
    follow: Flags.boolean({char: 'f', description: 'keep printing new lines until Ctrl-C (not with --json)'}),
    since: Flags.string({
      description: 'only lines written in the last DURATION (e.g. 10m, 2h, 1d)',
      helpValue: 'DURATION',
    }),
    lines: Flags.string({
      char: 'n',
      description: 'the last N lines of each file (default: 50 without --since)',
      helpValue: 'N',
    }),
    user: Flags.string({
      description: "only this user's spawns, stops, culls and errors (hub and hubctl logs)",
      helpValue: 'NAME',
    }),
  }

  async run(): Promise<LogsResult | undefined> {
    const source = parseLogChoice(this.args.source)
    const now = Date.now()
    const request = {
      source,
      sinceMs: this.flags.since === undefined ? undefined : now - parseDuration(this.flags.since, '--since'),
      lines: parseLines(this.flags.lines),
      user: this.flags.user,
      now,
    }
    if (this.flags.follow && this.jsonEnabled())
      throw usageError(
        '-f and --json cannot go together (a followed log never ends as one JSON document)',
        'drop -f or --json',
      )
    const result = await readLogs(this.layout, request)
    if (!this.jsonEnabled()) process.stdout.write(formatLogs(result))
    const missing = result.files.filter((file) => !file.exists)
    if (!this.jsonEnabled() && missing.length === result.files.length)
      this.logToStderr(
        `no log yet: ${missing.map((file) => file.file).join(', ')} (the stack writes them when it runs)`,
      )
    if (!this.flags.follow) return result
    const abort = new AbortController()
    const stop = () => abort.abort()
    process.once('SIGINT', stop)
    process.once('SIGTERM', stop)
    try {
      const shownFiles = result.files.filter((file) => file.exists).length
      await followLogs(this.layout, request, (text) => process.stdout.write(text), {
        signal: abort.signal,
        headers: result.files.length > 1 && shownFiles !== 1,
      })
    } finally {
      process.off('SIGINT', stop)
      process.off('SIGTERM', stop)
    }
    return undefined
  }

  protected args!: {source: string}

  public override async init(): Promise<void> {
    await super.init()
    const {args} = await this.parse(Logs)
    this.args = args as {source: string}
  }
}
