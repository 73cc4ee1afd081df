import {expect} from 'chai'
import {createHash} from 'node:crypto'
import fs from 'node:fs/promises'
import os from 'node:os'
import path from 'node:path'

import {Layout} from '../../../src/lib/config/layout.js'
import {detectNginx, type NginxInstall} from '../../../src/lib/config/nginx.js'
import {testSettings} from '../../helpers/settings.js'
import {
  defaultServerPorts,
  dpkgConffileMd5,
  planDefaultServers,
  recordDisabledDefault,
  renderChallengeSite,
  renderSite,
  restoreDefaultSite,
} from '../../../src/lib/config/site.js'

/*
 * The nginx site's answer to names the hub does not serve, and who else may give it: fake
 * /etc/nginx trees (and a fake dpkg status) under a temporary prefix.
 */

const STOCK_DEFAULT = [
  '# Default server configuration',
  'server {',
  '\tlisten 80 default_server;',
  '\tlisten [::]:80 default_server;',
  '\t# listen 443 ssl default_server;',
  '\troot /var/www/html;',
  '\tserver_name _;',
  '}',
  '',
].join('\n')

/** The `server { … }` block of a rendered site that holds this text. */
function serverBlock(site: string, holding: string): string {
  const block = site.split(/\n(?=server \{)/).find((b) => b.startsWith('server {') && b.includes(holding))
  expect(block, `a server block with ${holding}`).to.be.a('string')
  return block!
}

const md5 = (text: string) => createHash('md5').update(text).digest('hex')

/** dpkg's status file with nginx-common's conffiles (the stock default site's md5 as given). */
const dpkgStatus = (defaultMd5: string) =>
  [
    'Package: nginx',
    'Status: install ok installed',
    'Version: 1.22.1-9',
    '',
    'Package: nginx-common',
    'Status: install ok installed',
    'Architecture: all',
    'Conffiles:',
    ' /etc/nginx/nginx.conf e5398edc0b51497dba606859fb13a86e',
    ` /etc/nginx/sites-available/default ${defaultMd5}`,
    ' /etc/nginx/snippets/snakeoil.conf 0a8bff8a55d8ec9d002e1b8460d2d64f',
    'Description: small, powerful, scalable web/proxy server - common files',
    '',
    'Package: zlib1g',
    'Status: install ok installed',
    '',
  ].join('\n')

const settings = testSettings({domains: ['hub.example.org', 'jupyter.example.org']})
const nginx122: NginxInstall = {
  executable: '/usr/sbin/nginx',
  version: '1.22.1',
  http2Directive: false,
  rejectHandshake: true,
}

describe('nginx site: names the hub does not serve', () => {
  let prefix = ''
  let layout: Layout

  beforeEach(async () => {
    prefix = await fs.mkdtemp(path.join(os.tmpdir(), 'hubctl-site-'))
    layout = new Layout(prefix)
    await fs.mkdir(layout.nginxSitesAvailable, {recursive: true})
    await fs.mkdir(layout.nginxSitesEnabled, {recursive: true})
    await fs.mkdir(layout.nginxConfD, {recursive: true})
    await fs.mkdir(path.dirname(layout.dpkgStatus), {recursive: true})
  })
  afterEach(async () => {
    await fs.rm(prefix, {recursive: true, force: true})
  })

  /** Debian's stock default site, enabled as the package enables it (content as given; dpkg's md5 of the stock one). */
  const debianDefault = async (content = STOCK_DEFAULT) => {
    await fs.writeFile(layout.nginxDefaultSite, content)
    await fs.symlink(layout.nginxDefaultSite, layout.nginxDefaultSiteLink)
    await fs.writeFile(layout.dpkgStatus, dpkgStatus(md5(STOCK_DEFAULT)))
  }

  it('finds the ports of listen ... default_server in any form, comments left out', () => {
    const text = [
      'server { listen 80 default_server; listen [::]:80 default_server ipv6only=on; }',
      'server {listen 127.0.0.1:8080 default;}',
      'server { listen *:8443 ssl http2 default_server; }',
      'server { listen 10.0.0.1 default_server; }', // an address alone is port 80
      'server { listen unix:/run/x.sock default_server; }',
      'server { listen 9000; server_name default_server; }', // not a listen parameter
      '# server { listen 9443 ssl default_server; }',
      'server { listen 9444 ssl; } # default_server',
    ].join('\n')
    expect(defaultServerPorts(text)).to.deep.equal([80, 8080, 8443])
    expect(defaultServerPorts(STOCK_DEFAULT)).to.deep.equal([80])
  })

  it("reads a conffile's md5 from dpkg's status, for that package only", () => {
    const status = dpkgStatus('f1f26aef86f90a484f3a2f46ccc46ff6')
    expect(dpkgConffileMd5(status, 'nginx-common', '/etc/nginx/sites-available/default')).to.equal(
      'f1f26aef86f90a484f3a2f46ccc46ff6',
    )
    expect(dpkgConffileMd5(status, 'nginx', '/etc/nginx/sites-available/default')).to.equal(undefined)
    expect(dpkgConffileMd5(status, 'nginx-common', '/etc/nginx/sites-available/other')).to.equal(undefined)
  })

  it('no other site: the hub closes unknown names on both its ports', async () => {
    expect(await planDefaultServers(layout, settings.ports)).to.deep.equal({ports: [80, 443], others: []})
  })

  it("Debian's stock default site on the hub's port 80: its link is disabled, the hub closes unknown names on both ports", async () => {
    await debianDefault()
    expect(await planDefaultServers(layout, settings.ports)).to.deep.equal({
      ports: [80, 443],
      disable: {link: layout.nginxDefaultSiteLink, file: layout.nginxDefaultSite},
      others: [],
    })
  })

  it('the stock default site on a port the hub does not use is left alone', async () => {
    await debianDefault()
    expect(await planDefaultServers(layout, {http: 8080, https: 8443})).to.deep.equal({ports: [8080, 8443], others: []})
  })

  it("the default site changed by the operator is the operator's: left enabled, and the hub adds no default server on its port", async () => {
    await debianDefault(STOCK_DEFAULT.replace('root /var/www/html;', 'root /srv/www;'))
    expect(await planDefaultServers(layout, settings.ports)).to.deep.equal({
      ports: [443],
      others: [{port: 80, file: layout.nginxDefaultSiteLink}],
    })
  })

  it("a default site that is not the package's (no dpkg record, a copy instead of the link, a link elsewhere) is the operator's", async () => {
    // No dpkg status: not known to be the package's.
    await fs.writeFile(layout.nginxDefaultSite, STOCK_DEFAULT)
    await fs.symlink(layout.nginxDefaultSite, layout.nginxDefaultSiteLink)
    expect((await planDefaultServers(layout, settings.ports)).others).to.deep.equal([
      {port: 80, file: layout.nginxDefaultSiteLink},
    ])
    // A copy of the stock file in sites-enabled instead of the link.
    await fs.writeFile(layout.dpkgStatus, dpkgStatus(md5(STOCK_DEFAULT)))
    await fs.rm(layout.nginxDefaultSiteLink)
    await fs.writeFile(layout.nginxDefaultSiteLink, STOCK_DEFAULT)
    expect((await planDefaultServers(layout, settings.ports)).disable).to.equal(undefined)
    // A link to another file with the same content.
    await fs.rm(layout.nginxDefaultSiteLink)
    const elsewhere = path.join(layout.nginxSitesAvailable, 'mine')
    await fs.writeFile(elsewhere, STOCK_DEFAULT)
    await fs.symlink(elsewhere, layout.nginxDefaultSiteLink)
    expect(await planDefaultServers(layout, settings.ports)).to.deep.equal({
      ports: [443],
      others: [{port: 80, file: layout.nginxDefaultSiteLink}],
    })
  })

  it("another site's default_server (sites-enabled or conf.d) keeps the hub's off that port, and only that one", async () => {
    await fs.writeFile(
      layout.nginxEnabledSite('wiki'),
      'server { listen 443 ssl default_server; ssl_certificate x; ssl_certificate_key y; }\n',
    )
    await fs.writeFile(layout.nginxConfDFile('catchall.conf'), 'server { listen 8080 default_server; }\n')
    await fs.writeFile(layout.nginxConfDFile('ignored.txt'), 'server { listen 80 default_server; }\n')
    await fs.writeFile(layout.nginxEnabledSite('.hidden'), 'server { listen 80 default_server; }\n')
    expect(await planDefaultServers(layout, settings.ports)).to.deep.equal({
      ports: [80],
      others: [{port: 443, file: layout.nginxEnabledSite('wiki')}],
    })
    expect(await planDefaultServers(layout, {http: 8080, https: 443})).to.deep.equal({
      ports: [],
      others: [
        {port: 8080, file: layout.nginxConfDFile('catchall.conf')},
        {port: 443, file: layout.nginxEnabledSite('wiki')},
      ],
    })
  })

  describe('uninstall puts back the stock default site that init disabled', () => {
    /** init's step: the stock site enabled, then its link removed and recorded. */
    const disabledByInit = async (content = STOCK_DEFAULT) => {
      await debianDefault()
      await fs.mkdir(layout.srvDir, {recursive: true})
      const target = await fs.readlink(layout.nginxDefaultSiteLink)
      await fs.rm(layout.nginxDefaultSiteLink)
      await recordDisabledDefault(layout, target)
      await fs.writeFile(layout.nginxDefaultSite, content)
      return target
    }
    const linkOf = () => fs.readlink(layout.nginxDefaultSiteLink).catch(() => undefined)

    it('enables it again, its link as it was, when init recorded disabling it and it is still the stock file', async () => {
      const target = await disabledByInit()
      expect(await restoreDefaultSite(layout)).to.deep.equal({restored: layout.nginxDefaultSiteLink})
      expect(await linkOf()).to.equal(target)
      expect(await fs.stat(layout.nginxDefaultSiteRecord).catch(() => undefined)).to.equal(undefined)
    })

    it('without init’s record (the operator disabled it, or an older hubctl did) leaves it disabled', async () => {
      await debianDefault()
      await fs.rm(layout.nginxDefaultSiteLink)
      expect(await restoreDefaultSite(layout)).to.deep.equal({})
      expect(await linkOf()).to.equal(undefined)
    })

    it('leaves it disabled, saying why, when the file changed or another site claims default_server on its port now', async () => {
      await disabledByInit(STOCK_DEFAULT.replace('root /var/www/html;', 'root /srv/www;'))
      expect((await restoreDefaultSite(layout)).skipped).to.match(/no longer the file nginx-common shipped/)
      expect(await linkOf()).to.equal(undefined)

      await fs.rm(prefix, {recursive: true, force: true})
      await fs.mkdir(layout.nginxSitesAvailable, {recursive: true})
      await fs.mkdir(layout.nginxSitesEnabled, {recursive: true})
      await fs.mkdir(path.dirname(layout.dpkgStatus), {recursive: true})
      await disabledByInit()
      const other = layout.nginxEnabledSite('mine')
      await fs.writeFile(other, 'server { listen 80 default_server; return 404; }\n')
      expect((await restoreDefaultSite(layout)).skipped).to.equal(
        `${other} answers unknown names on port 80 now (its default_server)`,
      )
      expect(await linkOf()).to.equal(undefined)
      expect(await fs.stat(layout.nginxDefaultSiteRecord).catch(() => undefined)).to.equal(undefined)
    })

    it('leaves a sites-enabled/default made again meanwhile as it is', async () => {
      await disabledByInit()
      await fs.writeFile(layout.nginxDefaultSiteLink, 'server { listen 80 default_server; }\n')
      expect(await restoreDefaultSite(layout)).to.deep.equal({})
      expect(await fs.readFile(layout.nginxDefaultSiteLink, 'utf8')).to.include('listen 80')
    })
  })

  it("hubctl's own site is never counted as another site", async () => {
    await fs.writeFile(layout.nginxSite, 'server { listen 80 default_server; }\n')
    await fs.symlink(layout.nginxSite, layout.nginxSiteLink)
    expect(await planDefaultServers(layout, settings.ports)).to.deep.equal({ports: [80, 443], others: []})
  })

  it('redirects port 80 to the primary name, never to the Host sent, and closes unknown names on the planned ports', async () => {
    const site = await renderSite(layout, settings, nginx122, {ports: [80, 443]})
    expect(site).to.include('return 301 https://hub.example.org$request_uri;')
    expect(site).not.to.include('$host$request_uri')
    expect(site).to.match(/listen 80 default_server;[\s\S]*?return 444;/)
    const tlsDefault = serverBlock(site, 'listen 443 ssl http2 default_server;')
    expect(tlsDefault).to.include('ssl_reject_handshake on;').and.to.include('return 444;')
    // The port's protocols and ciphers are the default server's: the hub's own (else no TLS 1.3).
    const hub = serverBlock(site, 'server_name hub.example.org jupyter.example.org;\n\n    # Mozilla')
    for (const directive of ['ssl_protocols', 'ssl_ciphers', 'ssl_prefer_server_ciphers']) {
      const line = new RegExp(`^\\s+${directive} .*$`, 'm')
      expect(tlsDefault.match(line)?.[0], directive).to.equal(hub.match(line)?.[0]).and.not.equal(undefined)
    }
    const on8443 = await renderSite(layout, {...settings, ports: {...settings.ports, https: 8443}}, nginx122, {
      ports: [],
    })
    expect(on8443).to.include('return 301 https://hub.example.org:8443$request_uri;')
    expect(on8443).not.to.include('default_server')
    const httpOnly = await renderSite(layout, settings, nginx122, {ports: [80]})
    expect(httpOnly.match(/default_server/g)?.length).to.be.oneOf([1, 2]) // [::]:80 too with IPv6
    expect(httpOnly).not.to.match(/listen 443[^;]*default_server/)
  })

  it("an nginx without ssl_reject_handshake (before 1.19.4) closes unknown names on https after a handshake with the hub's certificate", async () => {
    const site = await renderSite(
      layout,
      settings,
      {...nginx122, version: '1.18.0', rejectHandshake: false},
      {ports: [80, 443]},
    )
    expect(site).not.to.include('ssl_reject_handshake on')
    const tlsDefault = serverBlock(site, 'listen 443 ssl http2 default_server;')
    expect(tlsDefault).to.include(`ssl_certificate ${layout.fullchain};`)
    expect(tlsDefault).to.include(`ssl_certificate_key ${layout.privkey};`)
    expect(tlsDefault).to.include('ssl_protocols TLSv1.2 TLSv1.3;').and.to.include('return 444;')
  })

  it('knows from nginx -v whether this nginx has ssl_reject_handshake (1.19.4) and the http2 directive (1.25.1)', async () => {
    const said = (version: string) => ({
      run: async () => ({exitCode: 0, stdout: '', stderr: `nginx version: nginx/${version}\n`, notFound: false}),
    })
    const flags = async (version: string) => {
      const {rejectHandshake, http2Directive} = await detectNginx(said(version), process.execPath)
      return {rejectHandshake, http2Directive}
    }
    expect(await flags('1.18.0')).to.deep.equal({rejectHandshake: false, http2Directive: false})
    expect(await flags('1.19.4')).to.deep.equal({rejectHandshake: true, http2Directive: false})
    expect(await flags('1.22.1')).to.deep.equal({rejectHandshake: true, http2Directive: false})
    expect(await flags('1.25.1')).to.deep.equal({rejectHandshake: true, http2Directive: true})
    expect(await flags('2.0.0')).to.deep.equal({rejectHandshake: true, http2Directive: true})
  })

  it('limits how many login POSTs one address has in the hub at once, with the same 429 page', async () => {
    const site = await renderSite(layout, settings, nginx122, {ports: [80, 443]})
    expect(site).to.include('limit_conn_zone $hubctl_login_key zone=hubctl_login_conn:10m;')
    expect(site).to.match(
      /location ~ \^\/hub\/login\/\?\$ \{[^}]*limit_conn hubctl_login_conn 8;\s+limit_conn_status 429;\s+error_page 429 @hubctl_login_limited;/,
    )
  })
})

/*
 * The challenge site of one ACME order (issue 20): the hub's names only, on the HTTP port, the
 * webroot, and never a default_server (the other sites of a system nginx keep every other name).
 */
describe('the ACME challenge site', () => {
  const layout = new Layout('/srv/test-prefix')

  it('serves the webroot for the names given on the HTTP port, and claims no other name', async () => {
    const site = await renderChallengeSite(layout, 8080, ['hub.example.org', 'xn--bcher-kva.example'])
    expect(site).to.match(/^\s*listen 8080;$/m)
    expect(site).to.match(/^\s*server_name hub\.example\.org xn--bcher-kva\.example;$/m)
    expect(site).to.include(`root ${layout.acmeWebroot};`)
    expect(site).to.match(/location \^~ \/\.well-known\/acme-challenge\/ \{/)
    expect(site).not.to.match(/listen[^;]*default_server/)
    expect(site).not.to.match(/server_name\s+_/)
  })

  it('refuses a name that is not one nginx token (it would inject configuration)', async () => {
    const refused = await renderChallengeSite(layout, 80, ['hub.example.org; return 200 x']).then(
      () => undefined,
      (error: Error) => error,
    )
    expect(refused?.message).to.match(/nginx|unsafe|refus/i)
  })
})
