import os from 'node:os'
import path from 'node:path'

/**
 * The one module that knows where every file lives. Every path is under `prefix`
 * (default `/`); nothing else in hubctl joins paths by hand.
 */
/** Where `--local` puts its hub when no --prefix is given (relative to the working directory). */
export const LOCAL_PREFIX = 'hubctl-local'
/** In every user's home: the folder of links to the shared folders (`shared/NAME`), placed at each server start. */
export const HOME_SHARED_DIR = 'shared'
/** The file in a server home that says hubctl made it. */
export const SERVER_HOME_MARKER = '.hubctl-home'
/** SimpleLocalProcessSpawner's own default home (JupyterHub's), where an earlier hubctl's local servers kept their files. */
export const JUPYTERHUB_DEFAULT_HOME = '/tmp/{username}'

export class Layout {
  readonly prefix: string

  constructor(prefix = '/') {
    this.prefix = path.resolve(prefix)
  }

  /** True when hubctl manages the real system (prefix `/`), false for tests and local mode. */
  get isSystem(): boolean {
    return this.prefix === '/'
  }

  private at(...parts: string[]): string {
    return path.join(this.prefix, ...parts)
  }

  // /srv/jupyterhub: runtime and security files
  get srvDir(): string {
    return this.at('srv/jupyterhub')
  }
  get cookieSecret(): string {
    return this.at('srv/jupyterhub/jupyterhub_cookie_secret')
  }
  get proxyAuthToken(): string {
    return this.at('srv/jupyterhub/proxy_auth_token')
  }
  get apiToken(): string {
    return this.at('srv/jupyterhub/hubctl_api_token')
  }
  get dhparam(): string {
    return this.at('srv/jupyterhub/dhparam.pem')
  }
  /** The generated login of local mode (dummy / shared-password authenticators). */
  get loginPassword(): string {
    return this.at('srv/jupyterhub/login_password')
  }
  /** The OAuth app's client secret (--authenticator github|google|oauth), read by the hub's config. */
  get oauthClientSecret(): string {
    return this.at('srv/jupyterhub/oauth_client_secret')
  }
  get database(): string {
    return this.at('srv/jupyterhub/jupyterhub.sqlite')
  }
  /** `hubctl upgrade`: the copy of the database migrated by the new JupyterHub, renamed over the live one at the switch. */
  get databaseUpgrade(): string {
    return this.at('srv/jupyterhub/jupyterhub.sqlite.upgrade')
  }
  /** `hubctl upgrade`: the database as it was before the switch (put back on a rollback, kept after). */
  get databasePreUpgrade(): string {
    return this.at('srv/jupyterhub/jupyterhub.sqlite.pre-upgrade')
  }
  get backupDir(): string {
    return this.at('srv/jupyterhub/backup')
  }
  /** One backup of a secret in backupDir, by its file name (`<secret>.<time>.<random>`). */
  backupFile(name: string): string {
    return path.join(this.backupDir, name)
  }
  /** `hubctl backup`: one archive of the whole hub in backupDir (`hubctl-backup-<time>.tar`, 0600). */
  hubBackup(stamp: string): string {
    return path.join(this.backupDir, `hubctl-backup-${stamp}.tar`)
  }
  /** Where `hubctl backup` gathers the members of an archive before it writes it (0700, removed after). */
  backupStaging(id: string): string {
    return path.join(this.backupDir, `.staging-${id}`)
  }
  /** Where `hubctl uninstall --purge` puts its backup: outside srv/jupyterhub, which it removes. */
  get purgeBackupDir(): string {
    return this.at('var/backups/hubctl')
  }
  purgeBackup(stamp: string): string {
    return this.at('var/backups/hubctl', `hubctl-backup-${stamp}.tar`)
  }
  /** Where `hubctl restore` unpacks and checks an archive: beside srv/jupyterhub, removed after (0700). */
  restoreStaging(id: string): string {
    return this.at('srv', `.jupyterhub-restore-${id}`)
  }
  /** The list of renames a restore makes once every new file is in place (written before the first). */
  get restoreJournal(): string {
    return this.at('srv/jupyterhub/restore-journal.json')
  }
  /** The renames `hubctl upgrade`'s switch makes (the database, the config, hubctl.json), written before the first. */
  get upgradeJournal(): string {
    return this.at('srv/jupyterhub/upgrade-journal.json')
  }
  /** A file of an upgrade's switch, complete, beside the one it replaces (renamed over it by the journal). */
  upgradeNew(target: string): string {
    return path.join(path.dirname(target), `.${path.basename(target)}.hubctl-upgrade`)
  }
  /** A file or directory of a restore, complete, beside the one it replaces (renamed over it). */
  restoreNew(target: string): string {
    return path.join(path.dirname(target), `.${path.basename(target)}.hubctl-restore`)
  }
  /** A home a restore replaced, moved aside until the restore is complete, then deleted. */
  restoreOld(target: string): string {
    return path.join(path.dirname(target), `.${path.basename(target)}.hubctl-replaced`)
  }
  /** A path under the prefix by its relative name in a backup (refused when it would leave the prefix). */
  underPrefix(relative: string): string {
    const full = path.resolve(this.prefix, relative)
    if (
      path.isAbsolute(relative) ||
      (full !== this.prefix && !full.startsWith(`${this.prefix === '/' ? '' : this.prefix}/`))
    )
      throw new Error(`${relative} is not a path under ${this.prefix}`)
    return full
  }
  /** The name of a file under the prefix as a backup keeps it (relative to the prefix). */
  relativeToPrefix(file: string): string {
    return path.relative(this.prefix, file)
  }
  /** A member of an unpacked archive by its name in the manifest. */
  stagedMember(staging: string, member: string): string {
    return path.join(staging, member)
  }
  /** The SQLite journal files beside the hub's database (a stale one must not be applied to a restored database). */
  get databaseSidecars(): string[] {
    return ['-journal', '-wal', '-shm'].map((suffix) => `${this.database}${suffix}`)
  }
  /** `hubctl users`: which system accounts hubctl created or adopted, and their e-mail (0600). */
  get usersRecord(): string {
    return this.at('srv/jupyterhub/users.json')
  }
  /** Home directories of removed users, each a 0600 tar.gz (`hubctl users remove`). */
  get homeArchiveDir(): string {
    return this.at('srv/jupyterhub/archive')
  }
  /** One archived home: `<user>-<time>.tar.gz`. */
  homeArchive(user: string, stamp: string): string {
    return path.join(this.homeArchiveDir, `${user}-${stamp}.tar.gz`)
  }
  /**
   * The homes of servers that run as the hub's own user (SimpleLocalProcessSpawner: local mode),
   * one 0700 directory per hub user, made by hubctl. Inside srvDir (0700, the hub's user's, checked
   * by init, start and doctor), so nobody else can reach or make them first; JupyterHub's default,
   * /tmp/{username}, is shared by the machine, world-readable and lost at reboot.
   */
  get serverHomesDir(): string {
    return this.at('srv/jupyterhub/home')
  }
  serverHome(user: string): string {
    return path.join(this.serverHomesDir, user)
  }
  /** In each server home: the file that says hubctl made it (a home without it is never used). */
  serverHomeMarker(user: string): string {
    return path.join(this.serverHomesDir, user, SERVER_HOME_MARKER)
  }
  /** `c.SimpleLocalProcessSpawner.home_dir_template`: serverHome with JupyterHub's `{username}`, braces of the path doubled for str.format. */
  get serverHomeTemplate(): string {
    return `${this.serverHomesDir.replaceAll('{', '{{').replaceAll('}', '}}')}/{username}`
  }
  /**
   * Where `hubctl users remove` moves a home before archiving and deleting it: a 0700 root directory
   * beside the home (`<home's parent>/.hubctl-removed`), not under the prefix, because a rename
   * cannot leave the home's file system.
   */
  removedHomesDir(home: string): string {
    return path.join(path.dirname(path.resolve(home)), '.hubctl-removed')
  }
  /** One home moved there, by the user's name. */
  removedHome(home: string, user: string): string {
    return path.join(this.removedHomesDir(home), user)
  }
  /**
   * `hubctl share`: the course's shared folders, one per share (root's, group the share's writers,
   * setgid, 2775). Not inside srvDir, which is 0700 and holds the secrets: every hub user must reach these.
   */
  get sharedRoot(): string {
    return this.at('srv/jupyterhub-shared')
  }
  sharedDir(name: string): string {
    return path.join(this.sharedRoot, name)
  }
  /** The shares hubctl made (names, groups, writers), read by the hub's pre-spawn hook at each start (0644). */
  get sharesRecord(): string {
    return this.at('etc/jupyterhub/shares.json')
  }
  get lockFile(): string {
    return this.at('srv/jupyterhub/hubctl.lock')
  }
  get runDir(): string {
    return this.at('srv/jupyterhub/run')
  }
  get pidFile(): string {
    return this.at('srv/jupyterhub/run/hubctl.pid')
  }
  get stateFile(): string {
    return this.at('srv/jupyterhub/run/state.json')
  }
  /** A request of another hubctl command to the running supervisor (0600). */
  get controlFile(): string {
    return this.at('srv/jupyterhub/run/control.json')
  }
  /**
   * Which process serves each user server, written by the hub's config once the server's own
   * process holds its port (0600): the supervisor's route check takes an answer only from it.
   */
  get serverProcesses(): string {
    return this.at('srv/jupyterhub/run/servers.json')
  }
  /** The routes a replacement proxy starts with, during a handover (0600). */
  get proxySeed(): string {
    return this.at('srv/jupyterhub/run/proxy-routes.json')
  }

