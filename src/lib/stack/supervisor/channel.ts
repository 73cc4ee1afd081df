import {messageOf} from '../../errors.js'
import type {SecretStore} from '../../files/secrets.js'
import type {Layout} from '../../config/layout.js'
import type {Settings} from '../../config/settings.js'
import {ChildName, ControlRequest, ControlResult, SupervisorState, readControlRequest, round} from '../state.js'
import type {SupervisedChild} from './child.js'
import type {SupervisorContext} from './context.js'
import type {ProxyHandover} from './proxyhandover.js'
import type {Readiness} from './readiness.js'

/*
 * The control channel: what is asked of a running supervisor (SIGHUP: restart the proxy and the
 * hub; a request of another hubctl command, control.json + SIGUSR2: a proxy-token handover or a
 * restart of the hub alone), one at a time in the order asked, each answered in state.json.
 */

/** What the control channel reads of the other parts (the orchestrator gives it). */
export interface ChannelParts {
  child(name: ChildName): SupervisedChild
  readonly children: ReadonlyMap<ChildName, SupervisedChild>
  readonly readiness: Readiness
  readonly handover: ProxyHandover
  readonly secrets: Pick<SecretStore, 'read'>
}

export class ControlChannel {
  private reloads = 0
  private lastReload: SupervisorState['lastReload'] = null
  private queue: Promise<void> = Promise.resolve()
  private lastControl: ControlResult | null = null

  constructor(
    private readonly ctx: SupervisorContext,
    private readonly parts: ChannelParts,
  ) {}

  /** Its part of state.json. */
  state(): Pick<SupervisorState, 'reloads' | 'lastReload' | 'lastControl'> {
    return {reloads: this.reloads, lastReload: this.lastReload, lastControl: this.lastControl}
  }

  /** SIGHUP restarts so far. */
  get restartsDone(): number {
    return this.reloads
  }

  /** Restart the proxy and the hub (SIGHUP), keeping user servers and their routes; nginx reloads. */
  restart(): Promise<void> {
    this.queue = this.queue.then(() => this.doRestart())
    return this.queue
  }

  /** A request of another hubctl command (control.json + SIGUSR2), queued behind restarts. */
  control(request: ControlRequest): Promise<void> {
    this.queue = this.queue.then(() => this.doControl(request))
    return this.queue
  }

  private async doRestart(): Promise<void> {
    if (this.ctx.stopping() || !this.ctx.ready()) return
    const began = this.ctx.clock.now()
    this.ctx.log('info', 'restart', 'restarting the proxy and the hub; user servers keep running')
    let ok = true
    let error: string | undefined
    try {
      await this.parts.handover.handoverProxy(await this.parts.secrets.read('proxyAuthToken'))
      if (this.ctx.stopping()) return
      const hub = this.parts.child('hub')
      await hub.stop()
      if (this.ctx.stopping()) return
      await hub.launch()
      ok = await this.parts.readiness.waitHubHealthy(this.ctx.timings.healthTimeoutMs, true)
      if (!ok) error = `the hub did not answer /hub/health within ${round(this.ctx.timings.healthTimeoutMs / 1000)}s`
      const nginx = this.parts.children.get('nginx')
      if (nginx?.signal('SIGHUP')) {
        this.ctx.log('info', 'reload', 'nginx reloads its configuration', 'nginx', nginx.pid)
      }
    } catch (caught) {
      ok = false
      error = messageOf(caught)
    }
    if (this.ctx.stopping()) return
    this.reloads++
    const seconds = round((this.ctx.clock.now() - began) / 1000)
    this.lastReload = {at: new Date().toISOString(), ok, seconds, ...(error ? {error} : {})}
    this.ctx.log(
      ok ? 'info' : 'error',
      'restarted',
      ok ? `proxy and hub restarted in ${seconds}s` : `restart failed: ${error}`,
    )
    await this.ctx.writeState()
  }

  private async doControl(request: ControlRequest): Promise<void> {
    if (this.ctx.stopping()) return
    const began = this.ctx.clock.now()
    let error: string | undefined
    if (!this.ctx.ready()) {
      error = 'the stack is not ready yet'
    } else {
      try {
        if (request.action === 'proxy-token')
          await this.parts.handover.handoverProxy(await this.parts.secrets.read('proxyAuthToken'))
        else await this.restartHub()
      } catch (caught) {
        error = messageOf(caught)
      }
    }
    if (this.ctx.stopping()) return
    const seconds = round((this.ctx.clock.now() - began) / 1000)
    this.lastControl = {
      id: request.id,
      action: request.action,
      ok: error === undefined,
      at: new Date().toISOString(),
      seconds,
      ...(error ? {error} : {}),
    }
    this.ctx.log(
      error ? 'error' : 'info',
      'control',
      error ? `${request.action} failed: ${error}` : `${request.action} done in ${seconds}s`,
    )
    await this.ctx.writeState()
  }

  /** Restart the hub alone (cookie secret, API token): user servers and the proxy keep running. */
  private async restartHub(): Promise<void> {
    const hub = this.parts.child('hub')
    this.ctx.log('info', 'restart', 'restarting the hub; the proxy and user servers keep running', 'hub', hub.pid)
    await hub.stop()
    if (this.ctx.stopping()) return
    await this.parts.handover.ensureProxyTokenCurrent()
    await hub.launch()
    if (!(await this.parts.readiness.waitHubHealthy(this.ctx.timings.healthTimeoutMs, true))) {
      if (this.parts.readiness.hubPortTaken)
        throw new Error(
          `the hub's port was taken while it restarted: ${this.parts.readiness.hubPortTaken}; see ${this.ctx.layout.hubLog}`,
        )
      throw new Error(
        `the hub did not answer /hub/health within ${round(this.ctx.timings.healthTimeoutMs / 1000)}s; see ${this.ctx.layout.hubLog}`,
      )
    }
  }
}

/** What the signals act on: the Supervisor. */
export interface Signalled {
  readonly layout: Layout
  readonly settings: Settings
  stop(reason?: string): void
  restart(): Promise<void>
  control(request: ControlRequest): Promise<void>
}

/** SIGTERM/SIGINT stop the supervisor, SIGHUP restarts proxy and hub. Returns a function that removes the handlers. */
export function installSignalHandlers(supervisor: Signalled): () => void {
  const onStop = (signal: NodeJS.Signals) =>
    supervisor.stop(
      `${signal} received: stopping the hub, then the proxy${supervisor.settings.nginxSupervised ? ', then nginx' : ''}`,
    )
  const onHup = () => {
    void supervisor.restart()
  }
  const onControl = () => {
    void readControlRequest(supervisor.layout).then((request) => request && supervisor.control(request))
  }
  process.on('SIGTERM', onStop)
  process.on('SIGINT', onStop)
  process.on('SIGHUP', onHup)
  process.on('SIGUSR2', onControl)
  return () => {
    process.off('SIGTERM', onStop)
    process.off('SIGINT', onStop)
    process.off('SIGHUP', onHup)
    process.off('SIGUSR2', onControl)
  }
}
