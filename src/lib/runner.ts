import {faultPoint} from './files/atomic.js'

/** How services run other programs: injected, so unit tests can fake it. */
export interface RunOptions {
  env?: Record<string, string | undefined>
  /** false: the program gets `env` only, nothing of hubctl's own environment. */
  extendEnv?: boolean
  /** Text written to the program's standard input (the way secrets reach a program: never argv). */
  input?: string
  cwd?: string
  timeoutMs?: number
}

export interface RunResult {
  exitCode: number
  stdout: string
  stderr: string
  /** True when the program could not be started at all (not found, not executable). */
  notFound: boolean
  /** True when it was killed at RunOptions.timeoutMs. */
  timedOut?: boolean
}

export interface Runner {
  run(command: string, args: string[], options?: RunOptions): Promise<RunResult>
}

/** The real runner, on execa (imported only when a program is first run). */
export const execaRunner: Runner = {
  async run(command, args, options = {}) {
    const {execa} = await import('execa')
    const child = execa(command, args, {
      reject: false,
      env: options.env,
      extendEnv: options.extendEnv ?? true,
      input: options.input,
      stdin: options.input === undefined ? 'ignore' : undefined,
      cwd: options.cwd,
      timeout: options.timeoutMs,
      stripFinalNewline: true,
    })
    // Kill tests hold hubctl here, with the program running (a tar, a pip, a copy of the database).
    await faultPoint(`run ${command}`)
    const result = await child
    const notFound = result.exitCode === undefined && /ENOENT|EACCES/.test(String(result.code ?? result.message))
    return {
      exitCode: result.exitCode ?? (notFound ? 127 : 1),
      stdout: String(result.stdout ?? ''),
      stderr: String(result.stderr ?? (notFound ? result.message : '')),
      notFound,
      ...(result.timedOut ? {timedOut: true} : {}),
    }
  },
}

/** Find a program on PATH (plus the sbin directories, which a non-login PATH may lack). */
export async function which(program: string, pathEnv = process.env.PATH ?? ''): Promise<string | undefined> {
  const {access, stat} = await import('node:fs/promises')
  const {constants} = await import('node:fs')
  const path = await import('node:path')
  if (program.includes('/')) {
    try {
      await access(program, constants.X_OK)
      return (await stat(program)).isFile() ? path.resolve(program) : undefined
    } catch {
      return undefined
    }
  }
  const dirs = [...pathEnv.split(':').filter(Boolean), '/usr/local/sbin', '/usr/sbin', '/sbin']
  for (const dir of dirs) {
    const candidate = path.join(dir, program)
    try {
      await access(candidate, constants.X_OK)
      if ((await stat(candidate)).isFile()) return candidate
    } catch {
      // not here
    }
  }
  return undefined
}
