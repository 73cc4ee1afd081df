import {expect} from 'chai'

import {Layout} from '../../../src/lib/config/layout.js'
import {renderChallengeSite} from '../../../src/lib/config/site.js'

/*
 * The challenge site of one ACME order (issue 20): the hub's names only, on the HTTP port, the
 * webroot, and never a default_server (the other sites of a system nginx keep every other name).
 */
describe('the ACME challenge site', () => {
  const layout = new Layout('/srv/test-prefix')

  it('serves the webroot for the names given on the HTTP port, and claims no other name', async () => {
    const site = await renderChallengeSite(layout, 8080, ['hub.example.org', 'xn--bcher-kva.example'])
    expect(site).to.match(/^\s*listen 8080;$/m)
    expect(site).to.match(/^\s*server_name hub\.example\.org xn--bcher-kva\.example;$/m)
    expect(site).to.include(`root ${layout.acmeWebroot};`)
    expect(site).to.match(/location \^~ \/\.well-known\/acme-challenge\/ \{/)
    expect(site).not.to.match(/listen[^;]*default_server/)
    expect(site).not.to.match(/server_name\s+_/)
  })

  it('refuses a name that is not one nginx token (it would inject configuration)', async () => {
    const refused = await renderChallengeSite(layout, 80, ['hub.example.org; return 200 x']).then(
      () => undefined,
      (error: Error) => error,
    )
    expect(refused?.message).to.match(/nginx|unsafe|refus/i)
  })
})
