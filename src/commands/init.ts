import {Flags} from '@oclif/core'
import {fileURLToPath} from 'node:url'

import {describeCulling} from '../lib/config/culler.js'
import {BaseCommand} from '../base-command.js'
import {acmeSettingsFrom, readEabHmacKey} from '../lib/tls/acme-settings.js'
import {CertService} from '../lib/tls/renewal.js'
import {checkOrderNames} from '../lib/tls/dns01.js'
import {DHPARAM_BITS, DHPARAM_MODES} from '../lib/tls/dhparam.js'
import {InitDeps, InitResult, InitService, silentReporter} from '../lib/setup/init.js'
import {resolveInitRequest} from '../lib/setup/init-request.js'
import {confirmOnTerminal, inquirerPrompter, isInteractive, readSecretFromStdin} from '../lib/setup/prompts.js'
import {streamReporter} from '../lib/setup/reporter.js'
import {execaRunner} from '../lib/runner.js'
import {PORT_FLAGS, SERVER_PORTS, SettingsStore, TLS_MODES} from '../lib/config/settings.js'
import {acmeFlags} from '../command-parts/cert.js'
import {CHECK_SUBMIT_TIMEOUT} from '../lib/setup/slurmcheck.js'

export default class Init extends BaseCommand<typeof Init> {
  static override summary =
    'Set up a secure JupyterHub: secrets, TLS, jupyterhub_config.py, the nginx site, the service.'

  static override description = `Checks the machine, creates the secrets (0600 under srv/jupyterhub, directory 0700), gets a certificate, renders jupyterhub_config.py and the nginx site from templates, validates both (JupyterHub loads the config, nginx -t passes), and installs the service and the renewal schedule.
Running it again is safe: no valid secret is replaced, unchanged files are left alone. Missing required values are asked for on a terminal; with --yes they are an error.`

  static override examples = [
    '<%= config.bin %> init --domain hub.example.org --email admin@example.org --admin alice --allow-user bob',
    '<%= config.bin %> init --yes --domain hub.example.org --admin alice --tls manual --cert fullchain.pem --key privkey.pem',
    '<%= config.bin %> init --prefix /tmp/hub --yes --domain localhost --admin alice --tls self-signed --dhparam ffdhe2048 --http-port 8080 --https-port 8443',
    '<%= config.bin %> init --dry-run --domain hub.example.org --admin alice --tls self-signed',
    '<%= config.bin %> init --local',
    '<%= config.bin %> init --domain hub.example.org --admin alice --cull-idle 2h --cull-max-age 1d',
    '<%= config.bin %> init --yes --domain hub.example.org --email admin@example.org --admin alice --authenticator github --oauth-client-id Iv1.0123abcd --oauth-client-secret-file /root/github-secret --oauth-allowed-org my-lab',
    '<%= config.bin %> init --yes --domain hub.example.org --email admin@example.org --admin alice --authenticator google --oauth-client-id 123.apps.googleusercontent.com --oauth-client-secret-stdin --oauth-allowed-domain example.org < /root/google-secret',
    '<%= config.bin %> init --yes --domain hub.example.org --email admin@example.org --admin alice --authenticator oauth --oauth-client-id hub --oauth-client-secret-file /root/secret --oauth-authorize-url https://id.example.org/authorize --oauth-token-url https://id.example.org/token --oauth-userdata-url https://id.example.org/userinfo',
  ]

