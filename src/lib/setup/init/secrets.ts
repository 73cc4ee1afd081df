import {FFDHE2048_PEM, generateDhparam} from '../../tls/dhparam.js'
import {SecretStore, problemsError} from '../../files/secrets.js'
import {type InitContext, type InitStep, hubUrl} from './context.js'

/** The DH parameters init writes: RFC 7919's group, or fresh ones searched for by worker threads. */
function dhparamSource(ctx: InitContext): Promise<string> {
  const {request, deps, handoff} = ctx
  if (request.dhparam === 'ffdhe2048') return Promise.resolve(FFDHE2048_PEM)
  const make =
    deps.makeDhparam ??
    ((bits, onProgress) =>
      generateDhparam(bits, {
        signal: handoff.signal,
        onProgress: (p) => onProgress(`searching with ${p.workers} threads, ${Math.round(p.elapsedMs / 1000)}s`),
      }))
  return make(request.dhparamBits, (text) => ctx.reporter.progress('render', `DH parameters: ${text}`))
}

/**
 * 3. secrets: the tokens, the DH parameters, the OAuth client secret and local mode's login. A
 * valid secret is kept; fresh DH parameters are searched for while the next steps go on (the render
 * step waits for them).
 */
export const secrets: InitStep = {
  name: 'secrets',

  plan(ctx) {
    const {layout, result} = ctx
    result.files.push(
      ...[
        ...Object.values(layout.secretFiles),
        ...(result.oauth?.clientSecret === 'would write' ? [layout.oauthClientSecret] : []),
      ].map((file) => ({file, action: 'would write' as const})),
    )
  },

  async run(ctx) {
    const {layout, request, result, handoff, reporter: r} = ctx
    const settings = ctx.plan.rendered.settings
    r.start('secrets')
    const store = new SecretStore(layout)
    const dhProblems = await store.checkOne('dhparam')
    const dhMissing = dhProblems.length === 1 && dhProblems[0].problem.endsWith('is missing')
    if (dhProblems.length > 0 && !dhMissing) throw problemsError(dhProblems)
    const tokens = await store.generateMissing(
      () => Promise.reject(new Error('unused')),
      ['cookieSecret', 'proxyAuthToken', 'apiToken'],
    )
    if (dhMissing) {
      handoff.dhWrite = dhparamSource(ctx).then((pem) => store.write('dhparam', pem))
      handoff.dhWrite.catch(() => {}) // awaited by the render step; no unhandled rejection meanwhile
    }
    result.secrets = {
      created: [...tokens.created, ...(dhMissing ? ['dhparam' as const] : [])],
      kept: [...tokens.kept, ...(dhMissing ? [] : ['dhparam' as const])],
    }
    if (request.oauth?.clientSecret !== undefined && result.oauth) {
      const {changed} = await store.writeOAuthClientSecret(request.oauth.clientSecret)
      result.oauth.clientSecret = changed ? 'written' : 'kept'
    }
    if (settings.authenticator === 'dummy' || settings.authenticator === 'shared-password') {
      const login = await store.ensureLoginPassword()
      if (login.created) result.login = {url: hubUrl(settings), user: settings.admins[0], password: login.password}
    }
    r.done(
      'secrets',
      tokens.created.length > 0
        ? `created ${tokens.created.join(', ')}${dhMissing ? '; DH parameters under way' : ''}`
        : `tokens present, none changed${dhMissing ? '; DH parameters under way' : ''}`,
    )
  },
}
