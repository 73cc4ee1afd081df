import {BaseCommand} from '../../base-command.js'
import {execaRunner} from '../../lib/runner.js'
import {UserListResult, UsersService} from '../../lib/users/users.js'

export default class UsersList extends BaseCommand<typeof UsersList> {
  static override summary = "The hub's users: admin, allowed, system account, server, last activity."

  static override description = `Every user hubctl.json lets in, and any other user the running hub's database holds. "account" (PAM hubs only) says whether the system account they log in with exists; "server" and "last activity" come from the hub's API and need the hub running.`

  static override examples = ['<%= config.bin %> users list', '<%= config.bin %> users list --json']

  async run(): Promise<UserListResult> {
    const result = await new UsersService({layout: this.layout, runner: execaRunner}).list()
    if (!this.jsonEnabled()) {
      const rows = result.users.map((u) => [
        u.name,
        u.admin ? 'admin' : '-',
        u.allowed ? 'allowed' : 'not allowed',
        u.unixAccount === null ? '' : u.unixAccount ? 'account' : 'NO ACCOUNT',
        u.serverRunning === null ? '' : u.serverRunning ? 'server running' : 'no server',
        u.lastActivity ?? (result.hubRunning ? 'never' : ''),
      ])
      const widths = rows.reduce((w, row) => row.map((cell, i) => Math.max(w[i] ?? 0, cell.length)), [] as number[])
      for (const row of rows)
        this.log(
          row
            .map((cell, i) => cell.padEnd(widths[i]))
            .join('  ')
            .trimEnd(),
        )
      if (!result.hubRunning) this.log('hub not running: servers and last activity unknown (`hubctl start`)')
      if (result.users.some((u) => u.unixAccount === false))
        this.log('a user without a system account cannot log in: hubctl users add NAME creates it')
    }
    return result
  }
}
