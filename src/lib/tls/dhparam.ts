import {availableParallelism} from 'node:os'

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

/** What a search needs from node:crypto; a parameter so that the function can run as worker-thread source. */
export interface PrimeCrypto {
  randomBytes(size: number): Buffer
  checkPrimeSync(candidate: bigint): boolean
  createPublicKey: typeof import('node:crypto').createPublicKey
  publicEncrypt: typeof import('node:crypto').publicEncrypt
  constants: {RSA_NO_PADDING: number}
}

/**
 * Search for a safe prime p = 2q + 1 of `bits` bits with p ≡ 23 (mod 24), so that the generator
 * 2 has order q: what `openssl dhparam` makes, found with less work.
 *
 * - A sieve over a window of 2^20 candidates p = base + 24k (base random) strikes every k where
 *   p or q has a prime factor below 2^24 (openssl's own sieve stops at 17863): about a third of
 *   the candidates openssl tests with a modular exponentiation are left.
 * - Each one left gets one Fermat test to base 2, first of q, then of p, done by OpenSSL as a raw
 *   RSA public-key operation (modulus n, exponent n - 1): ~2.7 ms for 2048 bits, where
 *   crypto.checkPrimeSync runs 64 Miller-Rabin rounds on every prime (~160 ms), and q is prime
 *   for about one candidate in fifty. OpenSSL refuses such exponents above 3072 bits: there the
 *   test is checkPrimeSync.
 * - The pair that passes both is confirmed by checkPrimeSync (64 rounds each, as openssl dhparam).
 *
 * Self-contained (no imports, no closures): it is also the source of each worker thread.
 * Returns p as hex; runs until it finds one (a worker is stopped by terminate()).
 */
export function searchSafePrime(bits: number, crypto: PrimeCrypto): string {
  const BOUND = bits >= 2048 ? 1 << 24 : 1 << 20
  const WINDOW = 1 << 20
  // Odd primes from 5 up to BOUND, paired so that one BigInt remainder serves two of them.
  const composite = new Uint8Array(BOUND >> 1)
  for (let i = 3; i * i < BOUND; i += 2)
    if (!composite[i >> 1]) for (let j = (i * i) >> 1; j < BOUND >> 1; j += i) composite[j] = 1
  let count = 0
  for (let i = 5; i < BOUND; i += 2) if (!composite[i >> 1]) count++
  const primes = new Float64Array(count)
  const inverse24 = new Float64Array(count)
  count = 0
  for (let i = 5; i < BOUND; i += 2) {
    if (composite[i >> 1]) continue
    primes[count] = i
    // 24^-1 mod i: every unit mod 24 is its own inverse, so (24 - i mod 24)·i ≡ -1 (mod 24).
    inverse24[count++] = ((24 - (i % 24)) * i + 1) / 24
  }
  const pairs = Array.from({length: Math.ceil(count / 2)}, (_, i) => BigInt(primes[2 * i] * (primes[2 * i + 1] ?? 1)))

  const hex = (value: bigint): string => {
    const digits = value.toString(16)
    return digits.length % 2 ? `0${digits}` : digits
  }
  let fermatByRsa = bits <= 3072
  const probablyPrime = (n: bigint): boolean => {
    if (fermatByRsa) {
      try {
        const key = crypto.createPublicKey({
          key: {
            kty: 'RSA',
            n: Buffer.from(hex(n), 'hex').toString('base64url'),
            e: Buffer.from(hex(n - 1n), 'hex').toString('base64url'),
          },
          format: 'jwk',
        })
        const length = hex(n).length / 2
        const two = Buffer.alloc(length)
        two[length - 1] = 2
        const result = crypto.publicEncrypt({key, padding: crypto.constants.RSA_NO_PADDING}, two)
        return result[length - 1] === 1 && result.subarray(0, length - 1).every((byte) => byte === 0)
      } catch {
        fermatByRsa = false
      }
    }
    return crypto.checkPrimeSync(n)
  }

  const sieve = new Uint8Array(WINDOW)
  for (;;) {
    const random = crypto.randomBytes(Math.ceil(bits / 8))
    let base = BigInt(`0x${random.toString('hex')}`) >> BigInt(random.length * 8 - bits)
    base |= 3n << BigInt(bits - 2)
    base += 23n - (base % 24n)
    sieve.fill(0)
    for (let pair = 0; pair < pairs.length; pair++) {
      const remainder = Number(base % pairs[pair])
      for (let index = 2 * pair; index < 2 * pair + 2 && index < count; index++) {
        const prime = primes[index]
        const r = remainder % prime
        // p = base + 24k is divisible by prime when 24k ≡ -r, q = (p - 1) / 2 when 24k ≡ 1 - r.
        for (let k = (((prime - r) % prime) * inverse24[index]) % prime; k < WINDOW; k += prime) sieve[k] = 1
        for (let k = (((prime + 1 - r) % prime) * inverse24[index]) % prime; k < WINDOW; k += prime) sieve[k] = 1
      }
    }
    for (let k = 0; k < WINDOW; k++) {
      if (sieve[k]) continue
      const p = base + 24n * BigInt(k)
      if (p >> BigInt(bits) !== 0n) break
      const q = p >> 1n
      if (probablyPrime(q) && probablyPrime(p) && crypto.checkPrimeSync(q) && crypto.checkPrimeSync(p))
        return p.toString(16)
    }
  }
}

const WORKER_SOURCE = `
const {parentPort, workerData} = require('node:worker_threads')
const crypto = require('node:crypto')
// When run from source through tsx, esbuild's keepNames wraps inner functions in __name().
const __name = (fn) => fn
const search = ${searchSafePrime.toString()}
parentPort.postMessage(search(workerData.bits, crypto))
`

/**
 * Make fresh DH parameters in PEM. One worker thread per core (at most 4) searches on its own
 * (searchSafePrime); the first prime found wins and the other workers are terminated at once —
 * their search is JavaScript between short OpenSSL calls, so they stop within milliseconds — and
 * awaited, so that no thread is left when this returns. init's other steps go on meanwhile.
 */
export async function generateDhparam(
  bits: number,
  options: {
    workers?: number
    signal?: AbortSignal
    onProgress?: (progress: DhparamProgress) => void
    progressIntervalMs?: number
  } = {},
): Promise<string> {
  if (!Number.isInteger(bits) || bits < 512)
    throw new RangeError(`DH parameters of ${bits} bits are not made (at least 512)`)
  const {Worker} = await import('node:worker_threads')
  const count = Math.max(1, options.workers ?? Math.min(availableParallelism(), 4))
  const started = Date.now()
  const workers = Array.from({length: count}, () => new Worker(WORKER_SOURCE, {eval: true, workerData: {bits}}))
  const timer = options.onProgress
    ? setInterval(
        () => options.onProgress?.({workers: count, elapsedMs: Date.now() - started}),
        options.progressIntervalMs ?? 1000,
      )
    : undefined
  let onAbort: (() => void) | undefined
  try {
    const hex = await new Promise<string>((resolve, reject) => {
      if (options.signal?.aborted) reject(new Error('DH parameter generation was cancelled'))
      onAbort = () => reject(new Error('DH parameter generation was cancelled'))
      options.signal?.addEventListener('abort', onAbort, {once: true})
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
    if (onAbort) options.signal?.removeEventListener('abort', onAbort)
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