  static override flags = {
    domain: Flags.string({
      description: 'domain name of the hub (repeatable; the first is the primary)',
      multiple: true,
    }),
    email: Flags.string({
      description: 'contact e-mail for the certificate authority (required with --tls letsencrypt)',
    }),
    admin: Flags.string({description: 'admin user (repeatable)', multiple: true}),
    'allow-user': Flags.string({description: 'user allowed to log in (repeatable; admins always are)', multiple: true}),
    authenticator: Flags.string({
      description:
        'pam, dummy, shared-password (JupyterHub 5.1+), github, google, oauth (any OAuth2/OpenID Connect provider; these three through oauthenticator) or a Python class (default: pam; with --local see its help)',
    }),
    'oauth-client-id': Flags.string({
      description:
        'with --authenticator github|google|oauth: the client ID of the OAuth app registered with the provider',
    }),
    'oauth-client-secret-file': Flags.string({
      description:
        "a file holding the OAuth app's client secret (kept 0600 in srv/jupyterhub/oauth_client_secret; never give it on the command line)",
    }),
    'oauth-client-secret-stdin': Flags.boolean({
      description: "read the OAuth app's client secret from standard input (asked without echo on a terminal)",
    }),
    'oauth-authorize-url': Flags.string({
      description: "with --authenticator oauth: the provider's authorization endpoint",
    }),
    'oauth-token-url': Flags.string({description: "with --authenticator oauth: the provider's token endpoint"}),
    'oauth-userdata-url': Flags.string({
      description: "with --authenticator oauth: the provider's user data (userinfo) endpoint",
    }),
    'oauth-username-claim': Flags.string({
      description:
        'with --authenticator oauth: the key of the user data that holds the login name (default: preferred_username)',
    }),
    'oauth-scope': Flags.string({
      description:
        'a scope asked of the provider (repeatable; default: openid profile for oauth, read:org for github with --oauth-allowed-org)',
      multiple: true,
    }),
    'oauth-allowed-org': Flags.string({
      description:
        'with --authenticator github: members of this organization (or org:team) may log in (repeatable; admins and --allow-user always may)',
      multiple: true,
    }),
    'oauth-allowed-domain': Flags.string({
      description:
        'with --authenticator google: every account of this Google Workspace domain may log in, and no other account (repeatable)',
      multiple: true,
    }),
    spawner: Flags.string({
      description:
        "local (a system user per hub user; default as root), simple (servers run as the hub's user; default otherwise) or slurm (each server a job on a Slurm cluster, batchspawner)",
      options: ['local', 'simple', 'slurm'],
    }),
    'slurm-partition': Flags.string({description: 'with --spawner slurm: the partition the servers run in'}),
    'slurm-memory': Flags.string({
      description: 'with --spawner slurm: memory per server, as sbatch --mem takes it (default: 2G)',
    }),
    'slurm-cpus': Flags.string({description: 'with --spawner slurm: CPUs per server (default: 1)'}),
    'slurm-runtime': Flags.string({
      description: "with --spawner slurm: a server's time limit, a Slurm time such as 8:00:00 (default: 8:00:00)",
    }),
    'slurm-gpus': Flags.string({description: 'with --spawner slurm: GPUs per server (--gres=gpu:N; default: none)'}),
    'slurm-extra': Flags.string({
      description: "with --spawner slurm: '#SBATCH ...' lines added to every job's script (repeatable; nothing else)",
      multiple: true,
    }),
    'hub-connect-ip': Flags.string({
      description:
        "with --spawner slurm: this machine's private address the compute nodes reach the hub's API at (default: 127.0.0.1, a cluster of this machine alone)",
    }),
    'check-submit': Flags.string({
      description:
        "with --spawner slurm: preflight submits a tiny test job as this user (sudo -u USER sbatch, as the hub does) and waits for it to complete; also the user the nodes' paths are checked as (srun)",
    }),
    'check-submit-timeout': Flags.string({
      description: `with --check-submit: seconds the test job may take before it is cancelled and init refused (default: ${CHECK_SUBMIT_TIMEOUT})`,
    }),
    tls: Flags.string({
      description: 'where the certificate comes from (default: letsencrypt; with --local see its help)',
      options: [...TLS_MODES],
    }),
    cert: Flags.string({description: 'with --tls manual: the certificate chain (PEM, leaf first)'}),
    key: Flags.string({description: 'with --tls manual: its private key (PEM)'}),
    'http-port': Flags.string({
      description: 'port nginx answers ACME challenges and redirects on (default: 80; with --local see its help)',
    }),
    'https-port': Flags.string({description: 'port nginx serves the hub on (default: 443; with --local see its help)'}),
    'proxy-port': Flags.string({
      description: "configurable-http-proxy's public port (loopback)",
      default: String(PORT_FLAGS.proxy.default),
    }),
    'proxy-api-port': Flags.string({
      description: "configurable-http-proxy's API port (loopback)",
      default: String(PORT_FLAGS.proxyApi.default),
    }),
    'hub-port': Flags.string({description: "the hub's own port (loopback)", default: String(PORT_FLAGS.hub.default)}),
    'proxy-standby-port': Flags.string({
      description: 'public port of the standby proxy that serves while the proxy is replaced (loopback)',
      default: String(PORT_FLAGS.proxyStandby.default),
    }),
    'proxy-standby-api-port': Flags.string({
      description: 'API port of the standby proxy (loopback)',
      default: String(PORT_FLAGS.proxyStandbyApi.default),
    }),
    dhparam: Flags.string({
      description:
        'generate fresh DH parameters, or write the RFC 7919 ffdhe2048 group at once (default: generate; with --local see its help)',
      options: [...DHPARAM_MODES],
    }),
    'dhparam-bits': Flags.string({
      description: 'size of generated DH parameters (default: 2048; with --local see its help)',
      options: DHPARAM_BITS.map(String),
    }),
    jupyterhub: Flags.string({
      description:
        'an installed JupyterHub executable to use (default: hubctl installs the JupyterHub and JupyterLab it is tested with into /opt/jupyterhub, or opt/jupyterhub under --prefix)',
    }),
    'users-env': Flags.boolean({
      description:
        "with --jupyterhub: user servers run from hubctl's users' environment (opt/jupyterhub/users), a copy of that JupyterHub's virtualenv, which `hubctl env` changes (without --jupyterhub they always do)",
    }),
    nginx: Flags.string({
      description:
        'the nginx executable (default: nginx on PATH; installed with apt-get when missing, asked first unless --yes)',
    }),
    'max-concurrent-spawns': Flags.string({
      description:
        'user servers starting at once; the others wait in line on the spawn page (default: one per core, at least 2)',
    }),
    'login-burst': Flags.string({
      description:
        'login attempts nginx lets through at once from one address before it limits them to 30 a minute (default: 100: a class behind one school address logs in together)',
      helpValue: 'N',
    }),
    'spawn-timeout': Flags.string({
      description:
        'seconds a user server may take to start, and as many more to answer (default: 120, more with many concurrent spawns per core)',
    }),
    'cull-idle': Flags.string({
      description:
        "stop a user's server idle longer than this (e.g. 30m, 1h, 2h30m; `off`: never), by jupyterhub-idle-culler run as a service of the hub (default: 1h)",
      helpValue: 'DURATION|off',
    }),
    'cull-max-age': Flags.string({
      description: "stop a user's server running longer than this, however active (e.g. 8h, 1d; default: off)",
      helpValue: 'DURATION|off',
    }),
    'server-ports': Flags.string({
      description: `the ports user servers get, FIRST-LAST, outside the kernels' ephemeral range (default: ${SERVER_PORTS.first}-${SERVER_PORTS.last})`,
    }),
    'mem-limit': Flags.string({
      description:
        "memory of each user's server with its kernels (e.g. 2G, 512M): past it the kernel's OOM killer ends the user's own largest process. Needs systemd as PID 1 (each server a systemd unit, jupyterhub-systemdspawner) and --spawner local",
      helpValue: 'SIZE',
    }),
    'cpu-limit': Flags.string({
      description:
        "cores each user's server may use (e.g. 1.5; at most the machine's); needs systemd as --mem-limit does",
      helpValue: 'CORES',
    }),
    'tasks-limit': Flags.string({
      description:
        "processes and threads each user's server may have (e.g. 512: a fork loop stops there); needs systemd as --mem-limit does",
      helpValue: 'N',
    }),
    systemd: Flags.boolean({
      description: 'install the jupyterhub.service unit when systemd runs (--no-systemd skips it)',
      allowNo: true,
      default: true,
    }),
    schedule: Flags.boolean({
      description: 'install the renewal timer, or cron job without systemd (--no-schedule skips it)',
      allowNo: true,
      default: true,
    }),
    'schedule-backup': Flags.string({
      description:
        '`hubctl backup --include-homes` daily or weekly at night, by a systemd timer or else a cron line (off: removes it; default: as hubctl.json has it, none at first)',
      options: ['daily', 'weekly', 'off'],
    }),
    'backup-keep': Flags.string({
      description: 'the scheduled backups kept in srv/jupyterhub/backup (with --schedule-backup; default: 7)',
      helpValue: 'N',
    }),
    'server-check': Flags.boolean({
      description:
        "last, start a user's server as the spawner would and stop it (--no-server-check skips it; `hubctl doctor` runs the same check)",
      allowNo: true,
      default: true,
    }),
    subdomains: Flags.boolean({
      allowNo: true,
      description:
        "each user's server at https://NAME.DOMAIN/ and the hub at https://DOMAIN/ (the first --domain): browsers then keep users' pages apart (__Host- cookies); needs DNS records for DOMAIN and *.DOMAIN and a wildcard certificate (--tls self-signed, manual, or letsencrypt through DNS-01); JupyterHub 4.1 or later",
    }),
    local: Flags.boolean({
      description:
        'a hub on this machine without root or a domain: prefix ./hubctl-local, localhost, self-signed TLS, ports 8080/8443, a generated login printed once',
    }),
    yes: Flags.boolean({char: 'y', description: 'never ask: a missing required value is an error'}),
    'create-users': Flags.boolean({
      description:
        'with PAM: make the system account of each --admin and --allow-user who has none (as `hubctl users add`); on a terminal init asks',
    }),
    'dry-run': Flags.boolean({
      description: 'print every file it would write and every command it would run; write nothing',
    }),
    ...acmeFlags,
  }

