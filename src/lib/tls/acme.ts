import https from 'node:https'
import {createRequire} from 'node:module'

import {ensureDir, readIfExists, writeFileAtomic} from '../files/atomic.js'
import {CertStore, chainProblem} from './certstore.js'
import {ExitCode, HubctlError, acmeError, messageOf, usageError} from '../errors.js'
import {Layout} from '../config/layout.js'
import {KeyType} from '../config/settings.js'
import {AcmeDeps, AcmeDirectory, EAB_HMAC_ENV, ObtainRequest, ObtainResult} from './acme-settings.js'
import {acmeAgent, connectionError, fetchDirectory, originOf, problemDetail, rateLimitError} from './acme-http.js'
import {Responder, listen, selfCheck, takenPortResponder} from './http01.js'
import {DnsSettings} from '../config/settings.js'
import {challengeRecordName, checkOrderNames, dnsPublisher, propagationServers, txtQuery, waitForTxt} from './dns01.js'

/**
 * Certificates from an ACME certificate authority (Let's Encrypt by default), http-01 challenge.
 *
 * Who answers the challenge: when the HTTP port is free, hubctl itself (a tiny HTTP server on that
 * port, for the order's duration, e.g. during `hubctl init` before nginx is configured); when it is
 * taken (nginx runs the hub's site), a token file in the webroot nginx serves
 * /.well-known/acme-challenge/ from. Either way hubctl fetches the token over HTTP itself before
 * telling the CA, so a DNS, firewall or wrong-server problem is named here, not by the CA.
 *
 * The new key and chain go to CertStore.install, which swaps both at once; a failure on the way
 * never touches the live files. acme-client is imported only when an order is placed.
 */

// ---------------------------------------------------------------------------------------------
// Keys

/** The ACME account key: made once (ECDSA P-256, 0600), then reused. Never the certificate's key. */
export async function accountKey(
  layout: Layout,
  create: () => Promise<Buffer>,
): Promise<{pem: string; created: boolean}> {
  const existing = await readIfExists(layout.acmeAccountKey)
  if (existing !== undefined) return {pem: existing, created: false}
  await ensureDir(layout.sslDir, 0o700)
  const pem = (await create()).toString()
  await writeFileAtomic(layout.acmeAccountKey, pem, {mode: 0o600})
  return {pem, created: true}
}

type AcmeModule = typeof import('acme-client')

async function certificateKey(acme: AcmeModule, keyType: KeyType): Promise<Buffer> {
  switch (keyType) {
    case 'ecdsa-p256':
      return acme.crypto.createPrivateEcdsaKey('P-256')
    case 'ecdsa-p384':
      return acme.crypto.createPrivateEcdsaKey('P-384')
    case 'rsa2048':
      return acme.crypto.createPrivateRsaKey(2048)
    case 'rsa4096':
      return acme.crypto.createPrivateRsaKey(4096)
  }
}

// ---------------------------------------------------------------------------------------------
// Bounding acme-client's retries

interface Recorder {
  rateLimit?: {url: string; retryAfter?: string; detail?: string}
  network?: {url: string; error: unknown}
}

let recorder: Recorder = {}
let configured = false

/**
 * acme-client retries through a module-wide axios instance: up to 5 times on a connection error
 * or 5xx with growing delays, and on 429 it sleeps whatever Retry-After says, which can be hours.
 * Here: one retry after 2 s for connection errors and 5xx, none on 429 (reported with Retry-After),
 * a timeout on every request, and our https.Agent (with --acme-ca-cert) for TLS.
 */
function configureAxios(acme: AcmeModule, agent: https.Agent, timeoutMs: number): void {
  const instance = acme.axios as unknown as {
    defaults: {
      acmeSettings: {retryMaxAttempts: number; retryDefaultDelay: number}
      httpsAgent?: https.Agent
      timeout?: number
      adapter?: unknown
    }
  }
  instance.defaults.acmeSettings.retryMaxAttempts = 1
  instance.defaults.acmeSettings.retryDefaultDelay = 2
  instance.defaults.httpsAgent = agent
  instance.defaults.timeout = timeoutMs
  if (configured) return
  configured = true
  // The adapter acme-client's axios would use, wrapped: we see every failure before its retry logic.
  const requireFromAcme = createRequire(createRequire(import.meta.url).resolve('acme-client'))
  const axios = requireFromAcme('axios') as {getAdapter?: (name: string) => (config: unknown) => Promise<unknown>}
  if (typeof axios.getAdapter !== 'function') return // an axios before 1.6: its own retries stay, bounded above
  const httpAdapter = axios.getAdapter('http')
  instance.defaults.adapter = async (config: {url?: string}) => {
    try {
      return await httpAdapter(config)
    } catch (error) {
      const response = (error as {response?: {status: number; headers: Record<string, string>; data?: unknown}})
        .response
      if (response?.status === 429) {
        recorder.rateLimit = {
          url: config.url ?? '',
          retryAfter: response.headers['retry-after'],
          detail: problemDetail(response.data),
        }
        // Not retryable for acme-client: it hands the 429 back and fails with the CA's problem text.
        ;(error as {code?: string}).code = 'ECONNABORTED'
      } else if (!response) {
        recorder.network = {url: config.url ?? '', error}
      }
      throw error
    }
  }
}

