import {expect} from 'chai'
import {execFileSync} from 'node:child_process'
import fs from 'node:fs/promises'
import os from 'node:os'
import path from 'node:path'

import {FFDHE2048_PEM, dhparamBits, dhparamPem, generateDhparam} from '../../../src/lib/tls/dhparam.js'

/** This process's threads (/proc/self/task) and CPU seconds used so far, all threads (utime + stime of /proc/self/stat). */
async function threads(): Promise<number> {
  return (await fs.readdir('/proc/self/task')).length
}

async function cpuSeconds(): Promise<number> {
  const stat = await fs.readFile('/proc/self/stat', 'utf8')
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ')
  // fields[0] is field 3 (state): utime is field 14, stime field 15.
  return (Number(fields[11]) + Number(fields[12])) / 100
}

function opensslCheck(pem: string): string {
  const file = path.join(os.tmpdir(), `hubctl-dh-${process.pid}-${Math.random()}.pem`)
  return execFileSync(
    'sh',
    ['-c', `cat > ${file} && openssl dhparam -in ${file} -check -text -noout 2>&1; rm -f ${file}`],
    {input: pem, encoding: 'utf8'},
  )
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
    const pem = await generateDhparam(1024, {
      workers: 2,
      onProgress: () => {
        progressed++
      },
      progressIntervalMs: 10,
    })
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

  it('stops the losers: once one worker finds a prime, no other worker thread is left running', async () => {
    const before = await threads()
    let during = 0
    let pem = ''
    // A 1024-bit search may end before the threads are sampled with all four running (the sample
    // is asynchronous): such a run shows nothing, and the search is run again, up to five times.
    for (let attempt = 0; attempt < 5 && during < before + 4; attempt++) {
      pem = await generateDhparam(1024, {
        workers: 4,
        onProgress: () => {
          void threads().then((n) => {
            during = Math.max(during, n)
          })
        },
        progressIntervalMs: 5,
      })
    }
    expect(dhparamBits(pem)).to.equal(1024)
    expect(during, 'the four workers ran as threads of this process').to.be.at.least(before + 4)
    expect(await threads(), 'threads left after it returned').to.be.at.most(before)
    const cpu = await cpuSeconds()
    await new Promise((resolve) => {
      setTimeout(resolve, 1000)
    })
    // Three searching losers would burn up to 3 CPU-seconds here (as many as the cores let them).
    expect((await cpuSeconds()) - cpu, 'CPU seconds used in the second after it returned').to.be.below(0.3)
  })

  it('rejects what is not a DH parameters block', () => {
    expect(dhparamBits('hello')).to.equal(undefined)
    expect(dhparamBits(dhparamPem(23n, 2n))).to.equal(5)
    void fs
  })
})