  async run(): Promise<InitResult> {
    const {flags} = this
    const interactive = !flags.yes && !this.jsonEnabled() && isInteractive()
    const request = await resolveInitRequest(flags, interactive ? inquirerPrompter : undefined, undefined, {
      stdin: () => readSecretFromStdin('OAuth client secret:'),
    })
    const titles = {
      preflight: 'Preflight checks',
      software: 'Software (nginx, JupyterHub, JupyterLab)',
      secrets: 'Secrets',
      certificate: 'Certificate',
      render: 'Render and validate configs',
      install: 'Install',
      move: 'Move the running hub (subdomains)',
      'slurm nodes': "The jobs' programs on a node (srun)",
      'user server': "A user's server starts",
    }
    const reporter = this.jsonEnabled() ? silentReporter : streamReporter(process.stderr, titles)
    const service = new InitService({
      layout: this.layout,
      runner: execaRunner,
      reporter,
      units: {node: process.execPath, hubctl: fileURLToPath(new URL('../../bin/run.js', import.meta.url))},
      bin: fileURLToPath(new URL('../../bin/run.js', import.meta.url)),
      systemd: flags.systemd,
      schedule: flags.schedule,
      serverCheck: flags['server-check'],
      dryRun: flags['dry-run'],
      yes: flags.yes,
      createUsers: flags['create-users'],
      confirm: interactive ? confirmOnTerminal : undefined,
      ...(request.tls === 'letsencrypt' ? await this.acmeDeps(reporter, request.domains) : {}),
    })
    const result = await service.run(request)
    this.render(result)
    return result
  }

