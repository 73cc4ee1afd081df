import {expect} from 'chai'
import {execa} from 'execa'
import fs from 'node:fs/promises'
import http from 'node:http'
import path from 'node:path'

import {Layout} from '../../src/lib/config/layout.js'
import {README, movedInternalPorts, readmeDomainCommand} from '../helpers/readme.js'
import {BrowserSession, personSession} from '../helpers/browser.js'
import {BIN, ROOT, hubctl, tempPrefix} from '../helpers/cli.js'
import {PebbleLab, httpsGet} from '../helpers/pebble.js'
import {portInUse} from '../../src/lib/setup/preflight.js'

/*
 * A person in a real browser (Debian's Chromium): log in, the spawn page leads to the server by
 * itself, JupyterLab loads, a new notebook from the launcher runs print(6*7) and shows 42, the
 * admin page lists the users, a token is requested, Stop on the home page stops the server, log
 * out. Everything through nginx, on the ports the README uses, with the README's own commands
 * (read from README.md, so that the test runs what a person types):
 * - the quick start (local mode, https://localhost:8443/, hubctl's own JupyterHub and JupyterLab);
 * - the domain command on ports 80 and 443, with Pebble as the CA, a real system user logging in
 *   through PAM, and the browser told to trust Pebble's root (its NSS database);
 * (Debian's JupyterHub 3.0, where a person still uses it, the classic notebook at /tree: in
 * browser-classic.test.ts, which runs beside other files.)
 * On failure the screenshot, HTML and console log of each page are kept in test-output/browser/.
 */

/** The README's quick start line (after `npm ci && npm run build`, which `npm test` has done). */
function quickStartCommand(): string {
  const line = README.split('\n').find((l) => l.includes('./bin/run.js init --local'))
  if (!line) throw new Error('README.md has no quick start line with ./bin/run.js init --local')
  return line.trim().replace(/^.*?npm run build && /, '')
}

/** The README's command for a server with a domain: `./bin/run.js init --domain …` (before `&& systemctl start jupyterhub`). */
function domainCommand(): string {
  return readmeDomainCommand().replace(/ && systemctl start jupyterhub$/, '')
}

async function sh(
  command: string,
  options: {cwd: string; env?: Record<string, string>},
): Promise<{exitCode: number; stdout: string; stderr: string}> {
  const result = await execa('sh', ['-c', command], {
    cwd: options.cwd,
    env: options.env,
    reject: false,
    stdin: 'ignore',
    timeout: 1_200_000,
  })
  return {exitCode: result.exitCode ?? -1, stdout: String(result.stdout), stderr: String(result.stderr)}
}

/** Who is running a server, as the hub says (hubctl status). */
async function runningServers(prefixArgs: string[], env?: Record<string, string>): Promise<string[]> {
  const status = await hubctl(['status', ...prefixArgs, '--json'], {env})
  expect(status.exitCode, status.stderr).to.equal(0)
  return (JSON.parse(status.stdout) as {servers: Array<{user: string}>}).servers.map((s) => s.user)
}