  // /srv/jupyterhub/ssl
  get sslDir(): string {
    return this.at('srv/jupyterhub/ssl')
  }
  get fullchain(): string {
    return this.at('srv/jupyterhub/ssl/fullchain.pem')
  }
  get privkey(): string {
    return this.at('srv/jupyterhub/ssl/privkey.pem')
  }
  /** Each certificate and its key live together in archive/<id>/; `current` and `previous` are links to one. */
  get sslArchiveDir(): string {
    return this.at('srv/jupyterhub/ssl/archive')
  }
  sslArchive(id: string): string {
    return this.at('srv/jupyterhub/ssl/archive', id)
  }
  archivedFullchain(id: string): string {
    return this.at('srv/jupyterhub/ssl/archive', id, 'fullchain.pem')
  }
  archivedPrivkey(id: string): string {
    return this.at('srv/jupyterhub/ssl/archive', id, 'privkey.pem')
  }
  /** Link targets, relative to ssl/: fullchain.pem → current/fullchain.pem, current → archive/<id>. */
  readonly sslLinkTargets = {
    fullchain: 'current/fullchain.pem',
    privkey: 'current/privkey.pem',
    archive: (id: string) => `archive/${id}`,
  }
  get sslCurrentLink(): string {
    return this.at('srv/jupyterhub/ssl/current')
  }
  get sslPreviousLink(): string {
    return this.at('srv/jupyterhub/ssl/previous')
  }
  get acmeAccountKey(): string {
    return this.at('srv/jupyterhub/ssl/acme_account_key.pem')
  }
  get renewalState(): string {
    return this.at('srv/jupyterhub/ssl/renewal.json')
  }

