import fs from 'node:fs/promises'
import {createRequire} from 'node:module'

import {exists, readIfExists} from '../files/atomic.js'
import {CertStore} from '../tls/certstore.js'
import {shouldRenew} from '../tls/policy.js'
import {readRenewalState} from '../tls/renewal-state.js'
import {HubctlError, messageOf} from '../errors.js'
import {checkBrowserPath} from '../stack/browserpath.js'
import {verifyRecordedListener} from '../stack/listeners.js'
import {
  defaultUrlFor,
  detectJupyterHub,
  detectUserInterface,
  interpreterProblem,
  validateHubConfig,
  vulnerabilityWarning,
} from '../config/jupyterhub.js'
import {Layout} from '../config/layout.js'
import {rebuildFix} from '../config/dbschema.js'
import {isWildcard} from '../config/subdomains.js'
import {cullingSummary, describeCulling, importsIdleCuller} from '../config/culler.js'
import {OAUTH_PROVIDER_INFO, isOAuthProvider, oauthCallbackUrl, oauthEndpoints} from '../config/oauth.js'
import {Nginx, detectNginx} from '../config/nginx.js'
import {checkDns, portInUse} from './preflight.js'
import {Runner} from '../runner.js'
import {SecretStore} from '../files/secrets.js'
import {PORT_FLAGS, Ports, Settings, SettingsStore} from '../config/settings.js'
import {readState, runningSupervisor} from '../stack/state.js'
import {checkHealth, hubHealthUrl, proxyApiUrl} from '../stack/hubapi.js'
import {assertTrusted, assertTrustedFile, trustProblems, trustedPaths} from './trust.js'
import {serverHomeProblems, serverHomeUsers} from './homes.js'
import {UnixAccounts, UsersRecordStore} from '../users/accounts.js'
import {type ServerTrial, checkUserServer} from './userserver.js'
import {checkPartition, missingSlurmPrograms, slurmPartitions} from './slurm.js'
import {batchspawnerWrapper, parseMemory} from '../config/slurm.js'
import {
  CHECK_SUBMIT_TIMEOUT,
  PATH_CHECK_USER,
  type SlurmCheckOutcome,
  checkNodePaths,
  checkSubmit,
} from './slurmcheck.js'
import {type Clock, systemClock} from '../stack/clock.js'
import {realTrial} from './userserver-trial.js'
import {memoryEnforcement} from './cgroups.js'
import {OOM_SCORE_ADJ, describeLimits, formatSize} from '../config/limits.js'
import {readServerProcesses} from '../stack/listeners.js'
import {processAlive} from '../processes.js'

export type CheckStatus = 'pass' | 'warn' | 'fail'

/** A Slurm check's outcome as a check result (the job id is in its message). */
const withoutJob = ({status, message, fix}: SlurmCheckOutcome): Omit<CheckResult, 'check'> => ({
  status,
  message,
  ...(fix ? {fix} : {}),
})

export interface CheckResult {
  check: string
  status: CheckStatus
  message: string
  /** The exact thing to do; present unless the check passed. */
  fix?: string
}

export interface DoctorDeps {
  layout: Layout
  runner: Runner
  now?: () => Date
  lookup?: (name: string) => Promise<string[]>
  /** HTTP requests to the OAuth provider (tests pass a fake; default: fetch, 10 s per request). */
  fetch?: typeof fetch
  /** Starts a user's server for the `user server` check (tests pass a fake; default: the real one). */
  trial?: ServerTrial
  /** false (--no-server-check): the `user server` check starts no server and warns that it did not. */
  serverCheck?: boolean
  /** --check-submit USER (--spawner slurm): a test job submitted as USER, waited for up to `timeoutSeconds`. */
  checkSubmit?: {user: string; timeoutSeconds?: number}
  /** The --check-submit job's waits (tests pass a fake; default: the system's). */
  clock?: Clock
}

/**
 * `hubctl doctor`: one check per concern, each pass, warn or fail with the exact fix. A check that
 * throws is itself reported as a failure, so one broken part never hides the others.
 */
export class Doctor {
  private readonly now: () => Date
  private settings?: Settings
  /** Each program is asked its version once (JupyterHub's answer costs a Python start-up). */
  private jupyterhub?: ReturnType<typeof detectJupyterHub>
  private nginx?: ReturnType<typeof detectNginx>
  /** The loaded config, once (the user-server check starts what its spawner would). */
  private hubConfig?: ReturnType<typeof validateHubConfig>

  constructor(private readonly deps: DoctorDeps) {
    this.now = deps.now ?? (() => new Date())
  }

