import {PortOwner, portAnswers} from '../listeners.js'
import {HubApiError, checkHealth, hubHealthUrl, proxyApiUrl} from '../hubapi.js'
import {preflightError, runtimeError} from '../../errors.js'
import {PORT_FLAGS, PORT_NAMES, Ports} from '../../config/settings.js'
import {ChildName, label, round} from '../state.js'
import {AdoptedStandby, adoptedHolds} from '../handover.js'
import type {SupervisedChild} from './child.js'
import type {SupervisorContext} from './context.js'

/*
 * Readiness: the ports free before the start, the proxy's API and the hub answering (the hub only
 * on a port its own process holds: a health answer or a token goes to no other program), and, once
 * ready, every port held by the program that should hold it, watched at each health tick.
 */

/** What readiness reads of the other parts (the orchestrator gives it). */
export interface ReadinessParts {
  child(name: ChildName): SupervisedChild
  /** The pid that should hold a port: a child's or the standby proxy's. */
  pidOf(name: ChildName | 'standby'): number | undefined
  /** Whether the standby proxy runs beside the proxy (its ports are then held too). */
  readonly standbyEnabled: boolean
  /** The standby a previous supervisor handed over (handover.ts), while adopted: its ports are not taken. */
  adoptedStandby(): AdoptedStandby | undefined
}

export class Readiness {
  /** Why the last health answer on the hub's port was not taken (another program holds it). */
  private hubPortProblem?: string
  private readonly portProblems = new Map<keyof Ports, string>()

  constructor(
    private readonly ctx: SupervisorContext,
    private readonly parts: ReadinessParts,
    private readonly ownsPort: (port: number, pid: number | undefined) => Promise<PortOwner>,
  ) {}

  /** Why the hub's port was last refused (another program answered there), if it was. */
  get hubPortTaken(): string | undefined {
    return this.hubPortProblem
  }

  /** Every port hubctl is about to listen on must be free: a program already there would answer in our place. */
  async checkPorts(): Promise<void> {
    const {ports} = this.ctx.settings
    // The ports of PORT_FLAGS hubctl's stack listens on: nginx's only when hubctl runs nginx; the loopback ones first.
    const nginxPorts: Array<keyof Ports> = ['http', 'https']
    const wanted = [
      ...PORT_NAMES.filter((name) => !nginxPorts.includes(name)),
      ...(this.ctx.settings.nginxSupervised && !this.ctx.layout.isSystem ? nginxPorts : []),
    ]
    for (const name of wanted) {
      const port = ports[name]
      const {flag, listener: what} = PORT_FLAGS[name]
      if (await portAnswers(port)) {
        // handover.ts: the adopted standby's own ports (its pid and start time recorded, and it holds them).
        const standbyPort = name === 'proxyStandby' || name === 'proxyStandbyApi'
        if (standbyPort && (await adoptedHolds(port, this.parts.adoptedStandby(), this.ownsPort))) continue
        throw preflightError(
          `port ${port}, where ${what} should listen, is already taken by another program`,
          `stop that program (\`ss -ltnp 'sport = :${port}'\` names it), or run \`hubctl init\` again with another ${flag}`,
        )
      }
    }
  }

  /** Wait until the proxy's API port answers (any status); false when the proxy is gone or we stop. */
  async waitForProxyApi(
    timeoutMs = 30_000,
    port = this.ctx.settings.ports.proxyApi,
    alive: () => boolean = () => this.parts.child('proxy').running,
  ): Promise<boolean> {
    const deadline = this.ctx.clock.now() + timeoutMs
    const url = `${proxyApiUrl({proxyApi: port})}/api/routes`
    while (!this.ctx.stopping() && this.ctx.clock.now() < deadline) {
      if (!alive()) return false
      try {
        const response = await this.ctx.fetch(url, {signal: AbortSignal.timeout(1000)})
        await response.body?.cancel()
        return true
      } catch {
        await this.ctx.clock.sleep(this.ctx.timings.pollMs, this.ctx.shutdown)
      }
    }
    return false
  }

  /** Poll /hub/health; with `sameProcess`, give up when the hub that runs now exits (its restart waits on its own). */
  async waitHubHealthy(timeoutMs: number, sameProcess = false): Promise<boolean> {
    const hub = this.parts.child('hub')
    const proc = hub.process
    const began = this.ctx.clock.now()
    const deadline = began + timeoutMs
    while (!this.ctx.stopping() && this.ctx.clock.now() < deadline) {
      if (sameProcess && hub.process !== proc) return false
      if (hub.running && (await this.hubAnswers())) {
        hub.setHealthy(true)
        this.ctx.log(
          'info',
          'healthy',
          `the hub answers /hub/health (${round((this.ctx.clock.now() - began) / 1000)}s after it started)`,
          'hub',
          hub.pid,
        )
        await this.ctx.writeState()
        return true
      }
      await this.ctx.clock.sleep(this.ctx.timings.pollMs, this.ctx.shutdown)
    }
    return false
  }

