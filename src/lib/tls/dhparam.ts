import {cpus} from 'node:os'

/** RFC 7919 ffdhe2048, as Mozilla's server-side TLS guide ships it. `openssl dhparam -text` names it "GROUP: ffdhe2048". */
export const FFDHE2048_PEM = `-----BEGIN DH PARAMETERS-----
MIIBCAKCAQEA//////////+t+FRYortKmq/cViAnPTzx2LnFg84tNpWp4TZBFGQz
+8yTnc4kmz75fS/jY2MMddj2gbICrsRhetPfHtXV/WVhJDP1H18GbtCFY2VVPe0a
87VXE15/V8k1mE8McODmi3fipona8+/och3xWKE2rec1MKzKT0g6eXq8CrGCsyT7
YdEIqUuyyOP7uWrat2DX9GgdT0Kj3jlN9K5W7edjcrsZCwenyO4KbXCeAvzhzffi
7MA0BM0oNC9hkXL+nOmFg/+OTxIy7vKBg8P+OxtMb61zO7X8vC7CIAXFjvGDfRaD
ssbzSibBsu/6iGtCOGEoXJf//////////wIBAg==
-----END DH PARAMETERS-----
`

export const DHPARAM_MODES = ['generate', 'ffdhe2048'] as const
export type DhparamMode = (typeof DHPARAM_MODES)[number]
export const DHPARAM_BITS = [2048, 3072, 4096] as const

export interface DhparamProgress {
  workers: number
  elapsedMs: number
}

/**
 * The search one worker runs: a safe prime p = 2q + 1 with p ≡ 23 (mod 24), so that the
 * generator 2 has order q, exactly what `openssl dhparam` makes. Runs as worker-thread source.
 */
const WORKER_SOURCE = `
const {parentPort, workerData} = require('node:worker_threads')
const {generatePrimeSync} = require('node:crypto')
const p = generatePrimeSync(workerData.bits, {safe: true, add: 24n, rem: 23n, bigint: true})
parentPort.postMessage(p.toString(16))
`

/**
 * Make fresh DH parameters in PEM. Several worker threads search in parallel (the first prime
 * found wins, the others are stopped), so init's other steps go on meanwhile.
 */
export async function generateDhparam(
  bits: number,
  options: {workers?: number; signal?: AbortSignal; onProgress?: (progress: DhparamProgress) => void; progressIntervalMs?: number} = {},
): Promise<string> {
  const {Worker} = await import('node:worker_threads')
  const count = Math.max(1, options.workers ?? Math.min(cpus().length, 4))
  const started = Date.now()
  const workers = Array.from({length: count}, () => new Worker(WORKER_SOURCE, {eval: true, workerData: {bits}}))
  const timer = options.onProgress
    ? setInterval(() => options.onProgress?.({workers: count, elapsedMs: Date.now() - started}), options.progressIntervalMs ?? 1000)
    : undefined
  try {
    const hex = await new Promise<string>((resolve, reject) => {
      if (options.signal?.aborted) reject(new Error('DH parameter generation was cancelled'))
      options.signal?.addEventListener('abort', () => reject(new Error('DH parameter generation was cancelled')), {once: true})
      let failed = 0
      for (const worker of workers) {
        worker.once('message', (message: string) => resolve(message))
        worker.once('error', (error) => {
          failed += 1
          if (failed === count) reject(error)
        })
      }
    })
    return dhparamPem(BigInt(`0x${hex}`), 2n)
  } finally {
    if (timer) clearInterval(timer)
    await Promise.all(workers.map((worker) => worker.terminate()))
  }
}

/** PEM of PKCS#3 DHParameter ::= SEQUENCE { prime INTEGER, base INTEGER }. */
export function dhparamPem(prime: bigint, generator: bigint): string {
  const body = Buffer.concat([derInteger(prime), derInteger(generator)])
  const der = Buffer.concat([Buffer.from([0x30]), derLength(body.length), body])
  const lines = der.toString('base64').match(/.{1,64}/g) ?? []
  return `-----BEGIN DH PARAMETERS-----\n${lines.join('\n')}\n-----END DH PARAMETERS-----\n`
}

function derInteger(value: bigint): Buffer {
  let hex = value.toString(16)
  if (hex.length % 2) hex = `0${hex}`
  let bytes = Buffer.from(hex, 'hex')
  if (bytes[0] & 0x80) bytes = Buffer.concat([Buffer.from([0]), bytes])
  return Buffer.concat([Buffer.from([0x02]), derLength(bytes.length), bytes])
}

function derLength(length: number): Buffer {
  if (length < 0x80) return Buffer.from([length])
  const bytes: number[] = []
  for (let n = length; n > 0; n >>= 8) bytes.unshift(n & 0xff)
  return Buffer.from([0x80 | bytes.length, ...bytes])
}

/** Parse a PEM DHParameter and return the prime's size in bits, or undefined when it is not one. */
export function dhparamBits(pem: string): number | undefined {
  const match = /^-----BEGIN DH PARAMETERS-----\n([A-Za-z0-9+/=\n]+)\n-----END DH PARAMETERS-----\n?$/.exec(pem)
  if (!match) return undefined
  const der = Buffer.from(match[1].replaceAll('\n', ''), 'base64')
  try {
    let offset = 0
    const readHeader = (tag: number): number => {
      if (der[offset++] !== tag) throw new Error('tag')
      let length = der[offset++]
      if (length & 0x80) {
        const n = length & 0x7f
        length = 0
        for (let i = 0; i < n; i++) length = (length << 8) | der[offset++]
      }
      return length
    }
    const seqLength = readHeader(0x30)
    if (offset + seqLength !== der.length) return undefined
    const primeLength = readHeader(0x02)
    const prime = der.subarray(offset, offset + primeLength)
    offset += primeLength
    const genLength = readHeader(0x02)
    if (offset + genLength !== der.length) return undefined
    const hex = prime.toString('hex')
    if (!hex) return undefined
    return BigInt(`0x${hex}`).toString(2).length
  } catch {
    return undefined
  }
}
