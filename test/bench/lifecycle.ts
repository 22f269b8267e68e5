/**
 * What a bench starts, it stops: cleanups are deferred as things start and run newest first when
 * their scope ends, on SIGINT/SIGTERM, or when the bench outlives its time limit (then it exits).
 */
type Cleanup = () => Promise<unknown> | unknown

export interface Lifecycle {
  /** Runs `fn` when the current scope ends (or the bench is stopped). */
  defer(fn: Cleanup): void
  /** Runs `fn`, then the cleanups it deferred, newest first. */
  scoped<T>(fn: () => Promise<T>): Promise<T>
  /** Set once a signal or the time limit stopped the bench: the main flow waits for it. */
  aborted(): Promise<never> | undefined
}

export function lifecycle(note: (msg: string) => void, timeoutS: number): Lifecycle {
  const live: Cleanup[] = []
  let aborted: Promise<never> | undefined
  const abort = (why: string, code: number): Promise<never> => (aborted ??= (async () => {
    note(`${why}: stopping everything`)
    while (live.length) await Promise.resolve().then(live.pop()!).catch(() => {})
    process.exit(code)
  })())
  process.on('SIGINT', () => void abort('SIGINT', 130))
  process.on('SIGTERM', () => void abort('SIGTERM', 143))
  setTimeout(() => void abort(`still running after ${timeoutS}s`, 1), timeoutS * 1000).unref()
  return {
    defer: (fn) => void live.push(fn),
    async scoped(fn) {
      const mark = live.length
      try {
        return await fn()
      } finally {
        while (live.length > mark) await Promise.resolve().then(live.pop()!).catch((err) => note(`cleanup failed: ${err}`))
      }
    },
    aborted: () => aborted,
  }
}
