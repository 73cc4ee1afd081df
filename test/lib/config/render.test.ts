import {expect} from 'chai'
import {execFileSync} from 'node:child_process'
import fs from 'node:fs/promises'
import path from 'node:path'

import {RenderError, nginxToken, pythonLiteral, renderText} from '../../../src/lib/config/render.js'
import {ROOT} from '../../helpers/cli.js'

const HOSTILE = [
  `'); import os; os.system("id") #`,
  'a"b',
  'back\\slash',
  'new\nline',
  'tab\there',
  '\u0000nul',
  'ünïcødé',
  '${x}',
  '"""',
  "'''",
]

describe('render', () => {
  it('writes every string as a Python literal that evaluates back to the same string', () => {
    const program =
      HOSTILE.map((value, i) => `v${i} = ${pythonLiteral(value)}`).join('\n') +
      '\nimport json, sys\nprint(json.dumps([' +
      HOSTILE.map((_, i) => `v${i}`).join(', ') +
      ']))'
    const out = execFileSync('python3', ['-c', program], {encoding: 'utf8'})
    expect(JSON.parse(out)).to.deep.equal(HOSTILE)
  })

  it('writes numbers and booleans as Python numbers and booleans', () => {
    expect(pythonLiteral(8081)).to.equal('8081')
    expect(pythonLiteral(true)).to.equal('True')
    expect(() => pythonLiteral(Number.NaN)).to.throw(RenderError)
  })

  it('never HTML-escapes', async () => {
    expect(await renderText('x = {{v}}', {v: 'a&b<c>'}, 'python')).to.equal('x = "a&b<c>"')
    expect(await renderText('root {{v}};', {v: '/srv/a=b'}, 'nginx')).to.equal('root /srv/a=b;')
  })

  it('quotes nginx values with spaces and refuses what nginx cannot hold safely', () => {
    expect(nginxToken('/tmp/a b/c')).to.equal('"/tmp/a b/c"')
    for (const bad of ['a;b', 'a{b', 'a}b', '$host', 'a"b', "a'b", 'a\\b', 'a\nb', 'a#b', 'ünï']) {
      expect(() => nginxToken(bad), bad).to.throw(RenderError, /cannot be written safely/)
    }
  })

  it('has no template that bypasses escaping with triple mustaches', async () => {
    const dir = path.join(ROOT, 'templates')
    for (const name of await fs.readdir(dir)) {
      const text = await fs.readFile(path.join(dir, name), 'utf8')
      expect(text, name).not.to.match(/\{\{\{|\{\{&/)
    }
  })
})
