// e2e-lane: parallel
import {expect} from 'chai'
import {ChildProcess} from 'node:child_process'
import fs from 'node:fs/promises'
import http from 'node:http'
import path from 'node:path'

import {Layout} from '../../src/lib/config/layout.js'
import {Nginx, detectNginx} from '../../src/lib/config/nginx.js'
import {execaRunner} from '../../src/lib/runner.js'
import {DEBIAN_JUPYTERHUB, CliResult, hubctl, portFlags, tempPrefix, testHubInitArgs} from '../helpers/cli.js'
import {PebbleLab, liveSerial, servedSerial, startNginx} from '../helpers/pebble.js'
import {stopProcess} from '../helpers/processes.js'

/*
 * Issue 20: the first certificate while nginx already holds the HTTP port with sites that are not
 * the hub's, as on a fresh Debian or Ubuntu machine where `apt-get install nginx` starts the system
 * nginx with its `default` site on port 80 (default_server, root /var/www/html). The nginx here is
 * the prefix's own, started before init with Debian's stock default site (read from
 * /etc/nginx/sites-available/default, the port moved) and an operator's other site; hubctl must find
 * it holding the port (its pid file), answer the CA from its webroot through a challenge site of the
 * order's duration, and leave both other sites answering as before. The same at prefix `/` with the
 * system nginx under systemd: test/e2e/systemd.test.ts.
 */

/** GET http://127.0.0.1:port/ with this Host: status and body. */
function get(port: number, host: string, urlPath = '/'): Promise<{status: number; body: string}> {
  return new Promise((resolve, reject) => {
    http
      .get({host: '127.0.0.1', port, path: urlPath, headers: {Host: host}}, (response) => {
        const chunks: Buffer[] = []
        response.on('data', (chunk: Buffer) => chunks.push(chunk))
        response.on('end', () =>
          resolve({status: response.statusCode ?? 0, body: Buffer.concat(chunks).toString('utf8')}),
        )
      })
      .on('error', reject)
  })
}

function lastLine(result: CliResult): string {
  return result.stderr.trim().split('\n').pop() ?? ''
}