  async run(): Promise<{ok: boolean; checks: CheckResult[]}> {
    const checks: CheckResult[] = []
    const settingsCheck = await this.guard('settings', () => this.checkSettings())
    checks.push(...[settingsCheck].flat())
    const all: Array<[string, () => Promise<CheckResult | CheckResult[]>]> = [
      ['secrets', () => this.checkSecrets()],
      ['ownership', () => this.checkOwnership()],
      ['server homes', () => this.checkServerHomes()],
      ['certificate', () => this.checkCertificate()],
      ['renewal schedule', () => this.checkSchedule()],
      ['python', () => this.checkPython()],
      ['versions', () => this.checkVersions()],
      ['jupyterhub config', () => this.checkHubConfig()],
      ['user interface', () => this.checkUserInterface()],
      ['idle culling', () => this.checkCulling()],
      ['limits', () => this.checkLimits()],
      ['user accounts', () => this.checkUserAccounts()],
      ['user server', () => this.checkUserServer()],
      ['nginx config', () => this.checkNginx()],
      ['dns', () => this.checkDns()],
      ['ports', () => this.checkPorts()],
      ['processes', () => this.checkProcesses()],
      ['browser path', () => this.checkBrowserPath()],
      ['oauth', () => this.checkOAuth()],
      ['slurm', () => this.checkSlurm()],
      ['slurm jobs', () => this.checkSlurmJobs()],
    ]
    for (const [name, fn] of all) {
      if (!this.settings && name !== 'secrets') continue
      const result = await this.guard(name, fn)
      checks.push(...(Array.isArray(result) ? result : [result]))
    }
    return {ok: checks.every((c) => c.status !== 'fail'), checks}
  }

  private async guard(
    check: string,
    fn: () => Promise<CheckResult | CheckResult[]>,
  ): Promise<CheckResult | CheckResult[]> {
    try {
      return await fn()
    } catch (error) {
      const hubctl = error instanceof HubctlError ? error : undefined
      return {
        check,
        status: 'fail',
        message: hubctl?.message ?? String(messageOf(error)),
        fix: hubctl?.fix ?? 'run the command again with DEBUG=hubctl* and report it',
      }
    }
  }

  /** JupyterHub is run (for its version, to load the config) only when nothing it loads is someone else's. */
  private detectHub(): ReturnType<typeof detectJupyterHub> {
    const executable = this.settings!.executables.jupyterhub
    this.jupyterhub ??= assertTrusted(this.deps.layout, executable).then(() =>
      detectJupyterHub(this.deps.runner, executable),
    )
    return this.jupyterhub
  }

  private detectNginx(): ReturnType<typeof detectNginx> {
    this.nginx ??= detectNginx(this.deps.runner, this.settings!.executables.nginx)
    return this.nginx
  }

  async checkSettings(): Promise<CheckResult> {
    this.settings = await new SettingsStore(this.deps.layout).load()
    return {
      check: 'settings',
      status: 'pass',
      message: `${this.deps.layout.settings}: ${this.settings.domains.join(', ')}, TLS ${this.settings.tls.mode}`,
    }
  }

  async checkSecrets(): Promise<CheckResult[]> {
    const problems = await new SecretStore(this.deps.layout).check()
    if (problems.length === 0)
      return [{check: 'secrets', status: 'pass', message: 'all present, well-formed, 0600 in a 0700 directory'}]
    return problems.map((p) => ({check: 'secrets', status: 'fail' as const, message: p.problem, fix: p.fix}))
  }

  /** What root loads code or config from (the prefix and above, etc/jupyterhub, the .d folder, srv/jupyterhub, JupyterHub): root's, writable by root only. */
  async checkOwnership(): Promise<CheckResult[]> {
    if ((process.getuid?.() ?? 0) !== 0)
      return [{check: 'ownership', status: 'pass', message: 'not running as root: the files are your own'}]
    const problems = await trustProblems(await trustedPaths(this.deps.layout, this.settings!.executables.jupyterhub))
    if (problems.length === 0)
      return [
        {
          check: 'ownership',
          status: 'pass',
          message: 'everything root loads belongs to root and only root can change it',
        },
      ]
    return problems.map((p) => ({check: 'ownership', status: 'fail' as const, message: p.problem, fix: p.fix}))
  }

  /** --spawner simple (servers run as the hub's user): each home is hubctl's, or not made yet (the spawn makes it). */
  async checkServerHomes(): Promise<CheckResult[]> {
    const {layout} = this.deps
    const users = serverHomeUsers(this.settings!)
    if (users.length === 0)
      return [{check: 'server homes', status: 'pass', message: "--spawner local: each server runs in its user's home"}]
    const problems = await serverHomeProblems(layout, users)
    if (problems.length === 0)
      return [{check: 'server homes', status: 'pass', message: `in ${layout.serverHomesDir}: 0700, hubctl's`}]
    return problems.map((p) => ({check: 'server homes', status: 'fail' as const, message: p.problem, fix: p.fix}))
  }

