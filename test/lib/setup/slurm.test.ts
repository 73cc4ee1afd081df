import {expect} from 'chai'

import {checkPartition, type SlurmPartition} from '../../../src/lib/setup/slurm.js'
import {thrown} from '../../helpers/errors.js'

describe('the Slurm partition against the cluster', () => {
  const partitions: SlurmPartition[] = [
    {name: 'batch', avail: 'up', nodes: [{name: 'n1', memoryMb: 4096, cpus: 4, state: 'idle'}]},
    {name: 'gpu', avail: 'down', nodes: [{name: 'g1', memoryMb: 65536, cpus: 32, state: 'idle'}]},
  ]
  const request = {partition: 'batch', memory: '2G', memoryMb: 2048, cpus: 1}

  it('refuses a partition that does not exist, naming those that do', () => {
    const error = thrown(() => checkPartition(partitions, {...request, partition: 'nope'}))
    expect(error.exitCode).to.equal(2)
    expect(error.fix).to.equal('give --slurm-partition one of batch, gpu')
  })

  it('refuses memory or CPUs above every node of the partition', () => {
    expect(thrown(() => checkPartition(partitions, {...request, memory: '8G', memoryMb: 8192})).message).to.include(
      'the largest has 4096 MB',
    )
    expect(thrown(() => checkPartition(partitions, {...request, cpus: 8})).message).to.include('at most 4')
    expect(checkPartition(partitions, request).warnings).to.deep.equal([])
  })

  it('warns of a partition that is not up', () => {
    expect(checkPartition(partitions, {...request, partition: 'gpu'}).warnings.join()).to.include('is down')
  })
})