  /**
   * With --tls letsencrypt: the ACME flags checked now, before init writes anything, and kept in
   * hubctl.json whether init orders a certificate (in its certificate step) or keeps a valid one.
   * init's --http-port is nginx's port, not an ACME setting.
   */
  private async acmeDeps(
    reporter: ReturnType<typeof streamReporter>,
    domains: string[],
  ): Promise<Pick<InitDeps, 'acme' | 'obtainCertificate' | 'updateAccountContact'>> {
    const {flags} = this
    const previous = await new SettingsStore(this.layout).loadIfExists().catch(() => undefined)
    const acme = await acmeSettingsFrom({...flags, 'http-port': undefined}, previous?.tls.acme)
    checkOrderNames(domains, acme.dns)
    const hmacKey = await readEabHmacKey(flags['eab-hmac-key'])
    const service = new CertService({
      layout: this.layout,
      runner: execaRunner,
      log: (line) => reporter.progress('certificate', line),
    })
    return {
      acme,
      obtainCertificate: (settings) => service.obtainForInit(settings, acme, hmacKey),
      updateAccountContact: (settings) => service.updateAccountContact(settings, acme),
    }
  }

  private render(result: InitResult): void {
    for (const warning of result.warnings) this.logToStderr(`warning: ${warning}`)
    if (result.dryRun) {
      if (result.oauth)
        this.log(`OAuth callback URL to register with ${result.oauth.provider}: ${result.oauth.callbackUrl}`)
      this.log('Dry run: nothing was written. It would write:')
      for (const file of result.files) this.log(`  ${file.file}`)
      this.log('and run:')
      for (const command of result.commands) this.log(`  ${command}`)
      return
    }
    const env = result.software.environment
    if (result.software.packagesInstalled.length > 0)
      this.log(`Installed with apt-get: ${result.software.packagesInstalled.join(', ')}`)
    if (env)
      this.log(
        `JupyterHub ${env.versions.jupyterhub} and JupyterLab ${env.versions.jupyterlab}: ${env.dir}${env.built ? ' (installed now)' : ''}`,
      )
    if (result.oauth) {
      this.log(
        `Register this callback URL for the OAuth app ${result.oauth.clientId} with the provider (--authenticator ${result.oauth.provider}):`,
      )
      this.log(`  ${result.oauth.callbackUrl}`)
      this.log(`  (client secret: ${result.oauth.clientSecret}, 0600 in srv/jupyterhub/oauth_client_secret)`)
    }
    if (result.login) {
      this.log(`Log in at ${result.login.url} as ${result.login.user} with the password ${result.login.password}`)
      this.log('  (shown this once; it is kept 0600 in srv/jupyterhub/login_password)')
    }
    const disabled = result.unknownNames.disabledSite
    if (disabled)
      this.log(
        `Disabled Debian's stock nginx site (it answered unknown names on a port of the hub): removed the link ${disabled.link}; the file stays in ${disabled.file}`,
      )
    if (result.usersCreated) this.log(`System accounts created: ${result.usersCreated.join(', ')} (no password yet)`)
    const written = result.files.filter((f) => f.action === 'written')
    this.log(
      `hubctl init done under ${result.prefix}: JupyterHub ${result.jupyterhub.version}, nginx ${result.nginx.version}.`,
    )
    this.log(
      `  secrets created: ${result.secrets.created.join(', ') || 'none'}; kept: ${result.secrets.kept.join(', ') || 'none'}`,
    )
    if (result.certificate)
      this.log(
        `  certificate: ${result.certificate.mode}, ${result.certificate.reused ? 'kept' : 'new'}, valid until ${result.certificate.notAfter}`,
      )
    if (result.certificate?.accountContact) this.log(`  ACME account: ${result.certificate.accountContact}`)
    if (result.culling) this.log(`  culling: ${describeCulling(result.culling)}`)
    for (const check of [result.slurmChecks?.submit, result.slurmChecks?.nodePaths])
      if (check?.status === 'pass') this.log(`  slurm: ${check.message}`)
    if (result.userServer?.status === 'pass') this.log(`  user server: ${result.userServer.message}`)
    if (result.moved) this.log(`  moved: ${result.moved.notice}`)
    this.log(`  files written: ${written.length} (${result.files.length - written.length} unchanged)`)
    for (const command of result.commands) this.log(`  ran: ${command}`)
    this.log('Next:')
    for (const step of result.next) this.log(`  ${step}`)
  }
}
