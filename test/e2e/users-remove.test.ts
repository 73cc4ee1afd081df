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
 * - that process, while root archives and deletes the home, swapping a subdirectory of the home
 *   with a symbolic link to a root-owned directory elsewhere, whose files share the names of the
 *   subdirectory's: a remove that walks the home by path deletes them.
 */

/** A process that never stays the same: every few ms it forks and its parent exits. */
const HOPPER = 'hop() { while :; do sleep 0.005; hop & exit 0; done; }; hop'

/**
 * The swapper (Python, as the user): fills HOME/sub with the canaries' names and FILLERS more files,
 * links HOME/lnk to TARGET, writes HOME/ready; then hops (fork, parent exits) while it waits for
 * root's tar of the home to come and go (or for anything of the home to be deleted), then
 * exchanges sub and lnk (renameat2 RENAME_EXCHANGE) as fast as it can, still hopping, until the
 * home is gone (bounded: two minutes).
 */
const SWAPPER = `
import ctypes, os, sys, time
home, target, canaries, fillers = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
libc = ctypes.CDLL(None, use_errno=True)
sub, lnk, ready = (os.path.join(home, n) for n in ("sub", "lnk", "ready"))
os.mkdir(sub)
for i in range(canaries):
    open(os.path.join(sub, "canary-%02d" % i), "w").close()
for i in range(fillers):
    open(os.path.join(sub, "f%05d" % i), "w").close()
os.symlink(target, lnk)
open(ready, "w").close()
def hop():
    if os.fork() > 0:
        os._exit(0)
def tar_running():
    for pid in os.listdir("/proc"):
        if not pid.isdigit():
            continue
        try:
            with open("/proc/%s/cmdline" % pid, "rb") as f:
                args = f.read().split(b"\\0")
        except OSError:
            continue
        if os.path.basename(args[0]) == b"tar" and home.encode() in args:
            return True
    return False
began = time.monotonic()
seen = False
while time.monotonic() - began < 120:
    hop()
    if not os.path.exists(ready) or not os.path.lexists(os.path.join(sub, "canary-00")):
        break
    running = tar_running()
    if seen and not running:
        break
    seen = seen or running
    time.sleep(0.001)
bs, bl = sub.encode(), lnk.encode()
n = 0
while time.monotonic() - began < 120 and os.path.lexists(home):
    if libc.renameat2(-100, bs, -100, bl, 2) != 0:
        for name in (sub, lnk):
            try:
                os.symlink(target, name)
            except OSError:
                pass
    n += 1
    if n % 500 == 0:
        hop()
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
    runAsUser(uid, gid, '/usr/bin/python3', ['-I', '-c', SWAPPER, home, precious, String(canaries.length), '2000'])
    await waitUntil('the swapper ready', () => fs.stat(path.join(home, 'ready')).then(() => true))
    const removed = await users(['remove', name])
    const left = (await fs.readdir(precious)).filter((file) => canaries.includes(file))
    const lost = canaries.filter((canary) => !left.includes(canary))
    expect(lost, `root's files deleted through the user's link (remove exited ${removed.exitCode}: ${removed.stderr.trim()}${removed.stdout.trim()})`).to.deep.equal([])
    expect(removed.exitCode, removed.stderr).to.equal(0)
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
