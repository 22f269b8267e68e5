/**
 * Webhook jobs as data: the operation record (one per checkpoint an alert asked for), the store
 * and queue a runtime supplies, and the job the runner hands to the gateway. Types only, so the
 * hooks, the runner, the store and the runtime adapters all depend on this file and on nothing of
 * each other's.
 */
import type { ArchiveInfo } from '../../shared/events.ts'
import type { Target } from '../../shared/names.ts'

export type OperationState = 'queued' | 'running' | 'succeeded' | 'failed' | 'skipped'
export const OPERATION_STATES: readonly OperationState[] = ['queued', 'running', 'succeeded', 'failed', 'skipped']

export type HookSource = 'alertmanager' | 'grafana'

export interface OperationResult {
  archive: ArchiveInfo
  node: string
  download: string
  /** Where the vault holds it (`hooks.store: vault`): its evidence id is `key`. */
  stored?: StoredRef
  /** Why storing failed; the archive stays on the node. */
  storeFailed?: { code: string; message: string }
}

export interface StoredRef {
  bucket: string
  key: string
  sealed: { sha256: string; size: number }
}

export interface OperationError {
  code: string
  message: string
  status: number
  /** The runtime's own error lines for a failed dump (the agent's `runtimeLog`). */
  runtimeLog?: string[]
}

/** One webhook job (not a grant's `op`, shared/grant.ts). */
export interface OperationRecord {
  id: string
  state: OperationState
  source: HookSource
  /** The alert's `alertname` label ('' when it has none). */
  alert: string
  fingerprint: string
  startsAt: string
  /** `fingerprint@startsAt`; absent for skipped records (they never block a later attempt). */
  dedupKey?: string
  cluster: string
  namespace: string
  pod: string
  container: string
  /** From the alert's labels, or resolved through the Kubernetes API when the job runs. */
  node?: string
  /** The identity that sent the webhook; grants are signed for it. */
  sub: string
  attempts: number
  createdAt: number
  updatedAt: number
  /** When a retry is due (queued after a retryable failure). */
  notBefore?: number
  /**
   * When the current attempt was handed to the agent (recorded just before the request). A job
   * found again with this set (restart, lost lease, lost outcome write) may have taken its
   * checkpoint already: it is reconciled against the agent's list, never sent again.
   */
  dispatchedAt?: number
  reason?: string
  result?: OperationResult
  error?: OperationError
}

export interface OperationFilter {
  cluster?: string
  namespace?: string
  alert?: string
  state?: OperationState
  limit: number
}

export type CreateOutcome =
  | { outcome: 'created'; op: OperationRecord }
  | { outcome: 'duplicate'; op: OperationRecord }
  | { outcome: 'cooldown' }

export interface OperationStore {
  /**
   * Records a queued operation unless one with the same dedup key exists (→ duplicate) or the
   * same target got one created after `cooldownSince` (→ cooldown). Atomic.
   */
  createIfAbsent(op: OperationRecord, cooldownSince: number): Promise<CreateOutcome>
  /** Records an operation as is (skipped ones: no dedup key). */
  insert(op: OperationRecord): Promise<void>
  get(id: string): Promise<OperationRecord | null>
  findByDedupKey(key: string): Promise<OperationRecord | null>
  list(filter: OperationFilter): Promise<OperationRecord[]>
  /**
   * Moves a queued operation that is due (or a running one whose lease ran out: its worker died)
   * to running and counts the attempt. Null when someone else has it, it is not due yet, or it
   * is finished: at-least-once delivery stays at-most-once execution per attempt.
   */
  claim(id: string, now: number, staleBefore: number): Promise<OperationRecord | null>
  /**
   * Sets the state and fields of an operation the caller has claimed. `dispatchedAt` is kept
   * unless the patch names it (`null` clears it: the agent answered before starting anything).
   */
  update(id: string, patch: Pick<OperationRecord, 'state' | 'updatedAt'> & Partial<Pick<OperationRecord, 'node' | 'notBefore' | 'result' | 'error' | 'reason'>> & { dispatchedAt?: number | null }): Promise<void>
  /** Records that the running attempt is about to reach the agent on `node` (before the request). */
  markDispatched(id: string, at: number, node: string): Promise<void>
  /**
   * Queued operations that are due, and running ones not touched since `staleBefore` (their
   * worker died), oldest first: restart, overflow and lost-message recovery.
   */
  due(now: number, limit: number, staleBefore?: number): Promise<string[]>
  /**
   * Running → queued for every operation (Node, at start: whatever ran died with the process).
   * `dispatchedAt` stays: the runner reconciles those instead of sending them again.
   */
  requeueRunning(now: number): Promise<number>
}

/**
 * The job queue as the handlers see it: `send(opId)`. The consumer side calls the runner with the
 * id. Delivery is at least once; the runner's claim makes a repeat a no-op. Adapters: Cloudflare
 * Queues (workers/queue.ts) and an in-process queue (node/queue.ts).
 */
export interface JobQueue {
  /** Enqueues an operation id, to run after `delayMs` (retries with backoff). */
  send(opId: string, delayMs?: number): Promise<void>
}

/** What a runtime supplies for webhooks: where operations are recorded and how jobs are queued. */
export interface Operations {
  store: OperationStore
  queue: JobQueue
}

/** How often and how patiently a failed job is tried again (`hooks.retry`). */
export interface RetryConfig {
  /** Attempts in all, the first included. */
  maxAttempts: number
  baseDelayMs: number
  maxDelayMs: number
}

export interface CheckpointJob {
  /** The identity the grant is signed for (the webhook's). */
  sub: string
  requestId: string
  cluster: string
  node?: string
  target: Target
  timeoutSec: number
  /** Why, for the grant and the agent's signed statement: the alert's name and fingerprint. */
  reason?: string
  /** Called with the node right before the request goes to the agent; the runner records it. */
  dispatching?: (node: string) => Promise<void>
}

export type JobOutcome =
  | { ok: true; node: string; archive: ArchiveInfo; download: string; stored?: StoredRef; storeFailed?: { code: string; message: string } }
  | { ok: false; node?: string; status: number; code: string; message: string; retryable: boolean; retryAfterSec?: number; runtimeLog?: string[] }

/** Takes a job's checkpoint (the gateway's forwarding, JSON mode). */
export type CheckpointFn = (job: CheckpointJob) => Promise<JobOutcome>

/**
 * Looks on the job's node for the archive a dispatched attempt made (created at or after `since`):
 * a success outcome when there is one, null when there is none, a failure when the list could not
 * be read. Never takes a checkpoint.
 */
export type ReconcileFn = (job: CheckpointJob & { node: string }, since: number) => Promise<JobOutcome | null>