  async checkCertificate(): Promise<CheckResult> {
    const info = await new CertStore(this.deps.layout).currentInfo()
    if (!info)
      return {
        check: 'certificate',
        status: 'fail',
        message: 'no certificate is installed',
        fix: 'run `hubctl cert obtain` (or `hubctl init` again)',
      }
    const notBefore = Date.parse(info.notBefore)
    const notAfter = Date.parse(info.notAfter)
    const now = this.now().getTime()
    const daysLeft = Math.floor((notAfter - now) / 86_400_000)
    const missing = this.settings!.domains.filter((d) => !info.domains.includes(d))
    if (now >= notAfter)
      return {
        check: 'certificate',
        status: 'fail',
        message: `the certificate expired on ${info.notAfter}`,
        fix: 'run `hubctl cert renew --force`',
      }
    if (missing.length > 0)
      return {
        check: 'certificate',
        status: 'fail',
        message: `the certificate does not cover ${missing.join(', ')}`,
        fix: 'run `hubctl cert obtain` to get one for every domain',
      }
    // The one renewal rule (tls/renewal.ts): a third of the lifetime left, half for short-lived ones.
    const renewAfter = shouldRenew({
      notBefore: new Date(notBefore),
      notAfter: new Date(notAfter),
      now: this.now(),
    }).renewAfter.getTime()
    // renewal.json through its one reader: the last attempt's error, cleared by a success.
    const {lastError} = await readRenewalState(this.deps.layout)
    if (now >= renewAfter && lastError)
      return {
        check: 'certificate',
        status: 'fail',
        message: `${daysLeft} days left, past its renewal time, and the last renewal failed: ${lastError}`,
        fix: 'fix the cause, then run `hubctl cert renew`',
      }
    if (now >= renewAfter)
      return {
        check: 'certificate',
        status: 'warn',
        message: `${daysLeft} days left: due for renewal`,
        fix: 'run `hubctl cert renew` (the schedule will, too)',
      }
    if (info.selfSigned && this.settings!.tls.mode !== 'self-signed')
      return {
        check: 'certificate',
        status: 'warn',
        message: 'the certificate is self-signed: browsers will warn',
        fix: 'run `hubctl cert obtain`',
      }
    return {
      check: 'certificate',
      status: 'pass',
      message: `${daysLeft} days left (until ${info.notAfter}), issued by ${info.issuer.split('\n').join(', ')}`,
    }
  }

  async checkSchedule(): Promise<CheckResult> {
    const {layout} = this.deps
    if (this.settings!.tls.mode !== 'letsencrypt')
      return {check: 'renewal schedule', status: 'pass', message: `not needed with --tls ${this.settings!.tls.mode}`}
    if ((await exists(layout.renewTimer)) || (await exists(layout.cronFile)))
      return {check: 'renewal schedule', status: 'pass', message: 'installed'}
    return {
      check: 'renewal schedule',
      status: 'fail',
      message: 'no renewal timer or cron job is installed: the certificate will expire',
      fix: 'run `hubctl init` again without --no-schedule',
    }
  }

  /**
   * The Python of the hub's environment, and of the users' when the hub has one, exists and runs:
   * after an OS upgrade (python3.11 → 3.12) a virtualenv's interpreter is gone and nothing in it starts.
   */
  async checkPython(): Promise<CheckResult[]> {
    const {layout, runner} = this.deps
    const settings = this.settings!
    const envs: Array<[string, string]> = [["the hub's environment", settings.executables.jupyterhub]]
    if (settings.usersEnv && (await exists(layout.usersEnvCurrentSingleuser)))
      envs.push(["the users' environment", layout.usersEnvCurrentSingleuser])
    const results: CheckResult[] = []
    for (const [what, executable] of envs) {
      const problem = await interpreterProblem(runner, executable)
      results.push(
        problem
          ? {check: 'python', status: 'fail', message: `${what}: ${problem}`, fix: rebuildFix(layout)}
          : {check: 'python', status: 'pass', message: `the Python of ${what} runs (${executable})`},
      )
    }
    return results
  }

  async checkVersions(): Promise<CheckResult[]> {
    const settings = this.settings!
    const results: CheckResult[] = []
    const nodeMajor = Number(process.versions.node.split('.')[0])
    results.push(
      nodeMajor >= 20
        ? {check: 'node', status: 'pass', message: `Node ${process.versions.node}`}
        : {
            check: 'node',
            status: 'fail',
            message: `Node ${process.versions.node} is older than 20`,
            fix: 'install Node 20 or later',
          },
    )
    const hub = await this.detectHub()
    results.push(
      hub.version === settings.jupyterhubVersion
        ? {check: 'jupyterhub', status: 'pass', message: `JupyterHub ${hub.version} at ${hub.executable}`}
        : {
            check: 'jupyterhub',
            status: 'warn',
            message: `JupyterHub is now ${hub.version}, the config was rendered for ${settings.jupyterhubVersion}`,
            fix: 'run `hubctl init` again to render the config this version needs',
          },
    )
    const vulnerable = vulnerabilityWarning(hub)
    if (vulnerable)
      results.push({
        check: 'jupyterhub security',
        status: 'warn',
        message: vulnerable,
        fix: 'run `hubctl init` again without --jupyterhub: it installs the JupyterHub and JupyterLab hubctl is tested with',
      })
    const nginx = await this.detectNginx()
    results.push({check: 'nginx', status: 'pass', message: `nginx ${nginx.version}`})
    const require = createRequire(import.meta.url)
    const proxy = JSON.parse(await fs.readFile(require.resolve('configurable-http-proxy/package.json'), 'utf8')) as {
      version: string
    }
    results.push({
      check: 'configurable-http-proxy',
      status: 'pass',
      message: `configurable-http-proxy ${proxy.version}`,
    })
    return results
  }

