import {expect} from 'chai'
import {execFileSync} from 'node:child_process'
import fs from 'node:fs/promises'
import os from 'node:os'
import path from 'node:path'

import {
  cullEverySeconds,
  cullerCommand,
  cullingSummary,
  describeCulling,
  parseCullDuration,
  supervisorCulling,
} from '../../../src/lib/config/culler.js'
import {HUBCTL_SERVICE_SCOPES, renderHubConfig} from '../../../src/lib/config/hubconfig.js'
import {installHubPython} from '../../../src/lib/config/hubpython.js'
import {Layout} from '../../../src/lib/config/layout.js'
import type {Settings} from '../../../src/lib/config/settings.js'
import {testSettings} from '../../helpers/settings.js'
import {HubctlError} from '../../../src/lib/errors.js'
import {VENV_JUPYTERHUB} from '../../helpers/cli.js'

const CULLER_PYTHON = path.join(path.dirname(VENV_JUPYTERHUB), 'python3')

const settings = testSettings({
  executables: {
    jupyterhub: '/opt/jupyterhub/envs/x/bin/jupyterhub',
    singleuser: '/opt/jupyterhub/envs/x/bin/jupyterhub-singleuser',
    idleCuller: '/opt/jupyterhub/envs/x/bin/python3',
  },
  cull: {idleSeconds: 3600, maxAgeSeconds: null, by: 'jupyterhub-idle-culler'},
})
const v6 = {
  executable: '/opt/jupyterhub/envs/x/bin/jupyterhub',
  version: '6.1.1',
  major: 6,
  minor: 1,
  singleuser: '/opt/jupyterhub/envs/x/bin/jupyterhub-singleuser',
  python: '/opt/jupyterhub/envs/x/bin/python3',
}

interface Loaded {
  services: Array<{name: string; command?: string[]; cwd?: string; api_token?: string}>
  load_roles: Array<{name: string; scopes: string[]; services: string[]}>
}

/** The services and roles JupyterHub gets from the rendered file (traitlets, stand-in class, secrets under a temp prefix). */
async function loaded(settingsUsed: Settings): Promise<{text: string; config: Loaded}> {
  const prefix = await fs.mkdtemp(path.join(os.tmpdir(), 'hubctl-culler-'))
  try {
    const layout = new Layout(prefix)
    for (const file of [layout.proxyAuthToken, layout.apiToken]) {
      await fs.mkdir(path.dirname(file), {recursive: true})
      await fs.writeFile(file, 'a'.repeat(64))
    }
    const text = await renderHubConfig(layout, settingsUsed, v6, '/lab')
    await installHubPython(layout)
    await fs.writeFile(path.join(prefix, 'jupyterhub_config.py'), text)
    const code = [
      'import json, sys',
      'from traitlets import List',
      'from traitlets.config import Configurable, PyFileConfigLoader',
      'class JupyterHub(Configurable):',
      '    services = List().tag(config=True)',
      '    load_roles = List().tag(config=True)',
      'hub = JupyterHub(config=PyFileConfigLoader("jupyterhub_config.py", sys.argv[1]).load_config())',
      'print(json.dumps({"services": hub.services, "load_roles": hub.load_roles}))',
    ].join('\n')
    const out = execFileSync('/usr/bin/python3', ['-W', 'ignore', '-c', code, prefix], {encoding: 'utf8'})
    return {text, config: JSON.parse(out) as Loaded}
  } finally {
    await fs.rm(prefix, {recursive: true, force: true})
  }
}

