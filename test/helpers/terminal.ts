import {execa} from 'execa'

/*
 * A program driven through a pseudo-terminal, as a person at a terminal would: python3's pty
 * module runs it on the terminal's other end (so that process.stdin.isTTY and stdout.isTTY hold),
 * waits for each expected prompt in what it prints and types the answer, then reads the rest.
 */

/**
 * Run `argv` on a pseudo-terminal; for each [prompt, answer] in order, wait until the prompt
 * (a regular expression) shows, then type the answer and Enter. The transcript is what the
 * terminal showed, colour and cursor codes removed.
 */
export async function onTerminal(
  argv: string[],
  answers: Array<[RegExp, string]>,
  options: {env?: Record<string, string>; timeoutSeconds?: number} = {},
): Promise<{exitCode: number; transcript: string; answered: number}> {
  const spec = {
    argv,
    env: {TERM: 'xterm', COLUMNS: '200', LINES: '50', ...options.env},
    answers: answers.map(([prompt, answer]) => [prompt.source, answer]),
    timeoutSeconds: options.timeoutSeconds ?? 600,
  }
  const result = await execa('python3', ['-c', SCRIPT, JSON.stringify(spec)], {reject: false})
  if (result.exitCode !== 0 && !result.stdout.startsWith('{'))
    throw new Error(`the terminal driver failed: ${result.stderr}`)
  return JSON.parse(result.stdout) as {exitCode: number; transcript: string; answered: number}
}

const SCRIPT = String.raw`
import json, os, pty, re, select, sys, time
spec = json.loads(sys.argv[1])
pid, fd = pty.fork()
if pid == 0:
    os.environ.update(spec['env'])
    os.execvp(spec['argv'][0], spec['argv'])
raw = b''
answered = 0
searched_from = 0
deadline = time.time() + spec['timeoutSeconds']
def clean(data):
    return re.sub(r'\x1b\[[0-9;?]*[A-Za-z]|\x1b[()][A-Z0-9]|\r', '', data.decode('utf-8', 'replace'))
while True:
    if time.time() > deadline:
        os.kill(pid, 9)
        break
    ready, _, _ = select.select([fd], [], [], 0.2)
    if ready:
        try:
            data = os.read(fd, 65536)
        except OSError:
            break
        if not data:
            break
        raw += data
    if answered < len(spec['answers']):
        prompt, answer = spec['answers'][answered]
        text = clean(raw)
        match = re.compile(prompt).search(text, searched_from)
        if match:
            searched_from = match.end()
            time.sleep(0.2)
            os.write(fd, answer.encode() + b'\r')
            answered += 1
_, status = os.waitpid(pid, 0)
code = os.WEXITSTATUS(status) if os.WIFEXITED(status) else 128 + os.WTERMSIG(status)
print(json.dumps({'exitCode': code, 'transcript': clean(raw), 'answered': answered}))
`
