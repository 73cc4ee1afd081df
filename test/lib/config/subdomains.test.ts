import {expect} from 'chai'
import fs from 'node:fs/promises'
import os from 'node:os'
import path from 'node:path'

import {HubctlError} from '../../../src/lib/errors.js'
import {renderHubConfig} from '../../../src/lib/config/hubconfig.js'
import {Layout} from '../../../src/lib/config/layout.js'
import type {NginxInstall} from '../../../src/lib/config/nginx.js'
import {parseSettings, type Settings} from '../../../src/lib/config/settings.js'
import {renderSite} from '../../../src/lib/config/site.js'
import {subdomainHost, subdomainNames, wildcardProbeName} from '../../../src/lib/config/subdomains.js'
import {resolveInitRequest} from '../../../src/lib/setup/init-request.js'
import {checkDns} from '../../../src/lib/setup/preflight.js'
import {proxySpec} from '../../../src/lib/stack/children.js'
import {makeSelfSigned} from '../../../src/lib/tls/selfsigned.js'

const settings: Settings = {
  version: 1,
  domains: ['hub.example.org', '*.hub.example.org'],
  subdomains: true,
  admins: ['alice'],
  allowedUsers: ['bob'],
  authenticator: 'pam',
  spawner: 'local',
  tls: {mode: 'self-signed'},
  ports: {http: 80, https: 443, proxy: 8000, proxyApi: 8001, hub: 8081, proxyStandby: 8002, proxyStandbyApi: 8003},
  dhparam: {mode: 'ffdhe2048', bits: 2048},
  executables: {
    jupyterhub: '/opt/jupyterhub/bin/jupyterhub',
    singleuser: '/opt/jupyterhub/bin/jupyterhub-singleuser',
    node: '/usr/bin/node',
    proxy: '/x/chp',
  },
  jupyterhubVersion: '6.1.1',
  nginxSupervised: false,
  proxyTls: false,
}
const oneOrigin: Settings = {...settings, domains: ['hub.example.org'], subdomains: undefined}
const v6 = {
  executable: '/opt/jupyterhub/bin/jupyterhub',
  version: '6.1.1',
  major: 6,
  minor: 1,
  singleuser: '/opt/jupyterhub/bin/jupyterhub-singleuser',
  python: 'python3',
}
const nginx122: NginxInstall = {
  executable: '/usr/sbin/nginx',
  version: '1.22.1',
  http2Directive: false,
  rejectHandshake: true,
}

async function refusal(work: Promise<unknown>): Promise<HubctlError> {
  const error = await work.then(
    () => undefined,
    (e: unknown) => e,
  )
  expect(error, 'refused').to.be.instanceOf(HubctlError)
  return error as HubctlError
}

