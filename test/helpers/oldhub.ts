/**
 * Users and an API token of each, written into a stopped hub's database by that JupyterHub's own
 * ORM (run by its Python: `python -I -c MAKE_USERS DATABASE NAME...`); prints {name: token} as JSON.
 */
export const MAKE_USERS = `
import json, sys
from jupyterhub import orm
db = orm.new_session_factory("sqlite:///" + sys.argv[1])()
tokens = {}
for name in sys.argv[2:]:
    user = orm.User.find(db, name) or orm.User(name=name)
    db.add(user)
    db.commit()
    tokens[name] = user.new_api_token(note="hubctl upgrade-old")
db.commit()
print(json.dumps(tokens))
`

/** The {name: token} MAKE_USERS printed (its last line). */
export const tokensMade = (stdout: string): Record<string, string> =>
  JSON.parse(stdout.trim().split('\n').pop()!) as Record<string, string>
