import {expect} from 'chai'
import fs from 'node:fs/promises'
import os from 'node:os'
import path from 'node:path'

import {HubctlError} from '../../../src/lib/errors.js'
import {Layout} from '../../../src/lib/config/layout.js'
import {formerServerHomes, makeServerHomes, serverHomeProblems, serverHomeUsers} from '../../../src/lib/setup/homes.js'

describe('server homes (servers run as the hub user)', () => {
  let prefix: string
  let layout: Layout
  const uid = process.getuid!()

  beforeEach(async () => {
    prefix = await fs.mkdtemp(path.join(os.tmpdir(), 'hubctl-homes-'))
    layout = new Layout(prefix)
    await fs.mkdir(layout.srvDir, {recursive: true, mode: 0o700})
  })

  afterEach(async () => {
    await fs.rm(prefix, {recursive: true, force: true})
  })

  it('are for every admin and allowed user with --spawner simple, for nobody with --spawner local', () => {
    expect(serverHomeUsers({spawner: 'simple', admins: ['ada'], allowedUsers: ['bo', 'ada']})).to.deep.equal([
      'ada',
      'bo',
    ])
    expect(serverHomeUsers({spawner: 'local', admins: ['ada'], allowedUsers: []})).to.deep.equal([])
  })

  it('are made 0700, the running user’s, with the mark; made again, nothing changes', async () => {
    expect(await makeServerHomes(layout, ['ada', 'bo'])).to.deep.equal([
      layout.serverHome('ada'),
      layout.serverHome('bo'),
    ])
    for (const dir of [layout.serverHomesDir, layout.serverHome('ada'), layout.serverHome('bo')]) {
      const stat = await fs.lstat(dir)
      expect(stat.isDirectory(), dir).to.equal(true)
      expect(stat.mode & 0o7777, dir).to.equal(0o700)
      expect(stat.uid, dir).to.equal(uid)
    }
    const marker = await fs.lstat(layout.serverHomeMarker('ada'))
    expect(marker.isFile()).to.equal(true)
    expect(marker.mode & 0o777).to.equal(0o600)
    await fs.writeFile(path.join(layout.serverHome('ada'), 'notebook.ipynb'), '{}')
    expect(await makeServerHomes(layout, ['ada', 'bo'])).to.deep.equal([])
    expect(await fs.readdir(layout.serverHome('ada'))).to.include('notebook.ipynb')
    expect(await serverHomeProblems(layout, ['ada', 'bo'])).to.deep.equal([])
  })

  it("refuse a home that is not hubctl's, naming it and the fix, and change nothing", async () => {
    await makeServerHomes(layout, ['ada'])
    const elsewhere = await fs.mkdtemp(path.join(os.tmpdir(), 'hubctl-elsewhere-'))
    try {
      await fs.symlink(elsewhere, layout.serverHome('link'))
      for (const name of ['unmarked', 'open', 'other']) await fs.mkdir(layout.serverHome(name), {mode: 0o700})
      for (const name of ['open', 'other']) await fs.writeFile(layout.serverHomeMarker(name), '')
      await fs.chmod(layout.serverHome('open'), 0o757)
      await fs.writeFile(layout.serverHome('file'), '')
      const problems = await serverHomeProblems(layout, ['ada', 'link', 'unmarked', 'open', 'file', 'other'], uid)
      expect(
        problems.map((p) => [path.basename(p.path), p.problem.replace(prefix, 'P'), p.fix.replace(/ .*/, '')]),
      ).to.deep.equal([
        ['link', `the server home P/srv/jupyterhub/home/link is a symbolic link (to ${elsewhere})`, 'look'],
        [
          'unmarked',
          'the server home P/srv/jupyterhub/home/unmarked was not made by hubctl (it has no .hubctl-home)',
          'if',
        ],
        [
          'open',
          'the server home P/srv/jupyterhub/home/open is writable by others: they could put code in it that the server runs',
          'look',
        ],
        ['file', 'the server home P/srv/jupyterhub/home/file is not a directory', 'look'],
      ])
      // Another owner: as another uid runs the hub, every home of this one is someone else's.
      const asOther = await serverHomeProblems(layout, ['other'], uid + 1)
      expect(asOther[0].problem).to.match(
        new RegExp(
          `^the directory of server homes .* belongs to uid ${uid}, not to the hub's user \\(uid ${uid + 1}\\)`,
        ),
      )
      expect(asOther[0].fix).to.include(`mv ${layout.serverHomesDir} ${layout.serverHomesDir}.not-hubctl`)
      try {
        await makeServerHomes(layout, ['ada', 'new', 'unmarked'])
        expect.fail('made')
      } catch (error) {
        expect((error as HubctlError).exitCode).to.equal(3)
        expect((error as HubctlError).line).to.match(
          /unmarked was not made by hubctl .*Fix: if it is the home you want/,
        )
      }
      await fs.access(layout.serverHome('new')).then(
        () => expect.fail('a home was made although another was refused'),
        () => undefined,
      )
    } finally {
      await fs.rm(elsewhere, {recursive: true, force: true})
    }
  })

  it("find JupyterHub's /tmp/NAME of an earlier hubctl only when the hub's user made it", async () => {
    const name = `hubctl-homes-${process.pid}`
    const dir = `/tmp/${name}`
    await fs.mkdir(dir)
    try {
      expect(await formerServerHomes([name, `${name}-none`])).to.deep.equal([{user: name, dir}])
      expect(await formerServerHomes([name], uid + 1)).to.deep.equal([])
    } finally {
      await fs.rm(dir, {recursive: true, force: true})
    }
  })
})
