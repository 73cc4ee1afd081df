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

export function usageError(message: string, fix: string): HubctlError {
  return new HubctlError(message, {exitCode: ExitCode.USAGE, fix})
}

export function preflightError(message: string, fix: string): HubctlError {
  return new HubctlError(message, {exitCode: ExitCode.PREFLIGHT, fix})
}

/** Node's errno errors, narrowed. */
export function errnoCode(error: unknown): string | undefined {
  return typeof error === 'object' && error !== null && 'code' in error ? String((error as {code: unknown}).code) : undefined
}
