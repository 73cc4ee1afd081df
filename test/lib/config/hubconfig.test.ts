import {expect} from 'chai'
import {execFileSync} from 'node:child_process'
import fs from 'node:fs/promises'
import os from 'node:os'
import path from 'node:path'

import {HubctlError} from '../../../src/lib/errors.js'
import {
  LAB_SERVER_ARGS,
  assertNoRootServers,
  authenticatorClass,
  renderHubConfig,
} from '../../../src/lib/config/hubconfig.js'
import {Layout} from '../../../src/lib/config/layout.js'
import type {Settings} from '../../../src/lib/config/settings.js'

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
    expect(out.trim()).to.equal('2') // glob and os, from the template itself
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
    const prefix = await fs.mkdtemp(path.join(os.tmpdir(), 'hubctl-hubconfig-'))
    try {
      const layout = new Layout(prefix)
      for (const file of [layout.proxyAuthToken, layout.apiToken, layout.loginPassword]) {
        await fs.mkdir(path.dirname(file), {recursive: true})
        await fs.writeFile(file, 'a'.repeat(64))
      }
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
    const prefix = await fs.mkdtemp(path.join(os.tmpdir(), 'hubctl-hubconfig-'))
    try {
      const layout = new Layout(prefix)
      for (const file of [layout.proxyAuthToken, layout.apiToken]) {
        await fs.mkdir(path.dirname(file), {recursive: true})
        await fs.writeFile(file, 'a'.repeat(64))
      }
      const text = await renderHubConfig(
        layout,
        {...settings, spawn: {maxConcurrent: 3, timeoutSeconds: 150}},
        v6,
        '/lab',
      )
      expect(text).to.include('c.JupyterHub.concurrent_spawn_limit = 3\n')
      expect(text).to.include('c.Spawner.start_timeout = 150\n')
      expect(text).to.include('c.Spawner.http_timeout = 150\n')
      expect(await loaded(text, prefix)).to.include({concurrent_spawn_limit: 3, start_timeout: 150, http_timeout: 150})
      const old = await renderHubConfig(layout, settings, v6, '/lab')
      expect(old).not.to.match(/concurrent_spawn_limit|start_timeout|http_timeout/)
      expect(await loaded(old, prefix)).to.include({concurrent_spawn_limit: 100, start_timeout: 60, http_timeout: 30})
    } finally {
      await fs.rm(prefix, {recursive: true, force: true})
    }
  })
})