describe("the first certificate while nginx holds the HTTP port with other sites (Debian's default site)", function () {
  this.timeout(300_000)
  let work: string
  let lab: PebbleLab
  const cleanup: string[] = []
  const children: ChildProcess[] = []

  before(async () => {
    work = await tempPrefix('hubctl-acme-nginx')
    cleanup.push(work)
    lab = await new PebbleLab(work).setup()
  })

  after(async () => {
    for (const child of children) await stopProcess(child)
    await lab?.stop()
    for (const dir of cleanup) await fs.rm(dir, {recursive: true, force: true})
  })

  /** A prefix whose nginx runs before init: Debian's default site and `extra` sites on the HTTP port. */
  async function machineWithNginx(
    label: string,
    extra: Record<string, (port: number) => string>,
  ): Promise<{layout: Layout; ports: Awaited<ReturnType<typeof portFlags>>['ports']; flags: string[]}> {
    const layout = new Layout(await tempPrefix(label))
    cleanup.push(layout.prefix)
    // nginx's workers run as nobody: they must reach the webroot, as under / (mkdtemp makes 0700).
    await fs.chmod(layout.prefix, 0o755)
    const {ports, flags} = await portFlags()
    const nginx = new Nginx(layout, await detectNginx(execaRunner), execaRunner)
    await nginx.writeMainConf()
    const stock = await fs.readFile('/etc/nginx/sites-available/default', 'utf8')
    expect(stock, "Debian's default site").to.match(/listen 80 default_server;/)
    await fs.writeFile(
      path.join(layout.nginxSitesEnabled, 'default.conf'),
      stock
        .replaceAll('listen 80 default_server', `listen ${ports.http} default_server`)
        .replaceAll('listen [::]:80 default_server', `listen [::]:${ports.http} default_server`),
    )
    for (const [name, site] of Object.entries(extra))
      await fs.writeFile(path.join(layout.nginxSitesEnabled, name), site(ports.http))
    children.push(await startNginx(layout))
    return {layout, ports, flags}
  }

  async function initWithPebble(
    layout: Layout,
    ports: {http: number},
    flags: string[],
    label: string,
  ): Promise<CliResult> {
    const pebble = await lab.startPebble(label, {httpPort: ports.http})
    return hubctl(
      testHubInitArgs(
        layout.prefix,
        {
          admin: 'alice',
          jupyterhub: DEBIAN_JUPYTERHUB,
          tls: ['--tls', 'letsencrypt', ...lab.acmeFlags(pebble)],
          schedule: true,
          extra: ['--email', 'admin@example.org'],
        },
        flags,
      ),
    )
  }

  const otherSite = (port: number) =>
    `server {\n    listen ${port};\n    server_name other.example;\n    location / { return 200 "the other site\\n"; }\n}\n`

  it('init gets the certificate through that nginx, installs the hub site beside the others, and the other sites answer as before', async () => {
    const {layout, ports, flags} = await machineWithNginx('hubctl-acme-nginx-default', {'other.conf': otherSite})
    const before = await get(ports.http, 'unknown.example')
    expect(before.status, "Debian's default site answers any other name").to.equal(200)
    expect(before.body).to.include('Welcome to nginx')

    const init = await initWithPebble(layout, ports, flags, 'default-site')
    expect(init.exitCode, `${init.stdout}\n${init.stderr}`).to.equal(0)

    // The certificate is Pebble's and nginx (reloaded by init) serves it on the hub's site.
    expect(servedSerial(ports.https)).to.equal(await liveSerial(layout))
    // The challenge site lived only for the order.
    expect(await fs.stat(layout.nginxChallengeSite).catch(() => undefined)).to.equal(undefined)
    expect(await fs.readdir(layout.acmeChallengeDir)).to.deep.equal([])
    // The hub's name now goes to https; every other name still reaches the site that answered it.
    const hub = await get(ports.http, 'localhost', '/hub/')
    expect(hub.status).to.equal(301)
    expect((await get(ports.http, 'other.example')).body).to.equal('the other site\n')
    const unknown = await get(ports.http, 'unknown.example')
    expect(unknown.status).to.equal(200)
    expect(unknown.body).to.include('Welcome to nginx')
    expect(await fs.readFile(path.join(layout.nginxSitesEnabled, 'default.conf'), 'utf8')).to.include('default_server')
  })

  it("another site that already answers the hub's name on the HTTP port: refused naming that site, before the CA is asked; nginx as it was", async () => {
    const claims = (port: number) =>
      `server {\n    listen ${port};\n    server_name localhost;\n    location / { return 200 "an old site for localhost\\n"; }\n}\n`
    const {layout, ports, flags} = await machineWithNginx('hubctl-acme-nginx-claimed', {'old-hub.conf': claims})
    const init = await initWithPebble(layout, ports, flags, 'claimed')
    expect(init.exitCode, `${init.stdout}\n${init.stderr}`).to.equal(5)
    expect(lastLine(init)).to.match(
      new RegExp(
        `^hubctl: another nginx site \\(${path.join(layout.nginxSitesEnabled, 'old-hub.conf').replaceAll('.', '\\.')}\\) already answers localhost on port ${ports.http}.*\\. Fix: remove localhost from that site's server_name`,
      ),
    )
    expect(await fs.stat(layout.nginxChallengeSite).catch(() => undefined)).to.equal(undefined)
    expect((await get(ports.http, 'localhost')).body).to.equal('an old site for localhost\n')
    expect((await get(ports.http, 'unknown.example')).body).to.include('Welcome to nginx')
    expect(await fs.stat(layout.fullchain).catch(() => undefined)).to.equal(undefined)
  })
})
