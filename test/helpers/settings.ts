import type {Settings} from '../../src/lib/config/settings.js'

/** The ports of a hub on a server (init's defaults). */
export const DEFAULT_TEST_PORTS: Settings['ports'] = {
  http: 80,
  https: 443,
  proxy: 8000,
  proxyApi: 8001,
  hub: 8081,
  proxyStandby: 8002,
  proxyStandbyApi: 8003,
}

/**
 * A hub's settings (hubctl.json) for a unit test: hub.example.org, admin alice, PAM, the local
 * spawner, self-signed TLS, the default ports, ffdhe2048, JupyterHub 6.1.1 at /usr/bin, no
 * supervised nginx. `overrides` replaces whole fields, except `executables`, whose fields are
 * laid over the default's; a test states only what its claim is about.
 */
export function testSettings(
  overrides: Partial<Omit<Settings, 'executables'>> & {executables?: Partial<Settings['executables']>} = {},
): Settings {
  const {executables, ...rest} = overrides
  return {
    version: 1,
    domains: ['hub.example.org'],
    admins: ['alice'],
    allowedUsers: [],
    authenticator: 'pam',
    spawner: 'local',
    tls: {mode: 'self-signed'},
    ports: {...DEFAULT_TEST_PORTS},
    dhparam: {mode: 'ffdhe2048', bits: 2048},
    jupyterhubVersion: '6.1.1',
    nginxSupervised: false,
    proxyTls: false,
    ...rest,
    executables: {
      jupyterhub: '/usr/bin/jupyterhub',
      singleuser: '/usr/bin/jupyterhub-singleuser',
      node: '/usr/bin/node',
      proxy: '/x/chp',
      ...executables,
    },
  }
}
