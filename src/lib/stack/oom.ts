import fs from 'node:fs/promises'

import {errnoCode} from '../errors.js'
import {OOM_SCORE_ADJ} from '../config/limits.js'

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