describe('a person in Chromium on the README quick start (local mode, https://localhost:8443/)', function () {
  this.timeout(1_200_000)
  const local = path.join(ROOT, 'hubctl-local')
  const aside = `${local}.before-browser-test`
  let session: BrowserSession | undefined
  let password = ''
  // The local hub's server runs as the user who started it (root here), in hubctl's home for it
  // under the prefix (srv/jupyterhub/home/admin, 0700): what the person's session creates there
  // (the notebook, the JupyterLab workspace) goes with hubctl-local.
  const home = path.join(local, 'srv/jupyterhub/home/admin')
  before(async function () {
    // A hub of the developer's own in hubctl-local is kept aside, and put back after.
    if (
      await fs.stat(local).then(
        () => true,
        () => false,
      )
    )
      await fs.rename(local, aside)
    const moved = await movedInternalPorts()
    const command = quickStartCommand().replace(
      './bin/run.js init --local',
      `./bin/run.js init --local${moved.length > 0 ? ` ${moved.join(' ')}` : ''}`,
    )
    const result = await sh(command, {cwd: ROOT})
    expect(result.exitCode, `${command}\n${result.stdout}\n${result.stderr}`).to.equal(0)
    password = /with the password ([0-9a-f]+)/.exec(result.stdout)?.[1] ?? ''
    expect(password, result.stdout).to.match(/^[0-9a-f]{32}$/)
    expect(result.stdout).to.match(
      /JupyterHub \d+\.\d+\.\d+ and JupyterLab \d+\.\d+\.\d+: .*hubctl-local\/opt\/jupyterhub\/envs\//,
    )
  })

  afterEach(async function () {
    if (this.currentTest?.state === 'failed' && session)
      console.log(`kept: ${(await session.keep(this.currentTest.fullTitle())).join(', ')}`)
    await session?.close()
    session = undefined
  })

  after(async function () {
    await execa(process.execPath, [BIN, 'stop', '--local'], {cwd: ROOT, reject: false})
    await fs.rm(local, {recursive: true, force: true})
    if (
      await fs.stat(aside).then(
        () => true,
        () => false,
      )
    )
      await fs.rename(aside, local)
  })

  it('logs in, gets JupyterLab, runs print(6*7) and sees 42, lists users as admin, requests a token, stops the server, logs out', async () => {
    session = await BrowserSession.start({acceptSelfSigned: true})
    await personSession(session.page, 'https://localhost:8443', 'admin', password, 'lab')
    expect(await runningServers(['--prefix', local])).to.deep.equal([])
    // The notebook is in the home under hubctl-local (0700, root's), not in JupyterHub's /tmp/admin.
    const stat = await fs.lstat(home)
    expect([stat.mode & 0o7777, stat.uid]).to.deep.equal([0o700, 0])
    expect(
      (await fs.readdir(home)).some((name) => /^Untitled.*\.ipynb$/.test(name)),
      'the notebook',
    ).to.equal(true)
  })

  it("doctor follows the browser's path (Host with its port, websocket 101), and fails when nginx drops the port", async () => {
    const layout = new Layout(local)
    const good = await execa(process.execPath, [BIN, 'doctor', '--local', '--json'], {cwd: ROOT, reject: false})
    const checks = (JSON.parse(good.stdout) as {checks: Array<{check: string; status: string; message: string}>}).checks
    expect(
      checks.find((c) => c.check === 'browser path'),
      good.stdout,
    ).to.include({status: 'pass'})
    expect(
      checks.find((c) => c.check === 'user interface'),
      good.stdout,
    ).to.include({status: 'pass', message: 'JupyterLab at /lab'})
    expect(good.exitCode, good.stdout).to.equal(0)

    // The site as it was before: `proxy_set_header Host $host;` drops the port.
    const site = await fs.readFile(layout.nginxSite, 'utf8')
    await fs.writeFile(
      layout.nginxSite,
      site.replace('proxy_set_header Host $hubctl_host;', 'proxy_set_header Host $host;'),
    )
    const reload = async () =>
      expect(
        (
          await execa(
            'nginx',
            ['-p', `${local}/`, '-c', layout.nginxMainConf, '-e', layout.nginxErrorLog, '-s', 'reload'],
            {reject: false},
          )
        ).exitCode,
      ).to.equal(0)
    try {
      await reload()
      const broken = await execa(process.execPath, [BIN, 'doctor', '--local', '--json'], {cwd: ROOT, reject: false})
      expect(broken.exitCode, broken.stdout).to.equal(1)
      const check = (
        JSON.parse(broken.stdout) as {checks: Array<{check: string; status: string; message: string; fix?: string}>}
      ).checks.find((c) => c.check === 'browser path')
      expect(check?.status, broken.stdout).to.equal('fail')
      expect(check?.message).to.include('nginx forwards Host "localhost" for a browser at https://localhost:8443')
      expect(check?.fix).to.include('hubctl init')
    } finally {
      await fs.writeFile(layout.nginxSite, site)
      await reload()
    }
  })
})

