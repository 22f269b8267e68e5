/**
 * The in-process job queue for Node: bounded in memory, with the operation store (node:sqlite)
 * as the source of truth. Memory holds at most `capacity` ids; what does not fit, a delayed
 * retry whose timer died with the process, or a job that was running at a crash is found again
 * by the sweep (`store.due`) — at start and every `sweepMs` — so nothing accepted is lost.
 */
import type { JobQueue, OperationStore } from '../operations/model.ts'

export interface NodeJobQueueOptions {
  store: OperationStore
  run: (opId: string) => Promise<void>
  now: () => number
  log: (line: Record<string, unknown>) => void
  concurrency?: number
  capacity?: number
  sweepMs?: number
}

export interface NodeJobQueue extends JobQueue {
  /** Requeues what was running when the last process died, then starts sweeping. */
  start(): Promise<void>
  /** Stops taking work and waits (up to `graceMs`) for running jobs; the rest stays in the store. */
  close(graceMs: number): Promise<void>
  /** Jobs waiting in memory and running (for tests and metrics). */
  size(): { waiting: number; running: number }
}

/**
 * @example
 * const queue = nodeJobQueue({ store, run: (id) => runOperation(id), now: Date.now, log })
 * await queue.start()
 */
export function nodeJobQueue(options: NodeJobQueueOptions): NodeJobQueue {
  const concurrency = options.concurrency ?? 4
  const capacity = options.capacity ?? 1000
  const sweepMs = options.sweepMs ?? 5000
  const waiting: string[] = []
  const known = new Set<string>()
  const running = new Set<Promise<void>>()
  const timers = new Set<ReturnType<typeof setTimeout>>()
  let sweeper: ReturnType<typeof setInterval> | undefined
  let closed = false

  function push(id: string): void {
    if (closed || known.has(id) || waiting.length >= capacity) return
    known.add(id)
    waiting.push(id)
    pump()
  }

  function pump(): void {
    while (!closed && running.size < concurrency && waiting.length > 0) {
      const id = waiting.shift()!
      const p = options
        .run(id)
        .catch((err) => options.log({ type: 'error', operation: id, error: String((err as Error)?.stack ?? err) }))
        .finally(() => {
          running.delete(p)
          known.delete(id)
          pump()
        })
      running.add(p)
    }
  }

  async function sweep(): Promise<void> {
    if (closed) return
    const room = capacity - waiting.length
    if (room <= 0) return
    try {
      for (const id of await options.store.due(options.now(), room)) push(id)
    } catch (err) {
      options.log({ type: 'error', error: `operation sweep: ${String(err)}` })
    }
  }

  return {
    async send(id, delayMs = 0) {
      if (delayMs <= 0) return push(id)
      const t = setTimeout(() => {
        timers.delete(t)
        push(id)
      }, delayMs)
      timers.add(t)
    },
    async start() {
      const n = await options.store.requeueRunning(options.now())
      if (n > 0) options.log({ type: 'operations_recovered', running: n })
      await sweep()
      sweeper = setInterval(() => void sweep(), sweepMs)
      sweeper.unref()
    },
    async close(graceMs) {
      closed = true
      if (sweeper) clearInterval(sweeper)
      for (const t of timers) clearTimeout(t)
      timers.clear()
      waiting.length = 0
      await Promise.race([Promise.all(running), new Promise<void>((r) => setTimeout(r, graceMs).unref())])
    },
    size: () => ({ waiting: waiting.length, running: running.size }),
  }
}
