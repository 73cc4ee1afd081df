import type {ShareRevokeResult} from '../lib/course/shares.js'
import type {ApplyResult} from '../lib/users/users.js'
import type {UserPlan} from '../lib/users/roster.js'

/** The plan of a `hubctl users` change, one line per user. */
export function planLines(plan: UserPlan): string[] {
  return [
    ...plan.add.map((e) => `  add     ${e.name}${e.admin ? ' (admin)' : ''}${e.email ? ` <${e.email}>` : ''}`),
    ...plan.change.map((c) => `  ${c.admin ? 'admin  ' : 'revoke '} ${c.name}${c.admin ? '' : ' (admin no more)'}`),
    ...plan.remove.map((name) => `  remove  ${name}`),
    ...plan.account.map((e) => `  account ${e.name} (a user already; the system account is made)`),
  ]
}

/** What a change did, a few lines. */
export function resultLines(result: ApplyResult): string[] {
  const {plan, accounts, hub} = result
  const lines: string[] = []
  const counts = `${plan.add.length} added, ${plan.change.length} changed, ${plan.remove.length} removed, ${plan.account.length} given an account, ${plan.keep.length} unchanged`
  if (!result.changed) {
    lines.push(`nothing to change (${plan.keep.length} unchanged)`)
    return lines
  }
  lines.push(`${counts} (${result.seconds}s)`)
  if (accounts.created.length > 0)
    lines.push(`system accounts created: ${accounts.created.join(', ')} (no password yet: hubctl users passwd NAME)`)
  if (accounts.reopened.length > 0)
    lines.push(`system accounts unlocked again: ${accounts.reopened.join(', ')} (no password yet)`)
  if (accounts.adopted.length > 0) lines.push(`system accounts adopted: ${accounts.adopted.join(', ')}`)
  if (accounts.locked.length > 0) lines.push(`system accounts locked: ${accounts.locked.join(', ')}`)
  if (accounts.left.length > 0) lines.push(`adopted accounts left as they are: ${accounts.left.join(', ')}`)
  for (const archive of result.archives) lines.push(`home archived: ${archive}`)
  if (hub.running)
    lines.push(
      `${hub.restarted ? 'the hub restarted (servers kept)' : 'the hub runs'}${hub.serversStopped.length > 0 ? `; servers stopped: ${hub.serversStopped.join(', ')}` : ''}${hub.deleted.length > 0 ? `; deleted from its database: ${hub.deleted.join(', ')}` : ''}`,
    )
  else {
    if (hub.deleted.length > 0) lines.push(`deleted from the hub's database: ${hub.deleted.join(', ')}`)
    lines.push('the hub is not running: it uses the new config when it starts')
  }
  return lines
}

/** What `users admin --revoke --share-writer` did to the shares and the running servers. */
export function revokeLines(shares: ShareRevokeResult[], serversStopped: string[]): string[] {
  return [
    ...shares.map(
      ({share, removed, stillHeld}) =>
        `share ${share.name}: ${removed.length > 0 ? `${removed.join(', ')} can no longer write ${share.path} (left group ${share.group})` : 'not a writer already, nothing changed'}${stillHeld.length > 0 ? `; ${stillHeld.join(', ')} had left its group, but a process started before still has it` : ''}`,
    ),
    ...(serversStopped.length > 0
      ? [
          `servers stopped (a running server keeps its groups until it restarts): ${serversStopped.join(', ')}; each starts again, without the group, at the next login`,
        ]
      : []),
  ]
}
