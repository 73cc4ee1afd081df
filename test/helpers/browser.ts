import {expect} from 'chai'
import {execa} from 'execa'
import fs from 'node:fs/promises'
import path from 'node:path'
import {chromium, type Browser, type BrowserContext, type Page} from 'playwright-core'

import {ROOT} from './cli.js'

/*
 * A real browser, Debian's Chromium (/usr/bin/chromium), driven through playwright-core (which
 * downloads no browser). Each session has a HOME of its own, so that a private CA can be trusted
 * the way a person's browser is told to trust one: in its NSS database (certutil), never by
 * turning certificate checks off. On a failed test, the page's screenshot, its HTML and the
 * browser's console log are kept under test-output/browser/.
 */

export const CHROMIUM = process.env.HUBCTL_TEST_CHROMIUM ?? '/usr/bin/chromium'
export const OUTPUT_DIR = path.join(ROOT, 'test-output/browser')

export class BrowserSession {
  readonly console: string[] = []
  page!: Page
  private browser!: Browser
  private context!: BrowserContext

  private constructor(readonly home: string) {}

  /**
   * Start Chromium. `trustCa`: a PEM certificate the browser trusts as a CA for this session (in
   * the session's own NSS database); without it the hub's certificate must chain to a CA the
   * system trusts, or be trusted by `ignoreHttpsErrorsFor` (local mode's self-signed one, the
   * same click-through a person does once).
   */
  static async start(
    options: {trustCa?: string; acceptSelfSigned?: boolean; hostResolverRules?: string} = {},
  ): Promise<BrowserSession> {
    const home = await fs.mkdtemp('/tmp/hubctl-chromium-')
    const session = new BrowserSession(home)
    if (options.trustCa) {
      const nssdb = path.join(home, '.pki/nssdb')
      await fs.mkdir(nssdb, {recursive: true})
      const ca = path.join(home, 'ca.pem')
      await fs.writeFile(ca, options.trustCa)
      await execa('certutil', ['-d', `sql:${nssdb}`, '-N', '--empty-password'])
      await execa('certutil', ['-d', `sql:${nssdb}`, '-A', '-t', 'C,,', '-n', 'hubctl-test-ca', '-i', ca])
    }
    session.browser = await chromium.launch({
      executablePath: CHROMIUM,
      headless: true,
      env: {...process.env, HOME: home},
      args: [
        '--no-sandbox',
        '--disable-dev-shm-usage',
        '--no-first-run',
        ...(options.hostResolverRules ? [`--host-resolver-rules=${options.hostResolverRules}`] : []),
      ],
    })
    session.context = await session.browser.newContext({
      ignoreHTTPSErrors: Boolean(options.acceptSelfSigned),
      viewport: {width: 1280, height: 900},
    })
    session.context.setDefaultTimeout(60_000)
    session.context.setDefaultNavigationTimeout(60_000)
    session.context.on('page', (page) => session.watch(page))
    session.page = await session.context.newPage()
    return session
  }

  private watch(page: Page): void {
    page.on('console', (message) => this.console.push(`[${message.type()}] ${page.url()}: ${message.text()}`))
    page.on('pageerror', (error) => this.console.push(`[pageerror] ${page.url()}: ${error.message}`))
    page.on('requestfailed', (request) =>
      this.console.push(`[requestfailed] ${request.method()} ${request.url()}: ${request.failure()?.errorText}`),
    )
    page.on('response', (response) => {
      if (response.status() >= 400)
        this.console.push(`[http ${response.status()}] ${response.request().method()} ${response.url()}`)
    })
  }

  /** Keep what a person would have seen: screenshot, HTML and console of every open page. */
  async keep(label: string): Promise<string[]> {
    const safe = label.replaceAll(/[^A-Za-z0-9._-]+/g, '_').slice(0, 120)
    await fs.mkdir(OUTPUT_DIR, {recursive: true})
    const kept: string[] = []
    for (const [index, page] of this.context.pages().entries()) {
      const base = path.join(OUTPUT_DIR, `${safe}.${index}`)
      await page.screenshot({path: `${base}.png`, fullPage: true}).then(
        () => kept.push(`${base}.png`),
        () => {},
      )
      await page
        .content()
        .then((html) => fs.writeFile(`${base}.html`, html))
        .then(
          () => kept.push(`${base}.html`),
          () => {},
        )
    }
    await fs.writeFile(path.join(OUTPUT_DIR, `${safe}.console.log`), `${this.console.join('\n')}\n`)
    kept.push(path.join(OUTPUT_DIR, `${safe}.console.log`))
    return kept
  }

  async close(): Promise<void> {
    await this.browser?.close().catch(() => {})
    await fs.rm(this.home, {recursive: true, force: true})
  }
}

/** What a person does on the login form: type the name and password, click "Sign in". */
export async function logIn(page: Page, origin: string, user: string, password: string): Promise<void> {
  await page.goto(`${origin}/hub/login`)
  await page.locator('#username_input').fill(user)
  await page.locator('#password_input').fill(password)
  await page.locator('#login_submit').click()
}

/**
 * After the login click: the spawn page must lead to the server by itself (no reload), and the
 * server's page must be the one the hub sends users to.
 */
