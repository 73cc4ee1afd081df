import {expect} from 'chai'
import {execFileSync, spawn} from 'node:child_process'
import fs from 'node:fs/promises'

import {exists} from '../../src/lib/files/atomic.js'
import {Layout} from '../../src/lib/config/layout.js'
import {SECRET_NAMES, validateSecret} from '../../src/lib/files/secrets.js'
import {BIN, DEBIAN_JUPYTERHUB, hubctl, modeOf, portFlags, tempPrefix} from '../helpers/cli.js'

/** Moments (ms after start) at which init is killed with SIGKILL: spread over its whole run. */
const KILL_AT = [30, 150, 400, 700, 1000, 1400, 1800, 2300, 2800, 3500]

describe('hubctl init killed with SIGKILL at any moment', () => {
  let layout: Layout
  let args: string[]

  before(async () => {
    layout = new Layout(await tempPrefix('hubctl-kill'))
    const {flags} = await portFlags()
    args = [
      'init',
      '--prefix',
      layout.prefix,
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
      ...flags,
    ]
  })
  after(async () => {
    await fs.rm(layout.prefix, {recursive: true, force: true})
  })

  async function assertEveryFileWhole(): Promise<void> {
    for (const name of SECRET_NAMES) {
      const file = layout.secretFiles[name]
      if (!(await exists(file))) continue
      expect(validateSecret(name, await fs.readFile(file, 'utf8')), file).to.equal(undefined)
      expect(await modeOf(file), file).to.equal(0o600)
    }
    if (await exists(layout.hubConfig))
      execFileSync('python3', ['-c', 'import ast, sys; ast.parse(open(sys.argv[1]).read())', layout.hubConfig])
    if (await exists(layout.settings)) JSON.parse(await fs.readFile(layout.settings, 'utf8'))
    if (await exists(layout.fullchain)) {
      const {X509Certificate} = await import('node:crypto')
      new X509Certificate(await fs.readFile(layout.fullchain)) // parses: not partial
    }
  }

  for (const delay of KILL_AT) {
    it(`killed after ${delay} ms: every file is old or new, and the next init completes without changing a valid secret`, async () => {
      const before: Record<string, string> = {}
      for (const name of SECRET_NAMES)
        if (await exists(layout.secretFiles[name])) before[name] = await fs.readFile(layout.secretFiles[name], 'utf8')
      const child = spawn(process.execPath, [BIN, ...args], {stdio: 'ignore'})
      const exited = new Promise((resolve) => child.once('exit', resolve))
      await new Promise((resolve) => setTimeout(resolve, delay))
      child.kill('SIGKILL') // a no-op when init already finished
      await exited
      await assertEveryFileWhole()
      for (const [name, value] of Object.entries(before))
        expect(await fs.readFile(layout.secretFiles[name as keyof typeof layout.secretFiles], 'utf8'), name).to.equal(
          value,
        )

      const again = await hubctl(args)
      expect(again.exitCode, again.stderr).to.equal(0)
      for (const [name, value] of Object.entries(before))
        expect(await fs.readFile(layout.secretFiles[name as keyof typeof layout.secretFiles], 'utf8'), name).to.equal(
          value,
        )
      const check = await hubctl(['secrets', 'check', '--prefix', layout.prefix])
      expect(check.exitCode, check.stderr).to.equal(0)
    })
  }
})

describe('two hubctl commands that write at once', () => {
  it('one init runs, the other refuses with exit 6 naming the holder, and nothing mixes', async () => {
    const layout = new Layout(await tempPrefix('hubctl-race'))
    try {
      const {flags} = await portFlags()
      const args = [
        'init',
        '--prefix',
        layout.prefix,
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
        ...flags,
      ]
      const [a, b] = await Promise.all([hubctl(args), hubctl(args)])
      const codes = [a.exitCode, b.exitCode].sort()
      // Either the second saw the lock (6), or the first had finished before the second locked (both 0).
      expect(codes[0]).to.equal(0)
      expect([0, 6]).to.include(codes[1])
      const loser = [a, b].find((r) => r.exitCode === 6)
      if (loser) expect(loser.stderr).to.match(/another hubctl \(pid \d+, init\) is changing this hub\. Fix: wait/)
      expect((await hubctl(['secrets', 'check', '--prefix', layout.prefix])).exitCode).to.equal(0)
    } finally {
      await fs.rm(layout.prefix, {recursive: true, force: true})
    }
  })
})
