/**
 * The job runner: claims a queued operation, takes the checkpoint through the gateway's own
 * forwarding code (the `checkpoint` function the app hands over, JSON mode), and records the
 * outcome. Retryable failures (the agent unreachable or answering 429/502/503 before anything
 * started, or the runtime reporting that the dump itself failed) go back to the queue with
 * exponential backoff; after the last attempt the operation is failed. Any other failure once the
 * agent's stream began is final: retrying could take a second checkpoint of the same alert (a
 * `timeout`, for one, leaves its archive on the node).
 *
 * The attempt is recorded as dispatched (`dispatchedAt`, with the node) just before the request
 * goes out. A job found again with that mark — the process died mid-run, a Worker's lease ran
 * out, or the outcome write failed — is never sent again: it is reconciled against the agent's
 * list (an archive of the same target created since the dispatch → succeeded with it). While
 * the checkpoint may still be in progress (the dispatch window) it waits and looks again; after
 * that, finding none, it fails with `checkpoint_failed` ("interrupted").
 */
import type { CheckpointFn, JobOutcome, JobQueue, OperationRecord, Operations, OperationStore, ReconcileFn, RetryConfig } from './model.ts'

export interface RunnerDeps {
  store: OperationStore
  queue: JobQueue
  checkpoint: CheckpointFn
  reconcile: ReconcileFn
  clock: { now(): number }
  log: (line: Record<string, unknown>) => void
  retry: RetryConfig
  timeoutSec: number
  leaseMs: number
  /** How long after a dispatch its archive may still appear (the job's timeout plus the grant margin). */
  dispatchWindowMs: number
}

/** Statuses worth another attempt when nothing reached the runtime. */
export const RETRYABLE_STATUS = new Set([429, 502, 503])

/**
 * Final-event codes worth another attempt. `checkpoint_failed`: the runtime said the dump failed
 * (CRIU racing a fork or timing out while freezing), the container was thawed and the agent kept
 * nothing, so a retry cannot make a second archive.
 */
export const RETRYABLE_FINAL = new Set(['checkpoint_failed'])

/** Delay before attempt `attempt + 1`: base·2^(attempt−1), at least Retry-After, at most max. */
export function backoffMs(retry: RetryConfig, attempt: number, retryAfterSec?: number): number {
  const exp = retry.baseDelayMs * 2 ** Math.max(0, attempt - 1)
  return Math.min(retry.maxDelayMs, Math.max(exp, (retryAfterSec ?? 0) * 1000))
}

/**
 * @example
 * const runOperation = createRunner({ store, queue, checkpoint, reconcile, clock, log, retry, timeoutSec: 120, leaseMs: 900_000, dispatchWindowMs: 150_000 })
 * await runOperation(opId) // from the queue consumer
 */
