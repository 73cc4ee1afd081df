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
