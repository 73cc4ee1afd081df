import {expect} from 'chai'
import {spawnSync} from 'node:child_process'
import fs from 'node:fs/promises'
import {fileURLToPath} from 'node:url'

import {HUB_PYTHON_SOURCE, hubPythonModules, installHubPython} from '../../../src/lib/config/hubpython.js'
import {Layout} from '../../../src/lib/config/layout.js'
import {tempPrefix} from '../../helpers/cli.js'

/** python/: hubctl_hub and its tests (python/tests). */
const PYTHON_DIR = fileURLToPath(new URL('..', HUB_PYTHON_SOURCE))

describe("hubpython: the hub's Python (hubctl_hub)", () => {
  /*
   * hubctl_hub's own unit tests (unittest, python/tests) in each JupyterHub's Python: Debian's with
   * JupyterHub 3.0, and the virtualenv of python/constraints.txt. Isolated (-I) as the hub loads it,
   * writing no bytecode into the repository (-B).
   */
  for (const python of ['/usr/bin/python3', '/opt/hubctl-venv/bin/python']) {
    it(`passes its tests in ${python}: the spawn queue's cancel and failure paths, free ports on IPv4 and IPv6, the listener proof`, function () {
      this.timeout(120_000)
      const args = ['-B', '-I', '-W', 'ignore', '-m', 'unittest', 'discover', '-s', 'tests', '-t', '.']
      const run = spawnSync(python, args, {cwd: PYTHON_DIR, encoding: 'utf8', timeout: 110_000})
      expect(run.status, run.stderr).to.equal(0)
      const ran = /^Ran (\d+) tests?/m.exec(run.stderr)
      expect(Number(ran?.[1]), run.stderr).to.be.at.least(15)
    })
  }

  it("installs hubctl_hub's modules beside the config (0644 in 0755 folders), rewrites only a changed one, and removes what it does not ship", async () => {
    const layout = new Layout(await tempPrefix('hubctl-hubpython'))
    try {
      const modules = await hubPythonModules()
      expect(modules).to.include.members(['__init__.py', 'ports.py', 'spawnqueue.py', 'owners.py', 'prespawn.py'])
      const first = await installHubPython(layout)
      expect(first.written).to.deep.equal(modules.map((name) => layout.hubPythonFile(name)))
      expect(await fs.readdir(layout.hubPythonPackage)).to.have.members(modules)
      for (const dir of [layout.hubPythonPath, layout.hubPythonPackage])
        expect((await fs.stat(dir)).mode & 0o7777).to.equal(0o755)
      for (const name of modules) {
        expect((await fs.stat(layout.hubPythonFile(name))).mode & 0o7777).to.equal(0o644)
        expect(await fs.readFile(layout.hubPythonFile(name), 'utf8')).to.equal(
          await fs.readFile(new URL(name, HUB_PYTHON_SOURCE), 'utf8'),
        )
      }
      expect(await installHubPython(layout)).to.deep.equal({written: [], removed: []})
      // A module of an older hubctl, bytecode, a changed module: the next install leaves exactly what it ships.
      await fs.writeFile(layout.hubPythonFile('old.py'), '')
      await fs.mkdir(layout.hubPythonFile('__pycache__'))
      await fs.appendFile(layout.hubPythonFile('ports.py'), '\nraise SystemExit\n')
      expect(await installHubPython(layout)).to.deep.equal({
        written: [layout.hubPythonFile('ports.py')],
        removed: [layout.hubPythonFile('__pycache__'), layout.hubPythonFile('old.py')],
      })
      expect(await fs.readdir(layout.hubPythonPackage)).to.have.members(modules)
    } finally {
      await fs.rm(layout.prefix, {recursive: true, force: true})
    }
  })
})
