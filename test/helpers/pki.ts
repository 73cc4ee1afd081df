import {generateKeyPairSync, randomBytes} from 'node:crypto'
import forge from 'node-forge'

/**
 * A small CA for unit tests: a root, intermediates and leaves signed by them (RSA-2048, made by
 * Node's crypto, signed by node-forge), with the validity a test asks for.
 */
export interface Issued {
  cert: string
  key: string
}

export interface IssueOptions {
  /** The DNS names of a leaf (subjectAltName); its commonName is the first. */
  domains?: string[]
  /** The common name of a CA. */
  name?: string
  /** The signer; none makes a self-signed root. */
  issuer?: Issued
  notBefore?: Date
  days?: number
}

export function issue(options: IssueOptions): Issued {
  const {privateKey, publicKey} = generateKeyPairSync('rsa', {
    modulusLength: 2048,
    publicKeyEncoding: {type: 'spki', format: 'pem'},
    privateKeyEncoding: {type: 'pkcs8', format: 'pem'},
  })
  const cert = forge.pki.createCertificate()
  cert.publicKey = forge.pki.publicKeyFromPem(publicKey)
  const serial = randomBytes(16)
  serial[0] &= 0x7f
  cert.serialNumber = serial.toString('hex')
  const notBefore = options.notBefore ?? new Date(Date.now() - 60_000)
  cert.validity.notBefore = notBefore
  cert.validity.notAfter = new Date(notBefore.getTime() + (options.days ?? 90) * 86_400_000)
  const isCa = options.domains === undefined
  const subject = [{name: 'commonName', value: isCa ? (options.name ?? 'hubctl test CA') : options.domains![0]}]
  cert.setSubject(subject)
  cert.setIssuer(options.issuer ? forge.pki.certificateFromPem(options.issuer.cert).subject.attributes : subject)
  cert.setExtensions(
    isCa
      ? [
          {name: 'basicConstraints', cA: true, critical: true},
          {name: 'keyUsage', keyCertSign: true, cRLSign: true, critical: true},
          {name: 'subjectKeyIdentifier'},
        ]
      : [
          {name: 'basicConstraints', cA: false, critical: true},
          {name: 'keyUsage', digitalSignature: true, keyEncipherment: true, critical: true},
          {name: 'extKeyUsage', serverAuth: true},
          {name: 'subjectAltName', altNames: options.domains!.map((value) => ({type: 2, value}))},
        ],
  )
  const signer = options.issuer ? options.issuer.key : privateKey
  cert.sign(forge.pki.privateKeyFromPem(signer) as forge.pki.rsa.PrivateKey, forge.md.sha256.create())
  return {cert: forge.pki.certificateToPem(cert), key: privateKey}
}

/** A root, an intermediate it signs, and a leaf the intermediate signs for `domains`. */
export function chainFor(
  domains: string[],
  options: {notBefore?: Date; days?: number} = {},
): {root: Issued; intermediate: Issued; leaf: Issued} {
  const root = issue({name: 'hubctl test root', days: 3650})
  const intermediate = issue({name: 'hubctl test intermediate', issuer: root, days: 1825})
  const leaf = issue({domains, issuer: intermediate, ...options})
  return {root, intermediate, leaf}
}