  // /etc/jupyterhub
  get etcDir(): string {
    return this.at('etc/jupyterhub')
  }
  get hubConfig(): string {
    return this.at('etc/jupyterhub/jupyterhub_config.py')
  }
  /** Where a new config waits while JupyterHub loads it, before it replaces the live one. */
  get hubConfigCandidate(): string {
    return this.at('etc/jupyterhub/.jupyterhub_config.py.candidate')
  }
  get hubConfigD(): string {
    return this.at('etc/jupyterhub/jupyterhub_config.d')
  }
  /** One of the operator's additions in hubConfigD, by its file name. */
  hubConfigDFile(name: string): string {
    return path.join(this.hubConfigD, name)
  }
  get settings(): string {
    return this.at('etc/jupyterhub/hubctl.json')
  }
  /** The directory jupyterhub_config.py puts first on sys.path: hubctl's Python package for the hub is in it. */
  get hubPythonPath(): string {
    return this.at('etc/jupyterhub/python')
  }
  /** hubctl_hub, the Python the hub's config imports (python/hubctl_hub, written with the config). */
  get hubPythonPackage(): string {
    return this.at('etc/jupyterhub/python/hubctl_hub')
  }
  hubPythonFile(name: string): string {
    return path.join(this.hubPythonPackage, name)
  }

