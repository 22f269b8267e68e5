/**
 * POST /checkpoint/{namespace}/{pod}/{container}: check the request and the grant, start the
 * checkpoint (the checkpointer resolves, preflights and queues it), then answer in JSON when it is
 * done or as an NDJSON event stream with heartbeats while it runs. Every outcome is logged once
 * with the grant's subject, for the audit trail.
 */
import { asCheckpointError, CheckpointError } from '../../shared/errors.ts'
import { encodeEvent, isRuntimeLog, NDJSON, type CheckpointEvent, type FailedEvent } from '../../shared/events.ts'
import { checkQuery, checkTarget, parseTimeout, type Target } from '../../shared/names.ts'
import type { Job, JobResult } from '../checkpointer.ts'
import { refuseBody, sendJson, type AgentDeps, type Ctx } from './context.ts'

export async function checkpoint(ctx: Ctx, d: AgentDeps): Promise<void> {
  const { req, res, query, log } = ctx
  if (!d.checkpointing) throw new CheckpointError('checkpointing_disabled', 'checkpointing is disabled on this node')
  const [namespace, pod, container] = ctx.params
  const target = checkTarget({ namespace, pod, container })
  checkQuery(query, ['timeout'])
  const timeoutSeconds = parseTimeout(query.get('timeout'), d.defaultTimeoutSeconds, d.maxTimeoutSeconds)
  refuseBody(req)
  const stream = (req.headers.accept ?? '').includes(NDJSON)
  const grant = await d.grants.verify(req.headers.authorization, { op: 'checkpoint:create', target })
  const audit = { client: ctx.client, sub: grant.sub, jti: grant.jti, ...target, node: d.node }
  const started = Date.now()
  let outcome: { status: number; code?: string; sha256?: string; archive?: string } = { status: 0 }
  try {
    const requester = { sub: grant.sub ?? '', client: ctx.client, requestId: ctx.requestId, jti: grant.jti!, ...(grant.iss ? { issuer: grant.iss } : {}), ...(grant.reason ? { reason: grant.reason } : {}), requestedAt: new Date(started) }
    const { job, joined, queuePosition } = await d.checkpointer.start(target, requester)
    log.info('checkpoint accepted', { ...audit, containerId: job.containerId, joined, queuePosition, timeoutSeconds })
    const result = stream
      ? await streamJob(ctx, d, job, target, timeoutSeconds, queuePosition)
      : await waitJob(job, timeoutSeconds)
    if (!stream) sendJson(res, 200, JSON.stringify({ items: [result.path] }))
    outcome = { status: 200, sha256: result.archive.sha256, archive: result.archive.name }
    d.metrics.outcome('success')
  } catch (err) {
    const e = asCheckpointError(err)
    outcome = { status: e.status, code: e.code }
    d.metrics.outcome(e.code)
    throw e
  } finally {
    log.info('checkpoint outcome', { ...audit, ...outcome, durationMs: Date.now() - started })
  }
}

/** Waits for the job at most `timeoutSeconds`; the job itself goes on. */
function waitJob(job: Job, timeoutSeconds: number): Promise<JobResult> {
  let timer: NodeJS.Timeout | undefined
  return Promise.race([
    job.result,
    new Promise<never>((_, reject) => {
      timer = setTimeout(() => reject(new CheckpointError('timeout', `checkpoint not finished within ${timeoutSeconds}s; the runtime goes on and the archive will be listed when done`)), timeoutSeconds * 1000)
    }),
  ]).finally(() => clearTimeout(timer))
}

async function streamJob(ctx: Ctx, d: AgentDeps, job: Job, target: Target, timeoutSeconds: number, queuePosition: number): Promise<JobResult> {
  const { res, requestId } = ctx
  const now = () => new Date().toISOString()
  res.writeHead(200, { 'content-type': NDJSON, 'cache-control': 'no-store', 'x-accel-buffering': 'no' })
  const send = (e: CheckpointEvent) => {
    if (!res.writableEnded && !res.destroyed) res.write(encodeEvent(e))
  }
  send({ type: 'accepted', requestId, node: d.node, target, timeoutSeconds, queuePosition, time: now() })
  send({ type: 'resolved', containerId: job.containerId, runtime: d.checkpointer.runtimeInfo, time: now() })
  const beat = setInterval(() => {
    send({ type: 'heartbeat', elapsedMs: Date.now() - job.acceptedAt, phase: job.phase === 'done' ? 'hashing' : job.phase, time: now() })
  }, d.heartbeatIntervalMs)
  try {
    const result = await waitJob(job, timeoutSeconds)
    send({
      type: 'completed',
      items: [result.path],
      archive: result.archive,
      runtime: result.runtime,
      containerId: result.containerId,
      durationMs: result.durationMs,
      ...(result.statement !== undefined ? { statement: result.statement } : {}),
      time: now(),
    })
    return result
  } catch (err) {
    const e = asCheckpointError(err)
    const failed: FailedEvent = { type: 'failed', status: e.status, code: e.code, message: e.message, time: now() }
    if (e.field) failed.field = e.field
    if (isRuntimeLog(e.extra?.runtimeLog)) failed.runtimeLog = e.extra.runtimeLog
    send(failed)
    // The status line is already 200: the failure is in the stream; do not send a problem body.
    throw e
  } finally {
    clearInterval(beat)
    res.end()
  }
}
