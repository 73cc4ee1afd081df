#!/usr/bin/env node
// Three answers are given without loading oclif, because cron, timers and scripts ask them often,
// or because every start waits for them:
// - `hubctl --version`, printed as oclif would: hubctl/<version> <platform>-<arch> node-<version>;
// - `hubctl cert renew [--prefix P] [--no-random-sleep]` when nothing is due (twice a day on every
//   server): the same decision as the command's, in lib/tls/renewal.js. Anything else, including a
//   renewal that is due, runs the full command;
// - the background hubctl that `start --detach` runs (`start --checked-by-parent ...`).
const args = process.argv.slice(2)

function quickRenewPrefix(argv) {
  if (argv[0] !== 'cert' || argv[1] !== 'renew') return undefined
  let prefix = process.env.HUBCTL_PREFIX || '/'
  for (let i = 2; i < argv.length; i++) {
    if (argv[i] === '--no-random-sleep') continue
    if (argv[i] === '--prefix' && i + 1 < argv.length) prefix = argv[++i]
    else if (argv[i].startsWith('--prefix=')) prefix = argv[i].slice('--prefix='.length)
    else return undefined
  }
  return prefix
}

let answered = false
if (args[0] === 'start' && (args.includes('--detach') || args.includes('-d'))) {
  // `start --detach`: its background hubctl starts loading now, beside oclif (lib/stack/prewarm.js).
  // Its checks too: they wait on files and on nginx -t while oclif loads.
  const {prewarm} = await import('../dist/lib/stack/prewarm.js')
  const {fileURLToPath} = await import('node:url')
  prewarm(args, fileURLToPath(import.meta.url), async (prefix) => {
    const [{Layout}, {SettingsStore}, {checkBeforeStart}, {execaRunner}, {finishInterrupted}] = await Promise.all([
      import('../dist/lib/config/layout.js'),
      import('../dist/lib/config/settings.js'),
      import('../dist/lib/setup/preflight.js'),
      import('../dist/lib/runner.js'),
      import('../dist/lib/backup/journal.js'),
    ])
    const layout = new Layout(prefix)
    // A restore or an upgrade killed half way through its renames: finished before hubctl.json is read.
    await finishInterrupted(layout, execaRunner)
    await checkBeforeStart(layout, await new SettingsStore(layout).load(), execaRunner)
  })
}
if (args[0] === 'start' && args.includes('--checked-by-parent')) {
  // The background hubctl of `start --detach`, loaded while its parent runs the checks: without
  // oclif, which would add a fifth of a second to every start (lib/stack/background.js).
  const {runBackground} = await import('../dist/lib/stack/background.js')
  process.exitCode = await runBackground(args)
  answered = true
} else if (args.length === 1 && args[0] === '--version') {
  const {readFileSync} = await import('node:fs')
  const {version} = JSON.parse(readFileSync(new URL('../package.json', import.meta.url), 'utf8'))
  process.stdout.write(`hubctl/${version} ${process.platform}-${process.arch} node-${process.version}\n`)
  answered = true
} else {
  const prefix = quickRenewPrefix(args)
  if (prefix !== undefined && prefix !== '') {
    const [{Layout}, {renewNotDueQuickly}] = await Promise.all([
      import('../dist/lib/config/layout.js'),
      import('../dist/lib/tls/renewal.js'),
    ])
    const line = await renewNotDueQuickly(new Layout(prefix))
    if (line !== undefined) {
      process.stdout.write(`${line}\n`)
      answered = true
    }
  }
}
if (!answered) {
  const {execute} = await import('@oclif/core')
  await execute({dir: import.meta.url})
}
