/**
 * Every failure hubctl reports is a HubctlError: one line that names the problem and the fix,
 * and an exit code from the table in README.md. Messages never carry a secret value.
 */
export const ExitCode = {
  OK: 0,
  /** A check failed (secrets check, cert status, doctor): the state is reported, nothing broke. */
  CHECK_FAILED: 1,
  /** Bad input: a flag, a setting or a file given by the operator. Nothing was changed. */
  USAGE: 2,
  /** The machine is not ready: a program missing, a port taken, not root, a directory unwritable. */
  PREFLIGHT: 3,
  /** A generated file did not validate (nginx -t, JupyterHub config load). The old files stay. */
  VALIDATION: 4,
  /** Talking to the certificate authority failed. The live certificate is untouched. */
  ACME: 5,
  /** Another hubctl holds the lock. */
  LOCKED: 6,
  /** A process hubctl runs or supervises failed to start or become healthy. */
  RUNTIME: 7,
  /** Anything else: a bug or an I/O failure. */
  INTERNAL: 70,
} as const

export type ExitCodeValue = (typeof ExitCode)[keyof typeof ExitCode]

export class HubctlError extends Error {
  readonly exitCode: ExitCodeValue
  readonly fix?: string

  constructor(message: string, options: {exitCode?: ExitCodeValue; fix?: string; cause?: unknown} = {}) {
    super(message, {cause: options.cause})
    this.name = 'HubctlError'
    this.exitCode = options.exitCode ?? ExitCode.INTERNAL
    this.fix = options.fix
  }

  /** The one line printed to the operator: problem, then fix. */
  get line(): string {
    return this.fix ? `${this.message}. Fix: ${this.fix}` : this.message
  }
}

// One helper per exit code: the problem, the fix, and (for the log of a bug) the cause.
type ErrorHelper = (message: string, fix: string, cause?: unknown) => HubctlError
const withCode =
  (exitCode: ExitCodeValue): ErrorHelper =>
  (message, fix, cause) =>
    new HubctlError(message, {exitCode, fix, ...(cause === undefined ? {} : {cause})})
/** 1: a check failed; the state is reported. */
export const checkFailedError = withCode(ExitCode.CHECK_FAILED)
/** 2: bad input; nothing was changed. */
export const usageError = withCode(ExitCode.USAGE)
/** 3: the machine is not ready. */
export const preflightError = withCode(ExitCode.PREFLIGHT)
/** 4: a generated file did not validate; the previous one stays. */
export const validationError = withCode(ExitCode.VALIDATION)
/** 5: the certificate authority could not be reached or refused. */
export const acmeError = withCode(ExitCode.ACME)
/** 6: another hubctl holds the lock. */
export const lockedError = withCode(ExitCode.LOCKED)
/** 7: a process failed to start or become healthy. */
export const runtimeError = withCode(ExitCode.RUNTIME)
/** 70: a bug. */
export const internalError = withCode(ExitCode.INTERNAL)

/** The message of anything thrown (an Error's message, or the value as text). */
export function messageOf(error: unknown): string {
  return error instanceof Error ? error.message : String(error)
}

/** Node's errno errors, narrowed. */
export function errnoCode(error: unknown): string | undefined {
  return typeof error === 'object' && error !== null && 'code' in error
    ? String((error as {code: unknown}).code)
    : undefined
}

/** An I/O error as one line naming the file and the fix. */
export function fsError(error: unknown, file: string): HubctlError {
  if (error instanceof HubctlError) return error
  const code = errnoCode(error)
  switch (code) {
    case 'EACCES':
    case 'EPERM':
      return new HubctlError(`permission denied writing or reading ${file}`, {
        exitCode: ExitCode.PREFLIGHT,
        fix: 'run hubctl as root, or give --prefix a directory you own',
        cause: error,
      })
    case 'EROFS':
      return new HubctlError(`${file} is on a read-only file system`, {
        exitCode: ExitCode.PREFLIGHT,
        fix: 'remount it read-write or choose another --prefix',
        cause: error,
      })
    case 'ENOSPC':
    case 'EDQUOT':
      return new HubctlError(`no space left on the device holding ${file}; nothing was replaced`, {
        exitCode: ExitCode.PREFLIGHT,
        fix: 'free some disk space and run the command again',
        cause: error,
      })
    case 'ELOOP':
      return new HubctlError(`${file} is a symbolic link, which hubctl never follows`, {
        exitCode: ExitCode.CHECK_FAILED,
        fix: `remove ${file} and run the command again`,
        cause: error,
      })
    case 'ENOTDIR':
    case 'EISDIR':
      return new HubctlError(
        `${file} or one of its parents is not what hubctl expects (a file where a directory should be, or the reverse)`,
        {exitCode: ExitCode.PREFLIGHT, fix: `move it away and run the command again`, cause: error},
      )
    default:
      return new HubctlError(`cannot write or read ${file}: ${code ?? messageOf(error)}`, {
        exitCode: ExitCode.INTERNAL,
        fix: 'check the file and its directory, then run the command again',
        cause: error,
      })
  }
}
