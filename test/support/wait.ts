/** Bounded waits for tests: a sleep, a deadline on one promise, and polling until a value comes. */

export const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms))

/** Bounds a wait: rejects with `what` after `ms`. */
export async function within<T>(p: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined
  try {
    return await Promise.race([p, new Promise<never>((_, rej) => (timer = setTimeout(() => rej(new Error(`${what}: no answer within ${ms} ms`)), ms)))])
  } finally {
    clearTimeout(timer)
  }
}

/** Polls `probe` every `everyMs` until it returns a value other than undefined, at most `ms`. */
export async function poll<T>(probe: () => Promise<T | undefined>, ms: number, what: string, everyMs = 200): Promise<T> {
  const deadline = Date.now() + ms
  for (;;) {
    const v = await probe()
    if (v !== undefined) return v
    if (Date.now() > deadline) throw new Error(`${what}: not within ${ms} ms`)
    await sleep(everyMs)
  }
}
