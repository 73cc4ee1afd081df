// e2e-lane: parallel
import {expect} from 'chai'
import {ChildProcess, execFileSync} from 'node:child_process'
import fs from 'node:fs/promises'
import path from 'node:path'

import {Layout} from '../../src/lib/config/layout.js'
import {proxyExecutable} from '../../src/lib/stack/proxy.js'
import {
  DEBIAN_JUPYTERHUB,
  VENV_JUPYTERHUB,
  hubctl,
  modeOf,
  portFlags,
  snapshot,
  snapshotTree,
  tempPrefix,
  treeChanges,
} from '../helpers/cli.js'
import {httpStatus, spawnLogged, stopProcess, waitUntil} from '../helpers/processes.js'

const JUPYTERHUBS = [
  {label: 'Debian JupyterHub 3.0', executable: DEBIAN_JUPYTERHUB, version: /^3\.0\./},
  {label: 'current JupyterHub from PyPI', executable: VENV_JUPYTERHUB, version: /^[5-9]\./},
]

const BASE = [
  '--yes',
  '--domain',
  'localhost',
  '--admin',
  'alice',
  '--allow-user',
  'bob',
  '--tls',
  'self-signed',
  '--max-concurrent-spawns',
  '3',
  '--spawn-timeout',
  '90',
  '--json',
]

/** What this JupyterHub makes of the rendered config: the spawn limit, and its spawner's args, timeouts and default URL. */
const SPAWN_VALUES = `
import json, os, sys
from jupyterhub.app import JupyterHub
app = JupyterHub()
app.raise_config_file_errors = True
app.load_config_file(os.path.abspath(sys.argv[1]))
spawner = app.spawner_class(config=app.config)
queue = spawner.pre_spawn_hook.queue
print(json.dumps({"limit": app.concurrent_spawn_limit, "slots": queue.slots if queue else None, "args": list(spawner.args), "start": spawner.start_timeout, "http": spawner.http_timeout, "url": spawner.default_url}))
`

function nginxTest(layout: Layout): string {
  return (
    execFileSync('nginx', ['-t', '-p', `${layout.prefix}/`, '-c', layout.nginxMainConf, '-e', layout.nginxErrorLog], {
      encoding: 'utf8',
      stdio: ['ignore', 'pipe', 'pipe'],
    }) ?? ''
  )
}

