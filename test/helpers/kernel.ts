import {randomUUID} from 'node:crypto'
import https from 'node:https'
import WebSocket from 'ws'

/*
 * A kernel over its websocket (Jupyter messaging protocol 5.3, JSON frames), as JupyterLab talks
 * to it: execute_requests, the replies to each. Who authenticates (a token header, or a browser's
 * cookies and Origin) is the caller's `headers`.
 */

export interface KernelMsg {
  header: {msg_id: string; msg_type: string}
  parent_header: {msg_id?: string}
  channel?: string
  content: Record<string, unknown>
}

/** A kernel's channels websocket held open: execute on it as often as needed, see whether it closed. */
export interface Channel {
  execute(code: string): Promise<KernelMsg[]>
  readonly closed: boolean
  close(): void
}

/**
 * Open the kernel's channels (`session` as JupyterLab's client id, kept across reconnects).
 * Resolves once open; rejects when the upgrade is refused or the connection fails.
 */
export function openChannel(
  url: string,
  options: {ca?: string; headers: Record<string, string>; session?: string},
): Promise<Channel> {
  const session = options.session ?? randomUUID()
  return new Promise((resolve, reject) => {
    const socket = new WebSocket(`${url}?session_id=${session}`, {
      ca: options.ca,
      headers: options.headers,
      // jupyter_server answers the upgrade only once the kernel is ready, and a browser waits for it
      // as long as that takes: 15 kernels starting at once on a loaded 2-core machine took over 30 s
      // (CI: "Opening handshake has timed out" in the lecture test). Not a timed assertion: a bound.
      handshakeTimeout: 180_000,
    })
    let closed = false
    const waiting = new Set<() => void>()
    socket.on('close', () => {
      closed = true
      for (const done of waiting) done()
    })
    socket.on('unexpected-response', (_request, response) =>
      reject(new Error(`the websocket upgrade was answered ${response.statusCode}`)),
    )
    socket.on('error', reject)
    socket.on('open', () =>
      resolve({
        get closed() {
          return closed
        },
        close: () => socket.close(),
        // Send one execute_request and collect what the kernel answers to it, until its
        // execute_reply and its status idle have both come (or the socket ends).
        execute: (code) =>
          new Promise((resolveExecute, rejectExecute) => {
            if (closed) return rejectExecute(new Error('the websocket is closed'))
            const msgId = randomUUID()
            const replies: KernelMsg[] = []
            let replied = false
            let idle = false
            const finish = () => {
              socket.off('message', onMessage)
              waiting.delete(finish)
              resolveExecute(replies)
            }
            const onMessage = (data: WebSocket.RawData, isBinary: boolean) => {
              if (isBinary) return
              const msg = JSON.parse(data.toString()) as KernelMsg
              if (msg.parent_header?.msg_id !== msgId) return
              replies.push(msg)
              if (msg.header.msg_type === 'execute_reply') replied = true
              if (msg.header.msg_type === 'status' && msg.content.execution_state === 'idle') idle = true
              if (replied && idle) finish()
            }
            socket.on('message', onMessage)
            waiting.add(finish)
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
                  code,
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
          }),
      }),
    )
  })
}

/** Open the kernel's channels, run one piece of code, close: what the kernel answered to it. */
export async function execute(
  url: string,
  options: {ca?: string; headers: Record<string, string>; code: string},
): Promise<KernelMsg[]> {
  const channel = await openChannel(url, options)
  try {
    return await channel.execute(options.code)
  } finally {
    channel.close()
  }
}

/** The text a kernel's replies printed to stdout. */
export function stdoutOf(replies: KernelMsg[]): string {
  return replies
    .filter((m) => m.header.msg_type === 'stream' && m.content.name === 'stdout')
    .map((m) => String(m.content.text))
    .join('')
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
 * A new python3 kernel in the user's server through `origin` (nginx), the code run in it; its
 * stdout. Creation is tried again only on nginx's 502/503 (a server that has just started, its
 * route not yet answering): any other answer fails at once, with what it was.
 */
export async function runInNewKernel(
  origin: string,
  options: {user: string; ca: string; token: string; code: string},
): Promise<string> {
  const base = `${origin}/user/${options.user}/api/kernels`
  let created = {status: 0, body: undefined as unknown}
  for (let attempt = 0; attempt < 10; attempt++) {
    created = await httpsJson(base, {method: 'POST', ca: options.ca, token: options.token, body: {name: 'python3'}})
    if (created.status !== 502 && created.status !== 503) break
    await new Promise((resolve) => setTimeout(resolve, 1000))
  }
  if (created.status !== 201)
    throw new Error(`creating a kernel at ${base} was answered ${created.status}: ${JSON.stringify(created.body)}`)
  const kernel = created.body as {id: string}
  const replies = await execute(`${base.replace(/^https:/, 'wss:')}/${kernel.id}/channels`, {
    ca: options.ca,
    headers: {Authorization: `token ${options.token}`},
    code: options.code,
  })
  return stdoutOf(replies)
}
