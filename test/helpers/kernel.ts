import {randomUUID} from 'node:crypto'
import https from 'node:https'
import WebSocket from 'ws'

/*
 * A notebook kernel driven as JupyterLab drives it, without a browser: JSON over https trusting the
 * hub's own certificate, and the Jupyter messaging protocol (5.3) over the kernel's websocket.
 * Tokens travel in headers only.
 */

export interface Msg {
  header: {msg_id: string; msg_type: string}
  parent_header: {msg_id?: string}
  channel?: string
  content: Record<string, unknown>
}

/** An https request trusting `ca` (the hub's own certificate); JSON in and out. */
export function httpsJson(
  url: string,
  options: {method?: string; ca: string; token?: string; body?: unknown},
): Promise<{status: number; body: unknown}> {
  return new Promise((resolve, reject) => {
    const payload = options.body === undefined ? undefined : JSON.stringify(options.body)
    const request = https.request(
      url,
      {
        method: options.method ?? 'GET',
        ca: options.ca,
        headers: {
          Accept: 'application/json',
          ...(options.token ? {Authorization: `token ${options.token}`} : {}),
          ...(payload ? {'Content-Type': 'application/json', 'Content-Length': Buffer.byteLength(payload)} : {}),
        },
        timeout: 30_000,
      },
      (response) => {
        const chunks: Buffer[] = []
        response.on('data', (chunk: Buffer) => chunks.push(chunk))
        response.on('end', () => {
          const text = Buffer.concat(chunks).toString('utf8')
          let body: unknown = text
          try {
            body = JSON.parse(text)
          } catch {
            // not JSON: kept as text
          }
          resolve({status: response.statusCode ?? 0, body})
        })
      },
    )
    request.on('timeout', () => request.destroy(new Error(`${url}: no answer`)))
    request.on('error', reject)
    request.end(payload)
  })
}

/**
 * Open the kernel's channels, send one execute_request and collect what the kernel answers to it,
 * until its execute_reply and its status idle have both come (or the socket ends).
 */
export function execute(url: string, options: {ca: string; token: string; code: string}): Promise<Msg[]> {
  return new Promise((resolve, reject) => {
    const session = randomUUID()
    const msgId = randomUUID()
    const socket = new WebSocket(`${url}?session_id=${session}`, {
      ca: options.ca,
      headers: {Authorization: `token ${options.token}`},
      handshakeTimeout: 30_000,
    })
    const replies: Msg[] = []
    let replied = false
    let idle = false
    socket.on('open', () => {
      socket.send(
        JSON.stringify({
          header: {
            msg_id: msgId,
            username: 'hubctl-test',
            session,
            date: new Date().toISOString(),
            msg_type: 'execute_request',
            version: '5.3',
          },
          parent_header: {},
          metadata: {},
          content: {
            code: options.code,
            silent: false,
            store_history: true,
            user_expressions: {},
            allow_stdin: false,
            stop_on_error: true,
          },
          buffers: [],
          channel: 'shell',
        }),
      )
    })
    socket.on('message', (data, isBinary) => {
      if (isBinary) return
      const msg = JSON.parse(data.toString()) as Msg
      if (msg.parent_header?.msg_id !== msgId) return
      replies.push(msg)
      if (msg.header.msg_type === 'execute_reply') replied = true
      if (msg.header.msg_type === 'status' && msg.content.execution_state === 'idle') idle = true
      if (replied && idle) socket.close()
    })
    socket.on('unexpected-response', (_request, response) =>
      reject(new Error(`the websocket upgrade was answered ${response.statusCode}`)),
    )
    socket.on('error', reject)
    socket.on('close', () => resolve(replies))
  })
}

/**
 * A new python3 kernel in the user's server through `origin` (nginx), the code run in it; its
 * stdout. The kernel creation is retried a few times: a server just started may answer 503 once.
 */
export async function runInNewKernel(
  origin: string,
  options: {user: string; ca: string; token: string; code: string},
): Promise<string> {
  const base = `${origin}/user/${options.user}/api/kernels`
  let kernel: {id?: string} = {}
  for (let attempt = 0; attempt < 10 && !kernel.id; attempt++) {
    const created = await httpsJson(base, {
      method: 'POST',
      ca: options.ca,
      token: options.token,
      body: {name: 'python3'},
    })
    if (created.status === 201) kernel = created.body as {id: string}
    else await new Promise((resolve) => setTimeout(resolve, 1000))
  }
  if (!kernel.id) throw new Error(`no kernel could be created at ${base}`)
  const replies = await execute(`${base.replace(/^https:/, 'wss:')}/${kernel.id}/channels`, options)
  return replies
    .filter((m) => m.header.msg_type === 'stream')
    .map((m) => String(m.content.text))
    .join('')
}