describe('per-user subdomains (init --subdomains)', () => {
  it('adds *.DOMAIN right after the primary name, once', () => {
    expect(subdomainNames(['hub.example.org'])).to.deep.equal(['hub.example.org', '*.hub.example.org'])
    expect(subdomainNames(['hub.example.org', 'jupyter.example.org', '*.hub.example.org'])).to.deep.equal([
      'hub.example.org',
      '*.hub.example.org',
      'jupyter.example.org',
    ])
  })

  it("init's request: --subdomains with --tls self-signed puts the wildcard in the names", async () => {
    const request = await resolveInitRequest({
      domain: ['Hub.Example.org'],
      admin: ['alice'],
      tls: 'self-signed',
      subdomains: true,
    })
    expect(request.subdomains).to.equal(true)
    expect(request.domains).to.deep.equal(['hub.example.org', '*.hub.example.org'])
    const plain = await resolveInitRequest({domain: ['hub.example.org'], admin: ['alice'], tls: 'self-signed'})
    expect(plain.subdomains).to.equal(false)
    expect(plain.domains).to.deep.equal(['hub.example.org'])
  })

  it("refuses --subdomains with Let's Encrypt over http-01, naming DNS-01's flags", async () => {
    const error = await refusal(
      resolveInitRequest({domain: ['hub.example.org'], admin: ['alice'], email: 'a@example.org', subdomains: true}),
    )
    expect(error.exitCode).to.equal(2)
    expect(error.message).to.include('*.hub.example.org').and.to.include('DNS-01')
    expect(error.fix).to.include('--dns').and.to.include('--dns-hook').and.to.include('--tls self-signed')
  })

  it('refuses --subdomains on localhost and in local mode', async () => {
    expect(
      (await refusal(resolveInitRequest({domain: ['localhost'], admin: ['a'], tls: 'self-signed', subdomains: true})))
        .message,
    ).to.include('localhost')
    expect((await refusal(resolveInitRequest({local: true, subdomains: true}))).message).to.include('--local')
  })

  describe('--tls manual', () => {
    let dir = ''
    before(async () => {
      dir = await fs.mkdtemp(path.join(os.tmpdir(), 'hubctl-subdomains-'))
    })
    after(async () => {
      await fs.rm(dir, {recursive: true, force: true})
    })
    const pair = async (names: string[]) => {
      const made = await makeSelfSigned(names)
      const cert = path.join(dir, `${names.length}-${names[0]}.pem`)
      await fs.writeFile(cert, made.fullchain)
      await fs.writeFile(`${cert}.key`, made.privkey)
      return {tls: 'manual', cert, key: `${cert}.key`}
    }

    it('takes a certificate that names the wildcard', async () => {
      const flags = await pair(['hub.example.org', '*.hub.example.org'])
      const request = await resolveInitRequest({domain: ['hub.example.org'], admin: ['a'], subdomains: true, ...flags})
      expect(request.domains).to.deep.equal(['hub.example.org', '*.hub.example.org'])
    })

    it('refuses one without the wildcard, naming what it covers', async () => {
      const flags = await pair(['hub.example.org'])
      const error = await refusal(
        resolveInitRequest({domain: ['hub.example.org'], admin: ['a'], subdomains: true, ...flags}),
      )
      expect(error.exitCode).to.equal(2)
      expect(error.message).to.include('does not cover *.hub.example.org').and.to.include('it names hub.example.org')
    })
  })

  it('jupyterhub_config.py: subdomain_host (the https port when not 443) and __Host- cookies; neither on one origin', async () => {
    const text = await renderHubConfig(new Layout('/'), settings, v6, '/lab')
    expect(text).to.include('c.JupyterHub.subdomain_host = "https://hub.example.org"\n')
    expect(text).to.include('c.JupyterHub.cookie_host_prefix_enabled = True\n')
    expect(subdomainHost({...settings, ports: {...settings.ports, https: 8443}})).to.equal(
      'https://hub.example.org:8443',
    )
    const single = await renderHubConfig(new Layout('/'), oneOrigin, v6, '/lab')
    expect(single).not.to.include('subdomain_host')
    expect(single).not.to.include('cookie_host_prefix_enabled')
  })

  it("refuses Debian's JupyterHub 3.0 (and anything before 4.1), saying why", async () => {
    const v3 = {...v6, version: '3.0.0', major: 3, minor: 0}
    const error = await refusal(renderHubConfig(new Layout('/'), settings, v3, '/tree'))
    expect(error.message).to.include('4.1').and.to.include('__Host-').and.to.include('CVE-2024-28233')
    await renderHubConfig(new Layout('/'), settings, {...v6, version: '4.1.0', major: 4, minor: 1}, '/lab')
  })

  it("the nginx site serves DOMAIN and *.DOMAIN in the hub's server blocks", async () => {
    const site = await renderSite(new Layout('/'), settings, nginx122, {ports: [80, 443]})
    expect(site.match(/server_name hub\.example\.org \*\.hub\.example\.org;/g)).to.have.length(2)
    const single = await renderSite(new Layout('/'), oneOrigin, nginx122, {ports: [80, 443]})
    expect(single).not.to.include('*.')
  })

  it('the proxy routes by host with subdomains (--host-routing), by path otherwise', () => {
    expect(proxySpec(new Layout('/'), settings, 'token').args).to.include('--host-routing')
    expect(proxySpec(new Layout('/'), oneOrigin, 'token').args).not.to.include('--host-routing')
  })

  it('hubctl.json holds the wildcard only with subdomains', () => {
    expect(parseSettings(JSON.stringify(settings), 'hubctl.json').domains).to.deep.equal(settings.domains)
    expect(() => parseSettings(JSON.stringify({...settings, subdomains: undefined}), 'hubctl.json')).to.throw(
      /"domains" is invalid/,
    )
  })

  it('the DNS check asks for a random name under *.DOMAIN, and says which', async () => {
    const asked: string[] = []
    const here = os.networkInterfaces().lo?.[0]?.address ?? '127.0.0.1'
    const lookup = async (name: string) => {
      asked.push(name)
      if (name.endsWith('.hub.example.org')) return [here]
      throw new Error('ENOTFOUND')
    }
    expect(await checkDns('*.hub.example.org', lookup, (w) => wildcardProbeName(w, () => 'abcd1234'))).to.equal(
      undefined,
    )
    expect(asked).to.deep.equal(['hubctl-check-abcd1234.hub.example.org'])
    expect(wildcardProbeName('*.hub.example.org')).to.match(/^hubctl-check-[0-9a-f]{8}\.hub\.example\.org$/)
    const missing = await refusal(checkDns('*.hub.other.org', lookup))
    expect(missing.message).to.match(/^hubctl-check-[0-9a-f]{8}\.hub\.other\.org \(a name under \*\.hub\.other\.org\)/)
    expect(missing.fix).to.include('*.hub.other.org')
    const elsewhere = await checkDns('*.hub.example.org', async () => ['192.0.2.7'])
    expect(elsewhere).to.include('(a name under *.hub.example.org) resolves to 192.0.2.7')
  })
})
