// e2e-lane: parallel
import {expect} from 'chai'
import {execa} from 'execa'
import {createHash, getDiffieHellman} from 'node:crypto'
import fs from 'node:fs/promises'
import net from 'node:net'
import path from 'node:path'

import {Layout} from '../../src/lib/config/layout.js'
import {
  CliResult,
  CommandJson,
  DEBIAN_JUPYTERHUB,
  hubctl,
  modeOf,
  portFlags,
  snapshot,
  tempPrefix,
  testHubFlags,
  walkTree,
} from '../helpers/cli.js'
import {liveProcesses} from '../helpers/processes.js'

/*
 * Hostile input, end to end through the built CLI, as root. Each case asserts: the one-line
 * message `hubctl: <problem>. Fix: <fix>` naming the problem, a non-zero exit code from the
 * README's table, and nothing changed on disk (contents, and for secrets also mode, owner and inode).
 * Cases already in init-errors.test.ts (a URL as domain, 10.0.0.1, a Python injection as admin,
 * a newline, `x;}server{` and `$(reboot)` as allowed user, port 70000, http = https port, unreadable
 * or mismatched --cert/--key, a missing JupyterHub or nginx, an unknown authenticator, a missing
 * --admin or --email, a port held at init, nginx -t failing at init) and in test/lib are not repeated.
 */

const BASE = testHubFlags({admin: 'alice', jupyterhub: DEBIAN_JUPYTERHUB})

/** BASE less the flags `given` sets itself (oclif refuses a single-value flag given twice). */
function baseExcept(given: string[]): string[] {
  const named = new Set(given.filter((arg) => arg.startsWith('--')).map((arg) => arg.split('=')[0]))
  const out: string[] = []
  for (let i = 0; i < BASE.length; i++) {
    const takesValue = i + 1 < BASE.length && !BASE[i + 1].startsWith('--')
    if (!named.has(BASE[i])) out.push(BASE[i], ...(takesValue ? [BASE[i + 1]] : []))
    if (takesValue) i++
  }
  return out
}

/** The port flags, less those `given` sets itself. */
function portsExcept(ports: string[], given: string[]): string[] {
  const named = new Set(given.filter((arg) => arg.startsWith('--')).map((arg) => arg.split('=')[0]))
  const out: string[] = []
  for (let i = 0; i < ports.length; i += 2) if (!named.has(ports[i])) out.push(ports[i], ports[i + 1])
  return out
}

/** The refusal: one last stderr line `hubctl: ... . Fix: ...` matching `message`, the exit code, nothing on stdout. */
function expectRefused(result: CliResult, exitCode: number, message: RegExp): void {
  const line = result.stderr.trim().split('\n').pop() ?? ''
  expect(result.exitCode, `exit code; stderr: ${result.stderr}`).to.equal(exitCode)
  expect(line).to.match(/^hubctl: .+\. Fix: .+/)
  expect(line).to.match(message)
  expect(result.stdout.trim(), 'stdout of a refusal').to.equal('')
}

interface FileState {
  type: string
  mode: number
  uid: number
  gid: number
  ino?: number
  size?: number
  mtimeMs?: number
  sha256?: string
  target?: string
}

/**
 * Every entry under `dir` with its type, mode and owner; files also with inode, size, mtime and a
 * hash of their content; links with their target (never followed). Directory mtimes are left out:
 * the lock file comes and goes in srv/jupyterhub.
 */
async function stateOf(
  dir: string,
  skip: (relative: string) => boolean = () => false,
): Promise<Record<string, FileState>> {
  const out: Record<string, FileState> = {}
  await walkTree(dir, async (full, relative) => {
    if (skip(relative)) return false
    const stat = await fs.lstat(full)
    const base = {mode: stat.mode & 0o7777, uid: stat.uid, gid: stat.gid}
    if (stat.isDirectory()) out[relative] = {type: 'dir', ...base}
    else if (stat.isSymbolicLink()) out[relative] = {type: 'link', ...base, target: await fs.readlink(full)}
    else if (stat.isFile())
      out[relative] = {
        type: 'file',
        ...base,
        ino: stat.ino,
        size: stat.size,
        mtimeMs: stat.mtimeMs,
        sha256: createHash('sha256')
          .update(await fs.readFile(full))
          .digest('hex'),
      }
    else out[relative] = {type: 'other', ...base, ino: stat.ino}
  })
  return out
}

/** Logs and the supervisor's run directory change whenever a command runs; everything else must not. */
const notLogs = (relative: string) =>
  relative.startsWith('var/log/') ||
  relative.startsWith('srv/jupyterhub/run') ||
  relative.startsWith('var/lib/hubctl/nginx')

async function initStack(
  label: string,
): Promise<{layout: Layout; flags: string[]; ports: Awaited<ReturnType<typeof portFlags>>['ports']}> {
  const layout = new Layout(await tempPrefix(label))
  const {flags, ports} = await portFlags()
  const result = await hubctl(['init', '--prefix', layout.prefix, ...BASE, ...flags])
  expect(result.exitCode, result.stderr).to.equal(0)
  return {layout, flags: [...BASE, ...flags], ports}
}

/** A fake program: a shell script `body`, mode 0755 unless told. */
async function fakeProgram(dir: string, name: string, body: string, mode = 0o755): Promise<string> {
  await fs.mkdir(dir, {recursive: true})
  const file = path.join(dir, name)
  await fs.writeFile(file, `#!/bin/sh\n${body}\n`, {mode})
  await fs.chmod(file, mode)
  return file
}

/** A PEM "BEGIN DH PARAMETERS" block for a 1024-bit group (RFC 2409 group 2): well-formed, too small. */
function weakDhparamPem(): string {
  const dh = getDiffieHellman('modp2')
  const integer = (bytes: Buffer) => {
    const body = bytes[0] & 0x80 ? Buffer.concat([Buffer.from([0]), bytes]) : bytes
    return Buffer.concat([Buffer.from([0x02]), derLength(body.length), body])
  }
  const content = Buffer.concat([integer(dh.getPrime()), integer(dh.getGenerator())])
  const der = Buffer.concat([Buffer.from([0x30]), derLength(content.length), content])
  const base64 = der
    .toString('base64')
    .replaceAll(/(.{64})/g, '$1\n')
    .trim()
  return `-----BEGIN DH PARAMETERS-----\n${base64}\n-----END DH PARAMETERS-----\n`
}

function derLength(length: number): Buffer {
  if (length < 0x80) return Buffer.from([length])
  const bytes: number[] = []
  for (let rest = length; rest > 0; rest >>= 8) bytes.unshift(rest & 0xff)
  return Buffer.from([0x80 | bytes.length, ...bytes])
}