  // nginx
  get nginxDir(): string {
    return this.at('etc/nginx')
  }
  get nginxMainConf(): string {
    return this.at('etc/nginx/nginx.conf')
  }
  get nginxSitesAvailable(): string {
    return this.at('etc/nginx/sites-available')
  }
  get nginxSitesEnabled(): string {
    return this.at('etc/nginx/sites-enabled')
  }
  get nginxSite(): string {
    return this.at('etc/nginx/sites-available/jupyterhub.conf')
  }
  get nginxSiteLink(): string {
    return this.at('etc/nginx/sites-enabled/jupyterhub.conf')
  }
  /**
   * A site that exists only while an ACME order runs and nginx already holds the HTTP port without
   * the hub's site (the system's nginx with its default site, before the first certificate).
   */
  get nginxChallengeSite(): string {
    return this.at('etc/nginx/sites-enabled/hubctl-acme-challenge.conf')
  }
  /** One entry of sites-enabled by its name (Debian's nginx.conf includes every one). */
  nginxEnabledSite(name: string): string {
    return path.join(this.nginxSitesEnabled, name)
  }
  /** conf.d: Debian's nginx.conf includes its *.conf files. */
  get nginxConfD(): string {
    return this.at('etc/nginx/conf.d')
  }
  nginxConfDFile(name: string): string {
    return path.join(this.nginxConfD, name)
  }
  /** Debian's stock default site (a conffile of nginx-common) and its link in sites-enabled. */
  get nginxDefaultSite(): string {
    return this.at('etc/nginx/sites-available/default')
  }
  get nginxDefaultSiteLink(): string {
    return this.at('etc/nginx/sites-enabled/default')
  }
  /** init's record that it removed the stock default site's link (its target), for uninstall to put it back. */
  get nginxDefaultSiteRecord(): string {
    return this.at('srv/jupyterhub/nginx-default-site.json')
  }
  /** dpkg's record of the installed packages, with each conffile's md5 as the package shipped it. */
  get dpkgStatus(): string {
    return this.at('var/lib/dpkg/status')
  }
  /** The name a file under the prefix has on the system at `/` (how dpkg names a conffile). */
  systemPath(file: string): string {
    return path.join('/', path.relative(this.prefix, file))
  }
  /** Where nginx serves /.well-known/acme-challenge/ from. */
  get acmeWebroot(): string {
    return this.at('var/www/hubctl-acme')
  }
  get acmeChallengeDir(): string {
    return this.at('var/www/hubctl-acme/.well-known/acme-challenge')
  }
  acmeChallengeFile(token: string): string {
    return this.at('var/www/hubctl-acme/.well-known/acme-challenge', token)
  }
  /** pid and temp files of a prefix-local nginx (only when the prefix is not `/`). */
  get nginxRunDir(): string {
    return this.at('var/lib/hubctl/nginx')
  }
  /** The nginx master's pid file: the system's own under /, the prefix's nginx otherwise. */
  get nginxPid(): string {
    return this.isSystem ? this.at('run/nginx.pid') : this.at('var/lib/hubctl/nginx/nginx.pid')
  }

