import {expect} from 'chai'
import {execFileSync} from 'node:child_process'
import fs from 'node:fs/promises'
import net from 'node:net'
import os from 'node:os'
import path from 'node:path'

import {HubctlError} from '../../../src/lib/errors.js'
import {
  LAB_SERVER_ARGS,
  PAM_THREADS,
  assertNoRootServers,
  serverPortStart,
  authenticatorClass,
  renderHubConfig,
} from '../../../src/lib/config/hubconfig.js'
import {Layout} from '../../../src/lib/config/layout.js'
import {SITE_LIMITS} from '../../../src/lib/config/site.js'
import {SERVER_PORTS, type Settings} from '../../../src/lib/config/settings.js'

const settings: Settings = {
  version: 1,
  domains: ['hub.example.org'],
  admins: ['alice'],
  allowedUsers: ['bob'],
  authenticator: 'pam',
  spawner: 'local',
  tls: {mode: 'self-signed'},
  ports: {http: 80, https: 443, proxy: 8000, proxyApi: 8001, hub: 8081, proxyStandby: 8002, proxyStandbyApi: 8003},
  dhparam: {mode: 'ffdhe2048', bits: 2048},
  executables: {
    jupyterhub: '/usr/bin/jupyterhub',
    singleuser: '/usr/bin/jupyterhub-singleuser',
    node: '/usr/bin/node',
    proxy: '/x/chp',
  },
  jupyterhubVersion: '3.0.0',
  nginxSupervised: false,
  proxyTls: false,
}
const v3 = {
  executable: '/usr/bin/jupyterhub',
  version: '3.0.0',
  major: 3,
  minor: 0,
  singleuser: '/usr/bin/jupyterhub-singleuser',
  python: 'python3',
}
const v6 = {...v3, version: '6.1.1', major: 6, minor: 1}

