// e2e-lane: parallel
import {expect} from 'chai'
import {execa} from 'execa'
import {spawn} from 'node:child_process'
import fs from 'node:fs/promises'
import path from 'node:path'

import {Layout} from '../../src/lib/config/layout.js'
import {BIN, freePort, hubctl, portFlags, tempPrefix} from '../helpers/cli.js'
import {waitUntil} from '../helpers/processes.js'

/*
 * hubctl's own JupyterHub environment (init without --jupyterhub), when things go wrong: a
 * directory that is not hubctl's, PyPI unreachable, a full disk, a kill in the middle of pip.
 * Each is a clear error (exit 3, the fix named) and leaves no half-built environment that anything
 * would use: `current` never names an incomplete one, and an incomplete one is gone after the
 * next run. (The successful install is the README quick start, in browser.test.ts.)
 */

const exists = (file: string) =>
  fs.lstat(file).then(
    () => true,
    () => false,
  )

/** pip pointed at a port where nothing listens, with no cache to answer instead. */
async function offlinePip(): Promise<Record<string, string>> {
  return {
    PIP_INDEX_URL: `http://127.0.0.1:${await freePort()}/simple`,
    PIP_RETRIES: '0',
    PIP_TIMEOUT: '3',
    PIP_NO_CACHE_DIR: '1',
  }
}

