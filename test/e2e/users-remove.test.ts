// e2e-lane: parallel
import {expect} from 'chai'
import {execa} from 'execa'
import {randomBytes} from 'node:crypto'
import fs from 'node:fs/promises'
import path from 'node:path'

import {DEBIAN_JUPYTERHUB, hubctl, initTestHub, jsonOf, tempPrefix} from '../helpers/cli.js'
import {waitUntil} from '../helpers/processes.js'
import {killEveryProcessOf, processesOfUid, runAsUser} from '../helpers/users.js'

/*
 * `hubctl users remove` against a user who does not want to go (issue 21, item 2), on a test hub
 * with PAM (not started: the removal of the account is the same). Real non-root accounts made by
 * `users add`, named hcrm…; each attack runs as that user through setpriv:
 * - a process that forks and lets its parent exit in a loop, which slips past a single pkill pass;
 * - such a process, while root archives and deletes the home, swapping a subdirectory of the home
 *   for a symbolic link to a root-owned directory elsewhere, whose files share the names of the
 *   subdirectory's: a remove that deletes the home's files by their paths deletes those instead.
 */

/** A process that never stays the same: every few ms it forks and its parent exits. */
const HOPPER = 'hop() { while :; do sleep 0.005; hop & exit 0; done; }; hop'

/**
 * The swapper (Python, as the user): fills HOME/sub with FILLERS files named to sort before the
 * canaries' names (Node's fs.rm, as libuv's scandir, takes them in sorted order), then files named
 * as the canaries, links HOME/lnk to TARGET, writes HOME/ready; then hops (fork, parent exits every few ms)
 * and watches sub until root begins to delete its files (its mtime changes: root has listed it and
 * now deletes each file by its path), and at that moment renames sub away and puts a link to TARGET
 * in its place. Bounded: two minutes.
 */
const SWAPPER = `
import os, sys, time
home, target, canaries, fillers = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
sub = os.path.join(home, "sub")
os.mkdir(sub)
for i in range(fillers):
    open(os.path.join(sub, "a%06d" % i), "w").close()
for i in range(canaries):
    open(os.path.join(sub, "canary-%02d" % i), "w").close()
os.symlink(target, os.path.join(home, "lnk"))
open(os.path.join(home, "ready"), "w").close()
# A file deleted from sub changes its mtime (reading it, as tar does, does not).
before = os.stat(sub).st_mtime_ns
began = time.monotonic()
deleting = False
while not deleting and time.monotonic() - began < 120:
    if os.fork() > 0:
        os._exit(0)
    for _ in range(10):
        try:
            deleting = os.stat(sub).st_mtime_ns != before
        except OSError:
            deleting = True
        if deleting:
            break
        time.sleep(0.0002)
try:
    os.rename(sub, os.path.join(home, "sub.old"))
    os.symlink(target, sub)
except OSError:
    pass
`

/** The uid and gid of a system user. */
async function idsOf(name: string): Promise<{uid: number; gid: number; home: string}> {
  const [, , uid, gid, , home] = (await execa('getent', ['passwd', name])).stdout.split(':')
  return {uid: Number(uid), gid: Number(gid), home}
}

describe('hubctl users remove: a user who does not want to go', function () {
  this.timeout(600_000)

  const tag = randomBytes(2).toString('hex')
  const admin = `hcrmp${tag}`
  const made: string[] = []
  let prefix = ''

  const users = async (args: string[]) => {
    const result = await hubctl(['users', ...args, '--prefix', prefix, '--json'])
    return {...result, json: () => jsonOf(result)}
  }
  const addUser = async (name: string) => {
    made.push(name)
    const added = await users(['add', name])
    expect(added.exitCode, added.stderr).to.equal(0)
    return idsOf(name)
  }

  before(async function () {
    prefix = await tempPrefix('hubctl-users-remove')
    made.push(admin)
    await initTestHub(prefix, {admin, jupyterhub: DEBIAN_JUPYTERHUB, extra: ['--create-users']})
  })

  after(async function () {
    this.timeout(180_000)
    for (const name of made) {
      const found = await execa('id', ['-u', name], {reject: false})
      if (found.exitCode !== 0) continue
      await killEveryProcessOf(Number(found.stdout))
      await execa('userdel', ['-r', name], {reject: false})
    }
    if (prefix) await fs.rm(prefix, {recursive: true, force: true})
  })

  it('a process that forks and lets its parent exit in a loop: after remove, no process of the uid is left', async () => {
    const name = `hcrmf${tag}`
    const {uid, gid} = await addUser(name)
    runAsUser(uid, gid, '/bin/sh', ['-c', HOPPER])
    await waitUntil('the hopper runs', async () => (await processesOfUid(uid)).length > 0)
    const removed = await users(['remove', name])
    expect(removed.exitCode, removed.stderr).to.equal(0)
    expect(removed.json().accounts.locked).to.deep.equal([name])
    // Every process of the uid stopped at once, then /proc walked: the hopper cannot slip past.
    expect(await processesOfUid(uid), 'live processes of the removed user').to.deep.equal([])
  })

  it("the home's subdirectory swapped for a link to a root-owned directory during the removal: every file there is left", async () => {
    const name = `hcrmr${tag}`
    const {uid, gid, home} = await addUser(name)
    const precious = path.join(prefix, 'precious')
    await fs.mkdir(precious, {mode: 0o755})
    const canaries = Array.from({length: 20}, (_, i) => `canary-${String(i).padStart(2, '0')}`)
    for (const canary of canaries) await fs.writeFile(path.join(precious, canary), 'root\n', {mode: 0o644})
    runAsUser(uid, gid, '/usr/bin/python3', ['-I', '-c', SWAPPER, home, precious, String(canaries.length), '20000'])
    await waitUntil('the swapper ready', () => fs.stat(path.join(home, 'ready')).then(() => true))
    const removed = await users(['remove', name])
    const left = (await fs.readdir(precious)).filter((file) => canaries.includes(file))
    const lost = canaries.filter((canary) => !left.includes(canary))
    expect(
      lost,
      `root's files deleted through the user's link (remove exited ${removed.exitCode}: ${removed.stderr.trim()}${removed.stdout.trim()})`,
    ).to.deep.equal([])
    expect(removed.exitCode, removed.stdout + removed.stderr).to.equal(0)
    const json = removed.json()
    expect(json.accounts.locked).to.deep.equal([name])
    await fs.lstat(home).then(
      () => expect.fail(`${home} is still there`),
      (error: NodeJS.ErrnoException) => expect(error.code).to.equal('ENOENT'),
    )
    // The home as it was when the user's processes ended: sub a directory with the canaries' names, lnk a link.
    const listing = (await execa('tar', ['-tvzf', json.archives[0]])).stdout.split('\n')
    expect(listing.some((line) => line.startsWith('l') && line.includes('./lnk -> '))).to.equal(true)
    expect(listing.some((line) => line.startsWith('d') && / \.\/sub\/$/.test(line))).to.equal(true)
    expect(listing.filter((line) => / \.\/sub\/canary-\d\d$/.test(line))).to.have.length(20)
    expect(await processesOfUid(uid), 'live processes of the removed user').to.deep.equal([])
  })
})
