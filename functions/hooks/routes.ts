/**
 * Alert-triggered checkpoints. `POST /v1/hooks/alertmanager` and `POST /v1/hooks/grafana` turn
 * firing alerts into operation records (deduplicated, cooled down, capped per notification) and
 * queue them; the answer is immediate, one summary line per alert. The runner takes the jobs from
 * the queue (operations/runner.ts); `GET /v1/operations` reports them (operations/routes.ts).
 *
 * Auth: the gateway's bearer JWT for both hooks; for Grafana also its HMAC signature, checked
 * before the JWT middleware (a signed request acts as the configured subject).
 */
import type { Handler, MiddlewareHandler } from 'hono'
import { CheckpointError } from '../../shared/errors.ts'
import { checkQuery, isClusterId, isDns1123Label, isDns1123Subdomain, type Target } from '../../shared/names.ts'
import { decide, type Caller } from '../authz.ts'
import type { ClusterConfig, GatewayConfig } from '../config.ts'
import { NO_STORE, type Clock, type Env, type Log } from '../context.ts'
import type { HookSource, JobQueue, OperationRecord, OperationState, OperationStore } from '../operations/model.ts'
import { parseNotification, type Alert } from './alerts.ts'
import { readBody } from './body.ts'
import type { GrafanaSignatureConfig, HooksConfig } from './config.ts'
import { verifyGrafanaSignature } from './signature.ts'

export interface HookDeps {
  config: GatewayConfig
  store: OperationStore
  queue: JobQueue
  clock: Clock
  log: Log
}

export interface AlertSummary {
  index: number
  fingerprint: string
  alertname: string
  outcome: 'accepted' | 'duplicate' | 'skipped'
  operation?: string
  state?: OperationState
  reason?: 'invalid_alert' | 'resolved' | 'not_selected' | 'missing_label' | 'invalid_label' | 'unknown_cluster' | 'forbidden' | 'cooldown' | 'storm'
  label?: string
  /** For `invalid_alert`: the payload field at fault (`alerts[2].startsAt`). */
  field?: string
}

/**
 * Grafana's HMAC signature as a credential, before the JWT middleware: a request that carries a
 * bearer token, or no signature, goes on to it.
 */
export const createGrafanaSignature = (hooks: HooksConfig, grafana: GrafanaSignatureConfig, clock: Clock): MiddlewareHandler<Env> =>
  async function grafanaSignature(c, next) {
    if (c.req.header('authorization') !== undefined || c.req.header(grafana.header) === undefined) return next()
    const body = await readBody(c.req.raw, hooks.maxBodyBytes)
    const r = await verifyGrafanaSignature(grafana, c.req.raw.headers, body, clock.now())
    if (!r.ok) throw new CheckpointError('unauthenticated', `invalid webhook signature (${r.reason})`, { extra: { reason: r.reason } })
    const caller: Caller = { sub: grafana.subject, groups: grafana.groups, scopes: new Set(['checkpoint:create']) }
    c.set('caller', caller)
    c.get('audit').sub = caller.sub
    await next()
  }

/** One notification being handled: who sent it, and how many operations it has counted so far. */
interface Notice {
  source: HookSource
  caller: Caller
  requestId: string
  /**
   * Operations this notification created plus duplicates of live operations, against
   * `maxPerNotification` — a notification retried after a 5xx must not start alerts 6…10 on top
   * of the 1…5 its first delivery started.
   */
  counted: number
}

export function createWebhookHandler(deps: HookDeps, source: HookSource): Handler<Env> {
  return async function webhook(c) {
    const hooks = deps.config.hooks
    if (!hooks) throw new CheckpointError('not_found', 'webhooks are not configured')
    const req = c.req.raw
    checkQuery(new URL(req.url).searchParams, [])
    const body = await readBody(req, hooks.maxBodyBytes)
    let text: string
    try {
      text = new TextDecoder('utf-8', { fatal: true }).decode(body)
    } catch {
      throw new CheckpointError('invalid_body', 'body: not UTF-8', { field: 'body' })
    }
    const n = await parseNotification(source, text)
    const notice: Notice = { source, caller: c.get('caller'), requestId: c.get('audit').requestId, counted: 0 }
    const alerts: AlertSummary[] = []
    for (const [i, a] of n.alerts.entries()) alerts.push(await onAlert(deps, hooks, notice, i, a))
    const count = (outcome: AlertSummary['outcome']) => alerts.filter((a) => a.outcome === outcome).length
    const accepted = count('accepted')
    return new Response(
      JSON.stringify({
        receiver: n.receiver,
        status: n.status,
        truncatedAlerts: n.truncatedAlerts,
        accepted,
        duplicate: count('duplicate'),
        skipped: count('skipped'),
        alerts,
      }),
      { status: accepted > 0 ? 202 : 200, headers: { 'content-type': 'application/json', ...NO_STORE } },
    )
  }
}

