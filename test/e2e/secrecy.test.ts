// e2e-lane: parallel
import {expect} from 'chai'
import fs from 'node:fs/promises'

import {Layout} from '../../src/lib/config/layout.js'
import {CliResult, DEBIAN_JUPYTERHUB, hubctl, portFlags, tempPrefix, testHubFlags, walkTree} from '../helpers/cli.js'
import {HubBrowser, loginForm, submitLogin} from '../helpers/hub.js'
import {environOf, procInfo} from '../helpers/processes.js'
import {ProcSample, TreeSampler, processTree} from '../helpers/sampler.js'

/*
 * No secret value anywhere it could be read by someone else, on a running stack (Debian's
 * JupyterHub 3.0, the dummy authenticator so that a generated login password exists too):
 * not in any process's argv, not in any log, not in any world-readable file under the prefix, not
 * in anything a hubctl command prints, failing ones included. The values are read here, in the
 * test's own process, from their 0600 files; they are never put on a command line.
 */

interface Secret {
  name: string
  value: string
}

/** Whether this sampled process is configurable-http-proxy (the proxy or the standby). */
function isProxy(sample: ProcSample): boolean {
  return sample.cmdline.some((arg) => arg.endsWith('configurable-http-proxy'))
}

/**
 * Run `command`, sampling the argv and environment of every process of its tree (and of the
 * running stack's supervisor's tree, `also`) from its start to its end.
 */
async function sampled(
  command: (onSpawn: (pid: number) => void) => Promise<CliResult>,
  also: number[] = [],
): Promise<{result: CliResult; samples: ProcSample[]; rounds: number}> {
  let pid: number | undefined
  const sampler = new TreeSampler(() => [...(pid ? [pid] : []), ...also]).start()
  const result = await command((spawned) => {
    pid = spawned
  })
  const samples = await sampler.stop()
  return {result, samples, rounds: sampler.rounds}
}

async function filesUnder(dir: string): Promise<string[]> {
  const out: string[] = []
  await walkTree(dir, async (full, _relative, entry) => {
    if (entry.isFile()) out.push(full)
  })
  return out
}

