import {acquireLock} from '../files/lock.js'
import {cullingSummary} from '../config/culler.js'
import type {InitRequest} from './init-request.js'
import {type InitContext, type InitDeps, type InitResult, type InitStep, nextSteps, settingsOf} from './init/context.js'
import {planPreflight, preflight} from './init/preflight.js'
import {software} from './init/software.js'
import {secrets} from './init/secrets.js'
import {certificate} from './init/certificate.js'
import {render} from './init/render.js'
import {install} from './init/install.js'
import {accounts} from './init/accounts.js'
import {userServer} from './init/userserver.js'
import {slurmNodes} from './init/slurmnodes.js'
import {move} from './init/move.js'

export {type InitDeps, type InitResult, type Reporter, silentReporter} from './init/context.js'

export const INIT_STEPS = [
  'preflight',
  'software',
  'secrets',
  'certificate',
  'render',
  'install',
  'slurm nodes',
  'user server',
] as const

/** The steps that write, in order, each under init's lock (one module each in setup/init/). */
const LOCKED_STEPS: readonly InitStep[] = [software, secrets, certificate, render, install]
/**
 * After the lock is released (the users service takes it itself): the accounts, a running hub moved
 * to or from subdomains restarted, then a user's server starts.
 */
const LAST_STEPS: readonly InitStep[] = [accounts, move, slurmNodes, userServer]

/**
 * `hubctl init`: preflight → software → secrets → certificate → render and validate → install →
 * a user's server starts → summary. Preflight plans (and refuses everything that can be refused
 * before the first write); each later step is idempotent, so a second run changes no secret and
 * rewrites no unchanged file. --dry-run runs preflight only, and lists what each step would do.
 */
export class InitService {
  constructor(private readonly deps: InitDeps) {}

  async run(request: InitRequest): Promise<InitResult> {
    const abort = new AbortController()
    const ctx = await preflight(this.deps, request, abort.signal)
    if (ctx.dryRun) return this.dryRun(ctx)
    const lock = await acquireLock(ctx.layout.lockFile, 'init')
    try {
      for (const step of LOCKED_STEPS) await step.run(ctx)
    } finally {
      abort.abort()
      await lock.release()
    }
    const settings = settingsOf(ctx)
    ctx.result.next = nextSteps(ctx.layout, settings)
    ctx.result.culling = cullingSummary(settings)
    for (const step of LAST_STEPS) await step.run(ctx)
    return ctx.result
  }

  /** What --dry-run runs after preflight: each step's plan, which writes nothing. */
  private async dryRun(ctx: InitContext): Promise<InitResult> {
    await planPreflight(ctx)
    for (const step of [...LOCKED_STEPS, ...LAST_STEPS]) await step.plan?.(ctx)
    ctx.result.next = nextSteps(ctx.layout, settingsOf(ctx))
    return ctx.result
  }
}
