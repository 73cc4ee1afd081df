import {expect} from 'chai'
import {ChildProcess, execFileSync} from 'node:child_process'
import {X509Certificate} from 'node:crypto'
import fs from 'node:fs/promises'
import https from 'node:https'
import path from 'node:path'

import acme from 'acme-client'

import {Layout} from '../../src/lib/config/layout.js'
import {CliResult, freePort, snapshot} from './cli.js'
import {spawnLogged, stopProcess, waitUntil} from './processes.js'

/**
 * A real Pebble (Let's Encrypt's test CA) and pebble-challtestsrv (its DNS: every name resolves to
 * 127.0.0.1), for the end-to-end tests and the bench. Pebble's HTTPS certificate is made here, by a
 * CA of our own whose certificate hubctl gets with --acme-ca-cert: TLS is verified throughout.
 */

export interface PebbleTls {
  /** The CA that signs Pebble's HTTPS certificate (give it to hubctl as --acme-ca-cert). */
  ca: string
  cert: string
  key: string
}

export interface Pebble {
  process: ChildProcess
  directory: string
  managementUrl: string
  httpPort: number
  listenPort: number
}

export interface PebbleOptions {
  /** The port Pebble connects to for http-01 (the port hubctl or nginx answers on). */
  httpPort: number
  /** Certificate lifetime; 90 days unless given. */
  validitySeconds?: number
  /** External account binding keys (kid → base64url HMAC); binding is then required. */
  eab?: Record<string, string>
  /** Names Pebble refuses to issue for (rejectedIdentifier). */
  domainBlocklist?: string[]
  /** Extra environment, e.g. PEBBLE_WFE_NONCEREJECT. */
  env?: Record<string, string>
  /** The DNS server Pebble asks (dns-01's TXT records too), HOST:PORT; the challtestsrv unless given. */
  dnsServer?: string
}

export async function makePebbleTls(dir: string): Promise<PebbleTls> {
  const f = (name: string) => path.join(dir, name)
  const quiet = {stdio: 'ignore' as const}
  execFileSync(
    'openssl',
    [
      'req',
      '-x509',
      '-newkey',
      'ec',
      '-pkeyopt',
      'ec_paramgen_curve:P-256',
      '-nodes',
      '-keyout',
      f('ca.key'),
      '-out',
      f('ca.pem'),
      '-days',
      '2',
      '-subj',
      '/CN=hubctl test CA for Pebble',
      '-addext',
      'basicConstraints=critical,CA:TRUE',
      '-addext',
      'keyUsage=critical,keyCertSign',
    ],
    quiet,
  )
  execFileSync(
    'openssl',
    [
      'req',
      '-newkey',
      'ec',
      '-pkeyopt',
      'ec_paramgen_curve:P-256',
      '-nodes',
      '-keyout',
      f('pebble.key'),
      '-out',
      f('pebble.csr'),
      '-subj',
      '/CN=localhost',
    ],
    quiet,
  )
  await fs.writeFile(f('ext'), 'subjectAltName=DNS:localhost,IP:127.0.0.1\nextendedKeyUsage=serverAuth\n')
  execFileSync(
    'openssl',
    [
      'x509',
      '-req',
      '-in',
      f('pebble.csr'),
      '-CA',
      f('ca.pem'),
      '-CAkey',
      f('ca.key'),
      '-CAcreateserial',
      '-days',
      '2',
      '-extfile',
      f('ext'),
      '-out',
      f('pebble.pem'),
    ],
    quiet,
  )
  return {ca: f('ca.pem'), cert: f('pebble.pem'), key: f('pebble.key')}
}

export function httpsGet(url: string, ca: string): Promise<{status: number; body: string}> {
  return new Promise((resolve, reject) => {
    https
      .get(url, {ca, timeout: 5000}, (response) => {
        const chunks: Buffer[] = []
        response.on('data', (c: Buffer) => chunks.push(c))
        response.on('end', () =>
          resolve({status: response.statusCode ?? 0, body: Buffer.concat(chunks).toString('utf8')}),
        )
      })
      .on('error', reject)
  })
}

/**
 * One working directory with Pebble's TLS files and a challtestsrv; any number of Pebbles. Every
 * process it starts is stopped by stop().
 */
export class PebbleLab {
  readonly spawned: ChildProcess[] = []
  tls!: PebbleTls
  dnsPort = 0
  /** The challtestsrv's management API (POST /set-txt, /clear-txt), http://127.0.0.1:PORT. */
  challtestsrvUrl = ''

