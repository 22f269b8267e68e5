/**
 * The job runner: claims a queued operation, takes the checkpoint through the gateway's own
 * forwarding code (the `checkpoint` function the app hands over, JSON mode), and records the
 * outcome. Retryable failures (the agent unreachable or answering 429/502/503 before anything
 * started) go back to the queue with exponential backoff; after the last attempt the operation
 * is failed. A failure once the agent's stream began is final: retrying could take a second
 * checkpoint of the same alert.
 */
import type { ArchiveInfo } from '../../shared/events.ts'
import type { Target } from '../../shared/names.ts'
import type { RetryConfig } from '../hooks/config.ts'
import type { JobQueue } from './queue.ts'
import type { OperationStore } from './store.ts'

export interface CheckpointJob {
  /** The identity the grant is signed for (the webhook's). */
  sub: string
  requestId: string
  cluster: string
  node?: string
  target: Target
  timeoutSec: number
}

export type JobOutcome =
  | { ok: true; node: string; archive: ArchiveInfo; download: string }
  | { ok: false; node?: string; status: number; code: string; message: string; retryable: boolean; retryAfterSec?: number }

export type CheckpointFn = (job: CheckpointJob) => Promise<JobOutcome>

export interface RunnerDeps {
  store: OperationStore
  queue: JobQueue
  checkpoint: CheckpointFn
  clock: { now(): number }
  log: (line: Record<string, unknown>) => void
  retry: RetryConfig
  timeoutSec: number
  leaseMs: number
}

/** Statuses worth another attempt when nothing reached the runtime. */
export const RETRYABLE_STATUS = new Set([429, 502, 503])

/** Delay before attempt `attempt + 1`: base·2^(attempt−1), at least Retry-After, at most max. */
export function backoffMs(retry: RetryConfig, attempt: number, retryAfterSec?: number): number {
  const exp = retry.baseDelayMs * 2 ** Math.max(0, attempt - 1)
  return Math.min(retry.maxDelayMs, Math.max(exp, (retryAfterSec ?? 0) * 1000))
}

/**
 * @example
 * const runOperation = createRunner({ store, queue, checkpoint, clock, log, retry, timeoutSec: 120, leaseMs: 900_000 })
 * await runOperation(opId) // from the queue consumer
 */
export function createRunner(d: RunnerDeps): (opId: string) => Promise<void> {
  return async function runOperation(opId) {
    const now = d.clock.now()
    const op = await d.store.claim(opId, now, now - d.leaseMs)
    if (!op) return
    const target = { namespace: op.namespace, pod: op.pod, container: op.container }
    const started = d.clock.now()
    let out: JobOutcome
    try {
      out = await d.checkpoint({ sub: op.sub, requestId: op.id, cluster: op.cluster, ...(op.node ? { node: op.node } : {}), target, timeoutSec: d.timeoutSec })
    } catch (err) {
      out = { ok: false, status: 500, code: 'internal', message: 'internal error', retryable: false }
      d.log({ type: 'error', operation: op.id, error: String((err as Error)?.stack ?? err) })
    }
    const at = d.clock.now()
    const line = { type: 'operation', operation: op.id, cluster: op.cluster, ...target, attempt: op.attempts, durationMs: at - started }
    if (out.ok) {
      await d.store.update(op.id, { state: 'succeeded', updatedAt: at, node: out.node, result: { archive: out.archive, node: out.node, download: out.download } })
      d.log({ ...line, node: out.node, state: 'succeeded', sha256: out.archive.sha256 })
      return
    }
    const error = { code: out.code, message: out.message, status: out.status }
    const node = out.node ?? op.node
    if (out.retryable && op.attempts < d.retry.maxAttempts) {
      const delay = backoffMs(d.retry, op.attempts, out.retryAfterSec)
      await d.store.update(op.id, { state: 'queued', updatedAt: at, notBefore: at + delay, error, ...(node ? { node } : {}) })
      d.log({ ...line, state: 'queued', code: out.code, retryInMs: delay })
      // If this send is lost the record stays queued: Node's sweep or the queue's redelivery finds it.
      await d.queue.send(op.id, delay)
      return
    }
    await d.store.update(op.id, { state: 'failed', updatedAt: at, error, ...(node ? { node } : {}) })
    d.log({ ...line, state: 'failed', code: out.code })
  }
}