for (const jupyterhub of JUPYTERHUBS) {
  describe(`hubctl init with ${jupyterhub.label} (real JupyterHub, nginx, configurable-http-proxy)`, () => {
    let layout: Layout
    let ports: Awaited<ReturnType<typeof portFlags>>['ports']
    /** Every flag of the first init, the same again for the re-run. */
    let initArgs: string[]
    let proxy: ChildProcess | undefined
    let hub: ChildProcess | undefined

    before(async () => {
      layout = new Layout(await tempPrefix('hubctl-init'))
      const allocated = await portFlags()
      ports = allocated.ports
      initArgs = [
        'init',
        '--prefix',
        layout.prefix,
        ...BASE,
        '--dhparam',
        'ffdhe2048',
        '--jupyterhub',
        jupyterhub.executable,
        ...allocated.flags,
      ]
      const result = await hubctl(initArgs)
      expect(result.exitCode, result.stderr + result.stdout).to.equal(0)
      const json = JSON.parse(result.stdout)
      expect(json.jupyterhub.version).to.match(jupyterhub.version)
      expect(json.secrets.created).to.have.members(['cookieSecret', 'proxyAuthToken', 'apiToken', 'dhparam'])
    })

    after(async () => {
      await stopProcess(hub)
      await stopProcess(proxy)
      await fs.rm(layout.prefix, {recursive: true, force: true})
    })

    it('writes every file with its documented mode', async () => {
      expect(await modeOf(layout.srvDir)).to.equal(0o700)
      expect(await modeOf(layout.sslDir)).to.equal(0o700)
      for (const file of [
        layout.cookieSecret,
        layout.proxyAuthToken,
        layout.apiToken,
        layout.dhparam,
        layout.fullchain,
        layout.privkey,
      ]) {
        expect(await modeOf(file), file).to.equal(0o600)
      }
      expect(await modeOf(layout.hubConfig)).to.equal(0o644)
      expect(await modeOf(layout.settings)).to.equal(0o640)
      expect(await fs.readFile(layout.cookieSecret, 'utf8')).to.match(/^[0-9a-f]{64}\n$/)
      expect((await fs.lstat(layout.nginxSiteLink)).isSymbolicLink()).to.equal(true)
      expect((await fs.stat(layout.hubConfigD)).isDirectory()).to.equal(true)
      expect(await fs.readFile(layout.cronFile, 'utf8')).to.match(/cert renew --prefix/)
    })

    it('keeps every secret value out of the rendered and world-readable files', async () => {
      const secrets = await Promise.all(
        [layout.cookieSecret, layout.proxyAuthToken, layout.apiToken].map(async (f) =>
          (await fs.readFile(f, 'utf8')).trim(),
        ),
      )
      for (const file of [layout.hubConfig, layout.settings, layout.nginxSite, layout.nginxMainConf, layout.cronFile]) {
        const text = await fs.readFile(file, 'utf8')
        for (const secret of secrets) expect(text, file).not.to.include(secret)
      }
    })

    it('renders an nginx site that `nginx -t` accepts, with TLS 1.2/1.3 only, HSTS and the DH parameters', async () => {
      nginxTest(layout)
      const site = await fs.readFile(layout.nginxSite, 'utf8')
      expect(site).to.match(/ssl_protocols TLSv1\.2 TLSv1\.3;/)
      expect(site).to.match(/Strict-Transport-Security "max-age=63072000"/)
      expect(site).to.include(`ssl_dhparam ${layout.dhparam};`)
      expect(site).to.include('proxy_pass http://hubctl_proxy;')
      expect(site).to.include(`server 127.0.0.1:${ports.proxy} max_fails=0;`)
      expect(site).to.include(`server 127.0.0.1:${ports.proxyStandby} backup max_fails=0;`)
      expect(site).to.include('/.well-known/acme-challenge/')
      expect(site).not.to.match(/ssl_stapling/)
    })

    it('renders a config this JupyterHub loads and starts with, behind configurable-http-proxy', async () => {
      const token = (await fs.readFile(layout.proxyAuthToken, 'utf8')).trim()
      proxy = spawnLogged(
        process.execPath,
        [
          proxyExecutable(),
          '--ip',
          '127.0.0.1',
          '--port',
          String(ports.proxy),
          '--api-ip',
          '127.0.0.1',
          '--api-port',
          String(ports.proxyApi),
          '--default-target',
          `http://127.0.0.1:${ports.hub}`,
        ],
        {
          env: {...process.env, CONFIGPROXY_AUTH_TOKEN: token},
          log: path.join(layout.logDir, 'proxy.log'),
        },
      )
      await waitUntil(
        'the proxy API',
        async () =>
          (await httpStatus(`http://127.0.0.1:${ports.proxyApi}/api/routes`, {
            headers: {Authorization: `token ${token}`},
          })) === 200,
      )
      hub = spawnLogged(jupyterhub.executable, ['-f', layout.hubConfig], {
        cwd: layout.srvDir,
        env: process.env,
        log: layout.hubLog,
      })
      // The hub registers its route in the proxy; /hub/health answers through it.
      await waitUntil(
        'the hub through the proxy',
        async () => (await httpStatus(`http://127.0.0.1:${ports.proxy}/hub/health`)) === 200,
        {tries: 600, intervalMs: 200},
      )
      const routes = (await (
        await fetch(`http://127.0.0.1:${ports.proxyApi}/api/routes`, {headers: {Authorization: `token ${token}`}})
      ).json()) as Record<string, unknown>
      expect(Object.keys(routes)).to.include('/')
      // hubctl's service token works and holds the proxy scope.
      const apiToken = (await fs.readFile(layout.apiToken, 'utf8')).trim()
      expect(
        await httpStatus(`http://127.0.0.1:${ports.hub}/hub/api/proxy`, {
          headers: {Authorization: `token ${apiToken}`},
        }),
      ).to.equal(200)
      expect(
        await httpStatus(`http://127.0.0.1:${ports.hub}/hub/api/proxy`, {headers: {Authorization: 'token wrong'}}),
      ).to.equal(403)
      const db = await fs.stat(layout.database)
      expect(db.isFile()).to.equal(true)
    })

    it("renders the spawn queue and timeouts this JupyterHub loads, and JupyterLab's start-up args only for JupyterLab servers", async () => {
      const settings = JSON.parse(await fs.readFile(layout.settings, 'utf8'))
      expect(settings.spawn).to.deep.equal({maxConcurrent: 3, timeoutSeconds: 90})
      const python = execFileSync('sh', ['-c', 'head -1 "$1" | sed "s/^#! *//"', 'sh', jupyterhub.executable], {
        encoding: 'utf8',
      })
        .trim()
        .split(' ')
      const loaded = JSON.parse(
        execFileSync(python[0], [...python.slice(1), '-c', SPAWN_VALUES, layout.hubConfig], {
          cwd: layout.srvDir,
          encoding: 'utf8',
          stdio: ['ignore', 'pipe', 'pipe'],
        })
          .trim()
          .split('\n')
          .pop()!,
      )
      // At most 3 start at once, by hubctl's queue (the others wait their turn); JupyterHub's own
      // limit, which would answer 429, is off.
      expect(loaded).to.include({limit: 0, slots: 3, start: 90, http: 90})
      const lab = [
        '--LanguageServerManager.autodetect=False',
        '--LabApp.news_url=None',
        '--LabApp.check_for_updates_class=jupyterlab.NeverCheckForUpdate',
      ]
      if (loaded.url === '/lab') expect(loaded.args).to.include.members(lab)
      else
        expect(
          loaded.args.filter((arg: string) => lab.includes(arg)),
          'args of a classic notebook server',
        ).to.deep.equal([])
      // hubctl's own JupyterHub has JupyterLab; Debian's 3.0 servers here run the classic notebook.
      expect(loaded.url).to.equal(jupyterhub.executable === VENV_JUPYTERHUB ? '/lab' : '/tree')
    })

    it('changes no secret and no file when run a second time with every flag again: the whole prefix, content, mode and owner', async () => {
      // The hub and proxy the test above started write their logs and the hub's database: stopped
      // first, so that what the snapshot sees change is init's doing.
      await stopProcess(hub)
      await stopProcess(proxy)
      const before = await snapshot(layout.srvDir)
      const wholeBefore = await snapshotTree(layout.prefix)
      // The ports of the first run, every one of them (the standby proxy's two included: leaving
      // them out would move the standby to its defaults, 8002 and 8003, and change the config).
      expect(initArgs).to.include.members([
        '--proxy-standby-port',
        String(ports.proxyStandby),
        '--proxy-standby-api-port',
        String(ports.proxyStandbyApi),
      ])
      const result = await hubctl(initArgs)
      expect(result.exitCode, result.stderr + result.stdout).to.equal(0)
      const json = JSON.parse(result.stdout)
      expect(json.secrets.created).to.deep.equal([])
      expect(json.certificate.reused).to.equal(true)
      const after = await snapshot(layout.srvDir)
      delete before['jupyterhub.sqlite']
      delete after['jupyterhub.sqlite']
      expect(after).to.deep.equal(before)
      expect(json.files.find((f: {file: string}) => f.file === layout.hubConfig).action).to.equal('unchanged')
      const wholeAfter = await snapshotTree(layout.prefix)
      // Known to change without init changing anything: none. The hub's database
      // (srv/jupyterhub/jupyterhub.sqlite) and the logs would, while a hub runs; the one of the test
      // above was stopped before the first snapshot, so they are compared like every other file.
      expect(treeChanges(wholeBefore, wholeAfter)).to.deep.equal([])
      // Nor does it write a file again with the same content (README: "rewrites only what changed").
      expect(
        json.files.filter((f: {action: string}) => f.action !== 'unchanged'),
        'files init says it wrote',
      ).to.deep.equal([])
      const settings = JSON.parse(await fs.readFile(layout.settings, 'utf8')) as {ports: Record<string, number>}
      expect(settings.ports).to.include({proxyStandby: ports.proxyStandby, proxyStandbyApi: ports.proxyStandbyApi})
    })

    it('--dry-run on the prefix init made changes nothing in it: no file, no directory, no mode', async () => {
      // The hub and proxy were stopped by the test above: nothing else writes in the prefix.
      await stopProcess(hub)
      await stopProcess(proxy)
      const before = await snapshotTree(layout.prefix)
      const result = await hubctl([...initArgs, '--dry-run'])
      expect(result.exitCode, result.stderr + result.stdout).to.equal(0)
      const json = JSON.parse(result.stdout)
      expect(json.dryRun).to.equal(true)
      expect(json.files.filter((f: {file: string}) => !f.file.startsWith(`${layout.prefix}/`))).to.deep.equal([])
      expect(treeChanges(before, await snapshotTree(layout.prefix))).to.deep.equal([])
    })

    it('passes `hubctl secrets check`', async () => {
      const result = await hubctl(['secrets', 'check', '--prefix', layout.prefix, '--json'])
      expect(result.exitCode, result.stderr).to.equal(0)
      expect(JSON.parse(result.stdout).ok).to.equal(true)
    })
  })
}

describe('hubctl init: fresh DH parameters', () => {
  it('generates parameters that `openssl dhparam -check` accepts, while the other steps run', async () => {
    const layout = new Layout(await tempPrefix('hubctl-dh'))
    try {
      const {flags} = await portFlags()
      const result = await hubctl([
        'init',
        '--prefix',
        layout.prefix,
        ...BASE,
        '--dhparam',
        'generate',
        '--dhparam-bits',
        '2048',
        '--jupyterhub',
        DEBIAN_JUPYTERHUB,
        ...flags,
      ])
      expect(result.exitCode, result.stderr).to.equal(0)
      const out = execFileSync('openssl', ['dhparam', '-in', layout.dhparam, '-check', '-text', '-noout'], {
        encoding: 'utf8',
        stdio: ['ignore', 'pipe', 'pipe'],
      })
      expect(out).to.match(/2048 bit/)
      expect(out).not.to.match(/GROUP: ffdhe2048/)
      expect(await modeOf(layout.dhparam)).to.equal(0o600)
    } finally {
      await fs.rm(layout.prefix, {recursive: true, force: true})
    }
  })
})
