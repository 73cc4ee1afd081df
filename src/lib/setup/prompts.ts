import type {Prompter} from './init-request.js'

/** The terminal prompter, on @inquirer/prompts (imported only when a question is asked). */
export const inquirerPrompter: Prompter = {
  async input(message, validate) {
    const {input} = await import('@inquirer/prompts')
    return input({message, validate})
  },
}

export function isInteractive(): boolean {
  return Boolean(process.stdin.isTTY && process.stdout.isTTY)
}

/** Pick some of `choices` on a terminal (@inquirer/prompts' checkbox). */
export async function chooseSome<T extends string>(
  message: string,
  choices: Array<{value: T; name: string}>,
): Promise<T[]> {
  const {checkbox} = await import('@inquirer/prompts')
  return checkbox<T>({message, choices})
}

/** Yes or no on a terminal. */
export async function confirmOnTerminal(message: string): Promise<boolean> {
  const {confirm} = await import('@inquirer/prompts')
  return confirm({message, default: false})
}

/** A new password on a terminal, asked twice (@inquirer/prompts' password: nothing echoed); asks again until both agree. */
export async function passwordTwice(message: string): Promise<string> {
  const {password} = await import('@inquirer/prompts')
  for (;;) {
    const first = await password({message, mask: true})
    const second = await password({message: 'Again:', mask: true})
    if (first === second) return first
    process.stderr.write('The two passwords differ; try again.\n')
  }
}

/**
 * What was piped to hubctl's standard input (a secret: --oauth-client-secret-stdin,
 * --password-stdin), at most 64 KiB; empty on a terminal, where nothing was piped.
 */
export async function readPipedStdin(): Promise<string> {
  if (process.stdin.isTTY) return ''
  const chunks: Buffer[] = []
  let size = 0
  for await (const chunk of process.stdin) {
    size += (chunk as Buffer).length
    if (size > 64 * 1024) break
    chunks.push(chunk as Buffer)
  }
  return Buffer.concat(chunks).toString('utf8')
}

/** A secret piped to hubctl (readPipedStdin); on a terminal, asked without echo instead. */
export async function readSecretFromStdin(message: string): Promise<string> {
  if (process.stdin.isTTY) {
    const {password} = await import('@inquirer/prompts')
    return password({message, mask: false})
  }
  return readPipedStdin()
}
