import {Flags} from '@oclif/core'

import {BaseCommand} from '../../base-command.js'
import {DHPARAM_BITS, DHPARAM_MODES, DhparamMode} from '../../lib/tls/dhparam.js'
import {usageError} from '../../lib/errors.js'
import {chooseSome, confirmOnTerminal, isInteractive} from '../../lib/setup/prompts.js'
import {RotateResult, RotationService, rotationNotice} from '../../lib/stack/rotate.js'
import {execaRunner} from '../../lib/runner.js'
import {SECRET_FLAGS, SECRET_LABELS, SECRET_NAMES, SecretName} from '../../lib/files/secrets.js'
import {SettingsStore} from '../../lib/config/settings.js'

export default class SecretsRotate extends BaseCommand<typeof SecretsRotate> {
  static override summary = "Replace secrets on a running or stopped hub without losing anyone's running notebook."

  static override description = `What each rotation restarts on a running hub (a stopped one only gets new files):
  --proxy-token    a standby proxy takes the requests while the proxy restarts with the new token; the hub learns it at runtime. Users notice nothing.
  --cookie-secret  the hub restarts; every user logs in again. Servers keep running (--restart-servers restarts them one at a time).
  --api-token      the hub restarts and hubctl's old token is revoked. Users notice nothing.
  --dhparam        new DH parameters (as init: --dhparam-mode, --dhparam-bits), nginx -t, reload.
The old values are kept as 0600 backups in srv/jupyterhub/backup (the last 5 of each); when the hub does not come back healthy they are put back (exit 7). Each rotation adds a line to var/log/jupyterhub/hubctl-audit.log: time, secret, the first 8 hex digits of the new value's SHA-256, outcome.`

  static override examples = [
    '<%= config.bin %> secrets rotate --proxy-token',
    '<%= config.bin %> secrets rotate --cookie-secret --yes --restart-servers',
    '<%= config.bin %> secrets rotate --all --yes --dhparam-mode ffdhe2048 --json',
  ]

  static override flags = {
    'cookie-secret': Flags.boolean({description: 'rotate the cookie secret (users log in again)'}),
    'proxy-token': Flags.boolean({description: 'rotate the proxy auth token'}),
    'api-token': Flags.boolean({description: "rotate hubctl's API token"}),
    dhparam: Flags.boolean({description: 'regenerate the DH parameters'}),
    all: Flags.boolean({description: 'rotate all four'}),
    yes: Flags.boolean({char: 'y', description: 'do not ask: with no secret named this is an error'}),
    'restart-servers': Flags.boolean({
      description: 'after a cookie-secret rotation, restart every user server one at a time',
    }),
    'dhparam-mode': Flags.string({
      description: 'how to make the new DH parameters (default: as at init)',
      options: [...DHPARAM_MODES],
    }),
    'dhparam-bits': Flags.string({
      description: 'size of generated DH parameters (default: as at init)',
      options: DHPARAM_BITS.map(String),
    }),
  }

  async run(): Promise<RotateResult> {
    const {flags} = this
    const settings = await new SettingsStore(this.layout).load()
    let secrets: SecretName[] = flags.all
      ? [...SECRET_NAMES]
      : SECRET_NAMES.filter(
          (name) => flags[SECRET_FLAGS[name] as 'cookie-secret' | 'proxy-token' | 'api-token' | 'dhparam'],
        )
    const ask = !flags.yes && isInteractive() && !this.jsonEnabled()
    if (secrets.length === 0) {
      if (!ask)
        throw usageError(
          'no secret to rotate was named',
          'give --cookie-secret, --proxy-token, --api-token, --dhparam or --all',
        )
      secrets = await chooseSome(
        'Which secrets should be replaced?',
        SECRET_NAMES.map((name) => ({value: name, name: SECRET_LABELS[name]})),
      )
      if (secrets.length === 0)
        throw usageError(
          'no secret was chosen',
          'choose at least one, or give --cookie-secret, --proxy-token, --api-token, --dhparam or --all',
        )
    }
    if (flags['restart-servers'] && !secrets.includes('cookieSecret'))
      throw usageError('--restart-servers goes with --cookie-secret', 'add --cookie-secret, or drop --restart-servers')
    const notice = rotationNotice(secrets, flags['restart-servers'])
    if (!this.jsonEnabled()) for (const line of notice) this.logToStderr(line)
    if (
      ask &&
      secrets.includes('cookieSecret') &&
      !(await confirmOnTerminal('Rotate the cookie secret now (every user logs in again)?'))
    ) {
      throw usageError('the rotation was not confirmed; nothing changed', 'answer yes, or give --yes')
    }
    const service = new RotationService({
      layout: this.layout,
      settings,
      runner: execaRunner,
      log: this.jsonEnabled() ? undefined : (line) => this.logToStderr(line),
    })
    const result = await service.rotate({
      secrets,
      restartServers: flags['restart-servers'],
      dhparam: {
        mode: (flags['dhparam-mode'] ?? settings.dhparam.mode) as DhparamMode,
        bits: Number(flags['dhparam-bits'] ?? settings.dhparam.bits),
      },
    })
    if (!this.jsonEnabled()) {
      for (const record of result.rotated)
        this.log(`${SECRET_LABELS[record.secret]}: ${record.outcome} (sha256 ${record.sha256}…)`)
      this.log(
        result.running
          ? `restarted: ${result.restarted.join(', ') || 'nothing'}${result.serversRestarted.length > 0 ? `; user servers restarted: ${result.serversRestarted.join(', ')}` : ''} (${result.seconds}s)`
          : 'the hub is not running: it uses the new values when it starts',
      )
    }
    return result
  }
}
