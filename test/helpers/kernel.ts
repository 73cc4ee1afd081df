import {randomUUID} from 'node:crypto'
import WebSocket from 'ws'

/*
 * A kernel over its websocket (Jupyter messaging protocol 5.3, JSON frames), as JupyterLab talks
 * to it: one execute_request, the replies to it. Who authenticates (a token header, or a browser's
 * cookies and Origin) is the caller's `headers`.
 */

export interface KernelMsg {
  header: {msg_id: string; msg_type: string}
  parent_header: {msg_id?: string}
  channel?: string
  content: Record<string, unknown>
}

/**
 * Open the kernel's channels, send one execute_request and collect what the kernel answers to it,
 * until its execute_reply and its status idle have both come (or the socket ends).
 */
export function execute(
  url: string,
  options: {ca?: string; headers: Record<string, string>; code: string},
): Promise<KernelMsg[]> {
  return new Promise((resolve, reject) => {
    const session = randomUUID()
    const msgId = randomUUID()
    const socket = new WebSocket(`${url}?session_id=${session}`, {
      ca: options.ca,
      headers: options.headers,
      handshakeTimeout: 30_000,
    })
    const replies: KernelMsg[] = []
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
      const msg = JSON.parse(data.toString()) as KernelMsg
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

/** The text a kernel's replies printed to stdout. */
export function stdoutOf(replies: KernelMsg[]): string {
  return replies
    .filter((m) => m.header.msg_type === 'stream' && m.content.name === 'stdout')
    .map((m) => String(m.content.text))
    .join('')
}
