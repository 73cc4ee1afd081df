/**
 * Bench rows for certificates, against a real Pebble (the tests' PebbleLab: Pebble's HTTPS signed
 * by a CA of our own, given to hubctl as --acme-ca-cert and to certbot as REQUESTS_CA_BUNDLE):
 *   renew        `hubctl cert renew` with nothing due vs `certbot renew` with nothing due, each
 *                with a certificate it obtained from the same Pebble;
 *   init-pebble  `hubctl init --tls letsencrypt` end to end, and issuance alone: `hubctl cert
 *                obtain` vs `certbot certonly --standalone`.
 */
import fs from 'node:fs/promises'
import path from 'node:path'

import {DEBIAN_JUPYTERHUB, portFlags} from '../test/helpers/cli.js'
import {Pebble, PebbleLab} from '../test/helpers/pebble.js'
import {BenchRow, hubctl, run, tempDir, timed} from './lib.js'

/** The name certbot asks for: challtestsrv resolves every name to 127.0.0.1 for Pebble (certbot wants a dotted name). */
const CERTBOT_DOMAIN = 'certbot.hubctl-bench.test'

interface Certbot {
  dirs: string[]
  env: Record<string, string>
}

function certbotFor(work: string, lab: PebbleLab): Certbot {
  const dirs = [
    '--config-dir',
    path.join(work, 'certbot/config'),
    '--work-dir',
    path.join(work, 'certbot/work'),
    '--logs-dir',
    path.join(work, 'certbot/logs'),
  ]
  return {dirs, env: {REQUESTS_CA_BUNDLE: lab.tls.ca}}
}

async function certbotCertonly(certbot: Certbot, pebble: Pebble, extra: string[] = []): Promise<void> {
  await run(
    'certbot',
    [
      'certonly',
      '--standalone',
      '--non-interactive',
      '--agree-tos',
      '--register-unsafely-without-email',
      '--server',
      pebble.directory,
      '--http-01-port',
      String(pebble.httpPort),
      '-d',
      CERTBOT_DOMAIN,
      ...certbot.dirs,
      ...extra,
    ],
    {env: certbot.env},
  )
}

/** A Pebble, a hub whose certificate came from it (init --tls letsencrypt), and a certbot lineage from it too. */
async function setup(label: string): Promise<{
  lab: PebbleLab
  work: string
  prefix: string
  pebble: Pebble
  flags: string[]
  certbot: Certbot
  cleanup: () => Promise<void>
}> {
  const work = await tempDir(label)
  const lab = new PebbleLab(work)
  const cleanup = async () => {
    await lab.stop()
    await fs.rm(work, {recursive: true, force: true})
  }
  try {
    await lab.setup()
    const {ports, flags} = await portFlags()
    // Pebble connects to the hub's HTTP port for http-01; certbot --standalone listens there too (one at a time).
    const pebble = await lab.startPebble('bench', {httpPort: ports.http})
    const prefix = path.join(work, 'hub')
    const certbot = certbotFor(work, lab)
    return {lab, work, prefix, pebble, flags, certbot, cleanup}
  } catch (error) {
    await cleanup()
    throw error
  }
}

function initArgs(prefix: string, flags: string[], lab: PebbleLab, pebble: Pebble): string[] {
  return [
    'init',
    '--prefix',
    prefix,
    '--yes',
    '--domain',
    'localhost',
    '--email',
    'bench@example.org',
    '--admin',
    'alice',
    '--tls',
    'letsencrypt',
    ...lab.acmeFlags(pebble),
    '--dhparam',
    'ffdhe2048',
    '--jupyterhub',
    DEBIAN_JUPYTERHUB,
    '--no-systemd',
    '--no-schedule',
    ...flags,
  ]
}

export async function renewRows(runs: number): Promise<BenchRow[]> {
  const {lab, prefix, pebble, flags, certbot, cleanup} = await setup('renew')
  try {
    await hubctl(initArgs(prefix, flags, lab, pebble))
    await certbotCertonly(certbot, pebble)
    const hubctlTimes: number[] = []
    const askingTimes: number[] = []
    const certbotTimes: number[] = []
    const renewNotDue = async () => {
      const out = await hubctl(['cert', 'renew', '--no-random-sleep', '--prefix', prefix])
      if (!/not due for renewal/.test(out))
        throw new Error(`hubctl cert renew did not find the certificate not due: ${out}`)
    }
    const renewalState = path.join(prefix, 'srv/jupyterhub/ssl/renewal.json')
    /** Forget the CA's kept window: the next run asks the CA (as a run after its Retry-After does). */
    const forgetAri = async () => {
      const state = JSON.parse(await fs.readFile(renewalState, 'utf8').catch(() => '{}')) as {ari?: unknown}
      delete state.ari
      await fs.writeFile(renewalState, JSON.stringify(state))
    }
    await renewNotDue()
    for (let i = 0; i < runs; i++) {
      hubctlTimes.push(await timed(renewNotDue))
      await forgetAri()
      askingTimes.push(await timed(renewNotDue))
      certbotTimes.push(
        await timed(async () => {
          const {stdout, stderr} = await run(
            'certbot',
            ['renew', ...certbot.dirs, '--no-random-sleep-on-renew', '--non-interactive'],
            {env: certbot.env},
          )
          if (!/No renewals were attempted|not (yet )?due for renewal/i.test(`${stdout}\n${stderr}`))
            throw new Error(`certbot renew did not find its certificate not due: ${stdout}\n${stderr}`)
        }),
      )
    }
    return [
      {
        name: "cert renew, nothing due (Pebble certificates; the CA's ARI window kept until its Retry-After)",
        hubctl: hubctlTimes,
        other: {name: 'certbot renew, nothing due', times: certbotTimes},
      },
      {
        name: 'cert renew, nothing due, asking the CA for its ARI window (after its Retry-After)',
        hubctl: askingTimes,
        other: {name: 'certbot renew, nothing due', times: certbotTimes},
      },
    ]
  } finally {
    await cleanup()
  }
}

export async function initPebbleRows(runs: number): Promise<BenchRow[]> {
  const {lab, work, pebble, flags, certbot, cleanup} = await setup('init-pebble')
  try {
    const init: number[] = []
    for (let i = 0; i < runs; i++) {
      // A new hub each time (the same ports: nothing runs between the runs).
      const prefix = path.join(work, `hub-${i}`)
      init.push(await timed(() => hubctl(initArgs(prefix, flags, lab, pebble))))
      if (i < runs - 1) await fs.rm(prefix, {recursive: true, force: true})
    }
    // Issuance alone, on the last hub: a new certificate each time, from the same Pebble.
    const prefix = path.join(work, `hub-${runs - 1}`)
    await certbotCertonly(certbot, pebble)
    const obtain: number[] = []
    const certonly: number[] = []
    for (let i = 0; i < runs; i++) {
      obtain.push(await timed(() => hubctl(['cert', 'obtain', '--prefix', prefix])))
      certonly.push(await timed(() => certbotCertonly(certbot, pebble, ['--force-renewal'])))
    }
    return [
      {name: 'init --tls letsencrypt end to end (Pebble, --dhparam ffdhe2048)', hubctl: init},
      {
        name: "issuance: cert obtain (Pebble, hubctl's own http-01 listener)",
        hubctl: obtain,
        other: {name: 'certbot certonly --standalone --force-renewal', times: certonly},
      },
    ]
  } finally {
    await cleanup()
  }
}
