#!/usr/bin/env node
// `hubctl --version` is answered without loading oclif (cron and scripts call it often);
// it prints what oclif would: hubctl/<version> <platform>-<arch> node-<version>.
if (process.argv.length === 3 && process.argv[2] === '--version') {
  const {readFileSync} = await import('node:fs')
  const {version} = JSON.parse(readFileSync(new URL('../package.json', import.meta.url), 'utf8'))
  process.stdout.write(`hubctl/${version} ${process.platform}-${process.arch} node-${process.version}\n`)
} else {
  const {execute} = await import('@oclif/core')
  await execute({dir: import.meta.url})
}