describe('hubconfig', () => {
  it('renders valid Python with no secret value, reading each secret from its file', async () => {
    const text = await renderHubConfig(new Layout('/'), settings, v3, '/lab')
    execFileSync('python3', ['-c', 'import ast, sys; ast.parse(sys.stdin.read())'], {input: text})
    expect(text).to.include('c.JupyterHub.cookie_secret_file = "/srv/jupyterhub/jupyterhub_cookie_secret"')
    expect(text).to.include('_hubctl_secret("/srv/jupyterhub/proxy_auth_token")')
    expect(text).to.include('c.ConfigurableHTTPProxy.should_start = False')
    expect(text).to.include('c.JupyterHub.cleanup_servers = False')
    expect(text).to.include('load_subconfig')
  })

  it('renders the allow rules each version needs (allow_all exists from 5.0)', async () => {
    expect(await renderHubConfig(new Layout('/'), settings, v3, '/lab')).not.to.include('allow_all')
    expect(await renderHubConfig(new Layout('/'), settings, v6, '/lab')).to.include('c.Authenticator.allow_all = False')
  })

  it('gives PAM logins enough threads that one address guessing does not hold them all', async () => {
    const v52 = {...v3, version: '5.2.0', major: 5, minor: 2}
    for (const install of [v52, v6]) {
      const text = await renderHubConfig(new Layout('/'), settings, install, '/lab')
      expect(text).to.include(`c.PAMAuthenticator.executor_threads = ${PAM_THREADS}`)
      expect(text).not.to.include('HubctlPAMAuthenticator')
    }
    // Before 5.2 the setting does not exist: PAMAuthenticator's subclass with a larger pool.
    const old = await renderHubConfig(new Layout('/'), settings, v3, '/lab')
    execFileSync('python3', ['-c', 'import ast, sys; ast.parse(sys.stdin.read())'], {input: old})
    expect(old).not.to.include('executor_threads')
    expect(old).to.include(`return ThreadPoolExecutor(${PAM_THREADS})`)
    expect(old).to.include('c.JupyterHub.authenticator_class = HubctlPAMAuthenticator')
    // Other authenticators: no PAM threads.
    expect(await renderHubConfig(new Layout('/'), {...settings, authenticator: 'dummy'}, v6, '/lab')).not.to.match(
      /executor_threads|HubctlPAMAuthenticator/,
    )
    expect(PAM_THREADS).to.be.at.least(2 * SITE_LIMITS.loginConcurrent)
  })

  it('admits admins and allowed users', async () => {
    const text = await renderHubConfig(new Layout('/'), settings, v6, '/lab')
    expect(text).to.include('c.Authenticator.admin_users = { "alice",  }')
    expect(text).to.include('c.Authenticator.allowed_users = { "alice", "bob",  }')
  })

  it('cannot be injected into, even by a value that validation would have refused', async () => {
    const evil = `x" }; import os; os.system("id"); {"`
    const text = await renderHubConfig(new Layout('/'), {...settings, admins: [evil]}, v6, '/lab')
    const out = execFileSync(
      'python3',
      [
        '-c',
        'import ast, sys; tree = ast.parse(sys.stdin.read()); print(sum(isinstance(n, ast.Import) for n in ast.walk(tree)))',
      ],
      {input: text, encoding: 'utf8'},
    )
    expect(out.trim()).to.equal('8') // asyncio, errno, glob, os, socket, time, jupyterhub.objects, jupyterhub.orm: the template's own
  })

  it('maps authenticator choices and refuses what the version lacks', () => {
    expect(authenticatorClass('pam', v3)).to.equal('pam')
    expect(authenticatorClass('oauthenticator.GitHubOAuthenticator', v3)).to.equal(
      'oauthenticator.GitHubOAuthenticator',
    )
    expect(() => authenticatorClass('shared-password', v3)).to.throw(HubctlError, /needs JupyterHub 5.1/)
    expect(authenticatorClass('shared-password', v6)).to.equal('shared-password')
    expect(() => authenticatorClass('x; import os', v6)).to.throw(HubctlError, /not one hubctl knows/)
  })

  it("refuses --spawner simple as root unless the one login is hubctl's generated one (servers would run as root)", async () => {
    const simple = {...settings, spawner: 'simple' as const}
    expect(() => assertNoRootServers(simple, 0)).to.throw(
      HubctlError,
      /--spawner simple with hubctl run as root .*alice, bob/,
    )
    expect(() => assertNoRootServers({...simple, authenticator: 'dummy'}, 0)).to.throw(HubctlError, /alice, bob/)
    expect(() => assertNoRootServers({...simple, allowedUsers: []}, 0)).to.throw(
      HubctlError,
      /whoever --authenticator pam lets in/,
    )
    for (const authenticator of ['dummy', 'shared-password'])
      assertNoRootServers({...simple, authenticator, allowedUsers: []}, 0)
    assertNoRootServers({...simple, authenticator: 'dummy', allowedUsers: ['alice']}, 0)
    assertNoRootServers(simple, 1000)
    assertNoRootServers(settings, 0)
    try {
      await renderHubConfig(new Layout('/'), simple, v3, '/lab')
      expect.fail('rendered')
    } catch (error) {
      expect((error as HubctlError).exitCode).to.equal(2)
      expect((error as HubctlError).line).to.match(/Fix: use --spawner local/)
    }
  })

  /** A temporary prefix holding the secret files a rendered config reads (the proxy and API tokens, the login password). */
  async function prefixWithSecrets(): Promise<{prefix: string; layout: Layout}> {
    const prefix = await fs.mkdtemp(path.join(os.tmpdir(), 'hubctl-hubconfig-'))
    const layout = new Layout(prefix)
    for (const file of [layout.proxyAuthToken, layout.apiToken, layout.loginPassword]) {
      await fs.mkdir(path.dirname(file), {recursive: true})
      await fs.writeFile(file, 'a'.repeat(64))
    }
    return {prefix, layout}
  }

  /**
   * Load a rendered config with traitlets (Debian's, as JupyterHub 3.0 does) into stand-ins of the
   * classes it configures, the secrets it reads made under a temporary prefix: the values JupyterHub gets.
   */
  async function loaded(text: string, prefix: string): Promise<Record<string, unknown>> {
    const file = path.join(prefix, 'jupyterhub_config.py')
    await fs.writeFile(file, text)
    const code = [
      'import json, sys',
      'from traitlets import Integer, List, Float',
      'from traitlets.config import Configurable, PyFileConfigLoader',
      'class JupyterHub(Configurable):',
      '    concurrent_spawn_limit = Integer(100).tag(config=True)',
      'class Spawner(Configurable):',
      '    args = List().tag(config=True)',
      '    start_timeout = Integer(60).tag(config=True)',
      '    http_timeout = Integer(30).tag(config=True)',
      'config = PyFileConfigLoader("jupyterhub_config.py", sys.argv[1]).load_config()',
      'hub, spawner = JupyterHub(config=config), Spawner(config=config)',
      'print(json.dumps({"concurrent_spawn_limit": hub.concurrent_spawn_limit, "args": spawner.args, "start_timeout": spawner.start_timeout, "http_timeout": spawner.http_timeout}))',
    ].join('\n')
    return JSON.parse(
      execFileSync('/usr/bin/python3', ['-W', 'ignore', '-c', code, prefix], {encoding: 'utf8'}),
    ) as Record<string, unknown>
  }

  it("gives JupyterLab servers the start-up savings, and the classic notebook's servers nothing new", async () => {
    const {prefix, layout} = await prefixWithSecrets()
    try {
      const lab = await loaded(await renderHubConfig(layout, settings, v6, '/lab'), prefix)
      expect(lab.args).to.deep.equal(LAB_SERVER_ARGS)
      expect(LAB_SERVER_ARGS).to.include('--LanguageServerManager.autodetect=False')
      const notebook = await loaded(await renderHubConfig(layout, settings, v3, '/tree'), prefix)
      expect(notebook.args).to.deep.equal([])
      // Local mode as root: --allow-root stays first, the savings follow it.
      const root = (process.getuid?.() ?? 0) === 0
      const simple = await loaded(
        await renderHubConfig(
          layout,
          {...settings, spawner: 'simple' as const, authenticator: 'dummy', allowedUsers: []},
          v6,
          '/lab',
        ),
        prefix,
      )
      expect(simple.args).to.deep.equal(root ? ['--allow-root', ...LAB_SERVER_ARGS] : LAB_SERVER_ARGS)
      const simpleTree = await loaded(
        await renderHubConfig(
          layout,
          {...settings, spawner: 'simple' as const, authenticator: 'dummy', allowedUsers: []},
          v3,
          '/tree',
        ),
        prefix,
      )
      expect(simpleTree.args).to.deep.equal(root ? ['--allow-root'] : [])
      // The operator's own file in jupyterhub_config.d adds to them, as the README says.
      await fs.mkdir(layout.hubConfigD, {recursive: true})
      await fs.writeFile(
        path.join(layout.hubConfigD, 'mine.py'),
        'c.Spawner.args.extend(["--ServerApp.max_body_size=1000"])\n',
      )
      expect((await loaded(await renderHubConfig(layout, settings, v6, '/lab'), prefix)).args).to.deep.equal([
        ...LAB_SERVER_ARGS,
        '--ServerApp.max_body_size=1000',
      ])
    } finally {
      await fs.rm(prefix, {recursive: true, force: true})
    }
  })

  it("renders the spawn limit and both timeouts from the settings, and leaves JupyterHub's defaults for settings without them", async () => {
    const {prefix, layout} = await prefixWithSecrets()
    try {
      const text = await renderHubConfig(
        layout,
        {...settings, spawn: {maxConcurrent: 3, timeoutSeconds: 150}},
        v6,
        '/lab',
      )
      // The queue takes the limit's place: JupyterHub's own (a 429 page) is off.
      expect(text).to.include('c.JupyterHub.concurrent_spawn_limit = 0\n')
      expect(text).to.include('_hubctl_queue = _HubctlSpawnQueue(3)\n')
      expect(text).to.include('c.Spawner.start_timeout = 150\n')
      expect(text).to.include('c.Spawner.http_timeout = 150\n')
      expect(await loaded(text, prefix)).to.include({concurrent_spawn_limit: 0, start_timeout: 150, http_timeout: 150})
      const old = await renderHubConfig(layout, settings, v6, '/lab')
      expect(old).not.to.match(/concurrent_spawn_limit|start_timeout|http_timeout|_HubctlSpawnQueue\(/)
      expect(await loaded(old, prefix)).to.include({concurrent_spawn_limit: 100, start_timeout: 60, http_timeout: 30})
    } finally {
      await fs.rm(prefix, {recursive: true, force: true})
    }
  })

  /*
   * The port hook and the readiness check, run by each JupyterHub's own Python: the hook skips a port
   * something holds and never hands one out twice; a server answering 404 on the user's URL (another
   * user's server on that port) never counts as up, the user's own server (200) does.
   */
  /** The first of `count` neighbouring ports of the default range that nothing holds now. */
  async function freeRange(count: number): Promise<number> {
    const free = (port: number) =>
      new Promise<boolean>((resolve) => {
        const server = net.createServer()
        server.once('error', () => resolve(false))
        server.listen(port, () => server.close(() => resolve(true)))
      })
    for (;;) {
      const first = SERVER_PORTS.first + Math.floor(Math.random() * (SERVER_PORTS.last - SERVER_PORTS.first - count))
      let all = true
      for (let port = first; port < first + count && all; port++) all = await free(port)
      if (all) return first
    }
  }

  const PORTS_AND_READINESS = `
import asyncio, http.server, json, socket, sys, threading
from traitlets.config import PyFileConfigLoader
from jupyterhub.spawner import LocalProcessSpawner
import jupyterhub.objects
config = PyFileConfigLoader("jupyterhub_config.py", sys.argv[1]).load_config()
hook = config.Spawner.pre_spawn_hook.ports
held = socket.socket()
held.bind(("127.0.0.1", hook.start))
held.listen()
ports = []
for _ in range(3):
    # As the hub makes them: each spawner from the config (traitlets copies its values).
    spawner = LocalProcessSpawner(config=config)
    asyncio.run(spawner.run_pre_spawn_hook())
    ports.append(spawner.port)
# A hub restarted while servers were starting: a new hook, the database holds a starting server's port.
import types, jupyterhub.orm
db = jupyterhub.orm.new_session_factory("sqlite://")()
db.add(jupyterhub.orm.Server(port=hook.first + (hook.start - hook.first + 1) % (hook.last - hook.first + 1)))
db.commit()
restarted = type(hook)(hook.first, hook.last, hold_seconds=900, start=hook.start)
spawner = LocalProcessSpawner()
spawner.user = types.SimpleNamespace(db=db)
restarted(spawner)

class Answer(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        self.send_response(200 if self.path == "/user/right/api" else 404)
        self.end_headers()
    def log_message(self, *args):
        pass

server = http.server.HTTPServer(("127.0.0.1", 0), Answer)
threading.Thread(target=server.serve_forever, daemon=True).start()
base = f"http://127.0.0.1:{server.server_port}"
async def ready(path):
    try:
        await jupyterhub.objects.wait_for_http_server(base + path, timeout=2)
        return True
    except TimeoutError:
        return False
print(json.dumps({"first": hook.first, "last": hook.last, "start": hook.start, "ports": ports, "restarted": spawner.port,
    "right": asyncio.run(ready("/user/right/api")), "wrong": asyncio.run(ready("/user/wrong/api"))}))
`

  const QUEUE = `
import asyncio, json, sys
from traitlets.config import PyFileConfigLoader
from jupyterhub.spawner import LocalProcessSpawner
config = PyFileConfigLoader("jupyterhub_config.py", sys.argv[1]).load_config()

async def main():
    inside, most, order, messages = 0, 0, [], []
    spawners = [LocalProcessSpawner(config=config) for _ in range(5)]

    async def spawn(i, spawner):
        nonlocal inside, most
        spawner._spawn_pending = True  # as the hub's handler sets it until the server answered
        await spawner.run_pre_spawn_hook()
        inside += 1
        most = max(most, inside)
        order.append(i)
        await asyncio.sleep(0.6)
        inside -= 1
        spawner._spawn_pending = False

    async def watch(spawner):
        async for event in spawner.progress():
            messages.append(event["message"])

    tasks = []
    for i, spawner in enumerate(spawners):
        tasks.append(asyncio.ensure_future(spawn(i, spawner)))
        await asyncio.sleep(0.01)
    watcher = asyncio.ensure_future(watch(spawners[4]))
    await asyncio.gather(*tasks)
    await watcher
    print(json.dumps({"most": most, "order": order, "messages": messages}))

asyncio.run(main())
`

  for (const python of ['/usr/bin/python3', '/opt/hubctl-venv/bin/python']) {
    it(`lets servers start --max-concurrent-spawns at a time, the others waiting in line with their place on the spawn page (${python})`, async function () {
      this.timeout(30_000)
      const {prefix, layout} = await prefixWithSecrets()
      try {
        const first = await freeRange(10)
        await fs.writeFile(
          path.join(prefix, 'jupyterhub_config.py'),
          await renderHubConfig(
            layout,
            {...settings, serverPorts: {first, last: first + 9}, spawn: {maxConcurrent: 2, timeoutSeconds: 120}},
            python.includes('venv') ? v6 : v3,
            '/lab',
          ),
        )
        const result = JSON.parse(execFileSync(python, ['-W', 'ignore', '-c', QUEUE, prefix], {encoding: 'utf8'})) as {
          most: number
          order: number[]
          messages: string[]
        }
        expect(result.most, 'never more than 2 starting at once').to.equal(2)
        expect(result.order, 'in arrival order').to.deep.equal([0, 1, 2, 3, 4])
        // Its place as it moves up (two places may free at once), then the spawner's own progress.
        const line = (who: string) => `Waiting for a turn to start (${who}; 2 servers start at a time on this machine)`
        expect(result.messages[0]).to.equal(line('2 ahead of you'))
        expect(result.messages.slice(-2)).to.deep.equal([line('you are next'), 'Spawning server...'])
        expect(result.messages.slice(1, -2).every((m) => m === line('1 ahead of you'))).to.equal(true)
      } finally {
        await fs.rm(prefix, {recursive: true, force: true})
      }
    })
  }

  for (const python of ['/usr/bin/python3', '/opt/hubctl-venv/bin/python']) {
    it(`hands user servers free ports outside the kernels' range, and takes only the user's own answer for up (${python})`, async function () {
      this.timeout(30_000)
      const {prefix, layout} = await prefixWithSecrets()
      try {
        const version = python.includes('venv') ? v6 : v3
        expect(await renderHubConfig(layout, settings, version, '/lab')).to.include(
          `    ${SERVER_PORTS.first}, ${SERVER_PORTS.last}, hold_seconds=900, start=${serverPortStart(SERVER_PORTS, settings.ports.hub)}\n`,
        )
        // Servers of other hubs on this machine may hold ports of the default range: ten free ones.
        const first = await freeRange(10)
        await fs.writeFile(
          path.join(prefix, 'jupyterhub_config.py'),
          await renderHubConfig(layout, {...settings, serverPorts: {first, last: first + 9}}, version, '/lab'),
        )
        const result = JSON.parse(
          execFileSync(python, ['-W', 'ignore', '-c', PORTS_AND_READINESS, prefix], {encoding: 'utf8'}),
        ) as {
          first: number
          last: number
          start: number
          ports: number[]
          restarted: number
          right: boolean
          wrong: boolean
        }
        const start = serverPortStart({first, last: first + 9}, settings.ports.hub)
        expect(result).to.include({first, last: first + 9, start})
        const after = (k: number) => first + ((start - first + k) % 10)
        const [low, high] = (await fs.readFile('/proc/sys/net/ipv4/ip_local_port_range', 'utf8')).trim().split(/\s+/)
        expect(SERVER_PORTS.last, 'below the ephemeral range').to.be.lessThan(Number(low))
        expect(Number(high)).to.be.greaterThan(SERVER_PORTS.last)
        expect(result.ports, 'the held port is skipped').to.deep.equal([after(1), after(2), after(3)])
        expect(new Set(result.ports).size, 'never the same port twice').to.equal(3)
        expect(result.restarted, "after a restart, a port in the hub's database is skipped").to.equal(after(2))
        expect(result.right, "the user's own server answers 200: up").to.equal(true)
        expect(result.wrong, 'a 404 on the user URL: not up').to.equal(false)
      } finally {
        await fs.rm(prefix, {recursive: true, force: true})
      }
    })
  }

  it("starts each hub's search for a server port elsewhere in the range (by its hub port), inside the range", () => {
    const starts = [8081, 8082, 8083, 18081].map((port) => serverPortStart(SERVER_PORTS, port))
    expect(new Set(starts).size).to.equal(4)
    for (const start of starts) expect(start).to.be.within(SERVER_PORTS.first, SERVER_PORTS.last)
    expect(serverPortStart({first: 30000, last: 30000}, 8081)).to.equal(30000)
  })
})