  constructor(readonly work: string) {}

  async setup(): Promise<this> {
    this.tls = await makePebbleTls(this.work)
    this.dnsPort = await this.startChalltestsrv()
    return this
  }

  /** hubctl's flags for a Pebble: its directory and the CA of its HTTPS. */
  acmeFlags(pebble: Pebble): string[] {
    return ['--acme-directory', pebble.directory, '--acme-ca-cert', this.tls.ca]
  }

  private async startChalltestsrv(): Promise<number> {
    const dns = await freePort()
    const management = await freePort()
    const log = path.join(this.work, 'challtestsrv.log')
    // DNS only (every A query → 127.0.0.1, no AAAA); the challenge listeners are off.
    const child = spawnLogged(
      'pebble-challtestsrv',
      [
        '-defaultIPv4',
        '127.0.0.1',
        '-defaultIPv6',
        '',
        '-dns01',
        `127.0.0.1:${dns}`,
        '-http01',
        '',
        '-https01',
        '',
        '-tlsalpn01',
        '',
        '-management',
        `127.0.0.1:${management}`,
      ],
      {log},
    )
    this.spawned.push(child)
    await waitUntil('pebble-challtestsrv', async () =>
      (await fs.readFile(log, 'utf8')).includes('Starting management server'),
    )
    this.challtestsrvUrl = `http://127.0.0.1:${management}`
    return dns
  }

  async startPebble(name: string, options: PebbleOptions): Promise<Pebble> {
    const listen = await freePort()
    const management = await freePort()
    const config = path.join(this.work, `${name}.json`)
    await fs.writeFile(
      config,
      JSON.stringify({
        pebble: {
          listenAddress: `127.0.0.1:${listen}`,
          managementListenAddress: `127.0.0.1:${management}`,
          certificate: this.tls.cert,
          privateKey: this.tls.key,
          httpPort: options.httpPort,
          tlsPort: await freePort(),
          ocspResponderURL: '',
          externalAccountBindingRequired: Boolean(options.eab),
          ...(options.eab ? {externalAccountMACKeys: options.eab} : {}),
          ...(options.domainBlocklist ? {domainBlocklist: options.domainBlocklist} : {}),
          certificateValidityPeriod: options.validitySeconds ?? 90 * 86_400,
        },
      }),
    )
    const child = spawnLogged(
      'pebble',
      ['-config', config, '-dnsserver', options.dnsServer ?? `127.0.0.1:${this.dnsPort}`],
      {
        // No random validation delay, no rejected nonces, and a real challenge for every order.
        env: {
          ...process.env,
          PEBBLE_VA_NOSLEEP: '1',
          PEBBLE_WFE_NONCEREJECT: '0',
          PEBBLE_AUTHZREUSE: '0',
          // One page holds every order of an account (forgetAuthorizations reads them all).
          PEBBLE_WFE_ORDERS_PER_PAGE: '1000',
          ...options.env,
        },
        log: path.join(this.work, `${name}.log`),
      },
    )
    this.spawned.push(child)
    const directory = `https://127.0.0.1:${listen}/dir`
    const ca = await fs.readFile(this.tls.ca, 'utf8')
    await waitUntil(`pebble ${name}`, async () => (await httpsGet(directory, ca)).status === 200)
    return {
      process: child,
      directory,
      managementUrl: `https://127.0.0.1:${management}`,
      httpPort: options.httpPort,
      listenPort: listen,
    }
  }

  /**
   * Deactivates every valid authorization of the prefix's ACME account at this Pebble, so that the
   * next order asks for challenges again. Pebble reuses a valid authorization one time in a hundred
   * even with PEBBLE_AUTHZREUSE=0 (wfe.go: a new one only when `rand.Intn(100) > percent`): that
   * order answers no challenge, hubctl says responder 'none', runs no DNS hook and nginx logs no
   * token (CI at 45374f5: cert.test.ts expected 'webroot', got 'none'). A test that asserts who
   * answered the challenges calls this first. Returns how many it deactivated.
   */
  async forgetAuthorizations(pebble: Pebble, layout: Layout): Promise<number> {
    return this.asAccount(pebble, layout, async (client) => {
      const account = (await client.createAccount({onlyReturnExisting: true})) as {orders?: string}
      if (!account.orders) throw new Error(`Pebble's account object names no orders URL: ${JSON.stringify(account)}`)
      const api = (
        client as unknown as {api: {apiRequest(url: string, payload: null, codes: number[]): Promise<{data: unknown}>}}
      ).api
      const list = (await api.apiRequest(account.orders, null, [200])).data as {orders?: string[]}
      let deactivated = 0
      for (const url of list.orders ?? []) {
        const order = await client.getOrder({url} as acme.Order)
        for (const authz of await client.getAuthorizations(order)) {
          if (authz.status !== 'valid') continue
          await client.deactivateAuthorization(authz)
          deactivated += 1
        }
      }
      return deactivated
    })
  }