describe('hostile input: every init flag, malformed', function () {
  this.timeout(120_000)
  let prefix: string
  let files: string
  let ports: string[]
  const fakes: Record<string, string> = {}

  before(async () => {
    files = await tempPrefix('hubctl-hostile-files')
    ports = (await portFlags()).flags
    fakes.jupyterhubOld = await fakeProgram(path.join(files, 'old'), 'jupyterhub', 'echo 1.0.0')
    await fakeProgram(path.join(files, 'old'), 'jupyterhub-singleuser', 'exit 0')
    fakes.jupyterhubBroken = await fakeProgram(
      path.join(files, 'broken'),
      'jupyterhub',
      'echo "ModuleNotFoundError: No module named \'jupyterhub\'" >&2; exit 1',
    )
    fakes.jupyterhubNoVersion = await fakeProgram(path.join(files, 'noversion'), 'jupyterhub', 'echo jupyterhub')
    fakes.jupyterhubAlone = await fakeProgram(path.join(files, 'alone'), 'jupyterhub', 'echo 3.0.0')
    fakes.jupyterhubNotExecutable = await fakeProgram(path.join(files, 'noexec'), 'jupyterhub', 'echo 3.0.0', 0o644)
    fakes.nginxSilent = await fakeProgram(path.join(files, 'nginx'), 'nginx', 'exit 0')
    await fs.writeFile(path.join(files, 'garbage.pem'), 'this is not a certificate\n')
    await fs.mkdir(path.join(files, 'a-directory.pem'))
  })
  beforeEach(async () => {
    prefix = await tempPrefix('hubctl-hostile')
  })
  afterEach(async () => {
    await fs.rm(prefix, {recursive: true, force: true})
  })
  after(async () => {
    await fs.rm(files, {recursive: true, force: true})
  })

  const long = (n: number) => 'a'.repeat(n)
  const cases: Array<[string, () => string[], RegExp, number]> = [
    // Ports: each flag, non-numeric, zero, negative, fractional, exponent, too large, trailing shell.
    [
      '--http-port abc',
      () => ['--http-port', 'abc'],
      /--http-port "abc" is not a TCP port.*Fix: give a whole number from 1 to 65535/,
      2,
    ],
    ['--https-port 0', () => ['--https-port', '0'], /--https-port "0" is not a TCP port/, 2],
    ['--proxy-port 65536', () => ['--proxy-port', '65536'], /--proxy-port "65536" is not a TCP port/, 2],
    ['--proxy-api-port -1', () => ['--proxy-api-port=-1'], /--proxy-api-port "-1" is not a TCP port/, 2],
    ['--hub-port 8081.5', () => ['--hub-port', '8081.5'], /--hub-port "8081.5" is not a TCP port/, 2],
    ['--http-port 1e3', () => ['--http-port', '1e3'], /--http-port "1e3" is not a TCP port/, 2],
    [
      '--hub-port with a shell tail',
      () => ['--hub-port', '8081; rm -rf /'],
      /--hub-port "8081; rm -rf \/" is not a TCP port/,
      2,
    ],
    [
      '--https-port in full-width digits',
      () => ['--https-port', '４４３'],
      /--https-port "４４３" is not a TCP port/,
      2,
    ],
    [
      '--proxy-port equal to --hub-port',
      () => ['--proxy-port', '18111', '--hub-port', '18111'],
      /--proxy-port and --hub-port are both 18111.*Fix: give each port a different number/,
      2,
    ],
    [
      '--proxy-api-port equal to --https-port',
      () => ['--https-port', '18112', '--proxy-api-port', '18112'],
      /--https-port and --proxy-api-port are both 18112/,
      2,
    ],
    // Domains: empty, port, wildcard, empty label, leading hyphen, too long, tab, IPv6, hex and
    // numeric IPv4 forms, nginx and shell metacharacters, bad punycode, bad IDN.
    ['an empty --domain', () => ['--domain', ''], /--domain is empty.*Fix: give a host name/, 2],
    [
      'a domain with a port',
      () => ['--domain', 'hub.example.org:443'],
      /--domain "hub.example.org:443" is not a host name \(no scheme, port/,
      2,
    ],
    ['a wildcard domain', () => ['--domain', '*.example.org'], /--domain "\*.example.org" is not a host name/, 2],
    ['an empty label', () => ['--domain', 'hub..localhost'], /--domain "hub..localhost" is not a valid host name/, 2],
    [
      'a label starting with a hyphen',
      () => ['--domain', '-hub.localhost'],
      /--domain "-hub.localhost" is not a valid host name/,
      2,
    ],
    [
      'a 64-character label',
      () => ['--domain', `${long(64)}.localhost`],
      /is not a valid host name.*at most 63 characters/,
      2,
    ],
    [
      'a name over 253 characters',
      () => ['--domain', `${Array.from({length: 5}, () => long(60)).join('.')}.localhost`],
      /is not a valid host name/,
      2,
    ],
    ['a tab inside a domain', () => ['--domain', 'hub\tlocalhost'], /--domain "hub\\tlocalhost" is not a host name/, 2],
    ['an IPv6 address', () => ['--domain', '::1'], /--domain "::1" is not a host name/, 2],
    [
      'a hexadecimal IPv4 address (0x7f000001)',
      () => ['--domain', '0x7f000001'],
      /--domain "0x7f000001" is an IP address.*Fix: give a DNS name/,
      2,
    ],
    [
      'a dotted hex IPv4 address (0x7f.0.0.1)',
      () => ['--domain', '0x7f.0.0.1'],
      /--domain "0x7f.0.0.1" is an IP address/,
      2,
    ],
    [
      'a name ending in a number (hub.123)',
      () => ['--domain', 'hub.123'],
      /--domain "hub.123" ends in a number.*Fix: give a DNS name whose last label has a letter/,
      2,
    ],
    [
      'a semicolon (nginx) in a domain',
      () => ['--domain', 'localhost;'],
      /--domain "localhost;" is not a valid host name/,
      2,
    ],
    [
      'a brace (nginx) in a domain',
      () => ['--domain', 'hub{.localhost'],
      /--domain "hub\{.localhost" is not a valid host name/,
      2,
    ],
    ['an nginx variable as domain', () => ['--domain', '$host'], /--domain "\$host" is not a valid host name/, 2],
    [
      'a quote in a domain',
      () => ['--domain', 'a"b.localhost'],
      /--domain "a\\"b.localhost" is not a valid host name/,
      2,
    ],
    [
      'an invalid punycode label',
      () => ['--domain', 'xn--zz.localhost'],
      /--domain "xn--zz.localhost" is not a valid host name \(an xn-- label must be valid punycode\)/,
      2,
    ],
    [
      'an internationalized name with a bad punycode label',
      () => ['--domain', 'ünï.xn--zz'],
      /--domain "ünï.xn--zz" is not a valid host name \(an xn-- label must be valid punycode\)/,
      2,
    ],
    // E-mail (the address goes only to the CA and hubctl.json, never into a config or a shell).
    [
      'an e-mail without a dotted domain',
      () => ['--email', 'alice@localhost'],
      /--email "alice@localhost" has no dotted domain/,
      2,
    ],
    [
      'an e-mail with a space',
      () => ['--email', 'a b@example.org'],
      /--email "a b@example.org" is not an e-mail address/,
      2,
    ],
    [
      'an e-mail with quotes',
      () => ['--email', '"alice"@example.org'],
      /--email "\\"alice\\"@example.org" is not an e-mail address/,
      2,
    ],
    [
      'an e-mail with a header injection',
      () => ['--email', 'alice@example.org\nBcc: x@evil.example'],
      /--email .* is not a host name|--email .* is not an e-mail address/,
      2,
    ],
    [
      'an e-mail at an IP address',
      () => ['--email', 'alice@10.0.0.1'],
      /--email domain "10.0.0.1" is an IP address/,
      2,
    ],
    [
      'an e-mail with a shell substitution',
      () => ['--email', '$(id)@example.org'],
      /--email "\$\(id\)@example.org" is not an e-mail address/,
      2,
    ],
    // User names: quotes, backslash, newline, shell and nginx metacharacters, case, length, Unicode.
    [
      'a single quote in --admin',
      () => ['--admin', "o'brien"],
      /--admin "o'brien" is not a valid user name.*Fix: use 1 to 64 characters/,
      2,
    ],
    ['a double quote in --admin', () => ['--admin', 'a"b'], /--admin "a\\"b" is not a valid user name/, 2],
    ['a backslash in --admin', () => ['--admin', 'a\\b'], /--admin "a\\\\b" is not a valid user name/, 2],
    ['a trailing newline in --admin', () => ['--admin', 'alice\n'], /--admin "alice\\n" is not a valid user name/, 2],
    ['backticks in --admin', () => ['--admin', '`id`'], /--admin "`id`" is not a valid user name/, 2],
    ['a semicolon in --admin', () => ['--admin', 'a;b'], /--admin "a;b" is not a valid user name/, 2],
    ['braces in --allow-user', () => ['--allow-user', 'a{b}'], /--allow-user "a\{b\}" is not a valid user name/, 2],
    [
      'an nginx variable in --allow-user',
      () => ['--allow-user', '$host'],
      /--allow-user "\$host" is not a valid user name/,
      2,
    ],
    ['a hash in --allow-user', () => ['--allow-user', 'bob#x'], /--allow-user "bob#x" is not a valid user name/, 2],
    [
      'a space in --allow-user',
      () => ['--allow-user', 'bob smith'],
      /--allow-user "bob smith" is not a valid user name/,
      2,
    ],
    [
      'an upper-case --admin',
      () => ['--admin', 'Alice'],
      /--admin "Alice" is not a valid user name \(JupyterHub user names are lower case: use alice\)/,
      2,
    ],
    ['a leading hyphen in --admin', () => ['--admin=-rf'], /--admin "-rf" is not a valid user name/, 2],
    ['a 65-character --admin', () => ['--admin', long(65)], /--admin "a{65}" is not a valid user name/, 2],
    ['an empty --admin', () => ['--admin', ''], /--admin "" is not a valid user name/, 2],
    ['a non-ASCII --allow-user', () => ['--allow-user', 'ålice'], /--allow-user "ålice" is not a valid user name/, 2],
    // Choices: oclif's own parse errors are one line with a fix and exit 2 too.
    [
      '--tls bogus',
      () => ['--tls', 'bogus'],
      /Expected --tls=bogus to be one of: letsencrypt, self-signed, manual\. Fix: see `hubctl init --help`/,
      2,
    ],
    ['--spawner root', () => ['--spawner', 'root'], /Expected --spawner=root to be one of: local, simple/, 2],
    ['--dhparam 1024', () => ['--dhparam', '1024'], /Expected --dhparam=1024 to be one of: generate, ffdhe2048/, 2],
    [
      '--dhparam-bits 1024',
      () => ['--dhparam-bits', '1024'],
      /Expected --dhparam-bits=1024 to be one of: 2048, 3072, 4096/,
      2,
    ],
    [
      '--dhparam ffdhe2048 with --dhparam-bits 4096',
      () => ['--dhparam-bits', '4096'],
      /--dhparam ffdhe2048 is a 2048-bit group.*Fix: drop --dhparam-bits/,
      2,
    ],
    [
      'a misspelt flag',
      () => ['--domian', 'localhost'],
      /Nonexistent flag: --domian\. Fix: see `hubctl init --help`/,
      2,
    ],
    ['a flag without its value', () => ['--email'], /Flag --email expects a value/, 2],
    ['a stray argument', () => ['localhost'], /Unexpected argument: localhost/, 2],
    [
      'shared-password on JupyterHub 3.0',
      () => ['--authenticator', 'shared-password'],
      /--authenticator shared-password needs JupyterHub 5.1 or later, and this one is 3\.0\.\d+/,
      2,
    ],
    // Certificate files.
    [
      '--tls manual without --key',
      () => ['--tls', 'manual', '--cert', path.join(files, 'garbage.pem')],
      /--tls manual needs --cert and --key/,
      2,
    ],
    [
      'a directory as --cert',
      () => [
        '--tls',
        'manual',
        '--cert',
        path.join(files, 'a-directory.pem'),
        '--key',
        path.join(files, 'garbage.pem'),
      ],
      /--cert .*a-directory.pem cannot be read \(EISDIR\)/,
      2,
    ],
    [
      'a --cert that is not PEM',
      () => ['--tls', 'manual', '--cert', path.join(files, 'garbage.pem'), '--key', path.join(files, 'garbage.pem')],
      /--cert .*garbage.pem/,
      2,
    ],
    // Executables.
    [
      'a JupyterHub that says 1.0.0',
      () => ['--jupyterhub', fakes.jupyterhubOld],
      /JupyterHub 1\.0\.0 at .* is too old \(hubctl supports 3\.0 and later\)\. Fix: upgrade JupyterHub/,
      3,
    ],
    [
      'a JupyterHub whose --version fails',
      () => ['--jupyterhub', fakes.jupyterhubBroken],
      /--version" failed: ModuleNotFoundError.*Fix: check that --jupyterhub names a working JupyterHub/,
      3,
    ],
    [
      'a JupyterHub that prints no version',
      () => ['--jupyterhub', fakes.jupyterhubNoVersion],
      /--version" failed.*Fix: check that --jupyterhub/,
      3,
    ],
    [
      'a JupyterHub without jupyterhub-singleuser beside it',
      () => ['--jupyterhub', fakes.jupyterhubAlone],
      /jupyterhub-singleuser is not beside .*Fix: install JupyterHub completely/,
      3,
    ],
    [
      'a JupyterHub that is not executable',
      () => ['--jupyterhub', fakes.jupyterhubNotExecutable],
      /the JupyterHub executable ".*" was not found/,
      3,
    ],
    ['a directory as --jupyterhub', () => ['--jupyterhub', files], /the JupyterHub executable ".*" was not found/, 3],
    [
      'an nginx that prints no version',
      () => ['--nginx', fakes.nginxSilent],
      / -v" did not print a version\. Fix: check the nginx installation/,
      3,
    ],
  ]

  for (const [label, args, message, exitCode] of cases) {
    it(`refuses ${label}: exit ${exitCode}, one line with the fix, nothing written`, async () => {
      const given = args()
      const result = await hubctl([
        'init',
        '--prefix',
        prefix,
        ...baseExcept(given),
        ...given,
        ...portsExcept(ports, given),
      ])
      expectRefused(result, exitCode, message)
      expect(await snapshot(prefix)).to.deep.equal({})
    })
  }

  it('with --json, a bad value and a bad option are the same {"error"} document on stdout, exit 2, nothing on stderr', async () => {
    for (const given of [
      ['--https-port', 'abc'],
      ['--tls', 'bogus'],
    ]) {
      const result = await hubctl([
        'init',
        '--prefix',
        prefix,
        ...baseExcept(given),
        ...given,
        ...portsExcept(ports, given),
        '--json',
      ])
      expect(result.exitCode, result.stdout).to.equal(2)
      expect(result.stderr.trim()).to.equal('')
      const json = JSON.parse(result.stdout) as {error: {message: string; fix: string; exitCode: number}}
      expect(Object.keys(json)).to.deep.equal(['error'])
      expect(json.error.exitCode).to.equal(2)
      expect(json.error.message).to.match(/--https-port "abc" is not a TCP port|Expected --tls=bogus/)
      expect(json.error.fix).to.be.a('string').and.not.equal('')
    }
    expect(await snapshot(prefix)).to.deep.equal({})
  })
})

describe('hostile input: an internationalized domain becomes punycode everywhere', function () {
  this.timeout(120_000)
  let layout: Layout

  after(async () => {
    if (layout) await fs.rm(layout.prefix, {recursive: true, force: true})
  })

  it('init --domain BÜCHER.localhost --domain bücher.localhost: one name, xn--bcher-kva.localhost, in hubctl.json, the nginx site and the certificate', async () => {
    layout = new Layout(await tempPrefix('hubctl-idn'))
    const {flags} = await portFlags()
    const given = ['--domain', 'BÜCHER.localhost', '--domain', 'bücher.localhost']
    const result = await hubctl(['init', '--prefix', layout.prefix, ...baseExcept(given), ...given, ...flags])
    expect(result.exitCode, result.stderr).to.equal(0)
    const settings = JSON.parse(await fs.readFile(layout.settings, 'utf8')) as {domains: string[]}
    expect(settings.domains).to.deep.equal(['xn--bcher-kva.localhost'])
    const site = await fs.readFile(layout.nginxSite, 'utf8')
    expect(site).to.match(/server_name xn--bcher-kva\.localhost;/)
    expect(site).not.to.match(/bücher|BÜCHER/)
    const {X509Certificate} = await import('node:crypto')
    const cert = new X509Certificate(await fs.readFile(layout.fullchain))
    expect(cert.subjectAltName).to.include('DNS:xn--bcher-kva.localhost')
  })
})

describe('hostile input: secret files that are broken, for secrets check, secrets generate and init', function () {
  this.timeout(180_000)
  let layout: Layout
  let flags: string[]
  let outside: string
  /** Every secret file's bytes as init made them, to put back after each case. */
  const originals = new Map<string, Buffer>()

  before(async () => {
    ;({layout, flags} = await initStack('hubctl-hostile-secrets'))
    outside = await tempPrefix('hubctl-hostile-outside')
    for (const file of Object.values(layout.secretFiles)) originals.set(file, await fs.readFile(file))
  })
  afterEach(async () => {
    for (const [file, bytes] of originals) {
      await fs.rm(file, {recursive: true, force: true})
      await fs.writeFile(file, bytes, {mode: 0o600})
      await fs.chmod(file, 0o600)
      await fs.chown(file, 0, 0)
    }
    await fs.chmod(layout.srvDir, 0o700)
    expect(
      (await hubctl(['secrets', 'check', '--prefix', layout.prefix])).exitCode,
      'the stack is whole again',
    ).to.equal(0)
  })
  after(async () => {
    await fs.rm(layout.prefix, {recursive: true, force: true})
    await fs.rm(outside, {recursive: true, force: true})
  })

  const cases: Array<{
    label: string
    secret: 'cookieSecret' | 'proxyAuthToken' | 'apiToken' | 'dhparam'
    breakIt: (file: string) => Promise<void>
    message: RegExp
  }> = [
    {
      label: 'an empty cookie secret',
      secret: 'cookieSecret',
      breakIt: (f) => fs.writeFile(f, ''),
      message: /the cookie secret .*jupyterhub_cookie_secret is empty/,
    },
    {
      label: 'a truncated cookie secret',
      secret: 'cookieSecret',
      breakIt: async (f) => fs.writeFile(f, (await fs.readFile(f, 'utf8')).slice(0, 20)),
      message: /the cookie secret .* holds 20 hex characters, not 64 \(truncated\?\)/,
    },
    {
      label: 'a proxy token that is not hex',
      secret: 'proxyAuthToken',
      breakIt: (f) => fs.writeFile(f, 'z'.repeat(64)),
      message: /the proxy auth token .* is not 64 lowercase hex characters/,
    },
    {
      label: 'an API token in upper-case hex',
      secret: 'apiToken',
      breakIt: async (f) => fs.writeFile(f, (await fs.readFile(f, 'utf8')).toUpperCase()),
      message: /the hubctl API token .* is upper-case hex/,
    },
    {
      label: 'a cookie secret with a Windows line end',
      secret: 'cookieSecret',
      breakIt: async (f) => fs.writeFile(f, `${(await fs.readFile(f, 'utf8')).trim()}\r\n`),
      message: /the cookie secret .* has spaces or line ends around its 64 hex characters/,
    },
    {
      label: 'a cookie secret of mode 0644',
      secret: 'cookieSecret',
      breakIt: (f) => fs.chmod(f, 0o644),
      message: /the cookie secret .* has mode 0644, not 0600\. Fix: chmod 600 /,
    },
    {
      label: 'a group-readable proxy token (0640)',
      secret: 'proxyAuthToken',
      breakIt: (f) => fs.chmod(f, 0o640),
      message: /the proxy auth token .* has mode 0640, not 0600\. Fix: chmod 600 /,
    },
    {
      label: 'an API token owned by nobody',
      secret: 'apiToken',
      breakIt: (f) => fs.chown(f, 65_534, 65_534),
      message: /the hubctl API token .* belongs to uid 65534, not 0\. Fix: chown 0:0 /,
    },
    {
      label: 'an API token that is a directory',
      secret: 'apiToken',
      breakIt: async (f) => {
        await fs.rm(f)
        await fs.mkdir(f, {mode: 0o700})
      },
      message: /the hubctl API token .* is not a regular file\. Fix: move .* away/,
    },
    {
      label: 'a cookie secret that is a FIFO (never opened: a reader would block)',
      secret: 'cookieSecret',
      breakIt: async (f) => {
        await fs.rm(f)
        await execa('mkfifo', ['-m', '600', f])
      },
      message: /the cookie secret .* is not a regular file/,
    },
    {
      label: 'DH parameters that are not PEM',
      secret: 'dhparam',
      breakIt: (f) => fs.writeFile(f, 'not a pem\n'),
      message: /the DH parameters .* is not a PEM "BEGIN DH PARAMETERS" block/,
    },
    {
      label: 'DH parameters cut in half',
      secret: 'dhparam',
      breakIt: async (f) => {
        const pem = await fs.readFile(f, 'utf8')
        await fs.writeFile(f, pem.slice(0, pem.length / 2))
      },
      message: /the DH parameters .* is not a PEM "BEGIN DH PARAMETERS" block/,
    },
    {
      label: '1024-bit DH parameters',
      secret: 'dhparam',
      breakIt: (f) => fs.writeFile(f, weakDhparamPem()),
      message: /the DH parameters .* holds 1024-bit parameters, fewer than 2048/,
    },
  ]

  for (const {label, secret, breakIt, message} of cases) {
    it(`${label}: secrets check, secrets generate and init each refuse with the fix, exit 1, and change nothing`, async () => {
      const file = layout.secretFiles[secret]
      await breakIt(file)
      const before = await stateOf(layout.prefix, notLogs)
      const check = await hubctl(['secrets', 'check', '--prefix', layout.prefix])
      expect(check.exitCode, check.stderr).to.equal(1)
      expect(check.stderr).to.match(new RegExp(`^problem: ${message.source}`, 'm'))
      expectRefused(
        await hubctl(['secrets', 'generate', '--prefix', layout.prefix, '--dhparam', 'ffdhe2048']),
        1,
        message,
      )
      expectRefused(await hubctl(['init', '--prefix', layout.prefix, ...flags]), 1, message)
      expect(await stateOf(layout.prefix, notLogs)).to.deep.equal(before)
    })
  }

  it('a cookie secret that is a symbolic link to a valid secret elsewhere: refused, never followed, the target untouched', async () => {
    const target = path.join(outside, 'elsewhere_secret')
    await fs.writeFile(target, `${'a'.repeat(64)}\n`, {mode: 0o600})
    await fs.rm(layout.cookieSecret)
    await fs.symlink(target, layout.cookieSecret)
    const before = {inside: await stateOf(layout.prefix, notLogs), outside: await stateOf(outside)}
    const check = await hubctl(['secrets', 'check', '--prefix', layout.prefix])
    expect(check.exitCode).to.equal(1)
    expect(check.stderr).to.match(
      /problem: the cookie secret .* is a symbolic link, which hubctl never follows\. Fix: move .* away/,
    )
    expectRefused(
      await hubctl(['secrets', 'generate', '--prefix', layout.prefix, '--dhparam', 'ffdhe2048']),
      1,
      /is a symbolic link, which hubctl never follows/,
    )
    expectRefused(
      await hubctl(['init', '--prefix', layout.prefix, ...flags]),
      1,
      /is a symbolic link, which hubctl never follows/,
    )
    expect({inside: await stateOf(layout.prefix, notLogs), outside: await stateOf(outside)}).to.deep.equal(before)
    expect(await fs.readFile(target, 'utf8')).to.equal(`${'a'.repeat(64)}\n`)
  })

  it('a proxy token that is a dangling symbolic link: refused, and its target is never created', async () => {
    const target = path.join(outside, 'never_created')
    await fs.rm(layout.proxyAuthToken)
    await fs.symlink(target, layout.proxyAuthToken)
    const before = await stateOf(layout.prefix, notLogs)
    expect((await hubctl(['secrets', 'check', '--prefix', layout.prefix])).exitCode).to.equal(1)
    expectRefused(
      await hubctl(['secrets', 'generate', '--prefix', layout.prefix, '--dhparam', 'ffdhe2048']),
      1,
      /proxy auth token .* is a symbolic link/,
    )
    expectRefused(
      await hubctl(['init', '--prefix', layout.prefix, ...flags]),
      1,
      /proxy auth token .* is a symbolic link/,
    )
    expect(await stateOf(layout.prefix, notLogs)).to.deep.equal(before)
    await fs.access(target).then(
      () => expect.fail(`${target} was created through the link`),
      () => {},
    )
  })

  it('secrets check lists every problem at once, each with its own fix, and prints no value', async () => {
    await fs.chmod(layout.cookieSecret, 0o644)
    await fs.writeFile(layout.proxyAuthToken, 'z'.repeat(64))
    await fs.chown(layout.apiToken, 65_534, 65_534)
    const check = await hubctl(['secrets', 'check', '--prefix', layout.prefix, '--json'])
    expect(check.exitCode).to.equal(1)
    const json = JSON.parse(check.stdout) as {
      ok: boolean
      problems: Array<{subject: string; problem: string; fix: string}>
    }
    expect(json.ok).to.equal(false)
    expect(json.problems.map((p) => p.subject)).to.have.members(['cookieSecret', 'proxyAuthToken', 'apiToken'])
    expect(json.problems.map((p) => p.fix)).to.include(`chmod 600 ${layout.cookieSecret}`)
    for (const value of originals.values())
      expect(check.stdout + check.stderr).not.to.include(value.toString('utf8').trim())
  })
})

describe('hostile input: the generated login password (dummy authenticator) that others could read', function () {
  this.timeout(120_000)
  let layout: Layout
  let flags: string[]
  let outside: string
  let original: Buffer

  before(async () => {
    layout = new Layout(await tempPrefix('hubctl-hostile-login'))
    outside = await tempPrefix('hubctl-hostile-login-outside')
    const {flags: portArgs} = await portFlags()
    flags = [...baseExcept(['--authenticator']), '--authenticator', 'dummy', ...portArgs]
    const init = await hubctl(['init', '--prefix', layout.prefix, ...flags])
    expect(init.exitCode, init.stderr).to.equal(0)
    original = await fs.readFile(layout.loginPassword)
  })
  afterEach(async () => {
    await fs.rm(layout.loginPassword, {force: true})
    await fs.writeFile(layout.loginPassword, original, {mode: 0o600})
  })
  after(async () => {
    await fs.rm(layout.prefix, {recursive: true, force: true})
    await fs.rm(outside, {recursive: true, force: true})
  })

  it('mode 0644: secrets check and init refuse with the chmod, exit 1, nothing changed (was: check passed, init kept it 0644)', async () => {
    await fs.chmod(layout.loginPassword, 0o644)
    const before = await stateOf(layout.prefix, notLogs)
    const check = await hubctl(['secrets', 'check', '--prefix', layout.prefix])
    expect(check.exitCode).to.equal(1)
    expect(check.stderr).to.include(
      `problem: the login password ${layout.loginPassword} has mode 0644, not 0600. Fix: chmod 600 ${layout.loginPassword}`,
    )
    expect(check.stderr).not.to.include(original.toString('utf8').trim())
    expectRefused(
      await hubctl(['init', '--prefix', layout.prefix, ...flags]),
      1,
      /the login password .* has mode 0644, not 0600\. Fix: chmod 600 /,
    )
    expect(await stateOf(layout.prefix, notLogs)).to.deep.equal(before)
  })

  it('a symbolic link to a file elsewhere: refused by check and init, the target untouched', async () => {
    const target = path.join(outside, 'password')
    await fs.writeFile(target, `${'b'.repeat(32)}\n`, {mode: 0o600})
    await fs.rm(layout.loginPassword)
    await fs.symlink(target, layout.loginPassword)
    const before = {inside: await stateOf(layout.prefix, notLogs), outside: await stateOf(outside)}
    const check = await hubctl(['secrets', 'check', '--prefix', layout.prefix])
    expect(check.exitCode).to.equal(1)
    expect(check.stderr).to.match(/problem: the login password .* is a symbolic link, which hubctl never follows/)
    expectRefused(
      await hubctl(['init', '--prefix', layout.prefix, ...flags]),
      1,
      /the login password .* is a symbolic link/,
    )
    expect({inside: await stateOf(layout.prefix, notLogs), outside: await stateOf(outside)}).to.deep.equal(before)
  })
})

describe('hostile input: srv/jupyterhub missing, misplaced, open or read-only', function () {
  this.timeout(180_000)
  let layout: Layout
  let flags: string[]
  let outside: string
  let saved: string

  before(async () => {
    ;({layout, flags} = await initStack('hubctl-hostile-srv'))
    outside = await tempPrefix('hubctl-hostile-srv-outside')
    saved = path.join(outside, 'saved-srv')
    await execa('cp', ['-a', layout.srvDir, saved])
  })
  afterEach(async () => {
    await execa('umount', [layout.srvDir], {reject: false})
    await fs.rm(layout.srvDir, {recursive: true, force: true})
    await execa('cp', ['-a', saved, layout.srvDir])
  })
  after(async () => {
    await execa('umount', [layout.srvDir], {reject: false})
    await fs.rm(layout.prefix, {recursive: true, force: true})
    await fs.rm(outside, {recursive: true, force: true})
  })

  it('missing: secrets check names it and the fix, exit 1, and creates nothing; init then makes fresh secrets', async () => {
    await fs.rm(layout.srvDir, {recursive: true})
    const before = await snapshot(layout.prefix)
    const check = await hubctl(['secrets', 'check', '--prefix', layout.prefix])
    expect(check.exitCode).to.equal(1)
    expect(check.stderr).to.match(/problem: .*srv\/jupyterhub is missing\. Fix: run `hubctl secrets generate`/)
    expect(check.stderr).to.match(/problem: the cookie secret .* is missing/)
    expect(await snapshot(layout.prefix)).to.deep.equal(before)
    await fs.access(layout.srvDir).then(
      () => expect.fail('secrets check created srv/jupyterhub'),
      () => {},
    )
    const init = await hubctl(['init', '--prefix', layout.prefix, ...flags])
    expect(init.exitCode, init.stderr).to.equal(0)
    expect(await modeOf(layout.srvDir)).to.equal(0o700)
    expect((await hubctl(['secrets', 'check', '--prefix', layout.prefix])).exitCode).to.equal(0)
  })

  it('a symbolic link to another directory: refused by check, generate and init, the other directory untouched', async () => {
    const elsewhere = path.join(outside, 'elsewhere')
    await execa('cp', ['-a', saved, elsewhere])
    await fs.rm(layout.srvDir, {recursive: true})
    await fs.symlink(elsewhere, layout.srvDir)
    const before = {inside: await stateOf(layout.prefix), outside: await stateOf(elsewhere)}
    const check = await hubctl(['secrets', 'check', '--prefix', layout.prefix])
    expect(check.exitCode).to.equal(1)
    expect(check.stderr).to.match(/problem: .*srv\/jupyterhub is not a directory\. Fix: move it away/)
    expectRefused(
      await hubctl(['secrets', 'generate', '--prefix', layout.prefix, '--dhparam', 'ffdhe2048']),
      1,
      /srv\/jupyterhub is not a directory/,
    )
    expectRefused(await hubctl(['init', '--prefix', layout.prefix, ...flags]), 1, /srv\/jupyterhub is not a directory/)
    expect({inside: await stateOf(layout.prefix), outside: await stateOf(elsewhere)}).to.deep.equal(before)
  })

  it('a regular file in its place: refused by check, generate and init, the file untouched', async () => {
    await fs.rm(layout.srvDir, {recursive: true})
    await fs.writeFile(layout.srvDir, 'not a directory\n')
    const before = await stateOf(layout.prefix)
    expect((await hubctl(['secrets', 'check', '--prefix', layout.prefix])).exitCode).to.equal(1)
    // Was: "unexpected failure: EEXIST" (exit 70) from the lock's mkdir.
    expectRefused(
      await hubctl(['secrets', 'generate', '--prefix', layout.prefix, '--dhparam', 'ffdhe2048']),
      1,
      /srv\/jupyterhub is not a directory/,
    )
    // init meets it first reading the supervisor's pid file under srv/jupyterhub/run (was: exit 70).
    expectRefused(
      await hubctl(['init', '--prefix', layout.prefix, ...flags]),
      3,
      /srv\/jupyterhub\/run\/hubctl\.pid or one of its parents is not what hubctl expects \(a file where a directory should be/,
    )
    expect(await stateOf(layout.prefix)).to.deep.equal(before)
  })

  it('mode 0755: secrets check names chmod 700; init puts 0700 back and keeps every secret', async () => {
    await fs.chmod(layout.srvDir, 0o755)
    const check = await hubctl(['secrets', 'check', '--prefix', layout.prefix])
    expect(check.exitCode).to.equal(1)
    expect(check.stderr).to.include(`Fix: chmod 700 ${layout.srvDir}`)
    const secretsBefore = await Promise.all(Object.values(layout.secretFiles).map((f) => fs.readFile(f, 'utf8')))
    const init = await hubctl(['init', '--prefix', layout.prefix, ...flags])
    expect(init.exitCode, init.stderr).to.equal(0)
    expect(await modeOf(layout.srvDir)).to.equal(0o700)
    expect(await Promise.all(Object.values(layout.secretFiles).map((f) => fs.readFile(f, 'utf8')))).to.deep.equal(
      secretsBefore,
    )
  })

  /*
   * Read-only: chmod means nothing to root (and chattr is not on this machine), so the directory
   * is bind-mounted read-only onto itself, which root cannot write through either.
   */
  it('read-only (a read-only bind mount): generate and init exit 3 naming the file system and the fix; check still reads', async () => {
    await fs.rm(layout.apiToken)
    const bind = await execa('mount', ['--bind', layout.srvDir, layout.srvDir], {reject: false})
    expect(bind.exitCode, `mount --bind (root in this sandbox is expected to be allowed): ${bind.stderr}`).to.equal(0)
    const ro = await execa('mount', ['-o', 'remount,bind,ro', layout.srvDir], {reject: false})
    expect(ro.exitCode, `remount read-only: ${ro.stderr}`).to.equal(0)
    const before = await stateOf(layout.prefix, notLogs)
    const check = await hubctl(['secrets', 'check', '--prefix', layout.prefix])
    expect(check.exitCode).to.equal(1)
    expect(check.stderr).to.match(/problem: the hubctl API token .* is missing/)
    expectRefused(
      await hubctl(['secrets', 'generate', '--prefix', layout.prefix, '--dhparam', 'ffdhe2048']),
      3,
      /srv\/jupyterhub\/hubctl\.lock is on a read-only file system\. Fix: remount it read-write/,
    )
    expectRefused(
      await hubctl(['init', '--prefix', layout.prefix, ...flags]),
      3,
      /is on a read-only file system\. Fix: remount it read-write/,
    )
    expect(await stateOf(layout.prefix, notLogs)).to.deep.equal(before)
  })
})

describe('hostile input: hubctl start against a taken port, a broken nginx, missing programs', function () {
  this.timeout(180_000)
  let layout: Layout
  let ports: Awaited<ReturnType<typeof portFlags>>['ports']
  let settingsText: string

  before(async () => {
    ;({layout, ports} = await initStack('hubctl-hostile-start'))
    settingsText = await fs.readFile(layout.settings, 'utf8')
  })
  afterEach(async () => {
    await fs.writeFile(layout.settings, settingsText)
    await fs.rm(path.join(layout.nginxSitesEnabled, 'broken.conf'), {force: true})
  })
  after(async () => {
    await hubctl(['stop', '--prefix', layout.prefix])
    await fs.rm(layout.prefix, {recursive: true, force: true})
  })

  /** start --detach refused: the exit code, the message, nothing running, nothing but logs changed. */
  async function expectStartRefused(exitCode: number, message: RegExp): Promise<void> {
    // A hub started before has its supervisor log: then the background hubctl is started at once,
    // beside the checks (prewarm.ts), and must leave when they fail.
    await fs.mkdir(path.dirname(layout.supervisorLog), {recursive: true})
    await fs.appendFile(layout.supervisorLog, '')
    const logStart = (await fs.stat(layout.supervisorLog)).size
    const before = await stateOf(layout.prefix, notLogs)
    const result = await hubctl(['start', '--detach', '--prefix', layout.prefix], {timeoutMs: 120_000})
    expectRefused(result, exitCode, message)
    // Refused before it began: the background hubctl never started supervising.
    expect((await fs.readFile(layout.supervisorLog, 'utf8')).slice(logStart)).not.to.include('supervising the hub')
    const status = await hubctl(['status', '--prefix', layout.prefix, '--json'])
    expect(status.exitCode, status.stderr).to.equal(0)
    const report = JSON.parse(status.stdout) as {
      running: boolean
      supervisor: {running: boolean}
      proxy: {running: boolean}
      hub: {running: boolean}
    }
    expect(report.running).to.equal(false)
    expect(report.supervisor.running).to.equal(false)
    expect(report.proxy.running).to.equal(false)
    expect(report.hub.running).to.equal(false)
    await fs.access(layout.pidFile).then(
      () => expect.fail('a pid file was left'),
      () => {},
    )
    // The background hubctl, started while the checks ran, was told to leave and is gone.
    const background = (await liveProcesses()).filter(
      (p) => p.cmdline.includes('--checked-by-parent') && p.cmdline.includes(layout.prefix),
    )
    expect(background.map((p) => p.cmdline.join(' '))).to.deep.equal([])
    expect(await stateOf(layout.prefix, notLogs)).to.deep.equal(before)
  }

  /** Another program on the port: it accepts and hangs up (a silent one would keep status's health probe, and close(), waiting). */
  async function holding<T>(port: number, host: string, run: () => Promise<T>): Promise<T> {
    const server = net.createServer((socket) => socket.destroy())
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject)
      server.listen(port, host, resolve)
    })
    try {
      return await run()
    } finally {
      await new Promise((resolve) => server.close(resolve))
    }
  }

  it('the hub port held by another program: exit 3, the port, the flag to change', async () => {
    await holding(ports.hub, '127.0.0.1', () =>
      expectStartRefused(
        3,
        new RegExp(
          `port ${ports.hub}, where jupyterhub should listen, is already taken by another program\\. Fix: stop that program .*--hub-port`,
        ),
      ),
    )
  })

  it('the HTTPS port held by another program: exit 3, the port, the flag to change', async () => {
    await holding(ports.https, '0.0.0.0', () =>
      expectStartRefused(
        3,
        new RegExp(`port ${ports.https}, where nginx \\(https\\) should listen, is already taken.*--https-port`),
      ),
    )
  })

  it('another site that breaks nginx -t: exit 4 with nginx\'s own line, nothing started (was: nginx crash-looping behind a "ready" hub)', async () => {
    await fs.writeFile(path.join(layout.nginxSitesEnabled, 'broken.conf'), 'server { listen 1; bogus_directive on; }\n')
    await expectStartRefused(
      4,
      /nginx -t rejects the configuration under .*unknown directive "bogus_directive".*Fix: .*nothing was started/,
    )
  })

  it('the nginx recorded in hubctl.json is gone: exit 3, naming init --nginx', async () => {
    const settings = JSON.parse(settingsText) as {executables: Record<string, string>}
    settings.executables.nginx = '/nonexistent/sbin/nginx'
    await fs.writeFile(layout.settings, JSON.stringify(settings))
    await expectStartRefused(
      3,
      /nginx was not found \(hubctl\.json names \/nonexistent\/sbin\/nginx\)\. Fix: reinstall nginx .*hubctl init --nginx PATH/,
    )
  })

  it('the JupyterHub recorded in hubctl.json is gone: exit 3, naming init --jupyterhub (was: five restarts, then exit 7)', async () => {
    const settings = JSON.parse(settingsText) as {executables: Record<string, string>}
    settings.executables.jupyterhub = '/nonexistent/bin/jupyterhub'
    await fs.writeFile(layout.settings, JSON.stringify(settings))
    await expectStartRefused(
      3,
      /the JupyterHub executable \/nonexistent\/bin\/jupyterhub recorded in .*hubctl\.json is missing or not executable\. Fix: .*hubctl init --jupyterhub PATH/,
    )
  })

  it('a group-readable cookie secret: exit 1 with the chmod (was: JupyterHub exiting five times, then exit 7)', async () => {
    await fs.chmod(layout.cookieSecret, 0o640)
    try {
      await expectStartRefused(
        1,
        new RegExp(`the cookie secret .* has mode 0640, not 0600\\. Fix: chmod 600 ${layout.cookieSecret}`),
      )
    } finally {
      await fs.chmod(layout.cookieSecret, 0o600)
    }
  })
})

