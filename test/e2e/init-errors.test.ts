// e2e-lane: parallel
import {expect} from 'chai'
import {existsSync} from 'node:fs'
import fs from 'node:fs/promises'
import path from 'node:path'

import {Layout} from '../../src/lib/config/layout.js'
import {makeSelfSigned} from '../../src/lib/tls/selfsigned.js'
import {DEBIAN_JUPYTERHUB, hubctl, portFlags, snapshot, snapshotTree, tempPrefix, treeChanges} from '../helpers/cli.js'

const GOOD = [
  '--yes',
  '--domain',
  'localhost',
  '--admin',
  'alice',
  '--tls',
  'self-signed',
  '--dhparam',
  'ffdhe2048',
  '--jupyterhub',
  DEBIAN_JUPYTERHUB,
]

/** Replace the value after `flag` in GOOD (or append it). */
function withFlag(flag: string, ...values: string[]): string[] {
  const args = [...GOOD]
  const at = args.indexOf(flag)
  if (at >= 0) args.splice(at, 2)
  for (const value of values) args.push(flag, value)
  return args
}

/** The port flags, less those the case gives itself (oclif refuses a flag given twice). */
function portsExcept(ports: string[], args: string[]): string[] {
  const out: string[] = []
  for (let i = 0; i < ports.length; i += 2) if (!args.includes(ports[i])) out.push(ports[i], ports[i + 1])
  return out
}

describe('hubctl init refuses bad input before writing anything', () => {
  let prefix: string
  let ports: string[]
  let files: string

  before(async () => {
    files = await tempPrefix('hubctl-inputs')
    ports = (await portFlags()).flags
  })
  beforeEach(async () => {
    prefix = await tempPrefix('hubctl-bad')
  })
  afterEach(async () => {
    await fs.rm(prefix, {recursive: true, force: true})
  })
  after(async () => {
    await fs.rm(files, {recursive: true, force: true})
  })

  const cases: Array<[string, () => Promise<string[]>, RegExp, number]> = [
    ['a malformed domain', async () => withFlag('--domain', 'https://bad domain'), /--domain .* is not a host name/, 2],
    ['an IP address as domain', async () => withFlag('--domain', '10.0.0.1'), /is an IP address/, 2],
    [
      'a malformed e-mail',
      async () => [...GOOD, '--email', 'not-an-email'],
      /--email "not-an-email" is not an e-mail address/,
      2,
    ],
    [
      'a Python injection as user name',
      async () => withFlag('--admin', `alice'); import os; os.system('id') #`),
      /--admin .* is not a valid user name/,
      2,
    ],
    [
      'a newline in a user name',
      async () => [...GOOD, '--allow-user', 'bob\nc.JupyterHub.admin_access = True'],
      /--allow-user .* is not a valid user name/,
      2,
    ],
    [
      'nginx metacharacters in a user name',
      async () => [...GOOD, '--allow-user', 'x;}server{'],
      /--allow-user .* is not a valid user name/,
      2,
    ],
    [
      'a shell substitution in a user name',
      async () => [...GOOD, '--allow-user', '$(reboot)'],
      /--allow-user .* is not a valid user name/,
      2,
    ],
    [
      'a port out of range',
      async () => [...GOOD, '--https-port', '70000'],
      /--https-port "70000" is not a TCP port/,
      2,
    ],
    [
      'no server allowed to start',
      async () => [...GOOD, '--max-concurrent-spawns', '0'],
      /--max-concurrent-spawns "0" is not a whole number from 1 to 1000\. Fix: give how many servers may start at once/,
      2,
    ],
    [
      'a spawn timeout with a unit',
      async () => [...GOOD, '--spawn-timeout', '2m'],
      /--spawn-timeout "2m" is not a whole number from 10 to 3600\. Fix: give the seconds a server may take to start/,
      2,
    ],
    [
      'two flags on one port',
      async () => [...GOOD, '--http-port', '18080', '--https-port', '18080'],
      /--http-port and --https-port are both 18080/,
      2,
    ],
    [
      'an unreadable --cert',
      async () =>
        withFlag('--tls', 'manual').concat(['--cert', '/nonexistent/cert.pem', '--key', '/nonexistent/key.pem']),
      /--cert \/nonexistent\/cert.pem cannot be read/,
      2,
    ],
    [
      '--cert without --tls manual',
      async () => [...GOOD, '--cert', '/etc/hostname', '--key', '/etc/hostname'],
      /--cert and --key go with --tls manual/,
      2,
    ],
    [
      'a certificate and key that do not match',
      async () => {
        const a = await makeSelfSigned(['localhost'])
        const b = await makeSelfSigned(['localhost'])
        await fs.writeFile(path.join(files, 'a.pem'), a.fullchain)
        await fs.writeFile(path.join(files, 'b.key'), b.privkey)
        return withFlag('--tls', 'manual').concat([
          '--cert',
          path.join(files, 'a.pem'),
          '--key',
          path.join(files, 'b.key'),
        ])
      },
      /--cert .* and --key .* do not match/,
      2,
    ],
    [
      'a missing JupyterHub executable',
      async () => withFlag('--jupyterhub', '/nonexistent/jupyterhub'),
      /JupyterHub executable "\/nonexistent\/jupyterhub" was not found/,
      3,
    ],
    ['a missing nginx', async () => [...GOOD, '--nginx', '/nonexistent/nginx'], /nginx was not found/, 3],
    [
      'an unknown authenticator',
      async () => [...GOOD, '--authenticator', 'evil"; import os'],
      /--authenticator .* is not one hubctl knows/,
      2,
    ],
    [
      'a missing required value with --yes',
      async () => GOOD.filter((a, i, all) => a !== '--admin' && all[i - 1] !== '--admin'),
      /--admin is required/,
      2,
    ],
    [
      '--tls letsencrypt without --email under --yes',
      async () => withFlag('--tls', 'letsencrypt'),
      /--email is required/,
      2,
    ],
    [
      'a memory limit that is not a size',
      async () => [...GOOD, '--mem-limit', 'lots'],
      /--mem-limit "lots" is not a size/,
      2,
    ],
    [
      'a CPU limit above the cores',
      async () => [...GOOD, '--cpu-limit', '4096'],
      /--cpu-limit 4096 is more than this machine's/,
      2,
    ],
    [
      'a memory limit above the memory',
      async () => [...GOOD, '--mem-limit', '64T'],
      /--mem-limit 64T is more than this machine's memory/,
      2,
    ],
    // Limits make each server a systemd unit: on a machine without systemd as PID 1 (this one), refused.
    ...(existsSync('/run/systemd/system')
      ? []
      : [
          [
            'limits without systemd as PID 1',
            async () => [...GOOD, '--mem-limit', '1G', '--tasks-limit', '512'],
            /need systemd as PID 1/,
            2,
          ] as [string, () => Promise<string[]>, RegExp, number],
        ]),
  ]

  for (const [label, args, message, exitCode] of cases) {
    it(`refuses ${label}: one clear line with the fix, exit ${exitCode}, nothing written`, async () => {
      const given = await args()
      const result = await hubctl(['init', '--prefix', prefix, ...given, ...portsExcept(ports, given)])
      expect(result.exitCode, result.stderr).to.equal(exitCode)
      const line = result.stderr.trim().split('\n').pop() ?? ''
      expect(line).to.match(message)
      expect(line).to.match(/Fix: /)
      expect(await snapshot(prefix)).to.deep.equal({})
    })
  }

  it('refuses a port held by another program', async () => {
    const net = await import('node:net')
    const server = net.createServer()
    await new Promise<void>((resolve) => server.listen(0, '0.0.0.0', resolve))
    const {port} = server.address() as {port: number}
    try {
      const result = await hubctl([
        'init',
        '--prefix',
        prefix,
        ...GOOD,
        ...portsExcept(ports, ['--hub-port']),
        '--hub-port',
        String(port),
      ])
      expect(result.exitCode).to.equal(3)
      expect(result.stderr).to.match(new RegExp(`port ${port} \\(--hub-port\\) is already in use.*Fix: `))
      expect(await snapshot(prefix)).to.deep.equal({})
    } finally {
      server.close()
    }
  })

  it('--dry-run lists what it would write and writes nothing: no file, no directory, no mode changed', async () => {
    // The prefix as an operator may leave it before init: a directory of theirs (mode 0750) in it.
    await fs.mkdir(path.join(prefix, 'notes'), {mode: 0o750})
    await fs.chmod(path.join(prefix, 'notes'), 0o750)
    const before = await snapshotTree(prefix)
    const result = await hubctl(['init', '--prefix', prefix, ...GOOD, ...ports, '--dry-run', '--json'])
    expect(result.exitCode, result.stderr).to.equal(0)
    const json = JSON.parse(result.stdout)
    expect(json.dryRun).to.equal(true)
    const files: string[] = json.files.map((f: {file: string}) => f.file)
    expect(files).to.include(new Layout(prefix).cookieSecret)
    // Every target is inside the prefix, so the prefix's whole tree (directories and modes too:
    // `snapshot` sees files only) is where a write would show.
    expect(files.filter((file) => !file.startsWith(`${prefix}/`))).to.deep.equal([])
    expect(treeChanges(before, await snapshotTree(prefix))).to.deep.equal([])
  })
})