  // logs
  get logDir(): string {
    return this.at('var/log/jupyterhub')
  }
  get hubLog(): string {
    return this.at('var/log/jupyterhub/jupyterhub.log')
  }
  get proxyLog(): string {
    return this.at('var/log/jupyterhub/proxy.log')
  }
  get nginxAccessLog(): string {
    return this.at('var/log/jupyterhub/nginx-access.log')
  }
  get nginxErrorLog(): string {
    return this.at('var/log/jupyterhub/nginx-error.log')
  }
  get auditLog(): string {
    return this.at('var/log/jupyterhub/hubctl-audit.log')
  }
  /** hubctl start's own events when it runs detached (--detach). */
  get supervisorLog(): string {
    return this.at('var/log/jupyterhub/hubctl.log')
  }

  // the hub's Python side: hubctl's own virtualenv of JupyterHub and JupyterLab (hubenv.ts)
  /** /opt/jupyterhub: hubctl's environments, readable and executable by every user whose server runs from it. */
  get hubEnvRoot(): string {
    return this.at('opt/jupyterhub')
  }
  /** The file that says hubEnvRoot is hubctl's (a directory without it is never touched). */
  get hubEnvMarker(): string {
    return this.at('opt/jupyterhub/.hubctl-env')
  }
  get hubEnvsDir(): string {
    return this.at('opt/jupyterhub/envs')
  }
  /** One environment, named by the hash of the constraints it was built from. */
  hubEnv(id: string): string {
    return this.at('opt/jupyterhub/envs', id)
  }
  /** Written last into an environment: present only when it was built completely. */
  hubEnvComplete(id: string): string {
    return this.at('opt/jupyterhub/envs', id, '.hubctl-complete')
  }
  hubEnvJupyterhub(id: string): string {
    return this.at('opt/jupyterhub/envs', id, 'bin/jupyterhub')
  }
  hubEnvSingleuser(id: string): string {
    return this.at('opt/jupyterhub/envs', id, 'bin/jupyterhub-singleuser')
  }
  hubEnvPython(id: string): string {
    return this.at('opt/jupyterhub/envs', id, 'bin/python3')
  }
  /** The environment in use (a link to envs/<id>, swapped atomically) and the one before it. */
  get hubEnvCurrent(): string {
    return this.at('opt/jupyterhub/current')
  }
  /** The Python of the environment in use (jupyterhub-idle-culler's, when init was given another JupyterHub). */
  get hubEnvCurrentPython(): string {
    return this.at('opt/jupyterhub/current/bin/python3')
  }
  get hubEnvPrevious(): string {
    return this.at('opt/jupyterhub/previous')
  }
  readonly hubEnvLinkTarget = (id: string) => `envs/${id}`

  // the users' Python side: the environment user servers run from, apart from the hub's (env/userenv.ts)
  /** opt/jupyterhub/users: the users' environments (root's, 0755: users read and run them, never write). */
  get usersEnvRoot(): string {
    return this.at('opt/jupyterhub/users')
  }
  get usersEnvsDir(): string {
    return this.at('opt/jupyterhub/users/envs')
  }
  /** One users' environment, named by when it was built. */
  usersEnv(id: string): string {
    return this.at('opt/jupyterhub/users/envs', id)
  }
  /** Written last into a users' environment: its course packages; present only when it was built completely. */
  usersEnvState(id: string): string {
    return this.at('opt/jupyterhub/users/envs', id, '.hubctl-users-env.json')
  }
  usersEnvPython(id: string): string {
    return this.at('opt/jupyterhub/users/envs', id, 'bin/python3')
  }
  /** The users' environment new servers start from (a link to envs/<id>), the one before it, and the base (no course package). */
  get usersEnvCurrent(): string {
    return this.at('opt/jupyterhub/users/current')
  }
  get usersEnvPrevious(): string {
    return this.at('opt/jupyterhub/users/previous')
  }
  get usersEnvBase(): string {
    return this.at('opt/jupyterhub/users/base')
  }
  /** What the spawner runs once the users' environment exists: through the link, so a switch needs no restart of the hub. */
  get usersEnvCurrentSingleuser(): string {
    return this.at('opt/jupyterhub/users/current/bin/jupyterhub-singleuser')
  }
  readonly usersEnvLinkTarget = (id: string) => `envs/${id}`
  /** Where a users' environment nothing uses goes, to be deleted in the background (deleting 400 MB of links takes seconds). */
  usersEnvRemoved(id: string): string {
    return this.at('opt/jupyterhub/users', `.removed-${id}`)
  }