describe('hostile input: hubctl.json corrupt, tampered with, older and newer', function () {
  this.timeout(180_000)
  let layout: Layout
  let flags: string[]
  let settingsText: string

  before(async () => {
    ;({layout, flags} = await initStack('hubctl-hostile-settings'))
    settingsText = await fs.readFile(layout.settings, 'utf8')
  })
  afterEach(async () => {
    await fs.writeFile(layout.settings, settingsText)
  })
  after(async () => {
    await fs.rm(layout.prefix, {recursive: true, force: true})
  })

  const edit = (change: (settings: CommandJson) => void) => {
    const settings = JSON.parse(settingsText) as CommandJson
    change(settings)
    return `${JSON.stringify(settings, null, 2)}\n`
  }

  const cases: Array<[string, () => string, RegExp]> = [
    [
      'truncated JSON',
      () => settingsText.slice(0, settingsText.length / 2),
      /hubctl\.json is not valid JSON .*Fix: repair it by hand, or move it away and run `hubctl init` again/,
    ],
    ['a JSON array', () => '[1, 2]\n', /hubctl\.json does not hold a JSON object/],
    [
      'version 0',
      () =>
        edit((s) => {
          s.version = 0
        }),
      /hubctl\.json has no valid "version"/,
    ],
    [
      'settings from a newer hubctl (version 99)',
      () =>
        edit((s) => {
          s.version = 99
        }),
      /hubctl\.json was written by a newer hubctl \(settings version 99, this hubctl knows 1\)\. Fix: upgrade hubctl/,
    ],
    [
      'no ports at all',
      () =>
        edit((s) => {
          delete s.ports
        }),
      /hubctl\.json lacks ports\. Fix: move it away, then run `hubctl init` again/,
    ],
    [
      'a shell command as hub port',
      () =>
        edit((s) => {
          s.ports.hub = '8081; rm -rf /'
        }),
      /hubctl\.json: "ports\.hub" is not a number\. Fix: repair it by hand/,
    ],
    [
      'a port out of range',
      () =>
        edit((s) => {
          s.ports.proxy = 70_000
        }),
      /hubctl\.json: "ports\.proxy" is invalid: ports\.proxy "70000" is not a TCP port/,
    ],
    [
      'a Python injection as admin',
      () =>
        edit((s) => {
          s.admins = ["x'); import os #"]
        }),
      /hubctl\.json: "admins" is invalid: .* is not a valid user name/,
    ],
    [
      'an nginx injection as domain',
      () =>
        edit((s) => {
          s.domains = ['localhost; return 301 https://evil.example']
        }),
      /hubctl\.json: "domains" is invalid: .* is not a host name/,
    ],
    [
      'an unknown TLS mode',
      () =>
        edit((s) => {
          s.tls.mode = 'none'
        }),
      /hubctl\.json: "tls\.mode" is not one of letsencrypt, self-signed, manual/,
    ],
    [
      'a relative executable',
      () =>
        edit((s) => {
          s.executables.jupyterhub = 'jupyterhub'
        }),
      /hubctl\.json: "executables\.jupyterhub" is not an absolute path/,
    ],
  ]

  for (const [label, text, message] of cases) {
    it(`${label}: init, start, stop and status refuse with the fix, exit 2, and change nothing`, async () => {
      await fs.writeFile(layout.settings, text())
      const before = await stateOf(layout.prefix, notLogs)
      for (const command of [['init', ...flags], ['start', '--detach'], ['stop'], ['status']]) {
        const result = await hubctl([...command, '--prefix', layout.prefix])
        expectRefused(result, 2, message)
      }
      const doctor = await hubctl(['doctor', '--prefix', layout.prefix, '--json'])
      expect(doctor.exitCode).to.equal(1)
      const report = JSON.parse(doctor.stdout) as {
        checks: Array<{check: string; status: string; message: string; fix?: string}>
      }
      const settingsCheck = report.checks.find((check) => check.check === 'settings')
      expect(settingsCheck?.status).to.equal('fail')
      expect(`${settingsCheck?.message}. Fix: ${settingsCheck?.fix}`).to.match(message)
      expect(await stateOf(layout.prefix, notLogs)).to.deep.equal(before)
    })
  }

  it('settings from an older hubctl (no spawner, nginxSupervised, proxyTls, standby ports): read with defaults; init rewrites them whole', async () => {
    const old = JSON.parse(settingsText) as CommandJson
    for (const key of ['spawner', 'nginxSupervised', 'proxyTls', 'local']) delete old[key]
    delete old.ports.proxyStandby
    delete old.ports.proxyStandbyApi
    await fs.writeFile(layout.settings, `${JSON.stringify(old, null, 2)}\n`)
    const status = await hubctl(['status', '--prefix', layout.prefix, '--json'])
    expect(status.exitCode, status.stderr).to.equal(0)
    const doctor = await hubctl(['doctor', '--prefix', layout.prefix, '--json'])
    const report = JSON.parse(doctor.stdout) as {checks: Array<{check: string; status: string}>}
    expect(report.checks.find((check) => check.check === 'settings')?.status).to.equal('pass')
    const init = await hubctl(['init', '--prefix', layout.prefix, ...flags])
    expect(init.exitCode, init.stderr).to.equal(0)
    const rewritten = JSON.parse(await fs.readFile(layout.settings, 'utf8')) as CommandJson
    expect(rewritten).to.deep.equal(JSON.parse(settingsText))
  })
})