describe("a person in Chromium on the README domain install: ports 80 and 443, Let's Encrypt (Pebble), PAM", function () {
  this.timeout(1_500_000)
  const domain = 'hub.example.org'
  const user = 'alice'
  const password = `pw-${Math.random().toString(36).slice(2)}-Aa1`
  let prefix = ''
  let lab: PebbleLab | undefined
  let session: BrowserSession | undefined
  let hostsBefore = ''
  let env: Record<string, string> = {}
  let pebbleRoot = ''

  before(async function () {
    for (const port of [80, 443]) {
      expect(
        await portInUse(port),
        `port ${port} is taken on this machine (a system nginx? stop it: nginx -s quit); the README's command needs it`,
      ).to.equal(false)
    }
    // The name resolves to this machine, as a real domain's A record would.
    hostsBefore = await fs.readFile('/etc/hosts', 'utf8')
    await fs.writeFile('/etc/hosts', `${hostsBefore.trimEnd()}\n127.0.0.1 ${domain} # hubctl browser test\n`)
    // alice as a new user of the machine: one left by an earlier run of this test (its marker in her
    // home) is made anew, so that her JupyterLab starts from nothing, as a new user's does.
    if ((await execa('id', ['-u', user], {reject: false})).exitCode === 0) {
      const home = (await execa('getent', ['passwd', user])).stdout.split(':')[5]
      expect(
        await fs.stat(path.join(home, '.hubctl-test-user')).then(
          () => true,
          () => false,
        ),
        `a user ${user} exists on this machine and was not made by this test: the README's command needs its own`,
      ).to.equal(true)
      await execa('userdel', ['-r', user], {reject: false})
    }
    const made = await execa('useradd', ['-m', '-s', '/bin/bash', user], {reject: false})
    expect(made.exitCode, made.stderr).to.equal(0)
    const home = (await execa('getent', ['passwd', user])).stdout.split(':')[5]
    await fs.writeFile(path.join(home, '.hubctl-test-user'), "made by hubctl's browser test\n")
    await execa('chpasswd', {input: `${user}:${password}`})
    prefix = await tempPrefix('hubctl-domain')
    // alice's server runs as alice from the environment under the prefix: the path must be hers to traverse.
    await fs.chmod(prefix, 0o755)
    lab = await new PebbleLab(await tempPrefix('hubctl-domain-pebble')).setup()
    const pebble = await lab.startPebble('browser', {httpPort: 80})
    pebbleRoot = (await httpsGet(`${pebble.managementUrl}/roots/0`, await fs.readFile(lab.tls.ca, 'utf8'))).body
    env = {HUBCTL_PREFIX: prefix, HUBCTL_ACME_DIRECTORY: pebble.directory, HUBCTL_ACME_CA_CERT: lab.tls.ca}
  })

  after(async () => {
    await session?.close()
    if (prefix) await hubctl(['stop'], {env})
    await lab?.stop()
    await execa('userdel', ['-r', user], {reject: false})
    if (hostsBefore) await fs.writeFile('/etc/hosts', hostsBefore)
    for (const dir of [prefix, lab?.work]) if (dir) await fs.rm(dir, {recursive: true, force: true})
  })

  it('runs the README command as written, then alice logs in with her Unix password and runs a cell', async function () {
    const moved = await movedInternalPorts()
    const command = domainCommand() + (moved.length > 0 ? ` ${moved.join(' ')}` : '')
    const init = await sh(command, {cwd: ROOT, env: {...(process.env as Record<string, string>), ...env}})
    expect(init.exitCode, `${command}\n${init.stdout}\n${init.stderr}`).to.equal(0)
    const settings = JSON.parse(await fs.readFile(new Layout(prefix).settings, 'utf8')) as {
      ports: {http: number; https: number}
      authenticator: string
      tls: {mode: string}
    }
    expect(settings).to.deep.include({authenticator: 'pam', tls: settings.tls})
    expect(settings.ports).to.include({http: 80, https: 443})
    expect(settings.tls.mode).to.equal('letsencrypt')
    // `systemctl start jupyterhub` runs `hubctl start`; there is no systemd here.
    const start = await hubctl(['start', '--detach'], {env})
    expect(start.exitCode, start.stderr).to.equal(0)

    // Port 80 sends a browser to https://hub.example.org/ (no port in the URL on 443).
    const redirect = await new Promise<{status: number; location?: string}>((resolve, reject) => {
      http
        .get({host: '127.0.0.1', port: 80, path: '/hub/', headers: {Host: domain}}, (response) => {
          response.resume()
          resolve({status: response.statusCode ?? 0, location: response.headers.location})
        })
        .on('error', reject)
    })
    expect(redirect).to.deep.equal({status: 301, location: `https://${domain}/hub/`})

    session = await BrowserSession.start({trustCa: pebbleRoot})
    try {
      await personSession(session.page, `https://${domain}`, user, password, 'lab')
    } catch (error) {
      console.log(`kept: ${(await session.keep(this.test?.fullTitle() ?? 'domain')).join(', ')}`)
      throw error
    }
    expect(await runningServers([], env)).to.deep.equal([])
  })
})
