import path from 'node:path'

import {exists} from '../files/atomic.js'
import {interpreterProblem, jupyterhubPython} from './jupyterhub.js'
import type {Layout} from './layout.js'
import {HubctlError, runtimeError} from '../errors.js'
import type {Runner} from '../runner.js'

/**
 * The hub's database against the JupyterHub that would open it, asked before the hub starts.
 *
 * JupyterHub checks this itself at startup (orm.check_db_revision): the alembic revision stored in
 * the database must be the head of the installed JupyterHub's migrations, else it exits with
 * "Found database schema version X != Y ... run `jupyterhub upgrade-db`" — and a supervisor, or
 * systemd, restarts it forever. hubctl asks the same question first, with the hub's own Python
 * (-I, the database opened read-only), and refuses to start with what to run instead.
 */
// Without importing alembic or SQLAlchemy (seconds on a busy machine, at every start): the
// migrations are read from JupyterHub's alembic/versions, each file's revision and down_revision,
// as alembic reads them; the head is the one no other migration names as its down_revision.
const SCHEMA_SCRIPT = `
import json, os, pathlib, re, sqlite3, sys
import jupyterhub
versions = os.path.join(os.path.dirname(jupyterhub.__file__), "alembic", "versions")
down, doc = {}, {}
for name in os.listdir(versions):
    if not name.endswith(".py"):
        continue
    text = open(os.path.join(versions, name), encoding="utf-8").read()
    rev = re.search(r"^revision\\s*=\\s*[\\x22\\x27](\\w+)[\\x22\\x27]", text, re.M)
    if not rev:
        continue
    prev = re.search(r"^down_revision\\s*=\\s*[\\x22\\x27](\\w+)[\\x22\\x27]", text, re.M)
    down[rev.group(1)] = prev.group(1) if prev else None
    first = re.match(r"\\s*[\\x22\\x27]{3}\\s*(.*)", text)
    doc[rev.group(1)] = (first.group(1).strip() if first else "") or rev.group(1)
heads = sorted(set(down) - set(d for d in down.values() if d))
head = heads[0] if len(heads) == 1 else None
out = {"jupyterhub": jupyterhub.__version__, "head": head, "revision": None, "tables": False, "known": True, "pending": []}
db = sys.argv[1]
if os.path.exists(db):
    con = sqlite3.connect(pathlib.Path(db).as_uri() + "?mode=ro", uri=True, timeout=30)
    names = {r[0] for r in con.execute("SELECT name FROM sqlite_master WHERE type='table'")}
    out["tables"] = bool(names - {"alembic_version"})
    if "alembic_version" in names:
        row = con.execute("SELECT version_num FROM alembic_version").fetchone()
        out["revision"] = row[0] if row else None
    con.close()
rev = out["revision"]
if head and rev and rev != head:
    chain, at = [], head
    while at and at != rev:
        chain.append(doc[at])
        at = down.get(at)
    out["known"] = at == rev
    out["pending"] = chain[::-1] if at == rev else []
print(json.dumps(out))
`

/** What the hub's Python says about the database. */
export interface SchemaReport {
  /** The version of the JupyterHub asked. */
  jupyterhub: string
  /** The newest migration that JupyterHub knows (its alembic head; null: more than one). */
  head: string | null
  /** The migration the database is at (none: no database, or one from before JupyterHub 0.8). */
  revision: string | null
  /** Whether the database has JupyterHub's tables at all. */
  tables: boolean
  /** Whether that JupyterHub knows the database's revision (not: the database is newer). */
  known: boolean
  /** The migrations the database lacks, oldest first (what `jupyterhub upgrade-db` would run). */
  pending: string[]
}

/**
 * current: the hub opens it as it is (also: no database yet, or an untagged one JupyterHub tags
 * itself); older: it needs `jupyterhub upgrade-db` (hubctl upgrade); newer: written by a newer
 * JupyterHub than this one, which cannot open it.
 */
export type SchemaState = 'current' | 'older' | 'newer'

/** The decision alone (pure). */
export function schemaState(report: SchemaReport): SchemaState {
  // No single head (a JupyterHub with branched migrations): JupyterHub decides for itself.
  if (!report.tables || report.revision === null || report.head === null || report.revision === report.head)
    return 'current'
  return report.known ? 'older' : 'newer'
}

/** Ask `python` (a JupyterHub's own) about the database `file` (read-only). */
export async function readSchema(runner: Runner, python: string, file: string): Promise<SchemaReport> {
  const result = await runner.run(python, ['-I', '-c', SCHEMA_SCRIPT, file], {cwd: '/', timeoutMs: 120_000})
  if (result.exitCode !== 0) {
    const last = result.stderr.trim().split('\n').pop() ?? 'no output'
    throw runtimeError(
      `${python} could not read the schema version of ${file} (${last})`,
      `check that the file is a JupyterHub database (sqlite3 ${file} .tables), or restore one with \`hubctl restore\``,
    )
  }
  return JSON.parse(result.stdout.trim().split('\n').pop() ?? '{}') as SchemaReport
}

/** The error `hubctl start` exits with (7) when the database and the JupyterHub installed disagree. */
export function schemaError(layout: Layout, report: SchemaReport, executable: string): Error | undefined {
  const state = schemaState(report)
  if (state === 'current') return undefined
  if (state === 'older') {
    return runtimeError(
      `the hub's database ${layout.database} is older than JupyterHub ${report.jupyterhub} (${executable}): it is at schema revision ${report.revision}, JupyterHub ${report.jupyterhub} needs ${report.head} (${report.pending.length} migration${report.pending.length === 1 ? '' : 's'} missing: ${report.pending.join(', ')}); the hub was not started`,
      `run \`hubctl upgrade${layout.isSystem ? '' : ` --prefix ${layout.prefix}`}\` (a backup, the database migrated on a copy, the hub checked, rollback on any failure)`,
    )
  }
  return runtimeError(
    `the hub's database ${layout.database} was written by a newer JupyterHub than ${report.jupyterhub} (${executable}): its schema revision ${report.revision} is unknown to it; the hub was not started`,
    `run the JupyterHub that wrote it (\`hubctl init --jupyterhub PATH\`), or restore a backup made with this one (\`hubctl restore FILE\`)`,
  )
}

/** The error of a hub whose environment's Python is gone (`hubctl start`, exit 7; doctor's fix). */
export function interpreterGoneError(layout: Layout, problem: string): HubctlError {
  return runtimeError(`${problem}; the hub was not started`, rebuildFix(layout))
}

/** What to run when the Python of the hub's (or the users') environment is gone. */
export function rebuildFix(layout: Layout): string {
  return `run \`hubctl upgrade --rebuild${layout.isSystem ? '' : ` --prefix ${layout.prefix}`}\` (the environment built again with this machine's python3, the same pins; rollback on any failure)`
}

/** Before the hub starts: refused (exit 7) when the database needs an upgrade, or is newer. */
export async function checkSchemaBeforeStart(layout: Layout, runner: Runner, executable: string): Promise<void> {
  // The environment's Python gone (an OS upgrade): exit 7 naming the fix, not a crash loop.
  const gone = await interpreterProblem(runner, executable, {run: false})
  if (gone) throw interpreterGoneError(layout, gone)
  if (!(await exists(layout.database))) return
  const python = await jupyterhubPython(executable)
  // A JupyterHub run by a wrapper that is not Python: JupyterHub checks for itself.
  if (!python || !/^python[\d.]*$/.test(path.basename(python))) return
  const error = schemaError(layout, await readSchema(runner, python, layout.database), executable)
  if (error) throw error
}