  /**
   * `use` with an ACME client of the prefix's account at this Pebble, as any ACME client would talk
   * to it. acme-client's axios is one for the whole process (every test file's, and hubctl's own
   * modules'): its agent trusting Pebble's CA is set for this call only.
   */
  async asAccount<T>(pebble: Pebble, layout: Layout, use: (client: acme.Client) => Promise<T>): Promise<T> {
    const defaults = acme.axios.defaults as {httpsAgent?: https.Agent}
    const agent = defaults.httpsAgent
    defaults.httpsAgent = new https.Agent({ca: await fs.readFile(this.tls.ca, 'utf8')})
    try {
      const client = new acme.Client({
        directoryUrl: pebble.directory,
        accountKey: await fs.readFile(layout.acmeAccountKey, 'utf8'),
      })
      return await use(client)
    } finally {
      defaults.httpsAgent = agent
    }
  }

  /** The intermediate that signs this Pebble's certificates. */
  async intermediate(pebble: Pebble): Promise<X509Certificate> {
    return new X509Certificate(
      (await httpsGet(`${pebble.managementUrl}/intermediates/0`, await fs.readFile(this.tls.ca, 'utf8'))).body,
    )
  }

  /** The root this Pebble's chains lead to (made anew by each Pebble). */
  async root(pebble: Pebble): Promise<X509Certificate> {
    return new X509Certificate(
      (await httpsGet(`${pebble.managementUrl}/roots/0`, await fs.readFile(this.tls.ca, 'utf8'))).body,
    )
  }

  async stop(): Promise<void> {
    for (const child of this.spawned.reverse()) await stopProcess(child)
    this.spawned.length = 0
  }
}

/** nginx from a prefix's main config, in the foreground (stopped with stopProcess). */
export async function startNginx(layout: Layout): Promise<ChildProcess> {
  const child = spawnLogged(
    'nginx',
    ['-p', `${layout.prefix}/`, '-c', layout.nginxMainConf, '-e', layout.nginxErrorLog, '-g', 'daemon off;'],
    {log: path.join(layout.prefix, 'nginx.out')},
  )
  await waitUntil('nginx pid file', async () => Number((await fs.readFile(layout.nginxPid, 'utf8')).trim()) > 0)
  return child
}

/** The serial of the certificate a TLS server presents (what a browser would see). */
export function servedSerial(port: number, servername = 'localhost'): string {
  let out = ''
  try {
    out = execFileSync('openssl', ['s_client', '-connect', `127.0.0.1:${port}`, '-servername', servername], {
      input: '',
      encoding: 'utf8',
      timeout: 10_000,
      stdio: ['pipe', 'pipe', 'ignore'],
    })
  } catch (error) {
    out = String((error as {stdout?: string}).stdout ?? '')
  }
  const pem = /-----BEGIN CERTIFICATE-----[\s\S]+?-----END CERTIFICATE-----/.exec(out)?.[0]
  return pem ? new X509Certificate(pem).serialNumber : ''
}

export async function liveSerial(layout: Layout): Promise<string> {
  return new X509Certificate(await fs.readFile(layout.fullchain, 'utf8')).serialNumber
}

/** The certificates and keys under srv/jupyterhub/ssl (renewal.json records attempts; a first attempt makes the account key). */
export async function liveFiles(layout: Layout): Promise<Record<string, string>> {
  const all = await snapshot(layout.sslDir)
  delete all['renewal.json']
  delete all['acme_account_key.pem']
  return all
}

/** Run `command` and check the live certificate, key and hubctl.json are exactly as before. */
export async function untouched(layout: Layout, command: () => Promise<CliResult>): Promise<CliResult> {
  const files = await liveFiles(layout)
  const settings = await fs.readFile(layout.settings, 'utf8')
  const result = await command()
  expect(await liveFiles(layout), 'the live certificate and key').to.deep.equal(files)
  expect(await fs.readFile(layout.settings, 'utf8'), 'hubctl.json').to.equal(settings)
  return result
}