  /**
   * /hub/health answers 200 on the hub's port, and what answers is the hub hubctl started: a
   * program that took the port while the hub restarted is never taken for it.
   */
  async hubAnswers(): Promise<boolean> {
    if (!(await checkHealth(hubHealthUrl(this.ctx.settings), {fetch: this.ctx.fetch}))) return false
    const hub = this.parts.child('hub')
    const owner = await this.ownsPort(this.ctx.settings.ports.hub, hub.pid)
    if (owner.owned) {
      this.hubPortProblem = undefined
      return true
    }
    if (owner.problem !== this.hubPortProblem)
      this.ctx.log('error', 'port', `a health answer on the hub's port was not taken: ${owner.problem}`, 'hub', hub.pid)
    this.hubPortProblem = owner.problem
    return false
  }

  /** Throws unless `name` (the process hubctl started) is what listens on `port`: before a token is sent there. */
  async verifyOwnPort(name: ChildName | 'standby', port: number, what: string): Promise<void> {
    const owner = await this.ownsPort(port, this.parts.pidOf(name))
    if (!owner.owned)
      throw new HubApiError(`hubctl did not send ${what}: ${owner.problem}`, undefined, {
        fix: `stop the program that holds port ${port} (\`ss -ltnp 'sport = :${port}'\` names it)`,
      })
  }

  /** The ports hubctl's programs listen on, each with the one that should hold it. */
  private heldPorts(): Array<[ChildName | 'standby', keyof Ports]> {
    const wanted: Array<[ChildName | 'standby', keyof Ports]> = [
      ['proxy', 'proxy'],
      ['proxy', 'proxyApi'],
      ['hub', 'hub'],
    ]
    if (this.parts.standbyEnabled) wanted.push(['standby', 'proxyStandby'], ['standby', 'proxyStandbyApi'])
    return wanted
  }

  /** Once ready: every port hubctl's programs listen on is theirs (another program may have been quicker). */
  async verifyPortsHeld(): Promise<void> {
    for (const [name, key] of this.heldPorts()) {
      const owner = await this.ownsPort(this.ctx.settings.ports[key], this.parts.pidOf(name))
      if (!owner.owned)
        throw preflightError(
          `${owner.problem}`,
          `stop that program, or run \`hubctl init\` again with another ${PORT_FLAGS[key].flag}`,
        )
    }
  }

  /**
   * At each health tick: a port that another program took while its owner restarted (a crash) is
   * said in the log, once, with who holds it; hubctl sends no token there and takes no health
   * answer from it, but cannot make it go away.
   */
  async watchPorts(): Promise<void> {
    for (const [name, key] of this.heldPorts()) {
      // Also while its owner is down between restarts: a listener there then is another program's.
      const owner = await this.ownsPort(this.ctx.settings.ports[key], this.parts.pidOf(name))
      const problem = owner.owned ? undefined : owner.problem
      if (problem && problem !== this.portProblems.get(key) && !problem.startsWith('nothing listens'))
        this.ctx.log(
          'error',
          'port',
          `${problem}: nginx or hubctl would send it what is meant for ${name === 'standby' ? 'the standby proxy' : label(name)}; stop that program`,
          name === 'standby' ? 'proxy' : name,
        )
      if (problem) this.portProblems.set(key, problem)
      else this.portProblems.delete(key)
    }
  }

  /** The hub healthy on its own port and through the proxy. */
  async waitReady(): Promise<void> {
    const deadline = this.ctx.clock.now() + this.ctx.timings.healthTimeoutMs
    if (!(await this.waitHubHealthy(this.ctx.timings.healthTimeoutMs))) {
      if (this.ctx.stopping()) return
      throw runtimeError(
        `the hub did not answer /hub/health within ${round(this.ctx.timings.healthTimeoutMs / 1000)}s`,
        `read ${this.ctx.layout.hubLog}, fix the cause, then run \`hubctl start\` again`,
      )
    }
    const proxyDeadline = Math.min(deadline, this.ctx.clock.now() + 30_000)
    while (!this.ctx.stopping() && this.ctx.clock.now() < proxyDeadline) {
      if (await checkHealth(hubHealthUrl(this.ctx.settings, 'proxy'), {fetch: this.ctx.fetch}))
        return this.verifyPortsHeld()
      await this.ctx.clock.sleep(this.ctx.timings.pollMs, this.ctx.shutdown)
    }
    if (!this.ctx.stopping())
      throw runtimeError(
        `the hub does not answer through the proxy on port ${this.ctx.settings.ports.proxy}`,
        `read ${this.ctx.layout.proxyLog}, fix the cause, then run \`hubctl start\` again`,
      )
  }

  /** At a health tick: whether the hub (unless it is restarting) still answers; true when that changed. */
  async checkHub(): Promise<boolean> {
    const hub = this.parts.child('hub')
    if (!hub.running || hub.restartPending) return false
    const healthy = await this.hubAnswers()
    if (healthy === hub.isHealthy || this.ctx.stopping()) return false
    hub.setHealthy(healthy)
    this.ctx.log(
      healthy ? 'info' : 'warn',
      'health',
      healthy ? 'the hub answers /hub/health again' : 'the hub does not answer /hub/health',
      'hub',
      hub.pid,
    )
    return true
  }
}
