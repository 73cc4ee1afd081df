// e2e-lane: parallel
import {expect} from 'chai'
import {ChildProcess, spawn} from 'node:child_process'
import {X509Certificate, createPrivateKey, createPublicKey} from 'node:crypto'
import fs from 'node:fs/promises'
import http from 'node:http'
import https from 'node:https'
import net from 'node:net'
import path from 'node:path'

import {Layout} from '../../src/lib/config/layout.js'
import {
  BIN,
  DEBIAN_JUPYTERHUB,
  freePort,
  hubctl,
  portFlags,
  snapshot,
  tempPrefix,
  jsonOf,
  testHubFlags,
  failed,
  ok,
} from '../helpers/cli.js'
import {Pebble, PebbleLab, httpsGet, liveSerial, untouched, servedSerial, startNginx} from '../helpers/pebble.js'
import {alive, stopProcess, waitUntil} from '../helpers/processes.js'
import {processTree} from '../helpers/sampler.js'

/**
 * ACME failures against a real Pebble (issue 6): the http-01 challenge unreachable, the CA down or
 * going away mid-order, the CA refusing (rate limit, nonces, policy), a malformed --acme-directory,
 * and kill -9 of `cert renew` at random moments. Each failure: a clear one-line message, a non-zero
 * exit, the live certificate and key untouched, hubctl.json unchanged.
 * Already in cert.test.ts and not repeated here: `cert renew` with the CA down (ECONNREFUSED), two
 * renewals at once, a held lock, the EAB binding missing.
 */

const json = jsonOf

/** The live fullchain's leaf and the live private key belong together. */
async function pairMatches(layout: Layout): Promise<boolean> {
  const leaf = new X509Certificate(await fs.readFile(layout.fullchain, 'utf8'))
  const key = createPrivateKey(await fs.readFile(layout.privkey, 'utf8'))
  const fromKey = createPublicKey(key).export({type: 'spki', format: 'der'})
  return leaf.publicKey.export({type: 'spki', format: 'der'}).equals(fromKey)
}

/** hubctl's refusal of a program other than nginx (here: this test's own process) on the HTTP port. */
function heldByOther(port: number): RegExp {
  return new RegExp(
    `port ${port} is held by node \\(pid ${process.pid}, uid 0\\), not by nginx, so the CA's http-01 request would reach it instead of hubctl's token\\. Fix: stop it`,
  )
}

async function challengeFiles(layout: Layout): Promise<string[]> {
  return fs.readdir(layout.acmeChallengeDir).catch(() => [])
}

