import {X509Certificate, createPrivateKey} from 'node:crypto'
import fs from 'node:fs/promises'

import {ensureDir, exists, symlinkAtomic, writeFileAtomic} from '../files/atomic.js'
import {errnoCode, usageError} from '../errors.js'
import {Layout} from '../config/layout.js'

export interface CertificateInfo {
  subject: string
  issuer: string
  serial: string
  domains: string[]
  notBefore: string
  notAfter: string
  fingerprint256: string
  selfSigned: boolean
}

export interface CertificatePair {
  /** The leaf first, then the chain, PEM. */
  fullchain: string
  privkey: string
}

const KEEP_ARCHIVES = 3

/**
 * The live certificate and key. They are always replaced together: each pair is written into its
 * own archive/<id>/ directory, then the `current` link is swapped atomically, so nginx and the hub
 * (which read the stable ssl/fullchain.pem and ssl/privkey.pem links) see the old pair or the new,
 * never a new key beside an old chain. The previous pair stays behind the `previous` link.
 */
export class CertStore {
  constructor(
    readonly layout: Layout,
    readonly clock: () => Date = () => new Date(),
  ) {}

  async install(pair: CertificatePair): Promise<CertificateInfo> {
    const info = inspectPair(pair)
    const id = `${this.clock()
      .toISOString()
      .replaceAll(/[-:]/g, '')
      .replace(/\.\d+Z$/, 'Z')}-${info.serial.slice(0, 16).toLowerCase()}`
    await ensureDir(this.layout.sslDir, 0o700)
    await ensureDir(this.layout.sslArchiveDir, 0o700)
    await ensureDir(this.layout.sslArchive(id), 0o700)
    try {
      await writeFileAtomic(this.layout.archivedPrivkey(id), pair.privkey, {mode: 0o600})
      await writeFileAtomic(this.layout.archivedFullchain(id), pair.fullchain, {mode: 0o600})
    } catch (error) {
      // A full disk half way: no key without its chain (nor an empty directory) stays in the archive.
      await fs.rm(this.layout.sslArchive(id), {recursive: true, force: true})
      throw error
    }
    const previous = await readLinkOrUndefined(this.layout.sslCurrentLink)
    await this.ensureStableLinks()
    await symlinkAtomic(this.layout.sslLinkTargets.archive(id), this.layout.sslCurrentLink)
    if (previous) await symlinkAtomic(previous, this.layout.sslPreviousLink)
    await this.prune()
    return info
  }

  /** The live pair, or undefined when none is installed. */
  async current(): Promise<CertificatePair | undefined> {
    try {
      const [fullchain, privkey] = await Promise.all([
        fs.readFile(this.layout.fullchain, 'utf8'),
        fs.readFile(this.layout.privkey, 'utf8'),
      ])
      return {fullchain, privkey}
    } catch (error) {
      if (errnoCode(error) === 'ENOENT') return undefined
      throw error
    }
  }

  async currentInfo(): Promise<CertificateInfo | undefined> {
    const pair = await this.current()
    return pair ? certificateInfo(pair.fullchain) : undefined
  }

  private async ensureStableLinks(): Promise<void> {
    for (const [file, target] of [
      [this.layout.fullchain, this.layout.sslLinkTargets.fullchain],
      [this.layout.privkey, this.layout.sslLinkTargets.privkey],
    ] as const) {
      if ((await readLinkOrUndefined(file)) !== target) {
        if (await exists(file)) await fs.rm(file)
        await symlinkAtomic(target, file)
      }
    }
  }

  /** Keep the current, the previous and a few older pairs. */
  private async prune(): Promise<void> {
    const keep = new Set(
      [await readLinkOrUndefined(this.layout.sslCurrentLink), await readLinkOrUndefined(this.layout.sslPreviousLink)]
        .filter(Boolean)
        .map((target) => String(target).split('/').pop()),
    )
    const ids = (await fs.readdir(this.layout.sslArchiveDir)).sort()
    const removable = ids.filter((id) => !keep.has(id))
    for (const id of removable.slice(0, Math.max(0, removable.length - (KEEP_ARCHIVES - keep.size)))) {
      await fs.rm(this.layout.sslArchive(id), {recursive: true, force: true})
    }
  }
}

