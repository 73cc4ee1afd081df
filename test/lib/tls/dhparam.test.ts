import {expect} from 'chai'
import {execFileSync} from 'node:child_process'
import fs from 'node:fs/promises'
import os from 'node:os'
import path from 'node:path'

import {FFDHE2048_PEM, dhparamBits, dhparamPem, generateDhparam} from '../../../src/lib/tls/dhparam.js'

function opensslCheck(pem: string): string {
  const file = path.join(os.tmpdir(), `hubctl-dh-${process.pid}-${Math.random()}.pem`)
  return execFileSync('sh', ['-c', `cat > ${file} && openssl dhparam -in ${file} -check -text -noout 2>&1; rm -f ${file}`], {input: pem, encoding: 'utf8'})
}

describe('dhparam', () => {
  it('ships the RFC 7919 ffdhe2048 group, which openssl recognizes', () => {
    const out = opensslCheck(FFDHE2048_PEM)
    expect(out).to.match(/GROUP: ffdhe2048/)
    expect(out).to.match(/DH parameters appear to be ok/)
    expect(dhparamBits(FFDHE2048_PEM)).to.equal(2048)
  })

  it('generates safe-prime parameters that `openssl dhparam -check` accepts (1024 bits here for speed)', async () => {
    let progressed = 0
    const pem = await generateDhparam(1024, {workers: 2, onProgress: () => { progressed++ }, progressIntervalMs: 10})
    expect(pem).to.match(/^-----BEGIN DH PARAMETERS-----\n/)
    expect(dhparamBits(pem)).to.equal(1024)
    expect(opensslCheck(pem)).to.match(/DH parameters appear to be ok/)
    expect(progressed).to.be.greaterThan(0)
  })

  it('stops its worker threads when cancelled', async () => {
    const abort = new AbortController()
    const promise = generateDhparam(4096, {workers: 2, signal: abort.signal})
    abort.abort()
    let error: unknown
    try {
      await promise
    } catch (error_) {
      error = error_
    }
    expect(String(error)).to.match(/cancelled/)
  })

  it('rejects what is not a DH parameters block', () => {
    expect(dhparamBits('hello')).to.equal(undefined)
    expect(dhparamBits(dhparamPem(23n, 2n))).to.equal(5)
    void fs
  })
})
