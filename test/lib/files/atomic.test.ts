import {expect} from 'chai'
import {spawn} from 'node:child_process'
import fs from 'node:fs/promises'
import path from 'node:path'

import {
  ensureDir,
  ensureLogFile,
  setWriteFaults,
  symlinkAtomic,
  writeFileAtomic,
  writeFileAtomicIfChanged,
} from '../../../src/lib/files/atomic.js'
import {modeOf, tempPrefix} from '../../helpers/cli.js'
import {waitUntil} from '../../helpers/processes.js'

describe('atomic writes', () => {
  let dir: string
  beforeEach(async () => {
    dir = await tempPrefix('hubctl-atomic')
  })
  afterEach(async () => {
    await fs.rm(dir, {recursive: true, force: true})
  })

  it('sets the final mode whatever the umask, and leaves no temp file', async () => {
    const old = process.umask(0)
    try {
      await writeFileAtomic(path.join(dir, 'f'), 'x', {mode: 0o600})
    } finally {
      process.umask(old)
    }
    expect(await modeOf(path.join(dir, 'f'))).to.equal(0o600)
    expect(await fs.readdir(dir)).to.deep.equal(['f'])
  })

  it('replaces the file whole: up to the swap the old content is there whole, then a new file (inode) by rename; a reader of the old one never sees it change', async () => {
    const file = path.join(dir, 'f')
    const old = 'old content\n'.repeat(1000)
    const next = 'new content, longer than the old\n'.repeat(1000)
    await fs.writeFile(file, old)
    const before = await fs.stat(file)
    const reader = await fs.open(file, 'r')
    const seen: Array<{target: string; temp: string; tempMode: number; tempDir: string}> = []
    setWriteFaults({
      beforeRename: async (temp) => {
        seen.push({
          target: await fs.readFile(file, 'utf8'),
          temp: await fs.readFile(temp, 'utf8'),
          tempMode: await modeOf(temp),
          tempDir: path.dirname(temp),
        })
      },
    })
    try {
      await writeFileAtomic(file, next, {mode: 0o600})
    } finally {
      setWriteFaults({})
    }
    try {
      // The new content was complete, with its final mode, beside the target, while the target still held the old.
      expect(seen).to.deep.equal([{target: old, temp: next, tempMode: 0o600, tempDir: dir}])
      expect(await fs.readFile(file, 'utf8')).to.equal(next)
      expect((await fs.stat(file)).ino).to.not.equal(before.ino)
      // What a reader had open is the old file, untouched: not truncated, not overwritten in place.
      expect((await reader.readFile()).toString('utf8')).to.equal(old)
      expect(await fs.readdir(dir)).to.deep.equal(['f'])
    } finally {
      await reader.close()
    }
  })

  it('a reader racing the writer (another process, reading in a loop) sees the old or the new content whole: never empty, cut or mixed', async () => {
    // Without the implementation's own hooks: what another program reading the file meanwhile sees.
    const file = path.join(dir, 'f')
    const stop = path.join(dir, 'stop')
    const contents = ['A'.repeat(2 << 20), 'B'.repeat(1 << 20)]
    await fs.writeFile(file, contents[0])
    const reader = [
      "const fs = require('node:fs')",
      'const [file, stop, ...whole] = process.argv.slice(1)',
      'const seen = {}',
      'let reads = 0',
      'for (;;) {',
      "  const text = fs.readFileSync(file, 'latin1')",
      '  const ok = whole.includes(`${text[0]}x${text.length}`) && /^(A+|B+)$/.test(text)',
      '  const key = ok ? `${text[0]}x${text.length}` : `bad: ${text.length} bytes, ${JSON.stringify(text.slice(0, 1) + text.slice(-1))}`',
      '  seen[key] = (seen[key] ?? 0) + 1',
      "  if (++reads === 1) process.stdout.write('ready\\n')",
      '  if (fs.existsSync(stop)) break',
      '}',
      "process.stdout.write(JSON.stringify(seen) + '\\n')",
    ].join('\n')
    const child = spawn(process.execPath, ['-e', reader, file, stop, ...contents.map((c) => `${c[0]}x${c.length}`)], {
      stdio: ['ignore', 'pipe', 'inherit'],
    })
    let out = ''
    child.stdout.on('data', (chunk: Buffer) => (out += chunk.toString('utf8')))
    const exited = new Promise<number | null>((resolve) => child.once('exit', resolve))
    await waitUntil('the reader reading', async () => out.startsWith('ready'))
    for (let i = 1; i <= 60; i++) await writeFileAtomic(file, contents[i % 2], {mode: 0o600})
    await fs.writeFile(stop, '')
    expect(await exited).to.equal(0)
    const seen = JSON.parse(out.split('\n')[1]) as Record<string, number>
    // Whole contents only; the new one too (the reader read while the writes went on).
    expect(
      Object.keys(seen).filter((key) => key.startsWith('bad')),
      JSON.stringify(seen),
    ).to.deep.equal([])
    expect(seen).to.have.property(`Bx${1 << 20}`)
  })

  it('replaces a symbolic link itself, never the file it points to', async () => {
    const target = path.join(dir, 'target')
    await fs.writeFile(target, 'precious')
    await fs.symlink(target, path.join(dir, 'link'))
    await writeFileAtomic(path.join(dir, 'link'), 'new', {mode: 0o600})
    expect(await fs.readFile(target, 'utf8')).to.equal('precious')
    expect((await fs.lstat(path.join(dir, 'link'))).isFile()).to.equal(true)
  })

  it('forces a directory mode and swaps links atomically', async () => {
    await fs.mkdir(path.join(dir, 'd'), {mode: 0o755})
    await ensureDir(path.join(dir, 'd'), 0o700)
    expect(await modeOf(path.join(dir, 'd'))).to.equal(0o700)
    await symlinkAtomic('a', path.join(dir, 'l'))
    await symlinkAtomic('b', path.join(dir, 'l'))
    expect(await fs.readlink(path.join(dir, 'l'))).to.equal('b')
  })
})

