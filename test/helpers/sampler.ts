import fs from 'node:fs/promises'

/*
 * What the processes of one tree show to anyone who reads /proc, sampled again and again while a
 * command runs: its argv and its environment. The tree is walked from its root through the kernel's
 * list of each thread's children (/proc/PID/task/TID/children), so that only the tested command
 * and what it started are read, never the rest of the machine.
 */

/** One process as it was seen once. */
export interface ProcSample {
  pid: number
  cmdline: string[]
  environ: string[]
}

/** The children of `pid`, from each of its threads (a thread that ends meanwhile is left out). */
async function childrenOf(pid: number): Promise<number[]> {
  let tasks: string[]
  try {
    tasks = await fs.readdir(`/proc/${pid}/task`)
  } catch {
    return []
  }
  const lists = await Promise.all(
    tasks.map((tid) => fs.readFile(`/proc/${pid}/task/${tid}/children`, 'utf8').catch(() => '')),
  )
  return lists.flatMap((text) => text.split(' ').filter(Boolean).map(Number))
}

/** `root` and every process descended from it that runs now. */
export async function processTree(root: number): Promise<number[]> {
  const seen = new Set<number>()
  const queue = [root]
  while (queue.length > 0) {
    const pid = queue.shift()!
    if (seen.has(pid)) continue
    seen.add(pid)
    queue.push(...(await childrenOf(pid)))
  }
  return [...seen]
}

async function sampleOf(pid: number): Promise<ProcSample | undefined> {
  try {
    const [cmdline, environ] = await Promise.all([
      fs.readFile(`/proc/${pid}/cmdline`, 'utf8'),
      fs.readFile(`/proc/${pid}/environ`, 'utf8'),
    ])
    // A zombie has neither: nothing left to read.
    if (cmdline === '' && environ === '') return undefined
    return {pid, cmdline: cmdline.split('\0').filter(Boolean), environ: environ.split('\0').filter(Boolean)}
  } catch {
    return undefined
  }
}

/**
 * Samples the trees of `roots()` (asked again each round: a root may appear while the command
 * runs) until stop(); each distinct (pid, argv, environment) is kept once.
 */
export class TreeSampler {
  private readonly seen = new Map<string, ProcSample>()
  private running = false
  private loop?: Promise<void>
  /** Rounds completed: a test can check the sampler ran while the command did. */
  rounds = 0

  constructor(private readonly roots: () => number[]) {}

  start(): this {
    this.running = true
    this.loop = (async () => {
      while (this.running) {
        await this.round()
        this.rounds++
        await new Promise((resolve) => setImmediate(resolve))
      }
    })()
    return this
  }

  private async round(): Promise<void> {
    const pids = new Set<number>()
    for (const root of this.roots()) for (const pid of await processTree(root)) pids.add(pid)
    const samples = await Promise.all([...pids].map(sampleOf))
    for (const sample of samples) {
      if (!sample) continue
      const key = `${sample.pid}\0${sample.cmdline.join('\0')}\0\0${sample.environ.join('\0')}`
      if (!this.seen.has(key)) this.seen.set(key, sample)
    }
  }

  /** Stop after one last round; every distinct sample. */
  async stop(): Promise<ProcSample[]> {
    this.running = false
    await this.loop
    await this.round()
    return [...this.seen.values()]
  }
}