  private loadHubConfig(): ReturnType<typeof validateHubConfig> {
    this.hubConfig ??= this.detectHub().then((hub) =>
      validateHubConfig(this.deps.runner, hub, this.deps.layout.hubConfig),
    )
    return this.hubConfig
  }

  async checkHubConfig(): Promise<CheckResult> {
    const hub = await this.detectHub()
    await this.loadHubConfig()
    return {
      check: 'jupyterhub config',
      status: 'pass',
      message: `JupyterHub ${hub.version} loads ${this.deps.layout.hubConfig}`,
    }
  }

  /** Who stops idle servers: jupyterhub-idle-culler with a Python that has it, in the rendered config. */
  /**
   * Per-user limits as hubctl.json keeps them; with a memory limit, for each running user's server,
   * whether the kernel enforces it, read from the server's cgroup (systemd takes MemoryMax= whatever
   * the kernel can do with it): a limit the kernel does not apply is a failure, with the reason.
   */
  async checkLimits(): Promise<CheckResult[]> {
    const limits = this.settings!.limits
    if (!limits)
      return [
        {
          check: 'limits',
          status: 'pass',
          message: `none per user (init --mem-limit, --cpu-limit, --tasks-limit, where systemd is PID 1); users' servers and kernels are the OOM killer's first choice (oom_score_adj +${OOM_SCORE_ADJ.server})`,
        },
      ]
    const results: CheckResult[] = [{check: 'limits', status: 'pass', message: describeLimits(limits)}]
    if (limits.memoryBytes === undefined) return results
    const wanted = formatSize(limits.memoryBytes)
    const running: Array<[string, number]> = []
    for (const [key, record] of Object.entries(await readServerProcesses(this.deps.layout))) {
      if (await processAlive(record?.pid, record?.startTime ?? null)) running.push([key, record.pid])
    }
    if (running.length === 0)
      results.push({
        check: 'memory limit',
        status: 'warn',
        message: `no user's server runs now: whether the kernel enforces the ${wanted} memory limit is read from a running server's cgroup`,
        fix: "start a user's server (log in), then run `hubctl doctor` again",
      })
    for (const [key, pid] of running) {
      const found = await memoryEnforcement(pid)
      if (!found.enforced)
        results.push({
          check: 'memory limit',
          status: 'fail',
          message: `${key} (pid ${pid}): the kernel does not enforce the ${wanted} memory limit: ${found.reason}`,
          fix: "boot with cgroup v2 and its memory controller (systemd.unified_cgroup_hierarchy=1 on the kernel command line; in a container, have the host delegate the memory controller to it), then restart the servers; until then one server can take all the memory (its processes are still the OOM killer's first choice)",
        })
      else
        results.push({
          check: 'memory limit',
          status: found.limitBytes! > limits.memoryBytes ? 'warn' : 'pass',
          message: `${key} (pid ${pid}): enforced by the kernel, ${formatSize(found.limitBytes!)} (cgroup v${found.version} ${found.cgroup})`,
          ...(found.limitBytes! > limits.memoryBytes
            ? {fix: `stop and start the server: it was started before the limit became ${wanted}`}
            : {}),
        })
    }
    return results
  }

  async checkCulling(): Promise<CheckResult> {
    const settings = this.settings!
    const summary = cullingSummary(settings)
    const message = describeCulling(summary)
    const again = 'run `hubctl init` again with your flags (--cull-idle DURATION, default 1h; --cull-idle off for none)'
    if (summary.unset) return {check: 'idle culling', status: 'warn', message, fix: again}
    if (!summary.on) return {check: 'idle culling', status: 'pass', message}
    if (summary.by === 'hubctl')
      return {
        check: 'idle culling',
        status: 'warn',
        message: `${message}: no Python with jupyterhub-idle-culler was found beside ${settings.executables.jupyterhub}`,
        fix: `install jupyterhub-idle-culler for that JupyterHub's Python (or run init once without --jupyterhub), then ${again}`,
      }
    const python = summary.python!
    await assertTrustedFile(python, 'jupyterhub-idle-culler was not checked')
    if (!(await importsIdleCuller(this.deps.runner, python)))
      return {
        check: 'idle culling',
        status: 'fail',
        message: `${python} cannot import jupyterhub_idle_culler: the hub starts the culler again and again and no idle server is stopped`,
        fix: `install jupyterhub-idle-culler for ${python}, or ${again}`,
      }
    const config = (await readIfExists(this.deps.layout.hubConfig)) ?? ''
    if (!config.includes('"jupyterhub_idle_culler"'))
      return {
        check: 'idle culling',
        status: 'warn',
        message: `hubctl.json says jupyterhub-idle-culler, but ${this.deps.layout.hubConfig} does not run it`,
        fix: again,
      }
    return {check: 'idle culling', status: 'pass', message: `${message} (${python})`}
  }

