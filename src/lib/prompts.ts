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