async function readLinkOrUndefined(file: string): Promise<string | undefined> {
  try {
    return await fs.readlink(file)
  } catch (error) {
    if (errnoCode(error) === 'ENOENT' || errnoCode(error) === 'EINVAL') return undefined
    throw error
  }
}

/** The one X.509 reader: what hubctl needs of a certificate (the first in a chain). */
export function certificateInfo(pem: string): CertificateInfo {
  const cert = new X509Certificate(pem)
  const domains = (cert.subjectAltName ?? '')
    .split(/,\s*/)
    .filter((entry) => entry.startsWith('DNS:'))
    .map((entry) => entry.slice(4))
  return {
    subject: cert.subject,
    issuer: cert.issuer,
    serial: cert.serialNumber,
    domains,
    notBefore: new Date(cert.validFrom).toISOString(),
    notAfter: new Date(cert.validTo).toISOString(),
    fingerprint256: cert.fingerprint256,
    // Not checkIssued(): OpenSSL's issuer check also wants keyCertSign, which a self-signed leaf lacks.
    selfSigned: cert.subject === cert.issuer && cert.verify(cert.publicKey),
  }
}

/**
 * What an issued chain must be before it is installed (certbot checks the same): the leaf first,
 * matching the key hubctl made for it and naming every requested domain, then its issuer and the
 * rest of the chain as the CA sent it (RFC 8555 7.4.2), each certificate signed by the next; a leaf
 * alone would leave every client without the intermediate unable to verify it. The first problem,
 * or undefined.
 */
export function chainProblem(pair: CertificatePair, domains: readonly string[]): string | undefined {
  const pems = pair.fullchain.match(/-----BEGIN CERTIFICATE-----[\s\S]+?-----END CERTIFICATE-----/g) ?? []
  let certs: X509Certificate[]
  try {
    certs = pems.map((pem) => new X509Certificate(pem))
  } catch {
    return 'a certificate in the chain does not parse'
  }
  const [leaf] = certs
  if (!leaf) return 'it holds no PEM certificate'
  let matches = false
  try {
    matches = leaf.checkPrivateKey(createPrivateKey(pair.privkey))
  } catch {
    // An unreadable key matches nothing.
  }
  if (!matches) return 'the certificate does not match the key hubctl made for it'
  const covered = certificateInfo(leaf.toString()).domains
  const missing = domains.filter((domain) => !covered.includes(domain))
  if (missing.length > 0) return `the certificate does not cover ${missing.join(', ')}`
  if (certs.length === 1) return `the chain holds the certificate only, without its issuer (${oneLine(leaf.issuer)})`
  for (let i = 0; i + 1 < certs.length; i++) {
    const [cert, issuer] = [certs[i], certs[i + 1]]
    if (!cert.checkIssued(issuer) || !cert.verify(issuer.publicKey))
      return `certificate ${i + 1} of the chain (${oneLine(cert.subject)}) is not signed by the next (${oneLine(issuer.subject)})`
  }
  return undefined
}

function oneLine(name: string): string {
  return name.split('\n').join(', ')
}

/** Check that a certificate and key parse and belong together; return the certificate's info. */
export function inspectPair(
  pair: CertificatePair,
  labels = {cert: 'the certificate', key: 'the key'},
): CertificateInfo {
  let cert: X509Certificate
  try {
    cert = new X509Certificate(pair.fullchain)
  } catch {
    throw usageError(
      `${labels.cert} is not a PEM certificate`,
      'give the PEM file that starts with -----BEGIN CERTIFICATE----- (leaf first, then the chain)',
    )
  }
  let key
  try {
    key = createPrivateKey(pair.privkey)
  } catch {
    throw usageError(
      `${labels.key} is not an unencrypted PEM private key`,
      'give the PEM key without a passphrase (openssl pkey -in key.pem -out key-plain.pem)',
    )
  }
  if (!cert.checkPrivateKey(key)) {
    throw usageError(`${labels.cert} and ${labels.key} do not match`, 'give the key the certificate was issued for')
  }
  return certificateInfo(pair.fullchain)
}