describe('writeFileAtomicIfChanged', () => {
  let dir: string
  before(async () => {
    dir = await tempPrefix('hubctl-ifchanged')
  })
  after(async () => {
    await fs.rm(dir, {recursive: true, force: true})
  })

  it('writes a missing file, leaves the same content and mode alone (the same inode), writes a change of either', async () => {
    const file = path.join(dir, 'conf')
    expect(await writeFileAtomicIfChanged(file, 'a\n', {mode: 0o644})).to.equal(true)
    const first = await fs.stat(file)
    expect(await writeFileAtomicIfChanged(file, 'a\n', {mode: 0o644})).to.equal(false)
    expect((await fs.stat(file)).ino).to.equal(first.ino)
    expect(await writeFileAtomicIfChanged(file, 'a\n', {mode: 0o640})).to.equal(true)
    expect(await modeOf(file)).to.equal(0o640)
    expect(await writeFileAtomicIfChanged(file, 'b\n', {mode: 0o640})).to.equal(true)
    expect(await fs.readFile(file, 'utf8')).to.equal('b\n')
  })

  it('replaces a link rather than comparing through it', async () => {
    const target = path.join(dir, 'target')
    const link = path.join(dir, 'link')
    await fs.writeFile(target, 'same\n', {mode: 0o644})
    await fs.symlink(target, link)
    expect(await writeFileAtomicIfChanged(link, 'same\n', {mode: 0o644})).to.equal(true)
    expect((await fs.lstat(link)).isFile()).to.equal(true)
  })
})

describe('ensureLogFile', () => {
  let dir: string
  beforeEach(async () => {
    dir = await tempPrefix('hubctl-logfile')
  })
  afterEach(async () => {
    await fs.rm(dir, {recursive: true, force: true})
  })

  it('a log file: made 0640 whatever the umask; an existing one looser than that tightened in place (content, inode kept); a tighter one left alone; never through a link', async () => {
    const fresh = path.join(dir, 'fresh.log')
    const old = process.umask(0)
    try {
      await ensureLogFile(fresh)
    } finally {
      process.umask(old)
    }
    expect(await modeOf(fresh)).to.equal(0o640)
    for (const [before, after] of [
      [0o644, 0o640],
      [0o666, 0o640],
      [0o604, 0o600],
      [0o600, 0o600],
    ]) {
      const log = path.join(dir, `${before.toString(8)}.log`)
      await fs.writeFile(log, 'an old line\n')
      await fs.chmod(log, before)
      const inode = (await fs.stat(log)).ino
      await ensureLogFile(log)
      expect(await modeOf(log), before.toString(8)).to.equal(after)
      expect(await fs.readFile(log, 'utf8')).to.equal('an old line\n')
      expect((await fs.stat(log)).ino).to.equal(inode)
    }
    const target = path.join(dir, 'target')
    await fs.writeFile(target, '')
    await fs.chmod(target, 0o644)
    await fs.symlink(target, path.join(dir, 'linked.log'))
    let error: NodeJS.ErrnoException | undefined
    try {
      await ensureLogFile(path.join(dir, 'linked.log'))
    } catch (error_) {
      error = error_ as NodeJS.ErrnoException
    }
    expect(error?.code).to.equal('ELOOP')
    expect(await modeOf(target)).to.equal(0o644)
  })
})
