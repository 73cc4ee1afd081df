import type {EnvChangeResult} from '../lib/env/userenv.js'

/** What `hubctl env add|remove|sync|rollback` print: the environment now live and how long it took. */
export function envChangeLines(result: EnvChangeResult): string[] {
  return [
    `users' environment ${result.current} is live (new servers start from it; running servers keep theirs)${result.previous ? `; previous: ${result.previous} (\`hubctl env rollback\`)` : ''}`,
    `course packages: ${result.packages.join(' ') || 'none'}`,
    ...(result.installed.length > 0 ? [`installed: ${result.installed.join(' ')}`] : []),
    `built in ${result.seconds.build.toFixed(1)}s, switched in ${(result.seconds.switch * 1000).toFixed(0)}ms`,
  ]
}
