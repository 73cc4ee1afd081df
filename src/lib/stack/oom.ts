import fs from 'node:fs/promises'

import {errnoCode} from '../errors.js'
import {OOM_SCORE_ADJ} from '../config/limits.js'
import type {Runner} from '../runner.js'

/**
 * The supervisor's own oom_score_adj, inherited by every program it starts (the proxies, the hub,
 * nginx): the OOM killer's last choice. Under systemd the unit's OOMScoreAdjust set it already;
 * without systemd the supervisor sets it. Lowering it needs root (CAP_SYS_RESOURCE): without, the
 * stack runs as before and says so. Users' servers raise their own (python/hubctl_hub/limits.py).
 */
export async function protectFromOomKiller(
  file = '/proc/self/oom_score_adj',
  score: number = OOM_SCORE_ADJ.hub,
): Promise<{action: 'set' | 'kept' | 'not-permitted'; score: number}> {
  const current = Number((await fs.readFile(file, 'utf8').catch(() => '0')).trim())
  if (Number.isInteger(current) && current <= score) return {action: 'kept', score: current}
  try {
    await fs.writeFile(file, `${score}\n`)
    return {action: 'set', score}
  } catch (error) {
    if (errnoCode(error) === 'EACCES' || errnoCode(error) === 'EPERM') return {action: 'not-permitted', score: current}
    throw error
  }
}

/**
 * A running service's processes given `score` now (a drop-in's OOMScoreAdjust applies only from its
 * next start): systemd's MainPID and its descendants (nginx's master and workers), read from
 * /proc/PID/task/PID/children. Returns how many were lowered; a process gone meanwhile is skipped.
 */
export async function protectRunningService(
  runner: Runner,
  unit: string,
  score: number = OOM_SCORE_ADJ.hub,
): Promise<number> {
  const shown = await runner.run('systemctl', ['show', '--property', 'MainPID', '--value', unit])
  const main = Number(shown.stdout.trim())
  if (shown.exitCode !== 0 || !Number.isInteger(main) || main <= 0) return 0
  let lowered = 0
  const queue = [main]
  for (let pid = queue.shift(); pid !== undefined; pid = queue.shift()) {
    const children = await fs.readFile(`/proc/${pid}/task/${pid}/children`, 'utf8').catch(() => '')
    queue.push(...children.split(/\s+/).filter(Boolean).map(Number))
    const done = await protectFromOomKiller(`/proc/${pid}/oom_score_adj`, score).catch(() => undefined)
    if (done?.action === 'set') lowered++
  }
  return lowered
}