function mapAcmeError(error: unknown, directoryUrl: string): HubctlError {
  if (error instanceof HubctlError) return error
  if (recorder.rateLimit)
    return rateLimitError(
      recorder.rateLimit.url || directoryUrl,
      recorder.rateLimit.retryAfter,
      recorder.rateLimit.detail,
    )
  if (recorder.network) return connectionError(recorder.network.url || directoryUrl, recorder.network.error)
  const message = messageOf(error) ?? String(error)
  if (/anti-replay nonce|badNonce/i.test(message)) {
    // acme-client resends a request with a fresh nonce a few times (bounded); the CA refused each.
    return acmeError(
      `the ACME server ${originOf(directoryUrl)} refused every fresh nonce hubctl sent (badNonce: ${message})`,
      "the live certificate is untouched. This is the CA's side (or a proxy between hubctl and the CA replaying requests): run again later, and check --acme-directory",
      error,
    )
  }
  return acmeError(
    `the ACME server ${originOf(directoryUrl)} refused: ${message}`,
    "read the reason above; the live certificate is untouched. Check the domains, the contact e-mail and the server's policy, then run again",
    error,
  )
}

const DEFAULT_BACKOFF = {attempts: 8, min: 1000, max: 8000}

/**
 * Wait until the CA has validated one authorization: bounded checks with growing delays. Not
 * acme-client's waitForValidStatus, which retries every failure with the same delays, so a CA that
 * went away mid-order kept hubctl waiting for about a minute: here a CA that stops answering (after
 * the single transport retry configured above) ends the wait at once.
 */
async function waitForAuthorization(
  client: Connected['client'],
  order: Awaited<ReturnType<Connected['client']['createOrder']>>,
  authzUrl: string,
  backoff: {attempts: number; min: number; max: number},
): Promise<void> {
  let delay = backoff.min
  for (let check = 1; ; check++) {
    const [authz] = await client.getAuthorizations({...order, authorizations: [authzUrl]})
    if (authz?.status === 'valid') return
    if (authz?.status !== 'pending') {
      const detail = authz?.challenges
        .map((challenge) => (challenge as {error?: {detail?: string}}).error?.detail)
        .find(Boolean)
      throw new Error(detail ?? `the authorization is ${authz?.status ?? 'missing'}`)
    }
    if (check >= backoff.attempts)
      throw new Error(`the CA had not validated it after ${check} checks; it may be slow: run again later`)
    await new Promise((resolve) => setTimeout(resolve, delay))
    delay = Math.min(delay * 2, backoff.max)
  }
}

/**
 * The CA could not fetch the token that hubctl's own check fetched a moment before: name the URL
 * the CA tried (from its error) and the likely cause, a port other than hubctl's first.
 */
