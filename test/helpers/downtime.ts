import https from 'node:https'

/** Whether GET /hub/login answers 200 through nginx at https://localhost:PORT (the hub's CA trusted). */
export function loginAnswers(port: number, ca: string): Promise<boolean> {
  return new Promise((resolve) => {
    const request = https.get(
      {
        host: '127.0.0.1',
        port,
        path: '/hub/login',
        servername: 'localhost',
        headers: {Host: `localhost:${port}`},
        ca,
        timeout: 5000,
      },
      (response) => {
        response.resume()
        resolve(response.statusCode === 200)
      },
    )
    request.on('timeout', () => request.destroy())
    request.on('error', () => resolve(false))
  })
}

/**
 * Run `during` while the login page is polled (every 100 ms): what it returned, and the longest
 * time the page did not answer 200 (a person's downtime).
 */
export async function loginOutage<T>(
  port: number,
  ca: string,
  during: () => Promise<T>,
): Promise<{result: T; longestDownMs: number}> {
  let polling = true
  let downSince: number | undefined
  let longestDownMs = 0
  const poll = (async () => {
    while (polling) {
      const ok = await loginAnswers(port, ca)
      const now = Date.now()
      if (ok && downSince !== undefined) {
        longestDownMs = Math.max(longestDownMs, now - downSince)
        downSince = undefined
      } else if (!ok && downSince === undefined) downSince = now
      await new Promise((resolve) => setTimeout(resolve, 100))
    }
  })()
  try {
    const result = await during()
    return {result, longestDownMs: await stop()}
  } finally {
    polling = false
    await poll
  }

  /** Polling ended; an outage still under way counts until now. */
  async function stop(): Promise<number> {
    polling = false
    await poll
    return downSince === undefined ? longestDownMs : Math.max(longestDownMs, Date.now() - downSince)
  }
}
