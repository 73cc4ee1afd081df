import type {Reporter} from './init.js'

/**
 * Steps as a live list on a terminal (spinner line rewritten in place), plain lines otherwise.
 * Writes to stderr so that stdout stays for results.
 */
export function streamReporter(stream: NodeJS.WriteStream, titles: Record<string, string>): Reporter {
  const tty = Boolean(stream.isTTY)
  const started = new Map<string, number>()
  const seconds = (step: string) => ((Date.now() - (started.get(step) ?? Date.now())) / 1000).toFixed(1)
  let live = false
  const clear = () => {
    if (tty && live) stream.write('\r\u001B[2K')
    live = false
  }
  return {
    start(step) {
      started.set(step, Date.now())
      clear()
      if (tty) {
        stream.write(`… ${titles[step] ?? step}`)
        live = true
      } else {
        stream.write(`${titles[step] ?? step}: started\n`)
      }
    },
    progress(step, text) {
      if (tty) {
        clear()
        stream.write(`… ${titles[step] ?? step}: ${text}`)
        live = true
      }
    },
    done(step, detail) {
      clear()
      stream.write(`${tty ? '✔' : 'ok'} ${titles[step] ?? step}: ${detail} (${seconds(step)}s)\n`)
    },
    warn(text) {
      clear()
      stream.write(`warning: ${text}\n`)
    },
  }
}