describe('secrecy on a running stack: no secret in argv, logs, world-readable files or hubctl output', function () {
  this.timeout(240_000)
  let layout: Layout
  let flags: string[]
  let ports: Awaited<ReturnType<typeof portFlags>>['ports']
  let secrets: Secret[] = []
  /** What every process of init's tree showed while init ran. */
  let initSamples: ProcSample[] = []
  /** Every hubctl output this test collected, checked at the end as well as one by one. */
  const outputs: Array<{label: string; result: CliResult}> = []

  /** The supervisor's pid, from status: the root of the stack's process tree. */
  const supervisorPid = async (): Promise<number> => {
    const status = JSON.parse((await hubctl(['status', '--json', '--prefix', layout.prefix])).stdout) as {
      supervisor: {pid: number | null}
    }
    expect(status.supervisor.pid, 'the stack runs').to.be.a('number')
    return status.supervisor.pid!
  }

  /**
   * No secret in any sample's argv; none in its environment either, but for the proxy token of a
   * configurable-http-proxy (its CONFIGPROXY_AUTH_TOKEN, how it is given the token).
   */
  const expectNoSecretInSamples = (samples: ProcSample[], during: string, proxyTokens: string[]) => {
    for (const sample of samples) {
      const where = `pid ${sample.pid} (${sample.cmdline.join(' ').slice(0, 100)}) during ${during}`
      expectNoSecretIn(sample.cmdline.join('\0'), `the argv of ${where}`)
      const environ = sample.environ.filter(
        (entry) => !(isProxy(sample) && proxyTokens.some((token) => entry === `CONFIGPROXY_AUTH_TOKEN=${token}`)),
      )
      expectNoSecretIn(environ.join('\0'), `the environment of ${where}`)
    }
  }

  const expectNoSecretIn = (text: string, where: string) => {
    for (const secret of secrets)
      expect(text.includes(secret.value), `the ${secret.name} appears in ${where}`).to.equal(false)
  }

  const run = async (label: string, args: string[], env?: Record<string, string>): Promise<CliResult> => {
    const result = await hubctl([...args, '--prefix', layout.prefix], {env})
    outputs.push({label, result})
    expectNoSecretIn(`${result.stdout}\n${result.stderr}`, `the output of ${label}`)
    return result
  }

  before(async () => {
    layout = new Layout(await tempPrefix('hubctl-secrecy'))
    const allocated = await portFlags()
    ports = allocated.ports
    flags = [
      ...testHubFlags({
        admin: 'alice',
        jupyterhub: DEBIAN_JUPYTERHUB,
        serverCheck: true,
        extra: ['--authenticator', 'dummy', '--spawner', 'simple'],
      }),
      ...allocated.flags,
    ]
    const {result: init, samples} = await sampled((onSpawn) =>
      hubctl(['init', '--prefix', layout.prefix, ...flags], {onSpawn}),
    )
    initSamples = samples
    expect(init.exitCode, init.stderr).to.equal(0)
    const read = async (file: string) => (await fs.readFile(file, 'utf8')).trim()
    const privkey = await read(layout.privkey)
    secrets = [
      {name: 'cookie secret', value: await read(layout.cookieSecret)},
      {name: 'proxy auth token', value: await read(layout.proxyAuthToken)},
      {name: 'hubctl API token', value: await read(layout.apiToken)},
      {name: 'login password', value: await read(layout.loginPassword)},
      // The TLS private key: its first line of base64 stands for all of it.
      {name: 'TLS private key', value: privkey.split('\n')[1]},
    ]
    for (const secret of secrets) expect(secret.value.length, secret.name).to.be.greaterThan(30)
    // init shows the generated login once, by design; that run is not one of the outputs checked.
    expect(init.stdout).to.include(secrets[3].value)
    const started = await hubctl(['start', '--detach', '--prefix', layout.prefix, '--json'])
    expect(started.exitCode, started.stderr + started.stdout).to.equal(0)
    expectNoSecretIn(started.stdout + started.stderr, 'the output of start --detach')
  })

  after(async function () {
    this.timeout(120_000)
    if (layout) {
      await hubctl(['stop', '--prefix', layout.prefix])
      await fs.rm(layout.prefix, {recursive: true, force: true})
    }
  })

  it('a login with the generated password works, and one with the proxy token as password fails (to give the logs a chance to leak)', async () => {
    // Each attempt from a browser of its own: the form, then its POST once.
    const login = async (password: string) => {
      const browser = new HubBrowser(`http://127.0.0.1:${ports.proxy}`)
      const {xsrf} = await loginForm(browser)
      return submitLogin(browser, {user: 'alice', password, xsrf})
    }
    const good = await login(secrets.find((s) => s.name === 'login password')!.value)
    expect(good.status, 'a good login redirects').to.equal(302)
    expect(good.cookies.some((c) => c.startsWith('jupyterhub-hub-login='))).to.equal(true)
    const bad = await login(secrets.find((s) => s.name === 'proxy auth token')!.value)
    // JupyterHub shows the login form again (200 on 3.0, 403 on later versions), without a login cookie.
    expect(bad.status, 'a wrong password is refused').to.be.oneOf([200, 403])
    expect(bad.cookies.some((c) => c.startsWith('jupyterhub-hub-login='))).to.equal(false)
  })

  it('hubctl commands print no secret, whether they pass or fail (also with DEBUG=* and --json)', async () => {
    expect((await run('status --json', ['status', '--json'])).exitCode).to.equal(0)
    expect((await run('status', ['status'])).exitCode).to.equal(0)
    expect((await run('status --json with DEBUG=*', ['status', '--json'], {DEBUG: '*'})).exitCode).to.equal(0)
    const doctor = await run('doctor --json', ['doctor', '--json'])
    expect(JSON.parse(doctor.stdout).checks.length).to.be.greaterThan(5)
    await run('doctor with DEBUG=*', ['doctor'], {DEBUG: '*'})
    expect((await run('secrets check', ['secrets', 'check'])).exitCode).to.equal(0)
    expect((await run('secrets check --json', ['secrets', 'check', '--json'])).exitCode).to.equal(0)
    expect((await run('cert status --json', ['cert', 'status', '--json'])).exitCode).to.equal(0)
    expect((await run('init again (the same flags)', ['init', ...flags])).exitCode).to.equal(0)
    // Failing ones.
    expect(
      (
        await run('init with a bad flag', [
          'init',
          ...flags.filter((f, i, all) => f !== '--https-port' && all[i - 1] !== '--https-port'),
          '--https-port',
          'abc',
        ])
      ).exitCode,
    ).to.equal(2)
    expect((await run('init with a bad flag, --json', ['init', '--json', '--tls', 'bogus'])).exitCode).to.equal(2)
    expect((await run('init with an unknown flag', ['init', '--proxy-token', 'x'])).exitCode).to.equal(2)
    expect((await run('start --detach while running', ['start', '--detach'])).exitCode).to.not.equal(0)
    expect((await run('restart --json', ['restart', '--json'])).exitCode).to.equal(0)
    // Broken secrets: each failing command names the file and the problem, never the value.
    const cookie = await fs.readFile(layout.cookieSecret)
    try {
      await fs.chmod(layout.cookieSecret, 0o644)
      await fs.chmod(layout.proxyAuthToken, 0o644)
      expect((await run('secrets check, two secrets 0644', ['secrets', 'check'])).exitCode).to.equal(1)
      expect((await run('secrets check --json, two secrets 0644', ['secrets', 'check', '--json'])).exitCode).to.equal(1)
      expect((await run('doctor --json, two secrets 0644', ['doctor', '--json'])).exitCode).to.equal(1)
      expect((await run('init, two secrets 0644', ['init', ...flags])).exitCode).to.equal(1)
      await fs.chmod(layout.cookieSecret, 0o600)
      await fs.chmod(layout.proxyAuthToken, 0o600)
      // A secret one character short and one in upper case: a message that quoted the file would leak it.
      await fs.writeFile(layout.cookieSecret, cookie.toString('utf8').trim().slice(0, 63))
      expect((await run('secrets check, a truncated cookie secret', ['secrets', 'check'])).exitCode).to.equal(1)
      await fs.writeFile(layout.cookieSecret, cookie.toString('utf8').trim().toUpperCase())
      const upper = await run('secrets check --json, an upper-case cookie secret', ['secrets', 'check', '--json'])
      expect(upper.exitCode).to.equal(1)
      expect(upper.stdout).not.to.include(cookie.toString('utf8').trim().toUpperCase())
    } finally {
      await fs.writeFile(layout.cookieSecret, cookie)
      await fs.chmod(layout.cookieSecret, 0o600)
      await fs.chmod(layout.proxyAuthToken, 0o600)
    }
    for (const {label, result} of outputs) expectNoSecretIn(`${result.stdout}\n${result.stderr}`, label)
  })

  it('while init ran, no process of its tree had a secret in its argv or environment (sampled throughout)', async () => {
    expect(initSamples.length, 'samples of init').to.be.greaterThan(1)
    // The sampling saw init's children, not only hubctl: the JupyterHub config check and nginx -t.
    const programs = initSamples.map((sample) => sample.cmdline.join(' '))
    expect(
      programs.some((cmd) => /jupyterhub/.test(cmd) && !cmd.includes('bin/run.js')),
      programs.join('\n'),
    ).to.equal(true)
    expect(
      programs.some((cmd) => /nginx.* -t/.test(cmd)),
      programs.join('\n'),
    ).to.equal(true)
    expectNoSecretInSamples(initSamples, 'init', [])
  })

  it("no process of the running stack (the supervisor's tree) has a secret in its argv (/proc/PID/cmdline)", async () => {
    const status = JSON.parse((await run('status --json', ['status', '--json'])).stdout) as {
      running: boolean
      proxy: {pid: number}
      hub: {pid: number}
      nginx?: {pid: number}
    }
    expect(status.running, 'the stack still runs').to.equal(true)
    const tree = await processTree(await supervisorPid())
    const cmdlines = (await Promise.all(tree.map(procInfo)))
      .filter((info) => info !== undefined)
      .map((info) => ({pid: info.pid, cmdline: info.cmdline.join(' ')}))
    // The stack's own processes are among those read.
    for (const pid of [status.proxy.pid, status.hub.pid, status.nginx?.pid])
      expect(cmdlines.map((c) => c.pid)).to.include(pid)
    for (const {pid, cmdline} of cmdlines) expectNoSecretIn(cmdline, `the argv of pid ${pid} (${cmdline.slice(0, 80)})`)
  })

  it("the proxy token is in configurable-http-proxy's environment only; the other secrets in no environment of the stack's processes", async () => {
    const status = JSON.parse((await run('status --json', ['status', '--json'])).stdout) as {proxy: {pid: number}}
    const proxyToken = secrets.find((s) => s.name === 'proxy auth token')!
    const holders: number[] = []
    for (const pid of await processTree(await supervisorPid())) {
      const environ = (await environOf(pid))?.join('\0')
      if (environ === undefined) continue
      if (environ.includes(proxyToken.value)) holders.push(pid)
      for (const secret of secrets.filter((s) => s !== proxyToken))
        expect(environ.includes(secret.value), `the ${secret.name} in the environment of pid ${pid}`).to.equal(false)
    }
    expect(holders).to.deep.equal([status.proxy.pid])
  })

  it('no log, and no file the supervisor keeps, holds a secret', async () => {
    const files = [...(await filesUnder(layout.logDir)), ...(await filesUnder(layout.runDir))]
    for (const file of [layout.hubLog, layout.proxyLog, layout.supervisorLog, layout.nginxAccessLog])
      expect(files).to.include(file)
    // The logs saw the logins above: the hub's log names them.
    expect(await fs.readFile(layout.hubLog, 'utf8')).to.match(/alice/)
    for (const file of files) expectNoSecretIn(await fs.readFile(file, 'latin1'), file)
  })

  it('no world-readable file under the prefix holds a secret, and each secret file is 0600', async () => {
    const secretFiles = new Set([
      layout.cookieSecret,
      layout.proxyAuthToken,
      layout.apiToken,
      layout.loginPassword,
      layout.dhparam,
    ])
    let readable = 0
    for (const file of await filesUnder(layout.prefix)) {
      const stat = await fs.lstat(file)
      if (secretFiles.has(file)) expect(stat.mode & 0o777, file).to.equal(0o600)
      // World-readable by its own bits, whatever the directories above it allow (the stricter reading).
      if ((stat.mode & 0o004) === 0) continue
      readable++
      expectNoSecretIn(await fs.readFile(file, 'latin1'), `the world-readable ${file}`)
    }
    // jupyterhub_config.py, hubctl.json, the nginx site and main config, the hub's database at least.
    expect(readable).to.be.greaterThan(4)
    for (const file of await filesUnder(layout.sslDir)) expect((await fs.lstat(file)).mode & 0o077, file).to.equal(0)
  })

  it('while secrets rotate --all runs (standby proxy, proxy and hub restarts), no process shows a secret, old or new, but the proxy its token', async () => {
    const read = async (file: string) => (await fs.readFile(file, 'utf8')).trim()
    const oldProxyToken = secrets.find((s) => s.name === 'proxy auth token')!.value
    const supervisor = await supervisorPid()
    const {result, samples, rounds} = await sampled(
      (onSpawn) => hubctl(['secrets', 'rotate', '--all', '--yes', '--json', '--prefix', layout.prefix], {onSpawn}),
      [supervisor],
    )
    outputs.push({label: 'secrets rotate --all', result})
    expect(result.exitCode, result.stderr + result.stdout).to.equal(0)
    const rotated = [
      {name: 'new cookie secret', value: await read(layout.cookieSecret)},
      {name: 'new proxy auth token', value: await read(layout.proxyAuthToken)},
      {name: 'new hubctl API token', value: await read(layout.apiToken)},
    ]
    for (const secret of rotated) {
      expect(
        secrets.map((s) => s.value),
        `the ${secret.name} is new`,
      ).to.not.include(secret.value)
      secrets.push(secret)
    }
    expectNoSecretIn(`${result.stdout}\n${result.stderr}`, 'the output of secrets rotate')
    expect(rounds, 'sampling rounds').to.be.greaterThan(2)
    // The samples hold the processes the rotation started: a proxy with the new token.
    const newProxies = samples.filter(
      (sample) => isProxy(sample) && sample.environ.includes(`CONFIGPROXY_AUTH_TOKEN=${rotated[1].value}`),
    )
    expect(newProxies.length, 'a proxy running with the new token was sampled').to.be.greaterThan(0)
    expectNoSecretInSamples(samples, 'secrets rotate --all', [oldProxyToken, rotated[1].value])
  })

  it('hubctl stop prints no secret', async () => {
    const stopped = await run('stop --json', ['stop', '--json'])
    expect(stopped.exitCode, stopped.stderr).to.equal(0)
    expect(JSON.parse(stopped.stdout).supervisor.result).to.equal('exited')
  })
})
