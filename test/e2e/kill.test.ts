// e2e-lane: parallel
import {expect} from 'chai'
import {execa} from 'execa'
import {execFileSync} from 'node:child_process'
import fs from 'node:fs/promises'
import path from 'node:path'

import {exists} from '../../src/lib/files/atomic.js'
import {Layout} from '../../src/lib/config/layout.js'
import {SECRET_NAMES, validateSecret} from '../../src/lib/files/secrets.js'
import {
  DEBIAN_JUPYTERHUB,
  type TreeEntry,
  hubctl,
  modeOf,
  portFlags,
  snapshotTree,
  tempPrefix,
  treeChanges,
  testHubInitArgs,
} from '../helpers/cli.js'
import {holdEachWrite, killInsideWrite} from '../helpers/processes.js'

/** A temp file of an atomic write (`.NAME.RANDOM.tmp`): never read by anyone, not a file of the hub. */
const isTemp = (relative: string) => /(^|\/)\.[^/]+\.tmp$/.test(relative)

/** The lock a killed init leaves: taken over by the next run (its pid is dead), not a file of the hub. */
const withoutLockAndTemps = (tree: Record<string, TreeEntry>, layout: Layout) =>
  Object.fromEntries(
    Object.entries(tree).filter(([name]) => !isTemp(name) && name !== path.relative(layout.prefix, layout.lockFile)),
  )

