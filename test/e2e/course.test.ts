// e2e-lane: parallel
import {expect} from 'chai'
import {execa, type ResultPromise} from 'execa'
import {randomBytes} from 'node:crypto'
import fs from 'node:fs/promises'
import net from 'node:net'
import path from 'node:path'
import type {Page} from 'playwright-core'

import {Layout} from '../../src/lib/config/layout.js'
import {shareGroup} from '../../src/lib/course/shares.js'
import {HubApi} from '../../src/lib/stack/hubapi.js'
import {BrowserSession, runCellInLab, waitForServerPage} from '../helpers/browser.js'
import {
  VENV_JUPYTERHUB,
  freePort,
  hubctl,
  initTestHub,
  jsonOf,
  ok,
  tempPrefix,
  type TestHubPorts,
} from '../helpers/cli.js'
import {serverPids, waitUntil} from '../helpers/processes.js'
import {removeUser, testUserName} from '../helpers/users.js'

/*
 * A course on one hub, in a real browser (Chromium) through nginx, with PAM users hubctl made
 * (init --create-users; LocalProcessSpawner):
 * - a shared folder: `share add data --writers INSTRUCTOR`; the instructor, logged in, writes a file
 *   into shared/data from a notebook; a student opens it in JupyterLab, changes it and saves, and
 *   JupyterLab shows the permission error; the file is unchanged; the student cannot write the
 *   folder, change its mode or read the instructor's home;
 * - an assignment link: a git repository on this machine served by `git daemon` on a free port;
 *   the student clicks the link `hubctl link` printed, logs in, and lands in JupyterLab with the
 *   notebook open; the student edits it; the instructor commits a change; the same link clicked
 *   again merges it and keeps the student's edit (nbgitpuller's rule).
 * One hub for the file. On failure each page's screenshot, HTML and console are kept in test-output/browser/.
 */

const NOTEBOOK = (source: string) =>
  `${JSON.stringify(
    {
      cells: [{cell_type: 'code', execution_count: null, id: 'c1', metadata: {}, outputs: [], source: [source]}],
      metadata: {
        kernelspec: {display_name: 'Python 3 (ipykernel)', language: 'python', name: 'python3'},
        language_info: {name: 'python'},
      },
      nbformat: 4,
      nbformat_minor: 5,
    },
    null,
    1,
  )}\n`

async function git(cwd: string, ...args: string[]): Promise<string> {
  const result = await execa(
    'git',
    ['-c', 'user.name=Instructor', '-c', 'user.email=instructor@example.org', '-c', 'init.defaultBranch=main', ...args],
    {cwd},
  )
  return String(result.stdout)
}

/** The login form as the hub shows it to a person sent there by a link. */
async function logInHere(page: Page, user: string, password: string): Promise<void> {
  await page.locator('#username_input').fill(user)
  await page.locator('#password_input').fill(password)
  await page.locator('#login_submit').click()
}

