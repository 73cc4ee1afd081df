/**
 * A test that needs a program this machine may lack (systemd-analyze, logrotate) skips without it,
 * saying so; in CI (CI set and not "false", as .ci/run and most CI services set it) it fails
 * instead, naming the program: a CI that lacks a tool must not pass with the test unrun.
 */
export function needTool(context: {skip(): void}, found: boolean, reason: string): void {
  if (found) return
  const ci = process.env.CI
  if (ci && ci !== 'false' && ci !== '0')
    throw new Error(`${reason}: this test cannot run, and CI (CI=${ci}) does not skip it`)
  console.log(`      skipped: ${reason}`)
  context.skip()
}
