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
  authenticatorClass,
  renderHubConfig,
} from '../../../src/lib/config/hubconfig.js'
import {installHubPython} from '../../../src/lib/config/hubpython.js'
import {Layout} from '../../../src/lib/config/layout.js'
import {SITE_LIMITS} from '../../../src/lib/config/site.js'
import {SERVER_PORTS, type Settings} from '../../../src/lib/config/settings.js'
import {testSettings} from '../../helpers/settings.js'

const settings = testSettings({allowedUsers: ['bob'], jupyterhubVersion: '3.0.0'})
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
      expect(text).not.to.include('threaded_pam_authenticator')
    }
    // Before 5.2 the setting does not exist: PAMAuthenticator's subclass with a larger pool.
    const old = await renderHubConfig(new Layout('/'), settings, v3, '/lab')
    execFileSync('python3', ['-c', 'import ast, sys; ast.parse(sys.stdin.read())'], {input: old})
    expect(old).not.to.include('executor_threads')
    expect(old).to.include(
      `c.JupyterHub.authenticator_class = hubctl_hub.pam.threaded_pam_authenticator(${PAM_THREADS})`,
    )
    // Other authenticators: no PAM threads.
    expect(await renderHubConfig(new Layout('/'), {...settings, authenticator: 'dummy'}, v6, '/lab')).not.to.match(
      /executor_threads|threaded_pam_authenticator\(/,
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
    expect(out.trim()).to.equal('13') // glob, os, sys and ten modules of hubctl_hub: the template's own
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
    await installHubPython(layout)
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
      expect(text).to.include('_hubctl_queue = hubctl_hub.spawnqueue.SpawnQueue(3)\n')
      expect(text).to.include('c.Spawner.start_timeout = 150\n')
      expect(text).to.include('c.Spawner.http_timeout = 150\n')
      expect(await loaded(text, prefix)).to.include({concurrent_spawn_limit: 0, start_timeout: 150, http_timeout: 150})
      const old = await renderHubConfig(layout, settings, v6, '/lab')
      expect(old).not.to.match(/concurrent_spawn_limit|start_timeout|http_timeout|SpawnQueue\(/)
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

  /** Runs a rendered config (argv[1]: its folder) as JupyterHub would, keeping its functions in `hub`. */
  const LOAD = `
import asyncio, http.server, json, os, socket, subprocess, sys, threading
from traitlets.config import Config
from jupyterhub.spawner import LocalProcessSpawner
import jupyterhub.objects
hub = {"get_config": Config, "load_subconfig": lambda path: None, "__name__": "jupyterhub_config"}
with open(os.path.join(sys.argv[1], "jupyterhub_config.py")) as f:
    exec(compile(f.read(), "jupyterhub_config.py", "exec"), hub)
config = hub["c"]
`

  const PORTS_AND_READINESS = `${LOAD}
hook = config.Spawner.pre_spawn_hook.ports
first, last = hook.first, hook.last
# One port held on IPv4, the next on IPv6 only (a bind on 127.0.0.1 would not see it).
v4 = socket.socket()
v4.bind(("127.0.0.1", first))
v4.listen()
v6 = socket.socket(socket.AF_INET6)
v6.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
v6.bind(("::", first + 1))
v6.listen()
ports = []
for _ in range(8):
    # As the hub makes them: each spawner from the config (traitlets copies its values).
    spawner = LocalProcessSpawner(config=config)
    asyncio.run(spawner.run_pre_spawn_hook())
    ports.append(spawner.port)
# A fresh hook each time (a hub just started): where does its first port fall?
fresh = [type(hook)(first, last, hold_seconds=900).pick() for _ in range(40)]
try:
    type(hook)(first, first + 1, hold_seconds=900).pick()
    both_held = None
except RuntimeError as e:
    both_held = str(e)
# A hub restarted while servers were starting: a new hook, the database holds a starting server's port.
import types, jupyterhub.orm
db = jupyterhub.orm.new_session_factory("sqlite://")()
db.add(jupyterhub.orm.Server(port=first + 2))
db.commit()
restarted = []
for _ in range(20):
    spawner = LocalProcessSpawner()
    spawner.user = types.SimpleNamespace(db=db)
    type(hook)(first, last, hold_seconds=900)(spawner)
    restarted.append(spawner.port)

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
print(json.dumps({"first": first, "last": last, "ports": ports, "fresh": fresh, "bothHeld": both_held,
    "restarted": restarted, "right": asyncio.run(ready("/user/right/api")), "wrong": asyncio.run(ready("/user/wrong/api"))}))
`

  /** Processes that listen: LISTEN on 127.0.0.1:argv[1] (says "ready"); PARENT starts LISTEN as its child. */
  const PROCESSES = String.raw`
LISTEN = "import socket, sys, time\ns = socket.socket()\ns.bind(('127.0.0.1', int(sys.argv[1])))\ns.listen()\nprint('ready', flush=True)\ntime.sleep(120)"
PARENT = "import subprocess, sys, time\nsubprocess.Popen([sys.executable, '-c', sys.argv[2], sys.argv[1]])\ntime.sleep(120)"
def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port
def started(*args):
    return subprocess.Popen([sys.executable, "-c", *args], stdout=subprocess.PIPE, text=True, start_new_session=True)
def end(children):
    # Each started in its own session: its whole group (a child's own child too) ends here.
    for proc in children:
        try:
            os.killpg(proc.pid, 9)
        except ProcessLookupError:
            pass
children = []
`

  /**
   * The readiness check with the spawner known (as JupyterHub's User._wait_up calls it): a server
   * process that cannot bind its port because another program answers 200 on it; one that dies
   * before it listens; one that answers itself.
   */
  const OWN_READINESS = `${LOAD}${PROCESSES}
SERVER = """
import http.server, json, sys
class Answer(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        body = json.dumps({"version": "own"}).encode()
        self.send_response(200 if self.path == "/user/right/api" else 404)
        self.end_headers()
        self.wfile.write(body)
    def log_message(self, *args):
        pass
try:
    server = http.server.HTTPServer(("127.0.0.1", int(sys.argv[1])), Answer)
except OSError as e:
    sys.exit(f"port already in use: {e}")
server.serve_forever()
"""
asked = []
class Squatter(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        asked.append(self.path)
        self.send_response(200)
        self.end_headers()
    def log_message(self, *args):
        pass
squatter = http.server.HTTPServer(("127.0.0.1", 0), Squatter)
threading.Thread(target=squatter.serve_forever, daemon=True).start()

async def up(port, script, *args):
    proc = subprocess.Popen([sys.executable, "-c", script, *args], stderr=subprocess.DEVNULL, start_new_session=True)
    children.append(proc)
    spawner = LocalProcessSpawner()
    spawner.proc = proc
    spawner.pid = proc.pid
    hub["hubctl_hub"].readiness.spawner_waiting.set(spawner)
    try:
        await jupyterhub.objects.wait_for_http_server(f"http://127.0.0.1:{port}/user/right/api", timeout=25)
        return "up"
    except Exception as e:
        return f"{type(e).__name__}: {e}"

out = {"me": os.getpid(), "uid": os.getuid(), "squatted": squatter.server_port}
out["squatted"] = [asyncio.run(up(squatter.server_port, SERVER, str(squatter.server_port))), squatter.server_port]
out["asked"] = asked
out["died"] = asyncio.run(up(free_port(), "import sys; sys.exit(3)"))
port = free_port()
out["own"] = asyncio.run(up(port, SERVER, str(port)))
out["patched"] = jupyterhub.user.User._wait_up.__name__
end(children)
print(json.dumps(out))
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

  const SERVER_HOMES = `
import asyncio, json, sys, types
from traitlets.config import PyFileConfigLoader
from jupyterhub.spawner import SimpleLocalProcessSpawner
config = PyFileConfigLoader("jupyterhub_config.py", sys.argv[1]).load_config()
out = {}
for name in sys.argv[2:]:
    # As the hub makes it: a spawner from the config, then its pre-spawn hook.
    spawner = SimpleLocalProcessSpawner(config=config, user=types.SimpleNamespace(name=name))
    try:
        asyncio.run(spawner.run_pre_spawn_hook())
        out[name] = {"home": spawner.home_dir}
    except Exception as e:
        out[name] = {"home": spawner.home_dir, "error": getattr(e, "jupyterhub_message", repr(e))}
print(json.dumps(out))
`

  it('gives SimpleLocalProcessSpawner servers no home_dir_template of their own with --spawner local', async () => {
    const text = await renderHubConfig(new Layout('/'), settings, v3, '/lab')
    expect(text).to.not.include('home_dir_template')
    expect(text).to.include('_hubctl_server_home = None')
  })

  for (const python of ['/usr/bin/python3', '/opt/hubctl-venv/bin/python']) {
    it(`gives servers run as the hub's user a 0700 home of hubctl's under the prefix, and refuses one that is not hubctl's (${python})`, async function () {
      this.timeout(30_000)
      // Braces in the prefix: the template doubles them for str.format.
      const prefix = await fs.mkdtemp(path.join(os.tmpdir(), 'hubctl-hubconfig-{x}-'))
      const layout = new Layout(prefix)
      for (const file of [layout.proxyAuthToken, layout.apiToken, layout.loginPassword]) {
        await fs.mkdir(path.dirname(file), {recursive: true})
        await fs.writeFile(file, 'a'.repeat(64))
      }
      await installHubPython(layout)
      try {
        const simple = {...settings, spawner: 'simple' as const, authenticator: 'dummy', allowedUsers: []}
        const text = await renderHubConfig(layout, simple, python.includes('venv') ? v6 : v3, '/lab')
        expect(text).to.include(
          `c.SimpleLocalProcessSpawner.home_dir_template = ${JSON.stringify(layout.serverHomeTemplate)}`,
        )
        await fs.writeFile(path.join(prefix, 'jupyterhub_config.py'), text)
        const run = (names: string[]) =>
          JSON.parse(
            execFileSync(python, ['-W', 'ignore', '-c', SERVER_HOMES, prefix, ...names], {encoding: 'utf8'}),
          ) as Record<string, {home: string; error?: string}>
        // Made at the first start: 0700, the hub's user's, marked; the second start takes it as it is.
        const first = run(['ada'])
        expect(first.ada).to.deep.equal({home: layout.serverHome('ada')})
        const stat = await fs.lstat(layout.serverHome('ada'))
        expect(stat.mode & 0o7777).to.equal(0o700)
        expect(stat.uid).to.equal(process.getuid!())
        expect((await fs.lstat(layout.serverHomesDir)).mode & 0o7777).to.equal(0o700)
        expect((await fs.lstat(layout.serverHomeMarker('ada'))).isFile()).to.equal(true)
        await fs.writeFile(path.join(layout.serverHome('ada'), 'notebook.ipynb'), '{}')
        // Homes that are not hubctl's: a link, another owner's, one without the mark, one others can write.
        const elsewhere = await fs.mkdtemp(path.join(os.tmpdir(), 'hubctl-elsewhere-'))
        await fs.symlink(elsewhere, layout.serverHome('link'))
        for (const name of ['other', 'unmarked', 'open']) await fs.mkdir(layout.serverHome(name), {mode: 0o700})
        for (const name of ['other', 'open']) await fs.writeFile(layout.serverHomeMarker(name), '')
        await fs.chown(layout.serverHome('other'), 65534, 65534)
        await fs.chmod(layout.serverHome('open'), 0o777)
        const results = run(['ada', 'link', 'other', 'unmarked', 'open'])
        await fs.rm(elsewhere, {recursive: true, force: true})
        expect(results.ada).to.deep.equal({home: layout.serverHome('ada')})
        expect(await fs.readdir(layout.serverHome('ada'))).to.include('notebook.ipynb')
        const home = (name: string) => layout.serverHome(name).replaceAll(/[{}]/g, '\\$&')
        expect(results.link.error).to.match(
          new RegExp(
            `^hubctl: the server home ${home('link')} is a symbolic link\\. Fix: .*mv ${home('link')} ${home('link')}\\.not-hubctl`,
          ),
        )
        expect(results.other.error).to.match(
          new RegExp(
            `^hubctl: the server home ${home('other')} belongs to uid 65534, not to the hub's user.*Fix: .*mv ${home('other')}`,
          ),
        )
        expect(results.unmarked.error).to.match(
          new RegExp(
            `^hubctl: the server home ${home('unmarked')} was not made by hubctl .*Fix: .*touch ${home('unmarked')}/\\.hubctl-home`,
          ),
        )
        expect(results.open.error).to.match(
          new RegExp(
            `^hubctl: the server home ${home('open')} is writable by its group.*Fix: .*chmod go-w ${home('open')}`,
          ),
        )
        // Nothing refused was changed.
        expect(await fs.readdir(layout.serverHome('unmarked'))).to.deep.equal([])
        expect((await fs.lstat(layout.serverHome('open'))).mode & 0o777).to.equal(0o777)
      } finally {
        await fs.rm(prefix, {recursive: true, force: true})
      }
    })
  }

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

  /*
   * These run hubctl_hub as the rendered config wires it; its parts alone (the queue's cancel and
   * failure paths, free ports, the listener proof) are tested in python/tests (hubpython.test.ts).
   */
  /** Render the config for `python`'s JupyterHub with these settings into a temporary prefix; run `script` there. */
  async function runInHub<T>(python: string, extra: Partial<Settings>, script: string): Promise<T> {
    const {prefix, layout} = await prefixWithSecrets()
    try {
      await fs.writeFile(
        path.join(prefix, 'jupyterhub_config.py'),
        await renderHubConfig(layout, {...settings, ...extra}, python.includes('venv') ? v6 : v3, '/lab'),
      )
      return JSON.parse(
        execFileSync(python, ['-W', 'ignore', '-c', script, prefix], {encoding: 'utf8', timeout: 50_000}),
      ) as T
    } finally {
      await fs.rm(prefix, {recursive: true, force: true})
    }
  }

  for (const python of ['/usr/bin/python3', '/opt/hubctl-venv/bin/python']) {
    it(`hands user servers free ports outside the kernels' range, at random, none held on IPv4 or IPv6, and takes only the user's own answer for up (${python})`, async function () {
      this.timeout(30_000)
      expect(await renderHubConfig(new Layout('/'), settings, v6, '/lab')).to.include(
        `hubctl_hub.ports.ServerPorts(${SERVER_PORTS.first}, ${SERVER_PORTS.last}, hold_seconds=900)\n`,
      )
      // Servers of other hubs on this machine may hold ports of the default range: ten free ones.
      const first = await freeRange(10)
      const result = await runInHub<{
        first: number
        last: number
        ports: number[]
        fresh: number[]
        bothHeld: string | null
        restarted: number[]
        right: boolean
        wrong: boolean
      }>(python, {serverPorts: {first, last: first + 9}}, PORTS_AND_READINESS)
      expect(result).to.include({first, last: first + 9})
      const [low, high] = (await fs.readFile('/proc/sys/net/ipv4/ip_local_port_range', 'utf8')).trim().split(/\s+/)
      expect(SERVER_PORTS.last, 'below the ephemeral range').to.be.lessThan(Number(low))
      expect(Number(high)).to.be.greaterThan(SERVER_PORTS.last)
      const held = [first, first + 1]
      for (const port of [...result.ports, ...result.fresh, ...result.restarted])
        expect(port).to.be.within(first + 2, first + 9)
      expect(result.bothHeld, 'a range whose ports are held on IPv4 and on IPv6 only: none handed out').to.match(
        new RegExp(`^no free port for a user server in ${held[0]}-${held[1]}: `),
      )
      expect(new Set(result.ports).size, 'never the same port twice').to.equal(8)
      expect(
        new Set(result.fresh).size,
        `a hub's first port is not predictable (not the lowest free one): ${result.fresh.join(' ')}`,
      ).to.be.greaterThan(3)
      expect(result.restarted, "after a restart, a port in the hub's database is skipped").to.not.include(first + 2)
      expect(result.right, "the user's own server answers 200: up").to.equal(true)
      expect(result.wrong, 'a 404 on the user URL: not up').to.equal(false)
    })

    it(`takes a server for up only when its own process holds the port: a squatter's 200 fails the spawn at once, naming it (${python})`, async function () {
      this.timeout(60_000)
      const result = await runInHub<{
        me: number
        uid: number
        squatted: [string, number]
        asked: string[]
        died: string
        own: string
        patched: string
      }>(python, {}, OWN_READINESS)
      const [outcome, port] = result.squatted
      expect(outcome).to.match(
        new RegExp(
          `^RuntimeError: The server's process \\(pid \\d+\\) exited with code 1 before it listened on port ${port}: port ${port} is held by another program \\(pid ${result.me}, uid ${result.uid}\\)`,
        ),
      )
      expect(result.asked, 'the squatter was never asked').to.deep.equal([])
      expect(result.died).to.match(
        /^RuntimeError: The server's process \(pid \d+\) exited with code 3 before it listened on port \d+$/,
      )
      expect(result.own).to.equal('up')
      expect(result.patched, "JupyterHub's User._wait_up tells the check which spawner it waits for").to.equal(
        'wait_up',
      )
    })
  }
})