describe('a course: a shared folder and an assignment link, in the browser', function () {
  this.timeout(300_000)

  const instructor = testUserName()
  const student = testUserName()
  /** A TA: a hub user, made admin and a writer of the share later (users admin --share-writer). */
  const ta = testUserName()
  const password = randomBytes(12).toString('base64url')
  const uids: Array<[string, number]> = []
  let prefix = ''
  let layout: Layout
  let ports: TestHubPorts
  let origin = ''
  let work = ''
  let daemon: ResultPromise | undefined
  let link = ''
  let session: BrowserSession | undefined

  before(async function () {
    this.timeout(240_000)
    const check = await execa(path.join(path.dirname(VENV_JUPYTERHUB), 'python'), ['-c', 'import nbgitpuller'], {
      reject: false,
    })
    expect(check.exitCode, `nbgitpuller is not in ${VENV_JUPYTERHUB}'s environment (.ci/run installs it)`).to.equal(0)
    prefix = await tempPrefix('hubctl-course')
    layout = new Layout(prefix)
    // Every user passes through the folders above the shares, as through / and /srv on a server.
    await fs.chmod(prefix, 0o755)
    await fs.mkdir(path.dirname(layout.sharedRoot), {mode: 0o755})
    // The accounts made by hubctl (init --create-users): homes of 0700, which no other user reads.
    ports = await initTestHub(prefix, {
      admin: instructor,
      allowUsers: [student, ta],
      jupyterhub: VENV_JUPYTERHUB,
      extra: ['--create-users'],
    })
    for (const user of [instructor, student, ta]) {
      uids.push([user, Number((await execa('id', ['-u', user])).stdout)])
      await execa('chpasswd', {input: `${user}:${password}\n`})
    }
    origin = `https://localhost:${ports.https}`
    ok(await hubctl(['share', 'add', 'data', '--writers', instructor, '--prefix', prefix]))

    // The course's repository, served read-only by git daemon on a free port.
    work = await fs.mkdtemp('/tmp/hubctl-course-git-')
    await fs.chmod(work, 0o755)
    const checkout = path.join(work, 'checkout')
    await fs.mkdir(checkout)
    await git(checkout, 'init', '-q')
    await fs.writeFile(path.join(checkout, 'intro.ipynb'), NOTEBOOK("print('week 1')"))
    await fs.writeFile(path.join(checkout, 'README.md'), 'Week 1\n')
    await git(checkout, 'add', '.')
    await git(checkout, 'commit', '-q', '-m', 'week 1')
    await git(work, 'clone', '-q', '--bare', 'checkout', 'course.git')
    const gitPort = await freePort()
    daemon = execa(
      'git',
      ['daemon', '--reuseaddr', '--export-all', `--base-path=${work}`, '--listen=127.0.0.1', `--port=${gitPort}`, work],
      {reject: false, stdio: 'ignore'},
    )
    await waitUntil('git daemon to listen', async () => {
      const socket = net.connect(gitPort, '127.0.0.1')
      return new Promise<boolean>((resolve) => {
        socket.once('connect', () => resolve(true)).once('error', () => resolve(false))
      }).finally(() => socket.destroy())
    })
    const printed = await hubctl([
      'link',
      `git://127.0.0.1:${gitPort}/course.git`,
      '--path',
      'intro.ipynb',
      '--prefix',
      prefix,
    ])
    ok(printed)
    link = printed.stdout.trim()
    expect(link).to.match(new RegExp(`^${origin}/hub/user-redirect/git-pull\\?repo=git%3A%2F%2F127\\.0\\.0\\.1%3A`))

    ok(await hubctl(['start', '--detach', '--prefix', prefix, '--json']))
  })

  afterEach(async function () {
    if (this.currentTest?.state === 'failed') await session?.keep(this.currentTest.fullTitle())
    await session?.close()
    session = undefined
  })

  after(async function () {
    this.timeout(120_000)
    if (prefix) await hubctl(['stop', '--prefix', prefix, '--json'])
    daemon?.kill()
    await daemon
    for (const [user, uid] of uids) await removeUser(user, uid)
    if (prefix) {
      // What `share remove` leaves of the share: nothing, its group neither.
      const removed = await hubctl(['share', 'remove', 'data', '--prefix', prefix])
      if (removed.exitCode !== 0) await execa('groupdel', [shareGroup(layout, 'data')], {reject: false})
      await fs.rm(prefix, {recursive: true, force: true})
    }
    if (work) await fs.rm(work, {recursive: true, force: true})
  })

  it('the instructor writes into shared/data; a student reads it, and saving over it shows the permission error', async () => {
    const listed = jsonOf(await hubctl(['share', 'list', '--json', '--prefix', prefix]))
    expect(listed.shares.map((s: {name: string; members: string[]}) => [s.name, s.members])).to.deep.equal([
      ['data', [instructor]],
    ])

    session = await BrowserSession.start({acceptSelfSigned: true})
    let page = session.page
    await page.goto(`${origin}/hub/login`)
    await logInHere(page, instructor, password)
    await waitForServerPage(page, instructor, 'lab')
    const wrote = await runCellInLab(page, "print(open('shared/data/notes.txt', 'w').write('from the instructor\\n'))")
    expect(wrote).to.equal('20')
    await session.close()

    session = await BrowserSession.start({acceptSelfSigned: true})
    page = session.page
    await page.goto(`${origin}/hub/login`)
    await logInHere(page, student, password)
    await waitForServerPage(page, student, 'lab')
    await page.goto(`${origin}/user/${student}/lab/tree/shared/data/notes.txt`)
    // The editor shows before the file's text is in it (CI at 097f430: read at once, '\n'): waited
    // for with the text; a file she cannot read never shows it.
    const editor = page.locator('.jp-FileEditor .cm-content').first()
    await page
      .locator('.jp-FileEditor .cm-content', {hasText: 'from the instructor'})
      .first()
      .waitFor({timeout: 120_000})
    expect(await editor.innerText()).to.include('from the instructor')
    await editor.click()
    await page.keyboard.press('Control+End')
    await page.keyboard.type('from the student')
    await page.keyboard.press('Control+s')
    // JupyterLab asked the server, which says the file is not writable: "Save" is disabled.
    await page.locator('.jp-ToolbarLabelComponent', {hasText: 'file is read-only'}).first().waitFor()
    // "Save as…" into the shared folder: the server refuses, and JupyterLab shows its error.
    await page.keyboard.press('Control+Shift+s')
    const saveAs = page.locator('.jp-Dialog input').first()
    await saveAs.waitFor()
    await saveAs.fill('shared/data/answer.txt')
    await page.locator('.jp-Dialog .jp-mod-accept').first().click()
    const error = page.locator('.jp-Dialog', {hasText: /Permission denied/i}).first()
    await error.waitFor({timeout: 60_000})
    expect(await error.innerText()).to.include('shared/data/answer.txt')
    const shared = path.join(layout.sharedDir('data'), 'notes.txt')
    expect(await fs.readFile(shared, 'utf8')).to.equal('from the instructor\n')
    expect(await fs.readdir(layout.sharedDir('data'))).to.deep.equal(['notes.txt'])

    // Not in the browser: the student cannot write the folder or change its mode, nor read the instructor's home.
    const home = (await execa('getent', ['passwd', student])).stdout.split(':')[5]
    expect(await fs.readlink(path.join(home, 'shared', 'data'))).to.equal(layout.sharedDir('data'))
    for (const command of [
      `echo x > ${home}/shared/data/mine.txt`,
      `chmod 777 ${layout.sharedDir('data')}`,
      `chmod 666 ${shared}`,
      `ls /home/${instructor}`,
    ]) {
      const tried = await execa('runuser', ['-u', student, '--', 'sh', '-c', command], {reject: false, cwd: '/'})
      expect(tried.exitCode, command).to.not.equal(0)
    }
  })

  it('a student clicks the link, logs in and lands on the notebook; clicked again after a change, it merges and keeps their edit', async () => {
    session = await BrowserSession.start({acceptSelfSigned: true})
    const page = session.page
    const notebookOpen = async () => {
      await page.waitForURL(new RegExp(`/user/${student}/lab/tree/course/intro\\.ipynb`), {timeout: 180_000})
      await page.locator('.lm-TabBar-tab.jp-mod-current', {hasText: 'intro.ipynb'}).first().waitFor({timeout: 120_000})
      await page.locator('.jp-NotebookPanel:not(.lm-mod-hidden) .jp-Cell .cm-content').first().waitFor()
    }
    await page.goto(link)
    await page.locator('#username_input').waitFor()
    await logInHere(page, student, password)
    await notebookOpen()
    const home = (await execa('getent', ['passwd', student])).stdout.split(':')[5]
    const notebook = path.join(home, 'course', 'intro.ipynb')

    // The student's edit, saved from JupyterLab.
    const cell = page.locator('.jp-NotebookPanel:not(.lm-mod-hidden) .jp-Cell .cm-content').first()
    await cell.click()
    await page.keyboard.press('Control+End')
    await page.keyboard.type('  # my answer')
    await page.keyboard.press('Control+s')
    await waitUntil('the edit to be saved', async () => (await fs.readFile(notebook, 'utf8')).includes('# my answer'))

    // The instructor's change: README and a new notebook.
    const checkout = path.join(work, 'checkout')
    await fs.writeFile(path.join(checkout, 'README.md'), 'Week 1\nWeek 2\n')
    await fs.writeFile(path.join(checkout, 'week2.ipynb'), NOTEBOOK("print('week 2')"))
    await git(checkout, 'add', '.')
    await git(checkout, 'commit', '-q', '-m', 'week 2')
    await git(checkout, 'push', '-q', path.join(work, 'course.git'), 'main')

    await page.goto(link)
    await notebookOpen()
    expect(await fs.readFile(path.join(home, 'course', 'README.md'), 'utf8')).to.equal('Week 1\nWeek 2\n')
    expect(await fs.readFile(path.join(home, 'course', 'week2.ipynb'), 'utf8')).to.include('week 2')
    expect(await fs.readFile(notebook, 'utf8')).to.include("print('week 1')  # my answer")
  })

  it("users admin --share-writer: the TA made admin is in the share's group and writes into it; the student still cannot", async () => {
    const group = shareGroup(layout, 'data')
    const isAdmin = async () =>
      (
        jsonOf(await hubctl(['users', 'list', '--json', '--prefix', prefix])).users as Array<{
          name: string
          admin: boolean
        }>
      ).find((u) => u.name === ta)?.admin
    // An unknown share: refused before anything changes (the TA is not made admin).
    const unknown = await hubctl(['users', 'admin', ta, '--share-writer', 'nosuch', '--prefix', prefix, '--json'])
    expect(unknown.exitCode, unknown.stdout).to.equal(2)
    expect(await isAdmin()).to.equal(false)

    const made = await hubctl(['users', 'admin', ta, '--share-writer', 'data', '--prefix', prefix, '--json'])
    ok(made)
    expect(jsonOf(made).shares.map((s: {added: string[]}) => s.added)).to.deep.equal([[ta]])
    expect(await isAdmin()).to.equal(true)
    expect((await execa('id', ['-nG', ta])).stdout.split(' ')).to.include(group)
    expect((await execa('id', ['-nG', student])).stdout.split(' ')).to.not.include(group)
    const write = (user: string, file: string) =>
      execa('runuser', ['-u', user, '--', 'sh', '-c', `echo hi > ${path.join(layout.sharedDir('data'), file)}`], {
        reject: false,
        cwd: '/',
      })
    expect((await write(ta, 'from-ta.txt')).exitCode).to.equal(0)
    expect((await write(student, 'from-student.txt')).exitCode).to.not.equal(0)
    expect(await fs.readdir(layout.sharedDir('data')))
      .to.include('from-ta.txt')
      .and.not.include('from-student.txt')
  })

  it("users admin --revoke --share-writer: the TA leaves the share's group, their running server (which kept the group) is stopped, and they can no longer write", async () => {
    const group = shareGroup(layout, 'data')
    const gid = Number((await execa('getent', ['group', group])).stdout.split(':')[2])
    const uid = uids.find(([user]) => user === ta)![1]
    const write = (file: string) =>
      execa('runuser', ['-u', ta, '--', 'sh', '-c', `echo hi > ${path.join(layout.sharedDir('data'), file)}`], {
        reject: false,
        cwd: '/',
      })
    // The TA's server, started while a writer: its process holds the share's group.
    const api = HubApi.forLayout(layout, {ports}, {timeoutMs: 60_000})
    expect(['started', 'pending']).to.include(await api.startServer(ta))
    await waitUntil('the TA server to be ready', async () => (await api.userServers(ta)).find((s) => s.ready), {
      tries: 600,
      intervalMs: 200,
    })
    const groupsOf = async (pid: number) =>
      ((await fs.readFile(`/proc/${pid}/status`, 'utf8')).match(/^Groups:(.*)$/m)?.[1] ?? '').trim().split(/\s+/)
    const [pid] = await serverPids({uid})
    expect(await groupsOf(pid)).to.include(String(gid))

    // An unknown share: refused, nothing changed (still a writer, still admin, the server runs).
    const unknown = await hubctl(['users', 'admin', ta, '--revoke', '--share-writer', 'nosuch', '--prefix', prefix])
    expect(unknown.exitCode, unknown.stdout).to.equal(2)
    expect(unknown.stderr).to.include('there is no share nosuch')
    expect((await execa('id', ['-nG', ta])).stdout.split(' ')).to.include(group)
    expect((await api.userServers(ta)).length).to.equal(1)

    const revoke = () =>
      hubctl(['users', 'admin', ta, '--revoke', '--share-writer', 'data', '--prefix', prefix, '--json'])
    const revoked = await revoke()
    ok(revoked)
    const result = jsonOf(revoked)
    expect(result.sharesLeft.map((s: {removed: string[]}) => s.removed)).to.deep.equal([[ta]])
    expect(result.serversStopped).to.deep.equal([ta])
    expect(result.plan.change).to.deep.equal([{name: ta, admin: false}])
    expect((await execa('id', ['-nG', ta])).stdout.split(' ')).to.not.include(group)
    expect(await api.userServers(ta)).to.deep.equal([])
    await waitUntil('the TA server process to end', async () => (await serverPids({uid})).length === 0)
    expect((await write('after-revoke.txt')).exitCode).to.not.equal(0)
    expect(await fs.readdir(layout.sharedDir('data'))).to.not.include('after-revoke.txt')

    // Again: nothing to change.
    const second = await revoke()
    ok(second)
    const again = jsonOf(second)
    expect([again.changed, again.sharesLeft[0].action, again.serversStopped]).to.deep.equal([false, 'unchanged', []])
  })
})
