/**
 * Bench rows for `hubctl backup --include-homes` and `hubctl restore` (issue 23): a running hub
 * (Debian's JupyterHub 3.0) with BENCH_BACKUP_USERS accounts hubctl made (default 200; names
 * `k9uNNN`, removed after the run), each with a home of 10 MB (4 MB of random bytes, 6 MB of
 * notebook-like text) under the bench's temp prefix. Against `tar` of the same homes: hubctl's
 * archive is an uncompressed tar whose homes are gzipped members, so the like-for-like command is
 * `tar -czf` (and `tar -xzf` into an empty directory); `tar -cf` is printed beside it.
 */
import {execa} from 'execa'
import {randomBytes} from 'node:crypto'
import fs from 'node:fs/promises'
import path from 'node:path'

import {DEBIAN_JUPYTERHUB, portFlags, testHubInitArgs} from '../test/helpers/cli.js'
import {BenchRow, hubctl, run, tempDir, timed} from './lib.js'

const USERS = Number(process.env.BENCH_BACKUP_USERS ?? 200)
const MB = 1024 * 1024

/** One home's files: 4 MB random (does not compress), 6 MB of notebook JSON (compresses). */
async function fillTemplate(dir: string): Promise<void> {
  await fs.mkdir(path.join(dir, 'data'), {recursive: true})
  for (let i = 0; i < 4; i++) await fs.writeFile(path.join(dir, 'data', `blob${i}.bin`), randomBytes(MB))
  const cell = (n: number) =>
    JSON.stringify({cell_type: 'code', execution_count: n, source: [`x${n} = ${n} * 2\n`, `print(x${n})`]})
  let text = ''
  for (let n = 0; text.length < 2 * MB; n++) text += `${cell(n)},\n`
  for (let i = 0; i < 3; i++) await fs.writeFile(path.join(dir, `notebook${i}.ipynb`), text.slice(0, 2 * MB))
}

export async function backupRows(runs: number): Promise<BenchRow[]> {
  const backup: number[] = []
  const tarCz: number[] = []
  const tarC: number[] = []
  const restore: number[] = []
  const tarXz: number[] = []
  const names = Array.from({length: USERS}, (_, n) => `k9u${String(n + 1).padStart(3, '0')}`)
  for (let i = 0; i < runs; i++) {
    const prefix = await tempDir('backup')
    const out = await tempDir('backup-out')
    const homes = path.join(prefix, 'homes')
    try {
      const {flags} = await portFlags()
      await hubctl(testHubInitArgs(prefix, {admin: names[0], jupyterhub: DEBIAN_JUPYTERHUB}, flags))
      await hubctl(['start', '--detach', '--prefix', prefix])
      const template = path.join(out, 'template')
      await fillTemplate(template)
      await fs.mkdir(homes, {mode: 0o755})
      const record = JSON.parse(
        await fs
          .readFile(path.join(prefix, 'srv/jupyterhub/users.json'), 'utf8')
          .catch(() => '{"version":1,"accounts":{}}'),
      ) as {
        accounts: Record<string, unknown>
      }
      for (const name of names) {
        const home = path.join(homes, name)
        await run('useradd', ['--no-create-home', '--home-dir', home, '--user-group', '--shell', '/bin/bash', name])
        await run('cp', ['-a', template, home])
        await run('chown', ['-R', `${name}:${name}`, home])
        await fs.chmod(home, 0o700)
        const uid = Number((await run('id', ['-u', name])).stdout.trim())
        record.accounts[name] = {origin: 'created', uid, at: new Date().toISOString()}
      }
      await fs.writeFile(path.join(prefix, 'srv/jupyterhub/users.json'), `${JSON.stringify(record, null, 2)}\n`, {
        mode: 0o600,
      })
      const archive = path.join(out, 'hub.tar')
      backup.push(
        await timed(() => hubctl(['backup', '--include-homes', '--output', archive, '--prefix', prefix, '--json'])),
      )
      tarCz.push(await timed(() => run('tar', ['-czf', path.join(out, 'homes.tgz'), '-C', homes, '.'])))
      tarC.push(await timed(() => run('tar', ['-cf', path.join(out, 'homes.tar'), '-C', homes, '.'])))
      const sizes = await Promise.all(['hub.tar', 'homes.tgz', 'homes.tar'].map((f) => fs.stat(path.join(out, f))))
      process.stderr.write(
        `bench: backup run ${i + 1}: hubctl ${(backup[i] / 1000).toFixed(1)} s (${(sizes[0].size / MB).toFixed(0)} MB), tar -czf ${(tarCz[i] / 1000).toFixed(1)} s (${(sizes[1].size / MB).toFixed(0)} MB), tar -cf ${(tarC[i] / 1000).toFixed(1)} s (${(sizes[2].size / MB).toFixed(0)} MB)\n`,
      )
      await fs.rm(path.join(out, 'homes.tar'))
      let json = ''
      restore.push(
        await timed(async () => (json = await hubctl(['restore', archive, '--yes', '--prefix', prefix, '--json']))),
      )
      const scratch = path.join(out, 'extract')
      await fs.mkdir(scratch)
      tarXz.push(await timed(() => run('tar', ['-xzf', path.join(out, 'homes.tgz'), '-C', scratch])))
      const restored = JSON.parse(json) as {homes: string[]; seconds: number}
      if (restored.homes.length !== USERS) throw new Error(`restore brought back ${restored.homes.length} homes`)
      process.stderr.write(
        `bench: restore run ${i + 1}: hubctl ${(restore[i] / 1000).toFixed(1)} s (stop, unpack, start, health), tar -xzf ${(tarXz[i] / 1000).toFixed(1)} s\n`,
      )
    } finally {
      await execa(process.execPath, [path.join(import.meta.dirname, '../bin/run.js'), 'stop', '--prefix', prefix], {
        reject: false,
        stdin: 'ignore',
      })
      for (const name of names) await execa('userdel', [name], {reject: false})
      await fs.rm(prefix, {recursive: true, force: true})
      await fs.rm(out, {recursive: true, force: true})
    }
  }
  return [
    {
      name: `backup --include-homes, ${USERS} homes of 10 MB (running hub)`,
      hubctl: backup,
      other: {name: 'tar -czf of the homes', times: tarCz},
    },
    {name: `  the same homes by tar -cf (no compression)`, hubctl: tarC},
    {
      name: `restore of that archive over the running hub (stop, unpack, start, health)`,
      hubctl: restore,
      other: {name: 'tar -xzf of the homes into an empty directory', times: tarXz},
    },
  ]
}
