import {Flags} from '@oclif/core'

import {BaseCommand} from '../../base-command.js'
import {DHPARAM_BITS, DHPARAM_MODES, FFDHE2048_PEM, generateDhparam} from '../../lib/tls/dhparam.js'
import {acquireLock} from '../../lib/files/lock.js'
import {SECRET_LABELS, SecretName, SecretStore} from '../../lib/files/secrets.js'

export default class SecretsGenerate extends BaseCommand<typeof SecretsGenerate> {
  static override summary = 'Create every missing secret; never replace an existing one.'

  static override description =
    'Creates the cookie secret, the proxy auth token, the hubctl API token and the DH parameters that are missing, each 0600 in the 0700 directory srv/jupyterhub. An existing valid secret is kept; an existing invalid one is reported, not overwritten (replace it with `hubctl secrets rotate`).'

  static override examples = [
    '<%= config.bin %> secrets generate',
    '<%= config.bin %> secrets generate --dhparam ffdhe2048 --json',
  ]

  static override flags = {
    dhparam: Flags.string({
      description: 'how to make missing DH parameters',
      options: [...DHPARAM_MODES],
      default: 'generate',
    }),
    'dhparam-bits': Flags.string({
      description: 'size of generated DH parameters',
      options: DHPARAM_BITS.map(String),
      default: '2048',
    }),
  }

  async run(): Promise<{created: SecretName[]; kept: SecretName[]}> {
    const store = new SecretStore(this.layout)
    const lock = await acquireLock(this.layout.lockFile, 'secrets generate')
    try {
      const result = await store.generateMissing(() =>
        this.flags.dhparam === 'ffdhe2048'
          ? Promise.resolve(FFDHE2048_PEM)
          : generateDhparam(Number(this.flags['dhparam-bits'])),
      )
      for (const name of result.created) this.log(`created the ${SECRET_LABELS[name]}: ${store.file(name)}`)
      for (const name of result.kept) this.log(`kept the ${SECRET_LABELS[name]}: ${store.file(name)}`)
      return result
    } finally {
      await lock.release()
    }
  }
}
