import {expect} from 'chai'
import {execa} from 'execa'
import fs from 'node:fs/promises'
import path from 'node:path'

import {Layout} from '../../../src/lib/config/layout.js'
import {
  SchemaReport,
  checkSchemaBeforeStart,
  readSchema,
  schemaError,
  schemaState,
} from '../../../src/lib/config/dbschema.js'
import {HubctlError} from '../../../src/lib/errors.js'
import {execaRunner} from '../../../src/lib/runner.js'
import {tempPrefix} from '../../helpers/cli.js'
import {needTool} from '../../helpers/tools.js'

/*
 * The database against the JupyterHub that would open it: the decision alone, then the real
 * question asked of both JupyterHubs' Pythons (Debian's 3.0 and hubctl's pinned one in .venv) on a
 * database at JupyterHub 3.0's schema revision.
 */

const VENV_PYTHON = path.resolve('.venv/bin/python3')
const DEBIAN_PYTHON = '/usr/bin/python3'
// JupyterHub 3.0's alembic head (api_token_scopes), what Debian 12's jupyterhub writes.
const REVISION_3_0 = '651f5419b74d'

const report = (fields: Partial<SchemaReport>): SchemaReport => ({
  jupyterhub: '6.1.1',
  head: 'f460b0348206',
  revision: 'f460b0348206',
  tables: true,
  known: true,
  pending: [],
  ...fields,
})

async function databaseAt(file: string, revision: string): Promise<void> {
  await execa('python3', [
    '-I',
    '-c',
    `import sqlite3, sys
con = sqlite3.connect(sys.argv[1])
con.execute("CREATE TABLE users (id INTEGER PRIMARY KEY, name TEXT)")
con.execute("CREATE TABLE alembic_version (version_num VARCHAR(32) NOT NULL)")
con.execute("INSERT INTO alembic_version VALUES (?)", (sys.argv[2],))
con.commit()`,
    file,
    revision,
  ])
}

describe('config/dbschema: the database against the JupyterHub installed', function () {
  this.timeout(120_000)

  it('current at the head, with no database or no revision; older when the head knows it; newer when not', () => {
    expect(schemaState(report({}))).to.equal('current')
    expect(schemaState(report({tables: false, revision: null}))).to.equal('current')
    expect(schemaState(report({revision: null}))).to.equal('current')
    expect(schemaState(report({revision: REVISION_3_0, pending: ['pkce']}))).to.equal('older')
    expect(schemaState(report({revision: 'ffffffffffff', known: false}))).to.equal('newer')
  })

  it('an older database is exit 7 naming `hubctl upgrade` with both versions; a newer one names restore', () => {
    const layout = new Layout('/tmp/hub')
    expect(schemaError(layout, report({}), '/x/jupyterhub')).to.equal(undefined)
    const older = schemaError(
      layout,
      report({revision: REVISION_3_0, pending: ['pkce']}),
      '/x/jupyterhub',
    ) as HubctlError
    expect(older.exitCode).to.equal(7)
    expect(older.line)
      .to.include('JupyterHub 6.1.1')
      .and.include(REVISION_3_0)
      .and.include('hubctl upgrade --prefix /tmp/hub')
    const newer = schemaError(layout, report({revision: 'ffffffffffff', known: false}), '/x/jupyterhub') as HubctlError
    expect(newer.exitCode).to.equal(7)
    expect(newer.line).to.include('newer JupyterHub').and.include('hubctl restore')
  })

  it("JupyterHub 3.0's database: current for Debian's 3.0, older for the pinned one (its migrations listed), refused before start", async function () {
    needTool(
      this,
      await fs.stat(VENV_PYTHON).then(
        () => true,
        () => false,
      ),
      '.venv is not linked (ln -sfn /opt/hubctl-venv .venv)',
    )
    const prefix = await tempPrefix()
    const layout = new Layout(prefix)
    await fs.mkdir(path.dirname(layout.database), {recursive: true})
    await databaseAt(layout.database, REVISION_3_0)
    const debian = await readSchema(execaRunner, DEBIAN_PYTHON, layout.database)
    expect(debian).to.include({revision: REVISION_3_0, head: REVISION_3_0})
    expect(schemaState(debian)).to.equal('current')
    const pinned = await readSchema(execaRunner, VENV_PYTHON, layout.database)
    expect(schemaState(pinned)).to.equal('older')
    expect(pinned.pending).to.include('pkce')
    let error: unknown
    await checkSchemaBeforeStart(layout, execaRunner, path.resolve('.venv/bin/jupyterhub')).catch((e: unknown) => {
      error = e
    })
    expect((error as HubctlError).exitCode).to.equal(7)
    expect((error as HubctlError).line).to.include('hubctl upgrade')
    await fs.rm(prefix, {recursive: true, force: true})
  })
})