describe('ACME failures against a real Pebble', function () {
  this.timeout(300_000)
  let work: string
  let lab: PebbleLab
  const cleanup: string[] = []
  const children: ChildProcess[] = []
  const servers: Array<http.Server | net.Server> = []

  /** Something of the test's own on a port, dual stack like hubctl's listener, so hubctl finds it taken. */
  async function listenOn<T extends http.Server | net.Server>(server: T, port: number): Promise<T> {
    const sockets = new Set<net.Socket>()
    server.on('connection', (socket: net.Socket) => {
      sockets.add(socket)
      socket.on('close', () => sockets.delete(socket))
    })
    server.on('close', () => {
      for (const socket of sockets) socket.destroy()
    })
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject)
      server.listen({port, host: '::'}, resolve)
    })
    servers.push(server)
    return server
  }

  async function close(server: http.Server | net.Server): Promise<void> {
    await new Promise<void>((resolve) => {
      server.close(() => resolve())
      server.emit('close')
    })
  }

  async function newHub(
    label: string,
    extra: string[],
  ): Promise<{layout: Layout; ports: Awaited<ReturnType<typeof portFlags>>['ports']; flags: string[]}> {
    const layout = new Layout(await tempPrefix(label))
    cleanup.push(layout.prefix)
    // nginx's workers run as nobody: they must reach the webroot, as under / (mkdtemp makes 0700).
    await fs.chmod(layout.prefix, 0o755)
    const {ports, flags} = await portFlags()
    return {
      layout,
      ports,
      flags: [
        '--prefix',
        layout.prefix,
        // No --tls: each command gives its own.
        ...testHubFlags({admin: 'alice', jupyterhub: DEBIAN_JUPYTERHUB, tls: [], schedule: true}),
        ...flags,
        ...extra,
      ],
    }
  }

  before(async () => {
    work = await tempPrefix('hubctl-acme-failures')
    cleanup.push(work)
    lab = await new PebbleLab(work).setup()
  })

  after(async () => {
    for (const server of servers) await close(server)
    for (const child of children) await stopProcess(child)
    await lab?.stop()
    for (const dir of cleanup) await fs.rm(dir, {recursive: true, force: true})
  })

  describe('a hub with a certificate from Pebble', () => {
    let layout: Layout
    let ports: Awaited<ReturnType<typeof portFlags>>['ports']
    let pebble: Pebble

    before(async () => {
      let flags: string[]
      ;({layout, ports, flags} = await newHub('hubctl-acme-fail', []))
      pebble = await lab.startPebble('main', {httpPort: ports.http})
      ok(
        await hubctl([
          'init',
          ...flags,
          '--tls',
          'letsencrypt',
          '--email',
          'admin@example.org',
          ...lab.acmeFlags(pebble),
          '--json',
        ]),
      )
      expect(await pairMatches(layout)).to.equal(true)
      // Each test below expects a challenge: none of them may find init's authorization still valid.
      await lab.forgetAuthorizations(pebble, layout)
    })

    describe('the http-01 challenge cannot be reached', () => {
      it('the CA connects to another port than hubctl answers on (a wrong --http-port): the URL the CA tried and the port to give', async () => {
        // Another port than the hub's: freePort() may hand out the hub's own again (nothing holds it
        // between tests), and then the CA finds the token and the test would see a certificate issued.
        let wrong = await freePort()
        while (wrong === ports.http) wrong = await freePort()
        const result = await untouched(layout, () =>
          hubctl(['cert', 'obtain', '--prefix', layout.prefix, '--http-port', String(wrong)]),
        )
        const line = failed(
          result,
          5,
          new RegExp(
            `could not validate localhost over http-01 at http://localhost:${ports.http}/\\.well-known/acme-challenge/<token> \\(.*connection refused\\); likely cause: the CA connects to port ${ports.http}, but hubctl answered on port ${wrong}`,
          ),
        )
        expect(line).to.include(`Fix: give --http-port ${ports.http}`)
        // hubctl's own listener is gone again: the port is free.
        await listenOn(net.createServer(), wrong).then(close)
      })

      // A program other than nginx on the HTTP port is named (pid, uid) before the CA is asked, whatever
      // it does with the connection: its answer would never be the token. (hubctl's own fetch of the
      // token, which names DNS, firewalls and wrong servers, is in test/lib/tls/acme.test.ts.)
      it('something that is not nginx on the HTTP port accepts connections and drops them: named before the CA is asked', async () => {
        const dropper = await listenOn(
          net.createServer((socket) => socket.destroy()),
          ports.http,
        )
        try {
          const result = await untouched(layout, () => hubctl(['cert', 'obtain', '--prefix', layout.prefix]))
          failed(result, 5, heldByOther(ports.http))
          // The token written for nginx is removed again.
          expect(await challengeFiles(layout)).to.deep.equal([])
        } finally {
          await close(dropper)
        }
      })

      it('another web server that is not nginx answers on the HTTP port (HTTP 404): named before the CA is asked', async () => {
        const other = await listenOn(
          http.createServer((_request, response) => {
            response.writeHead(404, {'content-type': 'text/plain'})
            response.end('not the hub\n')
          }),
          ports.http,
        )
        try {
          const result = await untouched(layout, () => hubctl(['cert', 'obtain', '--prefix', layout.prefix]))
          failed(result, 5, heldByOther(ports.http))
          expect(await challengeFiles(layout)).to.deep.equal([])
        } finally {
          await close(other)
        }
      })

      it('a program that accepts connections on the HTTP port and never answers: named before the CA is asked', async () => {
        const silent = await listenOn(
          net.createServer(() => {}),
          ports.http,
        )
        try {
          const result = await untouched(layout, () => hubctl(['cert', 'obtain', '--prefix', layout.prefix]))
          failed(result, 5, heldByOther(ports.http))
        } finally {
          await close(silent)
        }
      })
    })

    describe('the CA goes down or refuses', () => {
      it('the CA goes away in the middle of the order (while it fetches the token): unreachable, not a validation failure', async () => {
        // The Pebble to kill, known once it runs (the listener below is made first).
        const doomed: {pebble?: Pebble} = {}
        let fetches = 0
        // Behind the hub's own nginx (hubctl answers only through an nginx it configures): serves the
        // webroot hubctl writes the token to. The first fetch is hubctl's own check, the second
        // Pebble's validation: Pebble is killed before it gets its answer.
        const webroot = await listenOn(
          http.createServer(async (request, response) => {
            fetches++
            if (fetches >= 2) {
              if (doomed.pebble) process.kill(-doomed.pebble.process.pid!, 'SIGKILL')
              response.destroy()
              return
            }
            const token = path.basename(request.url ?? '')
            const body = await fs.readFile(path.join(layout.acmeChallengeDir, token), 'utf8').catch(() => undefined)
            response.writeHead(body === undefined ? 404 : 200, {'content-type': 'text/plain'})
            response.end(body ?? 'none\n')
          }),
          0,
        )
        // The hub's nginx relays a port of its own to that listener; the port is this Pebble's http-01 port.
        const httpPort = await freePort()
        const relay = path.join(layout.nginxSitesEnabled, 'zz-test-relay.conf')
        await fs.writeFile(
          relay,
          `server {\n    listen ${httpPort};\n    server_name localhost;\n    location / { proxy_pass http://127.0.0.1:${(webroot.address() as net.AddressInfo).port}; }\n}\n`,
        )
        const nginx = await startNginx(layout)
        children.push(nginx)
        const goingAway = await lab.startPebble('doomed', {httpPort})
        doomed.pebble = goingAway
        try {
          const result = await untouched(layout, () =>
            hubctl([
              'cert',
              'obtain',
              '--prefix',
              layout.prefix,
              ...lab.acmeFlags(goingAway),
              '--http-port',
              String(goingAway.httpPort),
            ]),
          )
          failed(
            result,
            5,
            new RegExp(
              `cannot reach the ACME server https://127\\.0\\.0\\.1:${goingAway.listenPort} \\(ECONNREFUSED\\)\\. Fix: .*the live certificate is untouched`,
            ),
          )
          // hubctl's own check, then Pebble's validation (Pebble may fetch more than once).
          expect(fetches).to.be.at.least(2)
          expect(await challengeFiles(layout)).to.deep.equal([])
        } finally {
          await close(webroot)
          await stopProcess(nginx)
          await fs.rm(relay, {force: true})
        }
      })

      it('rate limited: HTTP 429 with Retry-After on the new order is not retried, and the retry time is named', async () => {
        // A STUB, for this case only: Pebble 2.4 has no rate limits. It sits in front of the real
        // Pebble (same TLS certificate, so --acme-ca-cert holds) and passes everything through, the
        // Host header included (Pebble builds its URLs from it), except new orders: 429.
        const directory = JSON.parse(
          (await httpsGet(pebble.directory, await fs.readFile(lab.tls.ca, 'utf8'))).body,
        ) as {newOrder: string}
        const newOrderPath = new URL(directory.newOrder).pathname
        const ca = await fs.readFile(lab.tls.ca, 'utf8')
        let orders = 0
        const stub = https.createServer(
          {cert: await fs.readFile(lab.tls.cert), key: await fs.readFile(lab.tls.key)},
          (request, response) => {
            if (request.method === 'POST' && request.url === newOrderPath) {
              orders++
              request.resume()
              response.writeHead(429, {'retry-after': '3600', 'content-type': 'application/problem+json'})
              response.end(
                JSON.stringify({
                  type: 'urn:ietf:params:acme:error:rateLimited',
                  detail: 'too many certificates already issued for "localhost"',
                }),
              )
              return
            }
            const upstream = https.request(
              {
                host: '127.0.0.1',
                port: pebble.listenPort,
                method: request.method,
                path: request.url,
                headers: request.headers,
                ca,
                servername: 'localhost',
              },
              (answer) => {
                response.writeHead(answer.statusCode ?? 502, answer.headers)
                answer.pipe(response)
              },
            )
            upstream.on('error', () => response.destroy())
            request.pipe(upstream)
          },
        )
        const stubPort = await freePort()
        await new Promise<void>((resolve) => stub.listen(stubPort, '127.0.0.1', resolve))
        servers.push(stub)
        try {
          const stubDirectory = `https://127.0.0.1:${stubPort}${new URL(pebble.directory).pathname}`
          const result = await untouched(layout, () =>
            hubctl([
              'cert',
              'renew',
              '--prefix',
              layout.prefix,
              '--acme-directory',
              stubDirectory,
              '--force',
              '--no-random-sleep',
            ]),
          )
          failed(
            result,
            5,
            new RegExp(
              `the ACME server https://127\\.0\\.0\\.1:${stubPort} is rate limiting this account or domain \\(HTTP 429: too many certificates already issued for "localhost"\\); it asks to retry after \\d{4}-\\d\\d-\\d\\dT[\\d:.]+Z\\. Fix: wait until`,
            ),
          )
          expect(orders, 'new orders sent: no retry after a 429').to.equal(1)
          const state = JSON.parse(await fs.readFile(layout.renewalState, 'utf8'))
          expect(state.lastError).to.match(/rate limiting/)
        } finally {
          await close(stub)
        }
      })

      it("Pebble rejects every nonce (PEBBLE_WFE_NONCEREJECT=100): acme-client's nonce retries stay bounded, then a clear refusal", async () => {
        const refusing = await lab.startPebble('nonce-reject', {
          httpPort: ports.http,
          env: {PEBBLE_WFE_NONCEREJECT: '100'},
        })
        const result = await untouched(layout, () =>
          hubctl(['cert', 'obtain', '--prefix', layout.prefix, ...lab.acmeFlags(refusing)]),
        )
        failed(
          result,
          5,
          new RegExp(
            `the ACME server https://127\\.0\\.0\\.1:${refusing.listenPort} refused every fresh nonce hubctl sent \\(badNonce: JWS has an invalid anti-replay nonce`,
          ),
        )
        // Pebble was set to refuse, and the signed requests it saw (one per attempt) are few: no loop.
        const log = await fs.readFile(path.join(work, 'nonce-reject.log'), 'utf8')
        expect(log).to.include('Configured to reject 100% of good nonces')
        expect((log.match(/POST \/[^ ]* -> calling handler/g) ?? []).length).to.be.within(1, 19)
      })

      it('Pebble refuses the name by policy (its domain block list): the refusal and the name', async () => {
        const strict = await lab.startPebble('blocklist', {httpPort: ports.http, domainBlocklist: ['localhost']})
        const result = await untouched(layout, () =>
          hubctl(['cert', 'obtain', '--prefix', layout.prefix, ...lab.acmeFlags(strict)]),
        )
        failed(
          result,
          5,
          new RegExp(
            `the ACME server https://127\\.0\\.0\\.1:${strict.listenPort} refused: .*forbidden by policy: "localhost"`,
          ),
        )
      })
    })
  })

  describe('a self-signed hub (no ACME settings yet)', () => {
    let layout: Layout
    let flags: string[]
    let pebble: Pebble
    let notListening: number

    before(async () => {
      let ports
      ;({layout, ports, flags} = await newHub('hubctl-acme-bad-url', []))
      ok(await hubctl(['init', ...flags, '--tls', 'self-signed', '--json']))
      pebble = await lab.startPebble('for-urls', {httpPort: ports.http})
      notListening = await freePort()
    })

    /** The hub's files as they are (a refused command changes none of them). */
    const hubFiles = async () => ({...(await snapshot(layout.etcDir)), ...(await snapshot(layout.srvDir))})

    it('a domain that no longer resolves (its DNS record removed after init): named before the CA is asked to validate', async () => {
      // init refuses a name that does not resolve; here it stopped resolving later.
      const original = await fs.readFile(layout.settings, 'utf8')
      await fs.writeFile(
        layout.settings,
        JSON.stringify({...JSON.parse(original), domains: ['hub-not-here.invalid']}, null, 2),
      )
      try {
        const result = await untouched(layout, () =>
          hubctl(['cert', 'obtain', '--prefix', layout.prefix, ...lab.acmeFlags(pebble)]),
        )
        failed(
          result,
          5,
          /the ACME challenge at http:\/\/hub-not-here\.invalid:\d+\/\.well-known\/acme-challenge\/[A-Za-z0-9_-]+ cannot be fetched \((ENOTFOUND|EAI_AGAIN)\): hub-not-here\.invalid does not resolve to any address from this machine.*Fix: create the DNS A \(and AAAA\) record of hub-not-here\.invalid/,
        )
      } finally {
        await fs.writeFile(layout.settings, original)
      }
    })

    it('init --tls letsencrypt with the CA down: exit 5, and the self-signed hub stays exactly as it was', async () => {
      const before = await hubFiles()
      const result = await hubctl([
        'init',
        ...flags,
        '--tls',
        'letsencrypt',
        '--email',
        'admin@example.org',
        '--acme-directory',
        `https://127.0.0.1:${notListening}/dir`,
        '--acme-ca-cert',
        lab.tls.ca,
      ])
      failed(
        result,
        5,
        new RegExp(`cannot reach the ACME server https://127\\.0\\.0\\.1:${notListening} \\(ECONNREFUSED\\)`),
      )
      expect(await hubFiles()).to.deep.equal(before)
      expect(JSON.parse(await fs.readFile(layout.settings, 'utf8')).tls).to.deep.equal({mode: 'self-signed'})
      ok(await hubctl(['secrets', 'check', '--prefix', layout.prefix]))
    })

    describe('a malformed --acme-directory', () => {
      const cases: Array<{what: string; url: () => string; exitCode: number; message: () => RegExp; caCert?: boolean}> =
        [
          {
            what: 'not a URL',
            url: () => 'acme.example.org/directory',
            exitCode: 2,
            message: () =>
              /--acme-directory "acme\.example\.org\/directory" is not a URL\. Fix: give the directory URL/,
          },
          {what: 'empty', url: () => '', exitCode: 2, message: () => /--acme-directory "" is not a URL/},
          {
            what: 'not http(s)',
            url: () => 'ftp://acme.example.org/directory',
            exitCode: 2,
            message: () => /--acme-directory ftp:\/\/acme\.example\.org\/directory is not an https URL/,
          },
          {what: 'with spaces', url: () => 'https://acme example.org/dir', exitCode: 2, message: () => /is not a URL/},
          {
            what: 'a page of the CA that is not its directory (HTTP 404)',
            url: () => `https://127.0.0.1:${pebble.listenPort}/not-the-directory`,
            exitCode: 5,
            message: () =>
              new RegExp(
                `https://127\\.0\\.0\\.1:${pebble.listenPort}/not-the-directory is not an ACME directory \\(HTTP 404\\)\\. Fix: check --acme-directory`,
              ),
          },
          {
            what: "http:// to the CA's https port",
            url: () => `http://127.0.0.1:${pebble.listenPort}/dir`,
            exitCode: 5,
            message: () => /is not an ACME directory \(HTTP 400\)/,
          },
          {
            what: 'a host that does not resolve',
            url: () => 'https://acme.invalid/directory',
            exitCode: 5,
            message: () => /cannot reach the ACME server https:\/\/acme\.invalid \((ENOTFOUND|EAI_AGAIN)\)/,
          },
          {
            what: 'nothing listening',
            url: () => `https://127.0.0.1:${notListening}/dir`,
            exitCode: 5,
            message: () => /cannot reach the ACME server .*\(ECONNREFUSED\)/,
          },
          {
            what: 'a CA whose HTTPS certificate is not trusted (no --acme-ca-cert)',
            url: () => pebble.directory,
            caCert: false,
            exitCode: 5,
            message: () =>
              /presented an HTTPS certificate hubctl does not trust \((UNABLE_TO_VERIFY_LEAF_SIGNATURE|SELF_SIGNED_CERT_IN_CHAIN|UNABLE_TO_GET_ISSUER_CERT_LOCALLY)\)\. Fix: for a private or test CA give --acme-ca-cert/,
          },
        ]

      for (const c of cases) {
        it(`${c.what}: cert obtain and init refuse it (exit ${c.exitCode}), nothing changes`, async () => {
          const ca = c.caCert === false ? [] : ['--acme-ca-cert', lab.tls.ca]
          const before = await hubFiles()
          const obtain = await hubctl(['cert', 'obtain', '--prefix', layout.prefix, '--acme-directory', c.url(), ...ca])
          failed(obtain, c.exitCode, c.message())
          expect(await hubFiles()).to.deep.equal(before)
          const init = await hubctl([
            'init',
            ...flags,
            '--tls',
            'letsencrypt',
            '--email',
            'admin@example.org',
            '--acme-directory',
            c.url(),
            ...ca,
          ])
          failed(init, c.exitCode, c.message())
          expect(await hubFiles()).to.deep.equal(before)
        })
      }

      it('init on a new prefix with a malformed --acme-directory writes nothing at all', async () => {
        const {layout: fresh, flags: freshFlags} = await newHub('hubctl-acme-bad-url-new', [])
        const result = await hubctl([
          'init',
          ...freshFlags,
          '--tls',
          'letsencrypt',
          '--email',
          'admin@example.org',
          '--acme-directory',
          'not a url',
        ])
        failed(result, 2, /--acme-directory "not a url" is not a URL/)
        expect(await fs.readdir(fresh.prefix)).to.deep.equal([])
      })
    })
  })

  describe('cert renew --force killed with SIGKILL at random moments', () => {
    const ITERATIONS = 10
    let layout: Layout
    let ports: Awaited<ReturnType<typeof portFlags>>['ports']

    before(async () => {
      let flags: string[]
      ;({layout, ports, flags} = await newHub('hubctl-acme-kill', []))
      // Pebble waits up to 2 s before validating: a renewal lasts long enough to be killed anywhere in it.
      const pebble = await lab.startPebble('slow', {
        httpPort: ports.http,
        env: {PEBBLE_VA_NOSLEEP: '0', PEBBLE_VA_SLEEPTIME: '2'},
      })
      ok(
        await hubctl([
          'init',
          ...flags,
          '--tls',
          'letsencrypt',
          '--email',
          'admin@example.org',
          ...lab.acmeFlags(pebble),
          '--json',
        ]),
      )
      children.push(await startNginx(layout))
    })

    it(`${ITERATIONS} kills: each time the live certificate and key still match, the secrets check passes; then a renewal succeeds and nginx serves it`, async function () {
      this.timeout(600_000)
      const outcomes: string[] = []
      for (let i = 0; i < ITERATIONS; i++) {
        const delay = Math.floor(Math.random() * 3000)
        const child = spawn(
          process.execPath,
          [BIN, 'cert', 'renew', '--prefix', layout.prefix, '--force', '--no-random-sleep'],
          // A process group of its own: the kill takes what the renewal started too (nginx -t, a hook).
          {stdio: 'ignore', detached: true},
        )
        const exited = new Promise<[number | null, string | null]>((resolve) =>
          child.once('exit', (code, signal) => resolve([code, signal])),
        )
        await new Promise((resolve) => setTimeout(resolve, delay))
        const tree = child.exitCode === null ? await processTree(child.pid!) : []
        try {
          process.kill(-child.pid!, 'SIGKILL')
        } catch {
          // the renewal had already finished, and its group with it
        }
        const [code, signal] = await exited
        await waitUntil(
          `iteration ${i}: every process of the killed renewal to be gone`,
          async () => {
            for (const pid of tree) if (await alive(pid)) return undefined
            return true
          },
          {tries: 100},
        )
        outcomes.push(`${delay} ms: ${signal ?? `exit ${code}`}`)
        expect(code === 0 || signal === 'SIGKILL', `iteration ${i}: exit ${code} ${signal}`).to.equal(true)
        expect(
          await pairMatches(layout),
          `iteration ${i} (killed after ${delay} ms): fullchain and privkey match`,
        ).to.equal(true)
        const check = await hubctl(['secrets', 'check', '--prefix', layout.prefix])
        expect(check.exitCode, `iteration ${i}: ${check.stdout}${check.stderr}`).to.equal(0)
      }
      console.log(`      kills: ${outcomes.join('; ')}`)
      const before = await liveSerial(layout)
      const final = await hubctl(['cert', 'renew', '--prefix', layout.prefix, '--force', '--no-random-sleep', '--json'])
      ok(final)
      const out = json(final)
      expect(out).to.include({action: 'renewed', nginxReloaded: true})
      expect(out.serial).to.not.equal(before)
      expect(await liveSerial(layout)).to.equal(out.serial)
      expect(await pairMatches(layout)).to.equal(true)
      await waitUntil('nginx serving the renewed certificate', async () => servedSerial(ports.https) === out.serial)
      ok(await hubctl(['secrets', 'check', '--prefix', layout.prefix]))
    })
  })
})
