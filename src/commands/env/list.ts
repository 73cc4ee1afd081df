import {BaseCommand} from '../../base-command.js'
import {type EnvListResult, UsersEnvService} from '../../lib/env/userenv.js'
import {execaRunner} from '../../lib/runner.js'

export default class EnvList extends BaseCommand<typeof EnvList> {
  static override summary =
    "The users' environments: which is live, the course packages of each, which servers run which."

  static override description =
    'current: what new servers start from; previous: what `hubctl env rollback` goes back to; base: the pinned base without course packages. Servers are found by their processes (the Python they run).'

  static override examples = ['<%= config.bin %> env list', '<%= config.bin %> env list --json']

  async run(): Promise<EnvListResult> {
    const result = await new UsersEnvService({layout: this.layout, runner: execaRunner}).list()
    if (!this.jsonEnabled()) {
      this.log(`new servers run ${result.spawner || '(no hub)'}`)
      for (const env of result.envs) {
        const marks = [env.current && 'current', env.previous && 'previous', env.base && 'base'].filter(Boolean)
        const servers = env.servers.map((s) => s.user || `pid ${s.pid}`)
        this.log(
          `${env.id}${marks.length > 0 ? ` (${marks.join(', ')})` : ''}: ${env.packages.join(' ') || 'no course package'}; servers: ${servers.join(' ') || 'none'}`,
        )
      }
      for (const s of result.otherServers)
        this.log(`${s.user || `pid ${s.pid}`}: runs ${s.python}, no users' environment of hubctl's`)
    }
    return result
  }
}
