import {expect} from 'chai'
import fs from 'node:fs/promises'
import path from 'node:path'

import {ensureDir, symlinkAtomic, writeFileAtomic} from '../../../src/lib/files/atomic.js'
import {modeOf, tempPrefix} from '../../helpers/cli.js'

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
