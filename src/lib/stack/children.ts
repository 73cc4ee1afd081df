import {Layout} from '../config/layout.js'
import {nginxConfigArgs} from '../config/nginx.js'
import {proxyExecutable, seededStoreModule} from './proxy.js'
import {Settings} from '../config/settings.js'
import {ChildSpec} from './state.js'

/* The programs the supervisor runs, with their arguments and environments. */
// ---------------------------------------------------------------------------------------------
// What runs

/**
 * The operator's environment less the secrets JupyterHub and the proxy would take from it over
 * the files: JPY_COOKIE_SECRET overrides cookie_secret_file and CONFIGPROXY_AUTH_TOKEN the proxy
 * token, so a rotation would silently have no effect. (JUPYTERHUB_CRYPT_KEY is the operator's own
 * and stays.) The proxy gets its token from the file, added by proxySpec().
 */
export function withoutProxySecrets(baseEnv: NodeJS.ProcessEnv): NodeJS.ProcessEnv {
  const cleanEnv = {...baseEnv}
  delete cleanEnv.CONFIGPROXY_AUTH_TOKEN
  delete cleanEnv.JPY_COOKIE_SECRET
  delete cleanEnv.HUBCTL_PROXY_SEED
  return cleanEnv
}

/**
 * configurable-http-proxy on its own ports, or the standby's. With `seedFile` it starts with the
 * routes in that file (proxy/seeded-store.cjs), so that it routes users right from its first request.
 */
export function proxySpec(
  layout: Layout,
  settings: Settings,
  proxyToken: string,
  options: {baseEnv?: NodeJS.ProcessEnv; standby?: boolean; seedFile?: string} = {},
): ChildSpec {
  const {ports} = settings
  const env: NodeJS.ProcessEnv = {
    ...withoutProxySecrets(options.baseEnv ?? process.env),
    CONFIGPROXY_AUTH_TOKEN: proxyToken,
  }
  if (options.seedFile) env.HUBCTL_PROXY_SEED = options.seedFile
  return {
    name: 'proxy',
    command: process.execPath,
    args: [
      proxyExecutable(),
      '--ip',
      '127.0.0.1',
      '--port',
      String(options.standby ? ports.proxyStandby : ports.proxy),
      '--api-ip',
      '127.0.0.1',
      '--api-port',
      String(options.standby ? ports.proxyStandbyApi : ports.proxyApi),
      '--error-target',
      `http://127.0.0.1:${ports.hub}/hub/error`,
      '--default-target',
      `http://127.0.0.1:${ports.hub}`,
      // init --subdomains: the hub adds each user's route as /NAME.DOMAIN/user/NAME/ (its host first).
      ...(settings.subdomains ? ['--host-routing'] : []),
      ...(options.seedFile ? ['--storage-backend', seededStoreModule()] : []),
    ],
    env,
    logFile: layout.proxyLog,
  }
}

/** The programs for these settings. The proxy's token is in its environment only. */
export function childSpecs(
  layout: Layout,
  settings: Settings,
  proxyToken: string,
  baseEnv: NodeJS.ProcessEnv = process.env,
): ChildSpec[] {
  const cleanEnv = withoutProxySecrets(baseEnv)
  const specs: ChildSpec[] = [
    proxySpec(layout, settings, proxyToken, {baseEnv}),
    {
      name: 'hub',
      command: settings.executables.jupyterhub,
      args: ['-f', layout.hubConfig],
      env: cleanEnv,
      cwd: layout.srvDir,
      logFile: layout.hubLog,
    },
  ]
  if (settings.nginxSupervised && !layout.isSystem) {
    const executable = settings.executables.nginx ?? 'nginx'
    specs.push({
      name: 'nginx',
      command: executable,
      args: [...nginxConfigArgs(layout), '-g', 'daemon off;'],
      env: cleanEnv,
      cwd: layout.prefix,
      logFile: layout.nginxErrorLog,
      killGroup: true,
    })
  }
  return specs
}