  // service manager
  get systemdUnit(): string {
    return this.at('etc/systemd/system/jupyterhub.service')
  }
  get renewService(): string {
    return this.at('etc/systemd/system/hubctl-renew.service')
  }
  get renewTimer(): string {
    return this.at('etc/systemd/system/hubctl-renew.timer')
  }
  get cronFile(): string {
    return this.at('etc/cron.d/hubctl')
  }
  /** At prefix `/` under systemd: the system's nginx.service made the OOM killer's last choice, as the hub is. */
  get nginxOomDropIn(): string {
    return path.join(this.nginxDropInDir, 'hubctl-oom.conf')
  }
  /** The system's nginx.service's drop-ins (init's is the only file hubctl puts there). */
  get nginxDropInDir(): string {
    return this.at('etc/systemd/system/nginx.service.d')
  }
  /** init --schedule-backup: `hubctl backup` daily or weekly, by a systemd timer or else a cron line. */
  get backupService(): string {
    return this.at('etc/systemd/system/hubctl-backup.service')
  }
  get backupTimer(): string {
    return this.at('etc/systemd/system/hubctl-backup.timer')
  }
  get backupCronFile(): string {
    return this.at('etc/cron.d/hubctl-backup')
  }
  /** Rotation of the logs in logDir (the system's logrotate reads it under prefix `/`). */
  get logrotateConf(): string {
    return this.at('etc/logrotate.d/hubctl')
  }

  /** The secret files, by name, in the order they are generated and checked. */
  get secretFiles(): {cookieSecret: string; proxyAuthToken: string; apiToken: string; dhparam: string} {
    return {
      cookieSecret: this.cookieSecret,
      proxyAuthToken: this.proxyAuthToken,
      apiToken: this.apiToken,
      dhparam: this.dhparam,
    }
  }
}

/** A file beside another one (jupyterhub-singleuser beside jupyterhub). */
export function besideFile(file: string, name: string): string {
  return path.join(path.dirname(file), name)
}

/** The path and every directory above it, from `/` down to the path itself. */
export function pathChain(file: string): string[] {
  const chain: string[] = []
  for (let current = path.resolve(file); ; current = path.dirname(current)) {
    chain.unshift(current)
    if (path.dirname(current) === current) return chain
  }
}

/** Where the user-server check makes the home of an identity made for it (mkdtemp's prefix). */
export function userServerCheckHomePrefix(tmpdir = os.tmpdir()): string {
  return path.join(tmpdir, 'hubctl-user-server-check-')
}

/** SimpleLocalProcessSpawner's home for a user: its home_dir_template as str.format fills it ({username}; {{ and }} are braces). */
export function simpleSpawnerHome(template: string, username: string): string {
  return template.replace(/\{\{|\}\}|\{username\}/g, (token) =>
    token === '{{' ? '{' : token === '}}' ? '}' : username,
  )
}

/** A file inside a virtualenv given by its directory (pyvenv.cfg, bin/python3) or a /proc entry (PID/cmdline). */
export function inside(dir: string, rel: string): string {
  return path.join(dir, rel)
}