  /** The page users land on exists in their servers: /lab needs JupyterLab, /tree the classic notebook. */
  async checkUserInterface(): Promise<CheckResult> {
    const hub = await this.detectHub()
    const ui = await detectUserInterface(this.deps.runner, hub)
    const config = (await readIfExists(this.deps.layout.hubConfig)) ?? ''
    const configured = /^c\.Spawner\.default_url\s*=\s*"([^"]*)"/m.exec(config)?.[1]
    const fix = 'run `hubctl init` again (without --jupyterhub it installs JupyterHub with JupyterLab)'
    if (ui === 'none')
      return {
        check: 'user interface',
        status: 'fail',
        message: `the user servers' Python (${hub.singleuser}) has neither JupyterLab nor the classic notebook`,
        fix,
      }
    if (configured !== undefined && configured !== defaultUrlFor(ui)) {
      return {
        check: 'user interface',
        status: 'fail',
        message: `users are sent to ${configured}, which their servers do not have (${ui === 'lab' ? 'JupyterLab' : 'only the classic notebook'} is installed: ${defaultUrlFor(ui)})`,
        fix,
      }
    }
    return {
      check: 'user interface',
      status: 'pass',
      message: ui === 'lab' ? 'JupyterLab at /lab' : 'the classic notebook at /tree (no JupyterLab)',
    }
  }

  /** With PAM, every admin and allowed user needs a system account to log in with: one result per user who has none. */
  async checkUserAccounts(): Promise<CheckResult[]> {
    const settings = this.settings!
    if (settings.authenticator !== 'pam')
      return [
        {
          check: 'user accounts',
          status: 'pass',
          message: `authenticator ${settings.authenticator}: no system accounts needed`,
        },
      ]
    const names = [...new Set([...settings.admins, ...settings.allowedUsers])]
    const accounts = await new UnixAccounts(this.deps.runner).lookup(names)
    const record = await new UsersRecordStore(this.deps.layout).load()
    const missing = names.filter((name) => !accounts.has(name) || record.accounts[name]?.removed)
    const prefix = this.deps.layout.isSystem ? '' : ` --prefix ${this.deps.layout.prefix}`
    if (missing.length === 0)
      return [
        {check: 'user accounts', status: 'pass', message: `all ${names.length} users have a system account (PAM)`},
      ]
    return missing.map((name) => ({
      check: 'user accounts',
      status: 'fail' as const,
      message: `${name} is ${settings.admins.includes(name) ? 'an admin' : 'allowed'} but has no system account: with PAM nobody can log in as ${name}`,
      fix: `hubctl users add ${name}${prefix}, then hubctl users passwd ${name}${prefix}`,
    }))
  }

  /**
   * A user's server starts: the spawner's command, arguments and environment from the loaded
   * config, started as an admin or allowed user with an account (else a uid made for the check),
   * or as the hub's user for SimpleLocalProcessSpawner; stopped as soon as it answers (userserver.ts).
   */
  async checkUserServer(): Promise<CheckResult> {
    if (this.deps.serverCheck === false)
      return {
        check: 'user server',
        status: 'warn',
        message: 'not checked (--no-server-check): no user server was started',
        fix: `run \`hubctl doctor${this.deps.layout.isSystem ? '' : ` --prefix ${this.deps.layout.prefix}`}\` without --no-server-check`,
      }
    const hub = await this.detectHub()
    const {spawner, spawnerError} = await this.loadHubConfig()
    const result = await checkUserServer(
      {layout: this.deps.layout, runner: this.deps.runner, trial: this.deps.trial ?? realTrial},
      this.settings!,
      spawner,
      hub.version,
      spawnerError,
    )
    return {check: 'user server', ...result}
  }

  /**
   * --authenticator github|google|oauth: the client secret is 0600 and well-formed, and each of the
   * provider's endpoints answers as an OAuth endpoint does to a request without credentials: the
   * authorization URL with a page or a redirect (to its login), the token URL with an OAuth error
   * for a made-up code (no secret is sent), the user data URL with 401/403 for no token. A refused
   * connection, a 404 or a 5xx is named with the flag to correct.
   */
  /** --spawner slurm: Slurm's programs, munge, sinfo answering, the partition up, the memory and CPUs fitting a node. */
  async checkSlurm(): Promise<CheckResult[]> {
    const slurm = this.settings!.slurm
    if (this.settings!.spawner !== 'slurm' || !slurm) return []
    const {runner} = this.deps
    const missing = await missingSlurmPrograms()
    if (missing.length > 0)
      return [
        {
          check: 'slurm',
          status: 'fail',
          message: `${missing.join(', ')} not found: the hub cannot submit, follow or cancel its servers' jobs`,
          fix: "install Slurm's client and sudo (apt-get install slurm-client sudo), with the cluster's slurm.conf and munge key",
        },
      ]
    const results: CheckResult[] = []
    const munge = await runner.run('sh', ['-c', 'munge -n | unmunge'], {cwd: '/', timeoutMs: 15_000})
    results.push(
      munge.exitCode === 0
        ? {check: 'munge', status: 'pass', message: 'munge -n | unmunge: a credential made and read back'}
        : {
            check: 'munge',
            status: 'fail',
            message: `munge -n | unmunge failed: ${(munge.stderr || munge.stdout).trim().split('\n').pop() ?? ''}`,
            fix: "start munged (it needs /run/munge, and the cluster's /etc/munge/munge.key, 0400, owned by munge)",
          },
    )
    try {
      const {partition, warnings} = checkPartition(await slurmPartitions(runner), {
        partition: slurm.partition,
        memory: slurm.memory,
        memoryMb: parseMemory(slurm.memory).megabytes,
        cpus: slurm.cpus,
      })
      results.push(
        warnings.length > 0
          ? {
              check: 'slurm partition',
              status: 'warn',
              message: warnings.join('; '),
              fix: `bring partition ${partition.name} up, or run init again with another --slurm-partition`,
            }
          : {
              check: 'slurm partition',
              status: 'pass',
              message: `${partition.name} is up, ${partition.nodes.length} node(s); ${slurm.memory} and ${slurm.cpus} CPU(s) fit one`,
            },
      )
    } catch (error) {
      results.push({
        check: 'slurm partition',
        status: 'fail',
        message: messageOf(error),
        fix: error instanceof HubctlError && error.fix ? error.fix : 'check the cluster with sinfo',
      })
    }
    return results
  }

  /**
   * --spawner slurm, once sinfo answered: the jobs' programs on a node (srun, as --check-submit's
   * user or nobody), and with --check-submit USER a test job submitted as USER (setup/slurmcheck.ts).
   */
  async checkSlurmJobs(): Promise<CheckResult[]> {
    const {runner, checkSubmit: submit} = this.deps
    const slurm = this.settings!.slurm
    if (this.settings!.spawner !== 'slurm' || !slurm)
      return submit
        ? [
            {
              check: 'slurm submit',
              status: 'fail',
              message: `--check-submit: this hub's servers are not Slurm jobs (its spawner is ${this.settings!.spawner})`,
              fix: 'drop --check-submit, or run init --spawner slurm first',
            },
          ]
        : []
    // Without Slurm's programs the slurm check has said so.
    if ((await missingSlurmPrograms()).length > 0) return []
    const singleuser = this.settings!.executables.singleuser
    const user = submit?.user ?? PATH_CHECK_USER
    const paths = await checkNodePaths(runner, slurm, user, [singleuser, batchspawnerWrapper(singleuser)])
    const results: CheckResult[] = [{check: 'slurm node paths', ...withoutJob(paths)}]
    if (submit) {
      const outcome = await checkSubmit(runner, this.deps.clock ?? systemClock, slurm, submit.user, {
        timeoutSeconds: submit.timeoutSeconds ?? CHECK_SUBMIT_TIMEOUT,
      })
      results.push({check: 'slurm submit', ...withoutJob(outcome)})
    }
    return results
  }

  async checkOAuth(): Promise<CheckResult[]> {
    const settings = this.settings!
    const provider = settings.authenticator
    if (!isOAuthProvider(provider)) return []
    const results: CheckResult[] = []
    const problems = await new SecretStore(this.deps.layout).checkOAuthClientSecret()
    results.push(
      ...(problems.length === 0
        ? [
            {
              check: 'oauth secret',
              status: 'pass' as const,
              message: `${this.deps.layout.oauthClientSecret}: 0600, one line`,
            },
          ]
        : problems.map((p) => ({check: 'oauth secret', status: 'fail' as const, message: p.problem, fix: p.fix}))),
    )
    const oauth = settings.oauth!
    const endpoints = oauthEndpoints(provider, oauth)
    const label = OAUTH_PROVIDER_INFO[provider].label
    const callback = oauthCallbackUrl(settings)
    const http = this.deps.fetch ?? fetch
    const ask = async (url: string, init: RequestInit = {}): Promise<number | string> => {
      try {
        const response = await http(url, {redirect: 'manual', signal: AbortSignal.timeout(10_000), ...init})
        await response.arrayBuffer().catch(() => undefined)
        return response.status
      } catch (error) {
        const cause = (error as {cause?: {code?: string; message?: string}}).cause
        return cause?.code ?? cause?.message ?? messageOf(error)
      }
    }
    const authorizeUrl = new URL(endpoints.authorize)
    authorizeUrl.searchParams.set('client_id', oauth.clientId)
    authorizeUrl.searchParams.set('response_type', 'code')
    authorizeUrl.searchParams.set('redirect_uri', callback)
    const answers = {
      authorize: await ask(authorizeUrl.href),
      token: await ask(endpoints.token, {
        method: 'POST',
        headers: {'Content-Type': 'application/x-www-form-urlencoded', Accept: 'application/json'},
        body: new URLSearchParams({
          grant_type: 'authorization_code',
          code: 'hubctl-doctor-made-up-code',
          client_id: oauth.clientId,
          redirect_uri: callback,
        }).toString(),
      }),
      userdata: await ask(endpoints.userdata, {headers: {Accept: 'application/json'}}),
    }
    // What each endpoint answers when it is one: the authorization page (or a redirect to a
    // login), an OAuth error for the made-up code, "no token" for the user data.
    const fine = {
      authorize: (status: number) => status < 400 || status === 400 || status === 401 || status === 403,
      token: (status: number) => status >= 400 && status < 500 && status !== 404 && status !== 405,
      userdata: (status: number) => status === 401 || status === 403 || status === 400,
    }
    const flags = {authorize: '--oauth-authorize-url', token: '--oauth-token-url', userdata: '--oauth-userdata-url'}
    const bad = (Object.keys(answers) as Array<keyof typeof answers>).filter((key) => {
      const answer = answers[key]
      return typeof answer !== 'number' || !fine[key](answer)
    })
    const describe = (key: keyof typeof answers) =>
      `${key} ${endpoints[key]} ${typeof answers[key] === 'number' ? `answers ${answers[key]}` : `cannot be reached (${answers[key]})`}`
    if (bad.length === 0)
      return [
        ...results,
        {
          check: 'oauth provider',
          status: 'pass',
          message: `${label} answers: ${(Object.keys(answers) as Array<keyof typeof answers>).map(describe).join('; ')}`,
        },
      ]
    const unreachable = bad.some((key) => typeof answers[key] !== 'number')
    return [
      ...results,
      {
        check: 'oauth provider',
        status: 'fail',
        message: `${label}'s endpoints do not answer as OAuth endpoints: ${bad.map(describe).join('; ')}`,
        fix:
          provider === 'oauth'
            ? `check ${bad.map((key) => flags[key]).join(', ')} against the provider's documentation (or its /.well-known/openid-configuration)${unreachable ? ", and that this machine reaches it (DNS, firewall, the provider's own state)" : ''}, then run \`hubctl init\` again with the right URL`
            : `check that this machine reaches ${label} over HTTPS (DNS, firewall, an outbound proxy)`,
      },
    ]
  }

  /**
   * While the stack runs: a request and a websocket upgrade through nginx on the public port, with
   * the Origin a browser sends, reach the proxy with the Host the hub and the servers expect.
   */
  async checkBrowserPath(): Promise<CheckResult> {
    const {layout} = this.deps
    const settings = this.settings!
    if (!(await runningSupervisor(layout)))
      return {
        check: 'browser path',
        status: 'warn',
        message: 'not checked: the hub is not running',
        fix: layout.isSystem
          ? 'systemctl start jupyterhub, then `hubctl doctor` again'
          : `hubctl start --detach --prefix ${layout.prefix}, then \`hubctl doctor\` again`,
      }
    // The proxy's token goes only to the proxy hubctl started (the listener's owner, from /proc).
    const problem = await verifyRecordedListener(layout, 'proxy', settings.ports.proxyApi)
    if (problem)
      return {
        check: 'browser path',
        status: 'fail',
        message: `not checked: the proxy's API port ${settings.ports.proxyApi} is not held by the proxy hubctl started (${problem})`,
        fix: `\`ss -ltnp 'sport = :${settings.ports.proxyApi}'\` names the program; stop it, then \`hubctl restart\``,
      }
    const proxyToken = await new SecretStore(layout).read('proxyAuthToken')
    // nginx must present hubctl's live certificate: the probe talks to nothing else.
    const live = await new CertStore(layout).currentInfo().catch(() => undefined)
    const result = await checkBrowserPath({
      settings,
      proxyApi: proxyApiUrl(settings.ports),
      proxyToken,
      fingerprint256: live?.fingerprint256,
    })
    if (result.ok)
      return {
        check: 'browser path',
        status: 'pass',
        message: `through nginx with Origin ${result.origin}: the Host arrives as ${result.seenHost}, a websocket upgrade answers 101`,
      }
    return {
      check: 'browser path',
      status: 'fail',
      message: result.problems.join('; '),
      fix: 'run `hubctl init` again to rewrite the nginx site (it forwards the Host with its port and the websocket headers), or fix the proxy_set_header lines of the site by hand, then reload nginx',
    }
  }

  async checkNginx(): Promise<CheckResult> {
    const nginx = new Nginx(this.deps.layout, await this.detectNginx(), this.deps.runner) // the install detected once for the versions check
    const result = await nginx.test()
    if (result.ok) return {check: 'nginx config', status: 'pass', message: 'nginx -t passes'}
    return {
      check: 'nginx config',
      status: 'fail',
      message: `nginx -t fails: ${result.output.split('\n').find((l) => /emerg|error/.test(l)) ?? result.output}`,
      fix: 'fix what nginx names, then `nginx -t` again',
    }
  }

  async checkDns(): Promise<CheckResult[]> {
    const results: CheckResult[] = []
    for (const domain of this.settings!.domains) {
      try {
        const warning = await checkDns(domain, this.deps.lookup)
        results.push(
          warning
            ? {check: 'dns', status: 'warn', message: warning, fix: `point ${domain} at this machine`}
            : {
                check: 'dns',
                status: 'pass',
                message: isWildcard(domain)
                  ? `${domain} resolves to this machine (a random name under it does)`
                  : `${domain} resolves to this machine`,
              },
        )
      } catch (error) {
        const e = error as HubctlError
        results.push({check: 'dns', status: 'fail', message: e.message, fix: e.fix})
      }
    }
    return results
  }

  /**
   * While the stack runs its ports are its own; while it is stopped none may be taken (the system's
   * nginx may hold the HTTP(S) ports at prefix /), or the stack would not start.
   */
  async checkPorts(): Promise<CheckResult> {
    const {layout} = this.deps
    const ports = this.settings!.ports
    const listening: Array<[string, number]> = []
    for (const [name, port] of Object.entries(ports)) if (await portInUse(port)) listening.push([name, port])
    const running = await runningSupervisor(layout)
    if (running)
      return {
        check: 'ports',
        status: 'pass',
        message: `the running stack listens on ${listening.map(([name, port]) => `${name} ${port}`).join(', ') || 'none'}`,
      }
    const nginxMayHold = layout.isSystem ? ['http', 'https'] : []
    const taken = listening.filter(([name]) => !nginxMayHold.includes(name))
    if (taken.length === 0)
      return {check: 'ports', status: 'pass', message: "the hub's ports are free (the stack is stopped)"}
    const [name, port] = taken[0]
    return {
      check: 'ports',
      status: 'fail',
      message: `the stack is stopped, but ${taken.map(([n, p]) => `${n} port ${p}`).join(', ')} ${taken.length > 1 ? 'are' : 'is'} taken by another program`,
      fix: `\`ss -ltnp 'sport = :${port}'\` names it: stop it, or run \`hubctl init\` again with another ${PORT_FLAGS[name as keyof Ports]?.flag ?? name}`,
    }
  }

  /** When the stack runs: each program running, none in a crash loop, the hub healthy directly and through the proxy. */
  async checkProcesses(): Promise<CheckResult> {
    const {layout} = this.deps
    const settings = this.settings!
    const supervisor = await runningSupervisor(layout)
    if (!supervisor)
      return {
        check: 'processes',
        status: 'warn',
        message: 'the hub is not running',
        fix: layout.isSystem
          ? 'systemctl start jupyterhub (or `hubctl start --detach`)'
          : `hubctl start --detach --prefix ${layout.prefix}`,
      }
    const state = await readState(layout)
    const problems: string[] = []
    for (const name of ['proxy', 'hub', 'nginx'] as const) {
      const child = state?.[name]
      if (!child) continue
      if (child.crashLoop) problems.push(`${name} is in a crash loop (see ${child.log})`)
      else if (!child.running) problems.push(`${name} is not running (being restarted; see ${child.log})`)
    }
    if (!(await checkHealth(hubHealthUrl(settings)))) problems.push(`the hub does not answer ${hubHealthUrl(settings)}`)
    else if (!(await checkHealth(hubHealthUrl(settings, 'proxy'))))
      problems.push(`the hub does not answer through the proxy (${hubHealthUrl(settings, 'proxy')})`)
    if (problems.length > 0)
      return {
        check: 'processes',
        status: 'fail',
        message: problems.join('; '),
        fix: `read the logs named, then \`hubctl restart --prefix ${layout.prefix}\``,
      }
    return {
      check: 'processes',
      status: 'pass',
      message: `supervisor (pid ${supervisor.pid}), proxy, hub${state?.nginx ? ', nginx' : ''} running; the hub is healthy directly and through the proxy`,
    }
  }
}