export async function waitForServerPage(page: Page, user: string, ui: 'lab' | 'tree'): Promise<void> {
  await page.waitForURL(new RegExp(`/user/${user}/${ui}`), {timeout: 180_000})
  if (ui === 'lab') await page.locator('#jp-main-dock-panel').first().waitFor({timeout: 120_000})
  else await page.locator('#notebook_list, #new-dropdown-button').first().waitFor({timeout: 120_000})
}

/** JupyterLab: a new notebook from the launcher, `print(6*7)`, Shift+Enter; returns the output text. */
export async function runCellInLab(page: Page, code: string): Promise<string> {
  // JupyterLab restores the user's workspace first: a new user sees the launcher, one whose last
  // session had notebooks open sees them (and, for a notebook whose kernel is gone, a "Select
  // Kernel" dialog, which a person answers with Select); "+" then opens a launcher.
  await page.addLocatorHandler(page.locator('.jp-Dialog .jp-mod-accept').first(), async (select) => select.click(), {
    noWaitAfter: true,
  })
  await page.locator('.jp-Launcher:visible, .jp-NotebookPanel:visible').first().waitFor({timeout: 120_000})
  const launcher = page.locator('.jp-Launcher:visible')
  if (!(await launcher.first().isVisible()))
    await page.locator('#jp-main-dock-panel .lm-TabBar-addButton').first().click()
  await launcher.first().locator('.jp-LauncherCard[data-category="Notebook"]').first().click()
  // As a person waits for the kernel before running a cell: the toolbar's indicator and the
  // status bar (fed by the kernel's own messages over its websocket) both say Idle.
  await page
    .locator('.jp-NotebookPanel:not(.lm-mod-hidden) .jp-Notebook-ExecutionIndicator[data-status="idle"]')
    .first()
    .waitFor({timeout: 120_000})
  await page
    .locator('.jp-StatusBar-TextItem', {hasText: /\| Idle/})
    .first()
    .waitFor({timeout: 120_000})
  await page.locator('.jp-NotebookPanel:not(.lm-mod-hidden) .jp-Cell .cm-content').first().click()
  await page.keyboard.type(code)
  await page.keyboard.press('Shift+Enter')
  const output = page.locator('.jp-NotebookPanel:not(.lm-mod-hidden) .jp-OutputArea-output').first()
  await output.waitFor({timeout: 120_000})
  return (await output.innerText()).trim()
}

/** The classic notebook (JupyterHub 3 on Debian): New → Python 3 opens a tab; run the cell there. */
export async function runCellInClassic(page: Page, code: string): Promise<string> {
  await page.locator('#new-dropdown-button').click()
  const [notebook] = await Promise.all([
    page.context().waitForEvent('page', {timeout: 60_000}),
    page.locator('#new-menu li[id^="kernel-python"] a').first().click(),
  ])
  await notebook.waitForLoadState()
  await notebook.locator('#kernel_indicator_icon.kernel_idle_icon').waitFor({timeout: 120_000})
  await notebook.locator('.CodeMirror').first().click()
  await notebook.keyboard.type(code)
  await notebook.keyboard.press('Shift+Enter')
  const output = notebook.locator('.output_subarea').first()
  await output.waitFor({timeout: 120_000})
  return (await output.innerText()).trim()
}

/** What a person does once logged in, as admin: a cell, the admin page, a token, Stop, log out. */
export async function personSession(
  page: Page,
  origin: string,
  user: string,
  password: string,
  ui: 'lab' | 'tree',
): Promise<void> {
  await logIn(page, origin, user, password)
  await waitForServerPage(page, user, ui)
  const output = ui === 'lab' ? await runCellInLab(page, 'print(6*7)') : await runCellInClassic(page, 'print(6*7)')
  expect(output).to.equal('42')

  await page.goto(`${origin}/hub/admin`)
  await page.locator('table').getByText(user, {exact: true}).first().waitFor()

  // The page's script sends the form to the hub's API. Clicked before require.js has attached it (a
  // loaded machine), the browser submits the form itself, the page reloads and shows no token (CI at
  // 45374f5, JupyterHub 3.0): the click waits for the page to be idle, and a person who sees nothing
  // happen clicks once more.
  const token = page.locator('#token-result')
  for (let attempt = 1; ; attempt++) {
    await page.goto(`${origin}/hub/token`, {waitUntil: 'networkidle'})
    await page.locator('#request-token-form button[type="submit"]').click()
    try {
      await token.waitFor({timeout: 30_000})
      break
    } catch (error) {
      if (attempt === 2) throw error
    }
  }
  expect((await token.innerText()).trim()).to.match(/^[0-9a-f]{32}$/)

  await page.goto(`${origin}/hub/home`)
  await page.locator('#stop').click()
  await page.locator('#stop').waitFor({state: 'hidden', timeout: 120_000})
  await page.locator('#start', {hasText: 'Start My Server'}).waitFor()

  await page.locator('#logout').click()
  await page.waitForURL(/\/hub\/(login|logout)/)
  await page.goto(`${origin}/hub/home`)
  await page.waitForURL(/\/hub\/login/)
}
