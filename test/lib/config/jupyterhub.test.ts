import {expect} from 'chai'
import {execa} from 'execa'
import fs from 'node:fs/promises'
import path from 'node:path'

import {cullerCommand, importsIdleCuller} from '../../../src/lib/config/culler.js'
import {
  checkOAuthenticator,
  detectJupyterHub,
  detectUserInterface,
  validateHubConfig,
} from '../../../src/lib/config/jupyterhub.js'
import {execaRunner, type RunOptions, type Runner} from '../../../src/lib/runner.js'
import {DEBIAN_JUPYTERHUB, VENV_JUPYTERHUB, tempPrefix} from '../../helpers/cli.js'

/*
 * Every Python hubctl runs to ask a JupyterHub something (its version, its interface, its config,
 * oauthenticator, the idle culler) is isolated: `-I` first, a console script run by its own Python
 * rather than as itself. Run for real, with a sitecustomize.py on PYTHONPATH that leaves a marker
 * when any Python without -I starts: none may.
 */
describe('the Pythons hubctl runs are isolated (-I)', function () {
  this.timeout(120_000)
  let dir: string
  let marker: string
  const calls: string[][] = []
  const recording: Runner = {
    run(command: string, args: string[], options?: RunOptions) {
      calls.push([command, ...args])
      return execaRunner.run(command, args, options)
    },
  }
  const savedPythonPath = process.env.PYTHONPATH

  before(async () => {
    dir = await tempPrefix('hubctl-isolated')
    marker = path.join(dir, 'imported')
    await fs.mkdir(path.join(dir, 'plant'))
    await fs.writeFile(
      path.join(dir, 'plant', 'sitecustomize.py'),
      `import sys\nwith open(${JSON.stringify(marker)}, "a") as f:\n    f.write(" ".join(sys.orig_argv) + "\\n")\n`,
    )
    // hubctl's runner passes its environment on: the plant is on every child's PYTHONPATH.
    process.env.PYTHONPATH = path.join(dir, 'plant')
  })
  after(async () => {
    if (savedPythonPath === undefined) delete process.env.PYTHONPATH
    else process.env.PYTHONPATH = savedPythonPath
    await fs.rm(dir, {recursive: true, force: true})
  })
  beforeEach(async () => {
    calls.length = 0
    await fs.rm(marker, {force: true})
  })

  /** Every call ran a Python with -I first; none imported the plant. */
  async function expectIsolated(): Promise<void> {
    expect(calls.length).to.be.greaterThan(0)
    for (const call of calls) {
      expect(path.basename(call[0]), call.join(' ')).to.match(/^python[\d.]*$/)
      expect(call[1], call.join(' ')).to.equal('-I')
    }
    const imported = await fs.readFile(marker, 'utf8').catch(() => '')
    expect(imported, 'a Python hubctl ran imported sitecustomize from PYTHONPATH').to.equal('')
  }

  it('the plant works: a Python without -I imports it', async () => {
    await execa('/usr/bin/python3', ['-c', 'pass'])
    expect(await fs.readFile(marker, 'utf8')).to.equal('/usr/bin/python3 -c pass\n')
  })

  for (const executable of [DEBIAN_JUPYTERHUB, VENV_JUPYTERHUB]) {
    it(`${executable}: its version, interface, config, oauthenticator and idle culler`, async () => {
      const install = await detectJupyterHub(recording, executable)
      expect(install.version).to.match(/^\d+\.\d+\.\d+/)
      await detectUserInterface(recording, install)
      const config = path.join(dir, 'jupyterhub_config.py')
      await fs.writeFile(config, 'c.JupyterHub.port = 8000\n')
      await validateHubConfig(recording, install, config)
      await checkOAuthenticator(recording, install, 'github').catch(() => undefined)
      await importsIdleCuller(recording, install.python)
      await expectIsolated()
    })
  }

  it("the idle culler's command line (run by the hub as a service) starts with -I", () => {
    const argv = cullerCommand('/opt/x/bin/python3', {
      idleSeconds: 3600,
      maxAgeSeconds: null,
      by: 'jupyterhub-idle-culler',
    })
    expect(argv.slice(0, 2)).to.deep.equal(['/opt/x/bin/python3', '-I'])
  })
})

/*
 * The version of a standard console script is read from jupyterhub._version by its own Python
 * (milliseconds), not from `jupyterhub --version` (the whole app imported, seconds): the same answer
 * for both JupyterHubs, and any other executable is still asked --version.
 */
describe('detectJupyterHub reads the version the way the executable would print it', function () {
  this.timeout(120_000)

  for (const executable of [DEBIAN_JUPYTERHUB, VENV_JUPYTERHUB]) {
    it(`${executable}: the same version as its --version, asked without running the app`, async () => {
      const calls: string[][] = []
      const recording: Runner = {
        run(command: string, args: string[], options?: RunOptions) {
          calls.push([command, ...args])
          return execaRunner.run(command, args, options)
        },
      }
      const install = await detectJupyterHub(recording, executable)
      const printed = await execa(install.python, ['-I', install.executable, '--version'])
      expect(install.version).to.equal(printed.stdout.trim())
      expect(calls).to.have.length(1)
      expect(calls[0].slice(0, 3)).to.deep.equal([install.python, '-I', '-c'])
    })
  }

  it('a script of another shape (a wrapper) is asked --version', async () => {
    const dir = await tempPrefix('hubctl-wrapper')
    try {
      const wrapper = path.join(dir, 'jupyterhub')
      await fs.writeFile(wrapper, `#!/usr/bin/python3\nimport sys\nprint("4.1.6")\n`, {mode: 0o755})
      await fs.writeFile(path.join(dir, 'jupyterhub-singleuser'), '#!/bin/sh\n', {mode: 0o755})
      const calls: string[][] = []
      const recording: Runner = {
        run(command: string, args: string[], options?: RunOptions) {
          calls.push([command, ...args])
          return execaRunner.run(command, args, options)
        },
      }
      const install = await detectJupyterHub(recording, wrapper)
      expect(install.version).to.equal('4.1.6')
      expect(calls).to.deep.equal([['/usr/bin/python3', '-I', wrapper, '--version']])
    } finally {
      await fs.rm(dir, {recursive: true, force: true})
    }
  })
})