describe('culler', () => {
  it('reads --cull-idle and --cull-max-age: off, or whole seconds; bad values exit 2 naming the flag', () => {
    expect(parseCullDuration('1h', '--cull-idle')).to.equal(3600)
    expect(parseCullDuration('20s', '--cull-idle')).to.equal(20)
    expect(parseCullDuration('1h30m', '--cull-max-age')).to.equal(5400)
    expect(parseCullDuration('OFF', '--cull-idle')).to.equal(null)
    for (const bad of ['30', 'never', '0s', '-1h', '2y'])
      expect(() => parseCullDuration(bad, '--cull-max-age'), bad)
        .to.throw(HubctlError, /--cull-max-age/)
        .with.property('exitCode', 2)
  })

  it('looks a tenth of the shorter limit apart, between 1 s and 10 minutes', () => {
    expect(cullEverySeconds({idleSeconds: 3600, maxAgeSeconds: null})).to.equal(360)
    expect(cullEverySeconds({idleSeconds: 20, maxAgeSeconds: null})).to.equal(2)
    expect(cullEverySeconds({idleSeconds: 5, maxAgeSeconds: null})).to.equal(1)
    expect(cullEverySeconds({idleSeconds: 86_400, maxAgeSeconds: 3600})).to.equal(360)
    expect(cullEverySeconds({idleSeconds: null, maxAgeSeconds: 86_400})).to.equal(600)
  })

  it('renders jupyterhub-idle-culler as a hub-managed service with only the scopes it needs, beside hubctl', async () => {
    const {text, config} = await loaded(settings)
    expect(config.services.map((s) => s.name)).to.deep.equal(['hubctl', 'idle-culler'])
    const culler = config.services[1]
    expect(culler.command).to.deep.equal([
      '/opt/jupyterhub/envs/x/bin/python3',
      '-I',
      '-m',
      'jupyterhub_idle_culler',
      '--config=',
      '--timeout=3600',
      '--cull-every=360',
    ])
    expect(culler.cwd).to.equal('/')
    // The hub makes its token and gives it in its environment: none in the file.
    expect(culler).not.to.have.property('api_token')
    const role = config.load_roles.find((r) => r.name === 'idle-culler')
    expect(role).to.deep.include({services: ['idle-culler']})
    // hubctl's own service keeps its scopes, and the culler none of hubctl's others.
    expect(config.load_roles.find((r) => r.name === 'hubctl')?.scopes).to.deep.equal(HUBCTL_SERVICE_SCOPES)
    expect(text).not.to.include('&quot;')
  })

  // The role as each installed JupyterHub reads it: the scopes its API handlers require (from their
  // @needs_scope) against the role's scopes as the hub expands them.
  for (const [hub, python] of [
    ['PyPI', CULLER_PYTHON],
    ["Debian's 3.0", '/usr/bin/python3'],
  ])
    it(`gives the culler a role that reaches what it calls and nothing that changes a user (${hub}'s JupyterHub)`, async () => {
      const {config} = await loaded(settings)
      const role = config.load_roles.find((r) => r.name === 'idle-culler')
      const code = [
        'import json, sys',
        'from jupyterhub import scopes',
        'from jupyterhub.apihandlers import users',
        'def needs(name):',
        "    handler, method = name.split('.')",
        '    fn = getattr(getattr(users, handler), method)',
        '    return sorted(s for c in (fn.__closure__ or []) if isinstance(c.cell_contents, tuple) for s in c.cell_contents)',
        'granted = scopes.expand_scopes(frozenset(json.loads(sys.argv[1])))',
        'print(json.dumps({"granted": sorted(granted), "needs": {name: needs(name) for name in sys.argv[2:]}}))',
      ].join('\n')
      // What the culler calls: the user list (with servers and activity), and stopping a server.
      const calls = ['UserListAPIHandler.get', 'UserServerAPIHandler.delete']
      // What it must never do: create, change or delete a user, start a server.
      const forbidden = [
        'UserListAPIHandler.post',
        'UserAPIHandler.patch',
        'UserAPIHandler.delete',
        'UserServerAPIHandler.post',
      ]
      const out = execFileSync(python, ['-I', '-c', code, JSON.stringify(role?.scopes), ...calls, ...forbidden], {
        encoding: 'utf8',
        cwd: '/',
      })
      const {granted, needs} = JSON.parse(out) as {granted: string[]; needs: Record<string, string[]>}
      const allowed = (call: string) => needs[call].length > 0 && needs[call].every((s) => granted.includes(s))
      for (const call of calls) expect(allowed(call), `${call} needs ${needs[call]}; granted ${granted}`).to.equal(true)
      for (const call of forbidden)
        expect(allowed(call), `${call} needs ${needs[call]}; granted ${granted}`).to.equal(false)
      // The user model shows each user's servers and last activity only with these.
      expect(granted).to.include.members(['read:servers', 'read:users:activity'])
      expect(granted.filter((s) => /^(admin:|access:|tokens|users$|servers$)/.test(s))).to.deep.equal([])
    })

  it('passes --max-age, and an idle timeout beyond any age when only --cull-max-age is on', async () => {
    const both = await loaded({
      ...settings,
      cull: {idleSeconds: 1800, maxAgeSeconds: 28_800, by: 'jupyterhub-idle-culler'},
    })
    expect(both.config.services[1].command?.slice(-3)).to.deep.equal([
      '--timeout=1800',
      '--cull-every=180',
      '--max-age=28800',
    ])
    const ageOnly = cullerCommand('/p', {idleSeconds: null, maxAgeSeconds: 86_400, by: 'jupyterhub-idle-culler'})
    expect(ageOnly.slice(-3)).to.deep.equal(['--timeout=315360000', '--cull-every=600', '--max-age=86400'])
  })

  it('renders no culler with --cull-idle off, for an older hubctl.json, or when hubctl culls itself', async () => {
    for (const cull of [
      {idleSeconds: null, maxAgeSeconds: null, by: 'jupyterhub-idle-culler' as const},
      undefined,
      {idleSeconds: 3600, maxAgeSeconds: null, by: 'hubctl' as const},
    ]) {
      const {text, config} = await loaded({...settings, cull})
      expect(config.services.map((s) => s.name)).to.deep.equal(['hubctl'])
      expect(config.load_roles.map((r) => r.name)).to.deep.equal(['hubctl'])
      expect(text).not.to.include('jupyterhub_idle_culler')
    }
    expect(supervisorCulling({cull: {idleSeconds: 3600, maxAgeSeconds: 60, by: 'hubctl'}})).to.deep.equal({
      idleMs: 3_600_000,
      maxAgeMs: 60_000,
    })
    expect(supervisorCulling(settings)).to.deep.equal({})
    expect(supervisorCulling({})).to.deep.equal({})
  })

  it("has every argument accepted by the installed jupyterhub-idle-culler's own parser", () => {
    const command = cullerCommand(CULLER_PYTHON, {idleSeconds: 20, maxAgeSeconds: 600, by: 'jupyterhub-idle-culler'})
    const code = [
      'import json, sys',
      'from jupyterhub_idle_culler import IdleCuller',
      'app = IdleCuller()',
      'app.initialize(sys.argv[1:])',
      'print(json.dumps([app.config_file, app.timeout, app.cull_every, app.max_age, app.cull_users, app.remove_named_servers]))',
    ].join('\n')
    const out = execFileSync(command[0], ['-I', '-c', code, ...command.slice(4)], {encoding: 'utf8', cwd: '/'})
    expect(JSON.parse(out)).to.deep.equal(['', 20, 2, 600, false, false])
  })

  it('says who culls and when, for status and doctor', () => {
    expect(describeCulling(cullingSummary(settings))).to.equal(
      'idle servers stopped after 1h by jupyterhub-idle-culler',
    )
    expect(cullingSummary(settings)).to.deep.include({on: true, idle: '1h', python: settings.executables.idleCuller})
    expect(
      describeCulling(cullingSummary({...settings, cull: {idleSeconds: 3600, maxAgeSeconds: 86_400, by: 'hubctl'}})),
    ).to.equal("idle servers stopped after 1h and servers running longer than 1d stopped by hubctl's supervisor")
    expect(describeCulling(cullingSummary({...settings, cull: undefined}))).to.match(/predates it; run `hubctl init`/)
    expect(
      describeCulling(cullingSummary({...settings, cull: {idleSeconds: null, maxAgeSeconds: null, by: 'hubctl'}})),
    ).to.equal('no idle culling (--cull-idle off)')
  })
})
