import {expect} from 'chai'
import fs from 'node:fs/promises'
import os from 'node:os'
import path from 'node:path'
import {fileURLToPath} from 'node:url'

import {HubEnvService, UNUSED_FILE} from '../../../src/lib/setup/hubenv.js'
import {Layout} from '../../../src/lib/config/layout.js'
import type {Runner} from '../../../src/lib/runner.js'

const python: Runner = {
  async run() {
    return {exitCode: 0, stdout: '3.11.2 (main)', stderr: '', notFound: false}
  },
}

describe("hubenv: hubctl's JupyterHub environment", () => {
  let layout: Layout
  beforeEach(async () => {
    layout = new Layout(await fs.mkdtemp(path.join(os.tmpdir(), 'hubctl-hubenv-')))
  })
  afterEach(async () => fs.rm(layout.prefix, {recursive: true, force: true}))

  it('the shipped constraints pin JupyterHub ≥ 4.1.0 (CVE-2024-28233) and JupyterLab', async () => {
    const versions = HubEnvService.pinned(await new HubEnvService({layout, runner: python}).constraints())
    const [major, minor] = versions.jupyterhub.split('.').map(Number)
    expect(major > 4 || (major === 4 && minor >= 1), versions.jupyterhub).to.equal(true)
    expect(versions.jupyterlab).to.match(/^4\.\d+\.\d+$/)
  })

  it('plans a build into envs/<id>, an id that changes with the constraints and the Python', async () => {
    const plan = await new HubEnvService({layout, runner: python}).plan('/usr/bin/python3')
    expect(plan.action).to.equal('build')
    expect(plan.dir).to.equal(layout.hubEnv(plan.id))
    expect(plan.jupyterhub).to.equal(path.join(layout.prefix, 'opt/jupyterhub/envs', plan.id, 'bin/jupyterhub'))
    const other = path.join(layout.prefix, 'c.txt')
    await fs.writeFile(other, 'jupyterhub==9.0.0\njupyterlab==4.0.0\n')
    expect(
      (await new HubEnvService({layout, runner: python, constraintsFile: other}).plan('/usr/bin/python3')).id,
    ).not.to.equal(plan.id)
  })

  it('ready only when the environment is complete and current names it', async () => {
    const service = new HubEnvService({layout, runner: python})
    const plan = await service.plan('/usr/bin/python3')
    await fs.mkdir(plan.dir, {recursive: true})
    await fs.writeFile(layout.hubEnvMarker, '')
    await fs.writeFile(layout.hubEnvComplete(plan.id), '{}')
    expect((await service.plan('/usr/bin/python3')).action).to.equal('build')
    await fs.symlink(layout.hubEnvLinkTarget(plan.id), layout.hubEnvCurrent)
    expect((await service.plan('/usr/bin/python3')).action).to.equal('ready')
  })

  it("refuses an opt/jupyterhub without hubctl's marker (exit 3), and a file in its place", async () => {
    await fs.mkdir(layout.hubEnvRoot, {recursive: true})
    await fs.writeFile(path.join(layout.hubEnvRoot, 'README'), 'mine')
    const error = await new HubEnvService({layout, runner: python}).plan('/usr/bin/python3').then(
      () => undefined,
      (e) => e,
    )
    expect(error?.exitCode).to.equal(3)
    expect(error?.message).to.match(/opt\/jupyterhub exists and is not hubctl's/)
    await fs.rm(layout.hubEnvRoot, {recursive: true})
    await fs.writeFile(layout.hubEnvRoot, 'a file')
    expect(
      (
        await new HubEnvService({layout, runner: python}).plan('/usr/bin/python3').then(
          () => undefined,
          (e) => e,
        )
      )?.message,
    ).to.match(/is not a directory/)
  })

  it('removes, after pip install, what python/unused.txt names (rfc3987-syntax: 1.1 CPU-s at every server start)', async () => {
    const calls: string[][] = []
    let jupyterhubVersion = ''
    const runner: Runner = {
      async run(command, args) {
        calls.push([command, ...args])
        if (args.includes('venv')) await fs.mkdir(args[args.length - 1], {recursive: true})
        const stdout = args.includes('--version') ? jupyterhubVersion : '3.11.2 (main)'
        return {exitCode: 0, stdout, stderr: '', notFound: false}
      },
    }
    const service = new HubEnvService({layout, runner})
    const plan = await service.plan('/usr/bin/python3')
    jupyterhubVersion = plan.versions.jupyterhub
    expect((await service.build(plan)).built).to.equal(true)
    const pip = calls.filter((c) => c.includes('pip')).map((c) => c.slice(c.indexOf('pip') + 1))
    expect(pip.map((c) => c[0])).to.deep.equal(['install', 'uninstall'])
    const unused = pip[1][pip[1].indexOf('-r') + 1]
    expect(unused).to.equal(fileURLToPath(UNUSED_FILE))
    const names = (await fs.readFile(unused, 'utf8')).split('\n').filter((l) => l && !l.startsWith('#'))
    expect(names).to.include('rfc3987-syntax')
  })
})