describe("hubctl's JupyterHub environment: failures leave nothing half-installed", function () {
  this.timeout(600_000)
  const prefixes: string[] = []
  /** A prefix of this test's, removed in after(). */
  const newPrefix = async (label: string) => {
    const prefix = await tempPrefix(label)
    prefixes.push(prefix)
    return prefix
  }
  after(async () => {
    for (const prefix of prefixes.splice(0)) await fs.rm(prefix, {recursive: true, force: true})
  })

  const init = async (prefix: string, env: Record<string, string> = {}) =>
    hubctl(['init', '--local', '--yes', '--prefix', prefix, ...(await portFlags()).flags], {env})

  it('init --dry-run names the virtualenv and the pinned versions it would install, and builds nothing', async () => {
    const prefix = await newPrefix('hubctl-env-dry')
    const result = await hubctl([
      'init',
      '--local',
      '--yes',
      '--dry-run',
      '--prefix',
      prefix,
      ...(await portFlags()).flags,
    ])
    expect(result.exitCode, result.stderr).to.equal(0)
    expect(result.stdout).to.match(/-m venv .*\/opt\/jupyterhub\/envs\/[0-9a-f]{16}/)
    expect(result.stdout).to.match(
      /-m pip install -c .*constraints\.txt jupyterhub==\d+\.\d+\.\d+ jupyterlab==\d+\.\d+\.\d+/,
    )
    expect(await exists(new Layout(prefix).hubEnvRoot)).to.equal(false)
  })

  it("an opt/jupyterhub that is not hubctl's: exit 3 naming it and the fix; it is left as it was, nothing else written", async () => {
    const prefix = await newPrefix('hubctl-env-foreign')
    const layout = new Layout(prefix)
    await fs.mkdir(path.join(layout.hubEnvRoot, 'bin'), {recursive: true})
    await fs.writeFile(path.join(layout.hubEnvRoot, 'bin/jupyterhub'), '#!/bin/sh\necho mine\n', {mode: 0o755})
    const result = await init(prefix)
    expect(result.exitCode, result.stderr).to.equal(3)
    expect(result.stderr).to.match(
      /opt\/jupyterhub exists and is not hubctl's \(it has no \.hubctl-env\)\. Fix: move it away \(mv .*\) .* or use the JupyterHub in it with --jupyterhub PATH$/,
    )
    expect(await fs.readdir(layout.hubEnvRoot)).to.deep.equal(['bin'])
    expect(await fs.readFile(path.join(layout.hubEnvRoot, 'bin/jupyterhub'), 'utf8')).to.equal('#!/bin/sh\necho mine\n')
    for (const file of [layout.srvDir, layout.hubConfig, layout.settings])
      expect(await exists(file), file).to.equal(false)
  })

  it('PyPI unreachable: exit 3 saying so with the fix; no environment, no current link, no secret or config written', async () => {
    const prefix = await newPrefix('hubctl-env-offline')
    const layout = new Layout(prefix)
    const result = await init(prefix, await offlinePip())
    expect(result.exitCode, result.stderr).to.equal(3)
    expect(result.stderr).to.match(
      /hubctl: PyPI could not be reached to install JupyterHub and JupyterLab.*Fix: let this machine reach PyPI \(or set PIP_INDEX_URL to a mirror/,
    )
    expect(await fs.readdir(layout.hubEnvsDir)).to.deep.equal([])
    expect(await exists(layout.hubEnvCurrent)).to.equal(false)
    for (const file of [layout.cookieSecret, layout.hubConfig, layout.settings, layout.nginxSite])
      expect(await exists(file), file).to.equal(false)
  })

  it('a full disk while installing: exit 3 naming the disk and the fix; nothing half-installed is left', async function () {
    const prefix = await newPrefix('hubctl-env-full')
    const layout = new Layout(prefix)
    const opt = path.join(prefix, 'opt')
    await fs.mkdir(opt)
    const mount = await execa('mount', ['-t', 'tmpfs', '-o', 'size=4m,mode=0755', 'tmpfs', opt], {reject: false})
    expect(mount.exitCode, `mount -t tmpfs (needs root allowed to mount): ${mount.stderr}`).to.equal(0)
    try {
      const result = await init(prefix)
      expect(result.exitCode, result.stderr).to.equal(3)
      expect(result.stderr).to.match(
        /hubctl: the disk is full \(\d+ MB free\): hubctl could not create the virtualenv in .*\. Fix: free space on the file system of .*opt\/jupyterhub/,
      )
      expect(await fs.readdir(layout.hubEnvsDir)).to.deep.equal([])
      expect(await exists(layout.hubEnvCurrent)).to.equal(false)
      expect(await exists(layout.hubConfig)).to.equal(false)
    } finally {
      await execa('umount', [opt], {reject: false})
    }
  })

  it('killed (SIGKILL) while pip installs: current names nothing; the next init removes the half-built environment', async () => {
    const prefix = await newPrefix('hubctl-env-kill')
    const layout = new Layout(prefix)
    const {flags} = await portFlags()
    const child = spawn(process.execPath, [BIN, 'init', '--local', '--yes', '--prefix', prefix, ...flags], {
      detached: true,
      stdio: 'ignore',
    })
    const exited = new Promise<NodeJS.Signals | null>((resolve) =>
      child.once('exit', (_code, signal) => resolve(signal)),
    )
    // pip runs once the virtualenv has its python: then the whole group is killed, pip included.
    const envDir = await waitUntil(
      'the virtualenv under construction',
      async () => {
        const [id] = await fs.readdir(layout.hubEnvsDir).catch(() => [])
        return id && (await exists(path.join(layout.hubEnv(id), 'bin/pip'))) ? layout.hubEnv(id) : undefined
      },
      {tries: 1200, intervalMs: 100},
    )
    process.kill(-child.pid!, 'SIGKILL')
    expect(await exited).to.equal('SIGKILL')
    expect(await exists(envDir), 'the half-built environment is still there after the kill').to.equal(true)
    expect(await exists(path.join(envDir, '.hubctl-complete'))).to.equal(false)
    expect(await exists(layout.hubEnvCurrent)).to.equal(false)

    // The next run starts that environment afresh (here it fails on PyPI, and leaves none).
    const again = await hubctl(['init', '--local', '--yes', '--prefix', prefix, ...flags], {env: await offlinePip()})
    expect(again.exitCode, again.stderr).to.equal(3)
    expect(await fs.readdir(layout.hubEnvsDir)).to.deep.equal([])
    expect(await exists(layout.hubEnvCurrent)).to.equal(false)
  })
})