describe('hubctl init keeps the working site when nginx -t fails', () => {
  it('leaves the previous site in place and exits 4', async () => {
    const layout = new Layout(await tempPrefix('hubctl-nginxfail'))
    try {
      const {flags} = await portFlags()
      expect((await hubctl(['init', '--prefix', layout.prefix, ...GOOD, ...flags])).exitCode).to.equal(0)
      const before = await fs.readFile(layout.nginxSite, 'utf8')
      // Another site that breaks the whole configuration (as an operator's typo would).
      await fs.writeFile(
        path.join(layout.nginxSitesEnabled, 'other.conf'),
        'server { listen 1; bogus_directive on; }\n',
      )
      const result = await hubctl(['init', '--prefix', layout.prefix, ...GOOD, ...flags, '--domain', 'hub.localhost'])
      expect(result.exitCode, result.stderr).to.equal(4)
      expect(result.stderr).to.match(/nginx -t rejected .*bogus_directive.*Fix: the previous site is still installed/)
      expect(await fs.readFile(layout.nginxSite, 'utf8')).to.equal(before)
    } finally {
      await fs.rm(layout.prefix, {recursive: true, force: true})
    }
  })

  it('accepts a manual certificate and key that match', async () => {
    const layout = new Layout(await tempPrefix('hubctl-manual'))
    try {
      const pair = await makeSelfSigned(['localhost'])
      await fs.writeFile(path.join(layout.prefix, 'cert.pem'), pair.fullchain)
      await fs.writeFile(path.join(layout.prefix, 'key.pem'), pair.privkey)
      const {flags} = await portFlags()
      const result = await hubctl([
        'init',
        '--prefix',
        layout.prefix,
        ...withFlag('--tls', 'manual'),
        '--cert',
        path.join(layout.prefix, 'cert.pem'),
        '--key',
        path.join(layout.prefix, 'key.pem'),
        ...flags,
      ])
      expect(result.exitCode, result.stderr).to.equal(0)
      expect(await fs.readFile(layout.fullchain, 'utf8')).to.equal(pair.fullchain)
    } finally {
      await fs.rm(layout.prefix, {recursive: true, force: true})
    }
  })
})