type Skip = (reason: NonNullable<AlertSummary['reason']>, extra?: Partial<AlertSummary>) => AlertSummary

/** The alert's target from its labels, or why it is skipped. */
function alertTarget(config: GatewayConfig, h: HooksConfig, a: Alert, skip: Skip): { cl: ClusterConfig; target: Target; node: string | undefined } | AlertSummary {
  if (a.invalid !== undefined) return skip('invalid_alert', { field: a.invalid })
  if (a.status !== 'firing') return skip('resolved')
  if (!h.select.some((s) => Object.entries(s).every(([k, vs]) => a.labels[k] !== undefined && vs.includes(a.labels[k])))) return skip('not_selected')
  const L = h.labels
  const cluster = a.labels[L.cluster] ?? h.defaultCluster
  const fields = [
    ['cluster', cluster, isClusterId],
    ['namespace', a.labels[L.namespace], isDns1123Label],
    ['pod', a.labels[L.pod], isDns1123Subdomain],
    ['container', a.labels[L.container], isDns1123Label],
  ] as const
  for (const [f, v, ok] of fields) {
    if (v === undefined || v === '') return skip('missing_label', { label: L[f] })
    if (!ok(v)) return skip('invalid_label', { label: L[f] })
  }
  const node = a.labels[L.node] || undefined
  if (node !== undefined && !isDns1123Subdomain(node)) return skip('invalid_label', { label: L.node })
  const target = { namespace: a.labels[L.namespace]!, pod: a.labels[L.pod]!, container: a.labels[L.container]! }
  const cl = config.clusters.get(cluster!)
  if (!cl) return skip('unknown_cluster', { label: L.cluster })
  if (node === undefined && !cl.kube) return skip('missing_label', { label: L.node })
  return { cl, target, node }
}

async function onAlert(deps: HookDeps, h: HooksConfig, notice: Notice, index: number, a: Alert): Promise<AlertSummary> {
  const { config, store, queue, clock, log } = deps
  const { source, caller, requestId } = notice
  const base = { index, fingerprint: a.fingerprint, alertname: a.labels.alertname ?? '' }
  const skip: Skip = (reason, extra = {}) => ({ ...base, outcome: 'skipped', reason, ...extra })
  const found = alertTarget(config, h, a, skip)
  if ('outcome' in found) return found
  const { cl, target, node } = found
  const decision = decide(config.policy, caller, 'create', { cluster: cl.id, ...target })
  log({ type: 'decision', requestId, sub: caller.sub, op: 'checkpoint:create', via: `hook:${source}`, cluster: cl.id, ...target, decision: decision.allow ? 'allow' : 'deny', ...(decision.rule ? { rule: decision.rule } : { missing: decision.missing }) })
  if (!decision.allow) return skip('forbidden')

  const now = clock.now()
  const op: OperationRecord = {
    id: crypto.randomUUID(),
    state: 'queued',
    source,
    alert: base.alertname,
    fingerprint: a.fingerprint,
    startsAt: a.startsAt,
    dedupKey: `${a.fingerprint}@${a.startsAt}`,
    cluster: cl.id,
    ...target,
    ...(node ? { node } : {}),
    sub: caller.sub,
    attempts: 0,
    createdAt: now,
    updatedAt: now,
  }
  const skippedRecord = async (reason: 'storm' | 'cooldown') => {
    const { dedupKey: _, ...rest } = op
    await store.insert({ ...rest, state: 'skipped', reason })
    return skip(reason, { operation: op.id, state: 'skipped' })
  }
  const duplicate = async (existing: OperationRecord): Promise<AlertSummary> => {
    // A queued record nobody is working on (its message was lost) gets another message;
    // the runner's claim makes a surplus one harmless.
    if (existing.state === 'queued' && (existing.notBefore ?? 0) <= now) await queue.send(existing.id)
    if (existing.state !== 'skipped') notice.counted++
    return { ...base, outcome: 'duplicate', operation: existing.id, state: existing.state }
  }
  if (notice.counted >= h.maxPerNotification) {
    const dup = await store.findByDedupKey(op.dedupKey!)
    if (dup) return duplicate(dup)
    return skippedRecord('storm')
  }
  const r = await store.createIfAbsent(op, now - h.cooldownSec * 1000)
  if (r.outcome === 'duplicate') return duplicate(r.op)
  if (r.outcome === 'cooldown') return skippedRecord('cooldown')
  notice.counted++
  // Recorded before this send: if the send fails we answer 5xx, the sender retries, and the
  // retry finds the record (a duplicate) and sends it again.
  await queue.send(op.id)
  log({ type: 'operation', operation: op.id, state: 'queued', requestId, via: `hook:${source}`, cluster: cl.id, ...target, fingerprint: a.fingerprint })
  return { ...base, outcome: 'accepted', operation: op.id, state: 'queued' }
}
