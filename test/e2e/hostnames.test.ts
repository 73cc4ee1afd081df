// e2e-lane: parallel
import {expect} from 'chai'
import {execa} from 'execa'
import {createHash} from 'node:crypto'
import fs from 'node:fs/promises'
import http from 'node:http'
import path from 'node:path'
import tls from 'node:tls'

import {Layout} from '../../src/lib/config/layout.js'
import {nginxConfigArgs} from '../../src/lib/config/nginx.js'
import {
  VENV_JUPYTERHUB,
  hubctl,
  jsonOf,
  portFlags,
  tempPrefix,
  testHubInitArgs,
  type TestHubPorts,
} from '../helpers/cli.js'

/*
 * Names the hub does not serve (issue 21, item 5), with the real nginx running the site hubctl
 * installed at a test prefix (nginx alone: the hub is not needed for what nginx answers itself).
 * A forged Host on the http port gets a closed connection, not a redirect to itself; the hub's own
 * name is redirected to the configured primary name and its ACME challenges are served; on the
 * https port a name the hub does not serve gets no TLS handshake. And the policy toward other
 * sites: an operator's default_server is kept (hubctl adds none on that port and says which file
 * answers), Debian's stock default site is disabled (its link removed, the file kept).
 */

/** An http request to 127.0.0.1 with this Host: the reply's status and Location, or the error when the connection closed unanswered. */
function httpGet(
  port: number,
  host: string,
  path: string,
): Promise<{status?: number; location?: string; body?: string; error?: string}> {
  return new Promise((resolve) => {
    const request = http.request(
      {host: '127.0.0.1', port, path, headers: {Host: host}, agent: false, timeout: 30_000},
      (response) => {
        const chunks: Buffer[] = []
        response.on('data', (chunk: Buffer) => chunks.push(chunk))
        response.on('end', () =>
          resolve({
            status: response.statusCode,
            location: response.headers.location,
            body: Buffer.concat(chunks).toString(),
          }),
        )
      },
    )
    request.on('timeout', () => request.destroy(new Error('no answer')))
    request.on('error', (error: NodeJS.ErrnoException) => resolve({error: error.code ?? error.message}))
    request.end()
  })
}

/** A TLS handshake with this SNI (none: undefined), then one request with this Host: its status, or the error. */
function httpsGet(
  port: number,
  servername: string | undefined,
  host: string,
  ca: string,
): Promise<{status?: number; hsts?: string; error?: string}> {
  return new Promise((resolve) => {
    const socket = tls.connect({
      host: '127.0.0.1',
      port,
      ...(servername ? {servername} : {}),
      ca,
      ALPNProtocols: ['http/1.1'],
      rejectUnauthorized: false,
    })
    socket.once('error', (error: NodeJS.ErrnoException) => resolve({error: error.code ?? error.message}))
    socket.once('secureConnect', () => {
      const request = http.request(
        {createConnection: () => socket, path: '/hub/', headers: {Host: host}, timeout: 30_000},
        (response) => {
          response.resume()
          response.on('end', () =>
            resolve({
              status: response.statusCode,
              hsts: response.headers['strict-transport-security'] as string | undefined,
            }),
          )
        },
      )
      request.on('timeout', () => request.destroy(new Error('no answer')))
      request.on('error', (error: NodeJS.ErrnoException) => resolve({error: error.code ?? error.message}))
      request.end()
    })
  })
}