export function createRunner(deps: RunnerDeps): (opId: string) => Promise<void> {
  return async function runOperation(opId) {
    const now = deps.clock.now()
    const op = await deps.store.claim(opId, now, now - deps.leaseMs)
    if (!op) return
    if (op.dispatchedAt !== undefined) return reconcile(op, op.dispatchedAt)
    const target = { namespace: op.namespace, pod: op.pod, container: op.container }
    const started = deps.clock.now()
    let unrecorded: unknown
    const dispatching = async (node: string) => {
      try {
        await deps.store.markDispatched(op.id, deps.clock.now(), node)
      } catch (err) {
        unrecorded = err
        throw err
      }
    }
    let out: JobOutcome
    try {
      out = await deps.checkpoint({ sub: op.sub, requestId: op.id, cluster: op.cluster, ...(op.node ? { node: op.node } : {}), target, timeoutSec: deps.timeoutSec, reason: alertReason(op), dispatching })
    } catch (err) {
      out = { ok: false, status: 500, code: 'internal', message: 'internal error', retryable: false }
      deps.log({ type: 'error', operation: op.id, error: String((err as Error)?.stack ?? err) })
    }
    if (unrecorded !== undefined) {
      // Nothing reached the agent: an ordinary retry (if the store is still down, the update below throws).
      deps.log({ type: 'error', operation: op.id, error: `recording the dispatch: ${String(unrecorded)}` })
      out = { ok: false, status: 503, code: 'internal', message: 'the operation store did not record the dispatch; nothing was sent', retryable: true }
    }
    const at = deps.clock.now()
    const line = { type: 'operation', operation: op.id, cluster: op.cluster, ...target, attempt: op.attempts, durationMs: at - started }
    if (out.ok) return succeeded(op, out, at, line)
    const error = { code: out.code, message: out.message, status: out.status, ...(out.runtimeLog ? { runtimeLog: out.runtimeLog } : {}) }
    const node = out.node ?? op.node
    if (out.retryable && op.attempts < deps.retry.maxAttempts) {
      const delay = backoffMs(deps.retry, op.attempts, out.retryAfterSec)
      // The agent answered before starting anything (or was never reached): a plain retry.
      await deps.store.update(op.id, { state: 'queued', updatedAt: at, notBefore: at + delay, error, dispatchedAt: null, ...(node ? { node } : {}) })
      deps.log({ ...line, state: 'queued', code: out.code, retryInMs: delay })
      // If this send is lost the record stays queued: Node's sweep or the queue's redelivery finds it.
      await deps.queue.send(op.id, delay)
      return
    }
    await deps.store.update(op.id, { state: 'failed', updatedAt: at, error, ...(node ? { node } : {}) })
    deps.log({ ...line, state: 'failed', code: out.code })
  }

  /** Records a success (the archive, where it is, how to get it) and logs it. */
  async function succeeded(op: OperationRecord, out: Extract<JobOutcome, { ok: true }>, at: number, line: Record<string, unknown>): Promise<void> {
    await deps.store.update(op.id, { state: 'succeeded', updatedAt: at, node: out.node, result: { archive: out.archive, node: out.node, download: out.download, ...(out.stored ? { stored: out.stored } : {}), ...(out.storeFailed ? { storeFailed: out.storeFailed } : {}) } })
    deps.log({ ...line, node: out.node, state: 'succeeded', sha256: out.archive.sha256 })
  }

  /** A claimed job whose attempt had been dispatched: find its archive, wait for it, or give up. */
  async function reconcile(op: OperationRecord, since: number): Promise<void> {
    const target = { namespace: op.namespace, pod: op.pod, container: op.container }
    const job = { sub: op.sub, requestId: op.id, cluster: op.cluster, target, timeoutSec: deps.timeoutSec }
    let out: JobOutcome | null = null
    if (op.node) {
      try {
        out = await deps.reconcile({ ...job, node: op.node }, since)
      } catch (err) {
        out = { ok: false, status: 500, code: 'internal', message: 'internal error', retryable: false }
        deps.log({ type: 'error', operation: op.id, error: String((err as Error)?.stack ?? err) })
      }
    }
    const at = deps.clock.now()
    const line = { type: 'operation', operation: op.id, cluster: op.cluster, ...target, attempt: op.attempts, reconciled: true }
    if (out?.ok) return succeeded(op, out, at, line)
    const deadline = since + deps.dispatchWindowMs
    const seen = out ? `the agent's list could not be read (${out.code}: ${out.message})` : 'no archive of this target has appeared on the node'
    if (at < deadline) {
      const delay = Math.min(backoffMs(deps.retry, op.attempts), deadline - at + 1)
      await deps.store.update(op.id, { state: 'queued', updatedAt: at, notBefore: at + delay, error: { code: 'checkpoint_failed', status: 500, message: `interrupted after dispatch; looking for its archive: ${seen} so far` } })
      deps.log({ ...line, state: 'queued', retryInMs: delay })
      await deps.queue.send(op.id, delay)
      return
    }
    // Never sent again: the first request may have taken the checkpoint we cannot see.
    const error = { code: 'checkpoint_failed', status: 500, message: `interrupted: the gateway lost this job after dispatching it to node ${op.node ?? '?'} and ${seen}; not retried, so no second checkpoint is taken` }
    await deps.store.update(op.id, { state: 'failed', updatedAt: at, error })
    deps.log({ ...line, state: 'failed', code: error.code })
  }
}

/** Sends every due or abandoned operation to the queue again (Workers: a cron trigger calls it). */
export async function sweepOperations({ store, queue }: Operations, now: number, leaseMs: number): Promise<number> {
  const ids = await store.due(now, 100, now - leaseMs)
  for (const id of ids) await queue.send(id)
  return ids.length
}

/** The statement's reason for an alert's checkpoint (at most 256 characters, like a caller's `?reason=`). */
export function alertReason(op: Pick<OperationRecord, 'source' | 'alert' | 'fingerprint' | 'startsAt'>): string {
  return `${op.source} alert ${op.alert || '(no alertname)'} fingerprint ${op.fingerprint} since ${op.startsAt}`.replace(/[\u0000-\u001f\u007f]/g, ' ').slice(0, 256)
}