export function validationError(domain: string, answeredAt: string, httpPort: number, detail: string): HubctlError {
  const triedUrl = /https?:\/\/[^\s"'<>]+\/\.well-known\/acme-challenge\/[A-Za-z0-9_-]+/.exec(detail)?.[0]
  let triedPort: number | undefined
  if (triedUrl) {
    try {
      const parsed = new URL(triedUrl)
      triedPort = Number(parsed.port || (parsed.protocol === 'https:' ? 443 : 80))
    } catch {
      // not a URL after all: no port to compare
    }
  }
  const tried = triedUrl ? triedUrl.replace(/[A-Za-z0-9_-]+$/, '<token>') : undefined
  let cause: string
  let fix: string
  if (triedPort !== undefined && triedPort !== httpPort) {
    cause = `the CA connects to port ${triedPort}, but hubctl answered on port ${httpPort} (${answeredAt})`
    fix = `give --http-port ${triedPort} (Let's Encrypt always uses 80), or forward port ${triedPort} to ${httpPort}, then run again`
  } else if (/connection refused|ECONNREFUSED|no route to host|network is unreachable/i.test(detail)) {
    cause = `nothing answered the CA there although hubctl answers ${answeredAt}: the name resolves, for the CA, to another address than this machine's, or a firewall or NAT rejects port ${httpPort}`
    fix = `point the domain's DNS (A and AAAA records) at this machine and open port ${httpPort} to the internet, then run again`
  } else if (/timeout|timed out|deadline exceeded/i.test(detail)) {
    cause = `the CA's connection timed out: a firewall probably drops port ${httpPort}, or the DNS points at a machine that does not answer`
    fix = `open port ${httpPort} to the internet and check the domain's DNS, then run again`
  } else {
    cause = `the CA got something other than the token hubctl serves at ${answeredAt}: the name may resolve, for the CA, to another machine (check AAAA records too), or a proxy or CDN in front answers instead`
    fix = 'make the domain resolve to this machine with nothing in front of its HTTP port, then run again'
  }
  return new HubctlError(
    `the ACME server could not validate ${domain} over http-01${tried ? ` at ${tried}` : ''} (${detail}); likely cause: ${cause}`,
    {exitCode: ExitCode.ACME, fix},
  )
}

/**
 * One authorization through dns-01: the TXT record published (nsupdate or the hook), looked up
 * until it appears, then the CA asked; the record removed afterwards, on failure too.
 */
async function answerDns01(
  client: Connected['client'],
  order: Awaited<ReturnType<Connected['client']['createOrder']>>,
  authz: Awaited<ReturnType<Connected['client']['getAuthorizations']>>[number],
  dns: DnsSettings,
  deps: AcmeDeps,
  log: (line: string) => void,
  notes: string[],
): Promise<void> {
  const identifier = `${authz.wildcard ? '*.' : ''}${authz.identifier.value}`
  const challenge = authz.challenges.find((c) => c.type === 'dns-01')
  if (!challenge)
    throw acmeError(
      `the ACME server offers no dns-01 challenge for ${identifier}`,
      'use a CA that supports dns-01, or drop --dns (http-01; no wildcard names then)',
    )
  const value = await client.getChallengeKeyAuthorization(challenge)
  const name = challengeRecordName(authz.identifier.value)
  if (!deps.runner) throw new HubctlError('DNS-01 needs a runner (a bug)', {exitCode: ExitCode.INTERNAL})
  const publisher = dnsPublisher(dns, deps.runner)
  log(`${identifier}: adding the TXT record ${name} (${publisher.label})`)
  await publisher.add(name, value)
  let failed = false
  try {
    const servers = await propagationServers(dns, name)
    const rounds = await waitForTxt({
      name,
      value,
      servers,
      query: deps.txtQuery ?? txtQuery,
      timeoutMs: dns.waitSeconds * 1000,
      intervalMs: deps.dnsIntervalMs,
    })
    log(
      `${identifier}: ${name} answers at ${servers.join(', ')} (after ${rounds} lookup${rounds === 1 ? '' : 's'}); asking the CA to validate`,
    )
    await client.completeChallenge(challenge)
    try {
      await waitForAuthorization(client, order, authz.url, deps.backoff ?? DEFAULT_BACKOFF)
    } catch (error) {
      if (recorder.rateLimit || recorder.network) throw error
      throw acmeError(
        `the ACME server could not validate ${identifier} over dns-01 (${messageOf(error)}), although ${name} answered the value at ${servers.join(', ')}`,
        'the CA may ask other servers than those: check every authoritative server of the zone has the record (secondaries that lag, a split view), then run again; the live certificate is untouched',
      )
    }
  } catch (error) {
    failed = true
    throw error
  } finally {
    try {
      await publisher.remove(name, value)
      log(`${identifier}: removed the TXT record ${name}`)
    } catch (error) {
      const note = `the TXT record ${name} (value ${value}) could not be removed: ${messageOf(error)}; remove it by hand`
      log(note)
      if (!failed) notes.push(note)
    }
  }
}

// ---------------------------------------------------------------------------------------------
// The order

/**
 * Account (key reused), order (with `replaces` for ARI), the http-01 challenge of every domain,
 * a fresh certificate key and CSR, finalize, download, install.
 */
interface Connected {
  acme: AcmeModule
  client: InstanceType<AcmeModule['Client']>
  directory: AcmeDirectory
}

/** The directory (a CA that does not answer is named before anything is made), then acme-client with bounded retries. */
async function connect(
  request: Pick<ObtainRequest, 'directoryUrl' | 'caCertFile' | 'eab'>,
  deps: AcmeDeps,
  accountPem: (acme: AcmeModule) => Promise<string>,
): Promise<Connected> {
  const timeoutMs = deps.requestTimeoutMs ?? 30_000
  const agent = await acmeAgent(request.caCertFile)
  const directory = await fetchDirectory(request.directoryUrl, agent, timeoutMs)
  const acme = (await import('acme-client')).default
  configureAxios(acme, agent, timeoutMs)
  acme.setLogger((line: string) => deps.debug?.(line))
  recorder = {}
  const backoff = deps.backoff ?? DEFAULT_BACKOFF
  const client = new acme.Client({
    directoryUrl: request.directoryUrl,
    accountKey: await accountPem(acme),
    externalAccountBinding: request.eab,
    backoffAttempts: backoff.attempts,
    backoffMin: backoff.min,
    backoffMax: backoff.max,
  })
  return {acme, client, directory}
}

/**
 * The account of this key if the CA knows it (acme-client would otherwise send an empty account
 * update, which some CAs refuse). Undefined when the CA does not know the key.
 */
async function existingAccount(client: Connected['client']): Promise<{contact?: unknown} | undefined> {
  try {
    return (await client.createAccount({onlyReturnExisting: true})) as {contact?: unknown}
  } catch (error) {
    if (recorder.rateLimit || recorder.network) throw error
    return undefined
  }
}

export type ContactChange =
  | {status: 'unchanged' | 'updated'; contact: string; previous: string[]}
  | {status: 'no-account'}
  | {status: 'failed'; contact: string; previous: string[]; reason: string}

/** Make the account's contact `mailto:<email>` when it is anything else (the operator changed --email). */
async function reconcileContact(
  client: Connected['client'],
  account: {contact?: unknown},
  email: string,
): Promise<ContactChange> {
  const contact = `mailto:${email}`
  const previous = Array.isArray(account.contact) ? account.contact.map(String) : []
  if (previous.length === 1 && previous[0] === contact) return {status: 'unchanged', contact, previous}
  try {
    await client.updateAccount({contact: [contact]})
    return {status: 'updated', contact, previous}
  } catch (error) {
    if (recorder.rateLimit || recorder.network) throw error
    return {status: 'failed', contact, previous, reason: messageOf(error) ?? String(error)}
  }
}

export function describeContactChange(change: ContactChange): string | undefined {
  const was = (previous: string[]) => (previous.length > 0 ? previous.join(', ') : 'no contact')
  switch (change.status) {
    case 'updated':
      return `the ACME account's contact is now ${change.contact} (was ${was(change.previous)})`
    case 'failed':
      return `the CA refused to change the ACME account's contact to ${change.contact} (${change.reason}); it still has ${was(change.previous)}. The next renewal tries again`
    default:
      return undefined
  }
}

/**
 * For a changed --email when no certificate is ordered (init keeping a valid certificate): the
 * existing account's contact updated now. Never creates an account or an account key: without
 * one ('no-account') the next order registers the new address.
 */
export async function updateAccountContact(
  request: Pick<ObtainRequest, 'directoryUrl' | 'caCertFile'> & {email: string},
  deps: AcmeDeps,
): Promise<ContactChange> {
  const pem = await readIfExists(deps.layout.acmeAccountKey)
  if (pem === undefined) return {status: 'no-account'}
  try {
    const {client} = await connect(request, deps, async () => pem)
    const account = await existingAccount(client)
    if (!account) return {status: 'no-account'}
    return await reconcileContact(client, account, request.email)
  } catch (error) {
    throw mapAcmeError(error, request.directoryUrl)
  }
}

export async function obtainCertificate(request: ObtainRequest, deps: AcmeDeps): Promise<ObtainResult> {
  const log = deps.log ?? (() => {})
  const notes: string[] = []
  // Names no CA issues for (a public suffix), or not through this challenge (a wildcard without DNS-01): before anything is made.
  checkOrderNames(request.domains, request.dns)
  if (request.dns) {
    // The hook and the key file come from hubctl.json: run nothing someone else could have put there.
    const {assertTrustedFile} = await import('../setup/trust.js')
    await assertTrustedFile(deps.layout.settings, 'the DNS-01 settings in it were not used')
  }
  let accountCreated = false
  // The CA first: a server that does not answer is named before anything is made.
  const {acme, client, directory} = await connect(request, deps, async (module) => {
    const account = await accountKey(deps.layout, () => module.crypto.createPrivateEcdsaKey('P-256'))
    accountCreated = account.created
    return account.pem
  })
  if (accountCreated) log(`created the ACME account key ${deps.layout.acmeAccountKey}`)

  let responder: Responder | undefined
  try {
    try {
      // The account of this key if the CA knows it, with the contact brought up to date; else a
      // new one: terms agreed, contact if given.
      const account = await existingAccount(client)
      if (!account) {
        await client.createAccount({
          termsOfServiceAgreed: true,
          ...(request.email ? {contact: [`mailto:${request.email}`]} : {}),
        })
      } else if (request.email) {
        const note = describeContactChange(await reconcileContact(client, account, request.email))
        if (note) {
          log(note)
          notes.push(note)
        }
      }
    } catch (error) {
      if (!request.eab && /externalAccountBinding|external account/i.test(messageOf(error) ?? '')) {
        throw usageError(
          `the ACME server ${originOf(request.directoryUrl)} requires an external account binding`,
          `give --eab-kid and the HMAC key (--eab-hmac-key FILE or ${EAB_HMAC_ENV}) from the CA's account page`,
        )
      }
      throw error
    }
    const identifiers = request.domains.map((value) => ({type: 'dns' as const, value}))
    let order
    const replaces = request.replaces && directory.renewalInfo ? request.replaces : undefined
    try {
      order = await client.createOrder({identifiers, ...(replaces ? {replaces} : {})} as Parameters<
        typeof client.createOrder
      >[0])
    } catch (error) {
      // A CA may refuse `replaces` (already replaced, unknown): a plain order is still right.
      if (!replaces || recorder.rateLimit || recorder.network) throw error
      log(`the CA refused to mark the order as replacing ${replaces} (${messageOf(error)}); ordering without it`)
      order = await client.createOrder({identifiers})
    }
    const authorizations = await client.getAuthorizations(order)
    for (const authz of authorizations) {
      if (authz.status === 'valid') continue
      if (request.dns) {
        await answerDns01(client, order, authz, request.dns, deps, log, notes)
        continue
      }
      const challenge = authz.challenges.find((c) => c.type === 'http-01')
      if (!challenge)
        throw acmeError(
          `the ACME server offers no http-01 challenge for ${authz.identifier.value}`,
          'use a CA that supports http-01, or --tls manual with a certificate obtained elsewhere',
        )
      if (!/^[A-Za-z0-9_-]+$/.test(challenge.token))
        throw acmeError(
          `the ACME server sent a challenge token that is not base64url (${JSON.stringify(challenge.token).slice(0, 60)})`,
          'check --acme-directory points at a real ACME server',
        )
      const keyAuthorization = await client.getChallengeKeyAuthorization(challenge)
      responder ??=
        (await listen(request.httpPort)) ??
        (await takenPortResponder(deps.layout, request.httpPort, request.domains, await deps.nginx?.(), log))
      await responder.add(challenge.token, keyAuthorization)
      try {
        const url = `http://${authz.identifier.value}${request.httpPort === 80 ? '' : `:${request.httpPort}`}/.well-known/acme-challenge/${challenge.token}`
        await selfCheck(url, keyAuthorization, responder.kind)
        log(
          `${authz.identifier.value}: ${url} answers (${responder.kind === 'hubctl' ? "hubctl's own listener" : 'nginx, from the webroot'}); asking the CA to validate`,
        )
        await client.completeChallenge(challenge)
        try {
          await waitForAuthorization(client, order, authz.url, deps.backoff ?? DEFAULT_BACKOFF)
        } catch (error) {
          // The CA itself gone or limiting: reported as such by mapAcmeError, not as a validation failure.
          if (recorder.rateLimit || recorder.network) throw error
          throw validationError(
            authz.identifier.value,
            url.replace(challenge.token, '<token>'),
            request.httpPort,
            messageOf(error) ?? String(error),
          )
        }
      } finally {
        await responder.remove(challenge.token)
      }
    }
    const [key, csr] = await acme.crypto.createCsr(
      {commonName: request.domains[0], altNames: request.domains},
      await certificateKey(acme, request.keyType),
    )
    const finalized = await client.finalizeOrder(order, csr)
    const fullchain = await client.getCertificate(finalized)
    const problem = chainProblem({fullchain, privkey: key.toString()}, request.domains)
    if (problem)
      throw acmeError(
        `the CA issued a certificate hubctl did not install: ${problem}`,
        'run the command again; if it happens again, report it to the CA (the live certificate is unchanged)',
      )
    log('certificate issued; installing it')
    const info = await new CertStore(deps.layout, deps.clock).install({fullchain, privkey: key.toString()})
    const answered = request.dns && authorizations.some((authz) => authz.status !== 'valid') ? 'dns' : undefined
    return {info, responder: answered ?? responder?.kind ?? 'none', directoryUrl: request.directoryUrl, notes}
  } catch (error) {
    throw mapAcmeError(error, request.directoryUrl)
  } finally {
    await responder?.close()
  }
}
