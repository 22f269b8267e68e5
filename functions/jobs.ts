/**
 * Webhook jobs inside the gateway: the runner (operations/runner.ts) set up from the `hooks`
 * configuration, and the two calls it makes into the gateway — a checkpoint in JSON mode through
 * the same resolution, grant and forwarding as a caller's, and a look at the node's list for a job
 * that was dispatched before its worker died.
 */
import { asCheckpointError } from '../shared/errors.ts'
import type { ArchiveEntry } from '../shared/events.ts'
import { archiveMatches, type Target } from '../shared/names.ts'
import type { CheckpointRouteDeps } from './checkpoints.ts'
import type { Gateway } from './context.ts'
import type { CheckpointFn, Operations, ReconcileFn } from './operations/model.ts'
import { createRunner, RETRYABLE_FINAL, RETRYABLE_STATUS, sweepOperations } from './operations/runner.ts'
import { failedEventFailure, runtimeLogOf } from './problem.ts'
import { clusterOf } from './request.ts'
import { collectStatementKeys, statementHint } from './custody/keys.ts'
import { custodySubject, type CustodyEvent } from './custody/log.ts'
import { chooseRecipients, storeFromNode } from './vault/flow.ts'

/** What a caller's checkpoint needs, and the operations; alerts' archives are stored when `hooks.store` is `vault` or `vault.store` is `always`. */
export interface JobDeps extends CheckpointRouteDeps {
  operations: Operations
}

/** How much earlier than the dispatch an agent's `created` stamp may be and still be that job's archive. */
const DISPATCH_CLOCK_SLACK_MS = 2000

/** The queue consumer's entry and the lost-job sweep. */
export function createJobs(deps: JobDeps): Pick<Gateway, 'runOperation' | 'sweepOperations'> {
  const { config, operations, clock } = deps
  const hooks = config.hooks
  const timeoutSec = hooks?.timeoutSec ?? config.limits.defaultTimeoutSec
  /** How long a running job may go untouched before it counts as abandoned (its worker died). */
  const leaseMs = (hooks?.leaseSec ?? 900) * 1000
  const runOperation = createRunner({
    ...operations,
    checkpoint: checkpointJob(deps),
    reconcile: reconcileJob(deps),
    clock,
    log: deps.trail.log,
    retry: hooks?.retry ?? { maxAttempts: 1, baseDelayMs: 0, maxDelayMs: 0 },
    timeoutSec,
    leaseMs,
    // The agent's checkpoint is not cut at the timeout; the grant's margin bounds how late it starts.
    dispatchWindowMs: (timeoutSec + config.grants.marginSec) * 1000,
  })
  return { runOperation, sweepOperations: () => sweepOperations(operations, clock.now(), leaseMs) }
}

function checkpointJob(deps: JobDeps): CheckpointFn {
  const { config, agent, resolveNode, trail } = deps
  const vault = deps.vault && (config.hooks?.store === 'vault' || deps.vault.cfg.store === 'always') ? deps.vault : undefined
  return async function checkpointJob(j) {
    let node = j.node
    const { cluster, target } = j
    try {
      const cl = clusterOf(config, cluster)
      // No recipient for the target: refused before anything is frozen, as a caller's request is.
      const recipients = vault ? chooseRecipients(vault.cfg, cluster, target.namespace) : []
      node ??= await resolveNode(cl, target)
      const headers = await agent.grantHeaders(j.sub, j.requestId, { op: 'checkpoint:create', cluster, node, ...target, ...(j.reason ? { reason: j.reason } : {}) }, j.timeoutSec + config.grants.marginSec)
      await j.dispatching?.(node)
      const started = await agent.startCheckpoint(cl, node, target, j.timeoutSec, headers)
      if ('failure' in started) {
        const { err, status } = started.failure
        const ra = Number(err.headers?.['Retry-After'])
        return { ok: false, node, status, code: err.code, message: err.message, retryable: !started.final && (RETRYABLE_STATUS.has(status) || RETRYABLE_FINAL.has(err.code)), ...(ra > 0 ? { retryAfterSec: ra } : {}) }
      }
      const { relay } = started
      relay.readable.cancel().catch(() => {})
      const f = await relay.final
      if (f.type === 'completed') {
        const n = node
        const note = (event: CustodyEvent, details: Record<string, unknown>) => deps.custody?.append(custodySubject(cluster, n, f.archive.name), { event, actor: { sub: j.sub }, requestId: j.requestId, details })
          .catch((err) => trail.log({ type: 'error', error: `custody log: ${String((err as Error)?.message ?? err)}`, requestId: j.requestId }))
        const hint = statementHint(f.statement)
        await note('created', { sha256: f.archive.sha256, size: f.archive.size, ...target, ...(j.reason ? { reason: j.reason } : {}), ...(hint ? { statementKey: hint } : {}) })
        if (deps.statementKeys) await collectStatementKeys(deps.statementKeys, agent, cl, n, hint, trail.log)
        const out = vault && await storeFromNode(vault, agent, config, {
          cl, node, target, sub: j.sub, requestId: j.requestId, archive: f.archive, recipients, now: () => deps.clock.now(),
          ...(f.statement !== undefined ? { statement: f.statement } : {}),
          emit: () => {},
          note: (event, details) => void note(event, details),
        })
        const stored = out?.type === 'stored' ? { stored: { bucket: out.bucket, key: out.key, sealed: out.sealed } } : out ? { storeFailed: { code: out.code, message: out.message } } : {}
        return { ok: true, node, archive: f.archive, download: f.download!, ...stored }
      }
      const { err, status } = failedEventFailure(f)
      return { ok: false, node, status, code: err.code, message: err.message, retryable: RETRYABLE_FINAL.has(err.code), ...runtimeLogOf(f) }
    } catch (err) {
      const e = asCheckpointError(err)
      trail.internal(e, j.requestId)
      return { ok: false, ...(node ? { node } : {}), status: e.status, code: e.code, message: e.message, retryable: RETRYABLE_STATUS.has(e.status) }
    }
  }
}

function reconcileJob({ config, agent, trail }: JobDeps): ReconcileFn {
  return async function reconcileJob(j, since) {
    const { cluster, node, target } = j
    try {
      const cl = clusterOf(config, cluster)
      const headers = await agent.grantHeaders(j.sub, j.requestId, { op: 'checkpoint:list', cluster, node }, config.grants.readTtlSec)
      const items = await agent.list(cl, node, headers)
      if (!Array.isArray(items)) return { ok: false, node, status: items.status, code: items.err.code, message: items.err.message, retryable: false }
      const e = earliestSince(items, target, since)
      if (!e) return null
      return { ok: true, node, archive: { name: e.name, size: e.size, sha256: e.sha256, created: e.created }, download: agent.downloadPath(cluster, node, e.name, target.namespace) }
    } catch (err) {
      const e = asCheckpointError(err)
      trail.internal(e, j.requestId)
      return { ok: false, node, status: e.status, code: e.code, message: e.message, retryable: false }
    }
  }
}

/** The earliest archive of `target` the agent wrote since `since` (its own clock: some slack). */
function earliestSince(items: ArchiveEntry[], target: Target, since: number): ArchiveEntry | undefined {
  const from = since - DISPATCH_CLOCK_SLACK_MS
  return items
    .filter((e) => e.sha256Known !== false && e.namespace === target.namespace && e.pod === target.pod && e.container === target.container && archiveMatches(e.name, target) && Date.parse(e.created) >= from)
    .sort((a, b) => Date.parse(a.created) - Date.parse(b.created))[0]
}