describe('hubctl init killed with SIGKILL inside each of its writes', function () {
  this.timeout(900_000)
  let layout: Layout
  let args: string[]
  let portArgs: string[]
  let writesLog = ''
  let stash = ''

  before(async () => {
    layout = new Layout(await tempPrefix('hubctl-kill'))
    stash = await tempPrefix('hubctl-kill-stash')
    writesLog = path.join(stash, 'writes.log')
    portArgs = (await portFlags()).flags
    // A server's init (its systemd unit and schedule written too), less the user's server it starts
    // last: that check writes nothing, after the lock is released.
    args = testHubInitArgs(
      layout.prefix,
      {admin: 'alice', jupyterhub: DEBIAN_JUPYTERHUB, systemd: true, schedule: true},
      portArgs,
    )
  })
  after(async () => {
    await fs.rm(layout.prefix, {recursive: true, force: true})
    await fs.rm(stash, {recursive: true, force: true})
  })

  /** The prefix back to `from` (a copy kept in the stash, restored at the prefix's own path), or empty. */
  async function resetPrefix(from?: string): Promise<void> {
    await fs.rm(layout.prefix, {recursive: true, force: true})
    if (from) await execa('cp', ['-a', from, layout.prefix])
    else await fs.mkdir(layout.prefix, {mode: 0o700})
  }

  async function assertEveryFileWhole(what: string): Promise<void> {
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
    // Nothing that is not a temp file is empty. Aside: the logs, created empty on purpose, and
    // nginx's pid file, which `nginx -t` (run by init) creates empty: nginx's, not written by hubctl.
    const tree = await snapshotTree(layout.prefix)
    const emptyByDesign = (name: string) =>
      name.startsWith('var/log/') || name === path.relative(layout.prefix, layout.nginxPid)
    for (const name of Object.keys(withoutLockAndTemps(tree, layout))) {
      const stat = await fs.lstat(path.join(layout.prefix, name))
      if (stat.isFile() && !emptyByDesign(name)) expect(stat.size, `${what}: ${name} is empty`).to.be.greaterThan(0)
    }
  }

  /** The next init completes, keeps each valid secret it found, and `secrets check` passes. */
  async function assertNextInitCompletes(before: Record<string, string>, initArgs: string[]): Promise<void> {
    const again = await hubctl(initArgs)
    expect(again.exitCode, again.stderr).to.equal(0)
    for (const [name, value] of Object.entries(before))
      expect(await fs.readFile(layout.secretFiles[name as keyof typeof layout.secretFiles], 'utf8'), name).to.equal(
        value,
      )
    const check = await hubctl(['secrets', 'check', '--prefix', layout.prefix])
    expect(check.exitCode, check.stderr).to.equal(0)
  }

  async function secretsNow(): Promise<Record<string, string>> {
    const values: Record<string, string> = {}
    for (const name of SECRET_NAMES)
      if (await exists(layout.secretFiles[name])) values[name] = await fs.readFile(layout.secretFiles[name], 'utf8')
    return values
  }

  /**
   * The prefix as init left it, stopped inside write `n` (`held`, its temp file): every file absent
   * or whole, and the next init completes from there, keeping each valid secret it found.
   */
  async function assertKilledFirstInit(n: number, held: string): Promise<void> {
    expect(await exists(held), `write ${n}: its temp file ${held} was written`).to.equal(true)
    await assertEveryFileWhole(`killed inside write ${n} (${held})`)
    const before = await secretsNow()
    await assertNextInitCompletes(before, args)
  }

  it('a first init (empty prefix), killed inside each write: every file is absent or whole, and init again completes', async () => {
    // One init held inside each of its writes in turn (the process frozen there), the prefix
    // copied aside at each: what a SIGKILL there leaves on disk, every write seen in one run.
    await resetPrefix()
    const states = path.join(stash, 'first')
    await fs.mkdir(states)
    const writes = await holdEachWrite(args, writesLog, async (n) => {
      await execa('cp', ['-a', layout.prefix, path.join(states, String(n))])
    })
    // The secrets, the key and chain, the configs, hubctl.json, the schedule and logrotate: a dozen.
    expect(writes.length, writes.join('\n')).to.be.greaterThan(8)
    for (let n = 1; n <= writes.length; n++) {
      await resetPrefix(path.join(states, String(n)))
      await assertKilledFirstInit(n, writes[n - 1])
    }
    // And killed for real (SIGKILL to init's whole process group) inside its first and its last write.
    for (const n of [1, writes.length]) {
      await resetPrefix()
      await assertKilledFirstInit(n, await killInsideWrite(args, n, writesLog))
    }
  })

  it('init run again with a change (--allow-user bob), killed inside each write: every entry is the old or the new, whole; init again completes and ends at the new', async () => {
    // The old state: a complete first init, kept aside and restored before each run.
    await resetPrefix()
    const first = await hubctl(args)
    expect(first.exitCode, first.stderr).to.equal(0)
    const oldCopy = path.join(stash, 'old')
    await execa('cp', ['-a', layout.prefix, oldCopy])
    const oldTree = withoutLockAndTemps(await snapshotTree(layout.prefix), layout)
    const secrets = await secretsNow()
    // The changed init run to the end from the old one, held inside each write (the prefix copied
    // aside there, as in the first test): it ends at the new state.
    const changed = [...args, '--allow-user', 'bob', '--max-concurrent-spawns', '3']
    const states = path.join(stash, 'changed')
    await fs.mkdir(states)
    const writes = await holdEachWrite(changed, writesLog, async (n) => {
      await execa('cp', ['-a', layout.prefix, path.join(states, String(n))])
    })
    const newTree = withoutLockAndTemps(await snapshotTree(layout.prefix), layout)
    expect(treeChanges(oldTree, newTree), 'the change rewrites some files').to.not.deep.equal([])
    expect(writes.length).to.be.greaterThan(0)
    const assertKilled = async (n: number, held: string) => {
      expect(await exists(held), `write ${n}: its temp file ${held} was written`).to.equal(true)
      await assertEveryFileWhole(`killed inside write ${n} (${held})`)
      const now = withoutLockAndTemps(await snapshotTree(layout.prefix), layout)
      const neither = Object.keys({...oldTree, ...newTree, ...now}).filter((name) => {
        const entry = now[name]
        const same = (other: TreeEntry | undefined) =>
          entry === undefined
            ? other === undefined
            : other !== undefined && treeChanges({name: other}, {name: entry}).length === 0
        return !same(oldTree[name]) && !same(newTree[name])
      })
      expect(neither, `killed inside write ${n} (${held}): entries neither old nor new`).to.deep.equal([])
      expect(await secretsNow(), `write ${n}: the secrets`).to.deep.equal(secrets)
      await assertNextInitCompletes(secrets, changed)
      expect(
        treeChanges(newTree, withoutLockAndTemps(await snapshotTree(layout.prefix), layout)),
        `after write ${n} was killed, init again ends where an uninterrupted one does`,
      ).to.deep.equal([])
    }
    for (let n = 1; n <= writes.length; n++) {
      await resetPrefix(path.join(states, String(n)))
      await assertKilled(n, writes[n - 1])
    }
    // And killed for real (SIGKILL to init's whole process group) inside its last write.
    await resetPrefix(oldCopy)
    await assertKilled(writes.length, await killInsideWrite(changed, writes.length, writesLog))
  })
})

describe('two hubctl commands that write at once', () => {
  it('one init runs, the other refuses with exit 6 naming the holder, and nothing mixes', async () => {
    const layout = new Layout(await tempPrefix('hubctl-race'))
    try {
      const {flags} = await portFlags()
      const args = testHubInitArgs(
        layout.prefix,
        {admin: 'alice', jupyterhub: DEBIAN_JUPYTERHUB, systemd: true, schedule: true},
        flags,
      )
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