describe('nginx: names the hub does not serve (forged Host, bare address, another site)', function () {
  this.timeout(600_000)

  const prefixes: string[] = []
  const running: Layout[] = []

  const newHub = async (label: string, before?: (layout: Layout, ports: TestHubPorts) => Promise<void>) => {
    const prefix = await tempPrefix(`hubctl-${label}`)
    prefixes.push(prefix)
    // nginx's workers (nobody) read the ACME webroot under it.
    await fs.chmod(prefix, 0o755)
    const layout = new Layout(prefix)
    const {ports, flags} = await portFlags()
    await before?.(layout, ports)
    const init = await hubctl([
      ...testHubInitArgs(prefix, {admin: 'hcnames', jupyterhub: VENV_JUPYTERHUB}, flags),
      '--json',
    ])
    return {layout, ports, init}
  }
  const startNginx = async (layout: Layout) => {
    const started = await execa('nginx', nginxConfigArgs(layout), {reject: false})
    expect(started.exitCode, started.stderr).to.equal(0)
    running.push(layout)
  }

  after(async () => {
    for (const layout of running) await execa('nginx', [...nginxConfigArgs(layout), '-s', 'stop'], {reject: false})
    for (const prefix of prefixes) await fs.rm(prefix, {recursive: true, force: true})
  })

  it('closes the connection for a Host the hub does not serve; redirects its own name to the primary one; serves its ACME challenges; refuses TLS to other names', async () => {
    const {layout, ports, init} = await newHub('names')
    expect(init.exitCode, init.stderr).to.equal(0)
    expect(jsonOf(init).unknownNames).to.deep.equal({closedOn: [ports.http, ports.https], answeredBy: []})
    await startNginx(layout)
    const ca = await fs.readFile(layout.fullchain, 'utf8')

    // Port 80: the forged Host was redirected to https://evil.example:PORT/ before.
    for (const host of ['evil.example', `evil.example:${ports.http}`, `127.0.0.1:${ports.http}`])
      expect(await httpGet(ports.http, host, '/hub/login?next=x'), host).to.deep.equal({error: 'ECONNRESET'})
    expect(await httpGet(ports.http, `localhost:${ports.http}`, '/hub/login?next=x')).to.include({
      status: 301,
      location: `https://localhost:${ports.https}/hub/login?next=x`,
    })
    // The ACME challenge, for the hub's name only.
    await fs.writeFile(layout.acmeChallengeFile('hcnames-token'), 'hcnames-token.key-authorization')
    expect(await httpGet(ports.http, 'localhost', '/.well-known/acme-challenge/hcnames-token')).to.include({
      status: 200,
      body: 'hcnames-token.key-authorization',
    })
    expect(await httpGet(ports.http, 'evil.example', '/.well-known/acme-challenge/hcnames-token')).to.deep.equal({
      error: 'ECONNRESET',
    })

    // Port 443: the hub's name gets the hub's server (its HSTS header; 502 without the proxy running).
    const own = await httpsGet(ports.https, 'localhost', `localhost:${ports.https}`, ca)
    expect(own.hsts).to.equal('max-age=63072000')
    // Another name, or none (a bare address sends no SNI): no handshake at all.
    expect((await httpsGet(ports.https, 'evil.example', 'evil.example', ca)).error).to.match(
      /ECONNRESET|ERR_SSL_TLSV1_UNRECOGNIZED_NAME|ERR_SSL_TLSV1_ALERT/,
    )
    expect((await httpsGet(ports.https, undefined, '127.0.0.1', ca)).error).to.match(
      /ECONNRESET|ERR_SSL_TLSV1_UNRECOGNIZED_NAME|ERR_SSL_TLSV1_ALERT/,
    )
    // The hub's name in the handshake, another in the Host header: closed unanswered.
    expect(await httpsGet(ports.https, 'localhost', 'evil.example', ca)).to.deep.equal({error: 'ECONNRESET'})
  })

  it("leaves an operator's default_server in place: no second one on that port (nginx -t would fail), and init names the file", async () => {
    let operatorSite = ''
    const {layout, ports, init} = await newHub('names-operator', async (layout, ports) => {
      await fs.mkdir(layout.nginxSitesEnabled, {recursive: true})
      operatorSite = layout.nginxEnabledSite('operator.conf')
      await fs.writeFile(
        operatorSite,
        `server {\n    listen ${ports.http} default_server;\n    default_type text/plain;\n    return 200 "operator\\n";\n}\n`,
      )
    })
    expect(init.exitCode, init.stderr + init.stdout).to.equal(0)
    const result = jsonOf(init)
    expect(result.unknownNames).to.deep.equal({
      closedOn: [ports.https],
      answeredBy: [{port: ports.http, file: operatorSite}],
    })
    expect(result.warnings.join('\n')).to.include(
      `${operatorSite} answers requests for names the hub does not serve on port ${ports.http}`,
    )
    await startNginx(layout)
    expect(await httpGet(ports.http, 'evil.example', '/')).to.include({status: 200, body: 'operator\n'})
    expect(await httpGet(ports.http, 'localhost', '/hub/')).to.include({
      status: 301,
      location: `https://localhost:${ports.https}/hub/`,
    })
    const ca = await fs.readFile(layout.fullchain, 'utf8')
    expect((await httpsGet(ports.https, 'evil.example', 'evil.example', ca)).error).to.be.a('string')
  })

  it("disables Debian's stock default site when it holds the hub's http port (link removed, file kept), and says so", async () => {
    const stock = (port: number) =>
      `server {\n\tlisten ${port} default_server;\n\troot /var/www/html;\n\tserver_name _;\n}\n`
    const {layout, ports, init} = await newHub('names-debian', async (layout, ports) => {
      await fs.mkdir(layout.nginxSitesAvailable, {recursive: true})
      await fs.mkdir(layout.nginxSitesEnabled, {recursive: true})
      await fs.mkdir(path.dirname(layout.dpkgStatus), {recursive: true})
      await fs.writeFile(layout.nginxDefaultSite, stock(ports.http))
      await fs.symlink(layout.nginxDefaultSite, layout.nginxDefaultSiteLink)
      const md5 = createHash('md5').update(stock(ports.http)).digest('hex')
      await fs.writeFile(
        layout.dpkgStatus,
        `Package: nginx-common\nStatus: install ok installed\nConffiles:\n /etc/nginx/sites-available/default ${md5}\n /etc/nginx/nginx.conf e5398edc0b51497dba606859fb13a86e\nDescription: nginx\n\n`,
      )
    })
    expect(init.exitCode, init.stderr + init.stdout).to.equal(0)
    expect(jsonOf(init).unknownNames).to.deep.equal({
      closedOn: [ports.http, ports.https],
      disabledSite: {link: layout.nginxDefaultSiteLink, file: layout.nginxDefaultSite},
      answeredBy: [],
    })
    await fs.lstat(layout.nginxDefaultSiteLink).then(
      () => expect.fail('the link to the stock default site is still there'),
      (error: NodeJS.ErrnoException) => expect(error.code).to.equal('ENOENT'),
    )
    expect(await fs.readFile(layout.nginxDefaultSite, 'utf8')).to.equal(stock(ports.http))
    // Enabled again (say by hand): an init that nginx -t refuses (another site is broken) leaves it enabled.
    await fs.symlink(layout.nginxDefaultSite, layout.nginxDefaultSiteLink)
    const broken = layout.nginxEnabledSite('broken.conf')
    await fs.writeFile(broken, 'server { listen 1; bogus_directive on; }\n')
    const refused = await hubctl(
      testHubInitArgs(layout.prefix, {admin: 'hcnames', jupyterhub: VENV_JUPYTERHUB}, portArgs(ports)),
    )
    expect(refused.exitCode, refused.stderr).to.equal(4)
    expect(await fs.readlink(layout.nginxDefaultSiteLink)).to.equal(layout.nginxDefaultSite)
    await fs.rm(broken)
    // The next init disables it again, and says so in words.
    const again = await hubctl(
      testHubInitArgs(layout.prefix, {admin: 'hcnames', jupyterhub: VENV_JUPYTERHUB}, portArgs(ports)),
    )
    expect(again.exitCode, again.stderr).to.equal(0)
    expect(again.stdout).to.include(
      `Disabled Debian's stock nginx site (it answered unknown names on a port of the hub): removed the link ${layout.nginxDefaultSiteLink}; the file stays in ${layout.nginxDefaultSite}`,
    )
    await startNginx(layout)
    expect(await httpGet(ports.http, 'evil.example', '/')).to.deep.equal({error: 'ECONNRESET'})
  })
})

/** The port flags of a hub's ports, as init was given them. */
function portArgs(ports: TestHubPorts): string[] {
  return [
    '--http-port',
    String(ports.http),
    '--https-port',
    String(ports.https),
    '--proxy-port',
    String(ports.proxy),
    '--proxy-api-port',
    String(ports.proxyApi),
    '--hub-port',
    String(ports.hub),
    '--proxy-standby-port',
    String(ports.proxyStandby),
    '--proxy-standby-api-port',
    String(ports.proxyStandbyApi),
  ]
}
