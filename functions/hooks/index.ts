/**
 * Alert-triggered checkpoints. `POST /v1/hooks/alertmanager` and `POST /v1/hooks/grafana` turn
 * firing alerts into operation records (deduplicated, cooled down, capped per notification) and
 * queue them; the answer is immediate, one summary line per alert. `GET /v1/operations[/{id}]`
 * reports the jobs. Jobs run through {@link createRunner} from the queue consumer.
 *
 * Auth: the gateway's bearer JWT for both hooks; for Grafana also its HMAC signature, checked
 * before the JWT middleware (a signed request acts as the configured subject).
 */
import type { Hono } from 'hono'
import { CheckpointError } from '../../shared/errors.ts'
import { checkName, checkQuery, isClusterId, isDns1123Label, isDns1123Subdomain } from '../../shared/names.ts'
import type { Env, Log } from '../app.ts'
import { decide, requireAllowed, type Caller } from '../authz.ts'
import type { GatewayConfig } from '../config.ts'
import { createRunner, type CheckpointFn, type ReconcileFn } from '../operations/runner.ts'
import type { JobQueue } from '../operations/queue.ts'
import { OPERATION_STATES, type HookSource, type Operation, type OperationState, type OperationStore } from '../operations/store.ts'
import { parseNotification, type Alert } from './alerts.ts'
import { readBody } from './body.ts'
import type { HooksConfig } from './config.ts'
import { verifyGrafanaSignature } from './signature.ts'

/** What a runtime supplies: where operations are recorded and how jobs are queued. */
export interface Operations {
  store: OperationStore
  queue: JobQueue
}

interface OperationsCore extends Operations {
  config: GatewayConfig
  clock: { now(): number }
  log: Log
  /** The gateway's checkpoint forwarding, JSON mode. */
  checkpoint: CheckpointFn
  /** The gateway's look at a node's archive list for a job that was already dispatched. */
  reconcile: ReconcileFn
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

const NO_STORE = { 'cache-control': 'no-store' }

/**
 * @example
 * const ops = createOperations({ store, queue, config, clock, log, checkpoint })
 * ops.beforeAuth(app); app.use('/v1/*', authn); …; ops.routes(app)
 */
export function createOperations(core: OperationsCore) {
  const { config, clock, log, store, queue } = core
  const hooks = config.hooks
  const timeoutSec = hooks?.timeoutSec ?? config.limits.defaultTimeoutSec
  /** How long a running job may go untouched before it counts as abandoned (its worker died). */
  const leaseMs = (hooks?.leaseSec ?? 900) * 1000
  const runOperation = createRunner({
    store,
    queue,
    checkpoint: core.checkpoint,
    reconcile: core.reconcile,
    clock,
    log,
    retry: hooks?.retry ?? { maxAttempts: 1, baseDelayMs: 0, maxDelayMs: 0 },
    timeoutSec,
    leaseMs,
    // The agent's checkpoint is not cut at the timeout; the grant's margin bounds how late it starts.
    dispatchWindowMs: (timeoutSec + config.grants.marginSec) * 1000,
  })

  function beforeAuth(app: Hono<Env>): void {
    const g = hooks?.grafana
    if (!hooks || !g) return
    app.use('/v1/hooks/grafana', async function grafanaSignature(c, next) {
      // A bearer token, when present, is the credential; the JWT middleware checks it.
      if (c.req.header('authorization') !== undefined || c.req.header(g.header) === undefined) return next()
      const body = await readBody(c.req.raw, hooks.maxBodyBytes)
      const r = await verifyGrafanaSignature(g, c.req.raw.headers, body, clock.now())
      if (!r.ok) throw new CheckpointError('unauthenticated', `invalid webhook signature (${r.reason})`, { extra: { reason: r.reason } })
      const caller: Caller = { sub: g.subject, groups: g.groups, scopes: new Set(['checkpoint:create']) }
      c.set('caller', caller)
      c.get('audit').sub = caller.sub
      await next()
    })
  }

  function routes(app: Hono<Env>): void {
    app.post('/v1/hooks/alertmanager', (c) => webhook(c.req.raw, c.get('caller'), c.get('audit').requestId, 'alertmanager'))
    app.post('/v1/hooks/grafana', (c) => webhook(c.req.raw, c.get('caller'), c.get('audit').requestId, 'grafana'))
    app.get('/v1/operations', async (c) => {
      const q = new URL(c.req.url).searchParams
      checkQuery(q, ['cluster', 'namespace', 'alert', 'state', 'limit'])
      const caller = c.get('caller')
      const filter = listFilter(q)
      if (filter.cluster !== undefined) {
        requireAllowed(decide(config.policy, caller, 'read', { cluster: filter.cluster, ...(filter.namespace ? { namespace: filter.namespace } : {}) }))
      } else if (!caller.scopes.has('checkpoint:read')) {
        throw new CheckpointError('forbidden', 'missing scope checkpoint:read', { extra: { missing: 'scope checkpoint:read' } })
      }
      const items = (await store.list(filter)).filter((op) => decide(config.policy, caller, 'read', op).allow).map(view)
      return c.json({ items }, 200, NO_STORE)
    })
    app.get('/v1/operations/:id', async (c) => {
      checkQuery(new URL(c.req.url).searchParams, [])
      const id = c.req.param('id')
      const op = /^[0-9a-f-]{36}$/.test(id) ? await store.get(id) : null
      if (!op) throw new CheckpointError('not_found', 'no such operation', { field: 'id' })
      requireAllowed(decide(config.policy, c.get('caller'), 'read', op))
      return c.json(view(op), 200, NO_STORE)
    })
  }

  async function webhook(req: Request, caller: Caller, requestId: string, source: HookSource): Promise<Response> {
    if (!hooks) throw new CheckpointError('not_found', 'webhooks are not configured')
    checkQuery(new URL(req.url).searchParams, [])
    const body = await readBody(req, hooks.maxBodyBytes)
    let text: string
    try {
      text = new TextDecoder('utf-8', { fatal: true }).decode(body)
    } catch {
      throw new CheckpointError('invalid_body', 'body: not UTF-8', { field: 'body' })
    }
    const n = await parseNotification(source, text)
    const state = { counted: 0 }
    const alerts: AlertSummary[] = []
    for (const [i, a] of n.alerts.entries()) alerts.push(await onAlert(hooks, source, caller, requestId, i, a, state))
    const count = (o: AlertSummary['outcome']) => alerts.filter((a) => a.outcome === o).length
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

  /**
   * `state.counted`: operations this notification created plus duplicates of live operations,
   * against `maxPerNotification` — a notification retried after a 5xx must not start alerts 6…10
   * on top of the 1…5 its first delivery started.
   */
  async function onAlert(h: HooksConfig, source: HookSource, caller: Caller, requestId: string, index: number, a: Alert, state: { counted: number }): Promise<AlertSummary> {
    const base = { index, fingerprint: a.fingerprint, alertname: a.labels.alertname ?? '' }
    const skip = (reason: NonNullable<AlertSummary['reason']>, extra: Partial<AlertSummary> = {}): AlertSummary => ({ ...base, outcome: 'skipped', reason, ...extra })
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
    const d = decide(config.policy, caller, 'create', { cluster: cl.id, ...target })
    log({ type: 'decision', requestId, sub: caller.sub, op: 'checkpoint:create', via: `hook:${source}`, cluster: cl.id, ...target, decision: d.allow ? 'allow' : 'deny', ...(d.rule ? { rule: d.rule } : { missing: d.missing }) })
    if (!d.allow) return skip('forbidden')

    const now = clock.now()
    const op: Operation = {
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
    if (state.counted >= h.maxPerNotification) {
      const dup = await store.findByDedupKey(op.dedupKey!)
      if (dup) return duplicate(dup, now)
      return skippedRecord('storm')
    }
    const r = await store.createIfAbsent(op, now - h.cooldownSec * 1000)
    if (r.outcome === 'duplicate') return duplicate(r.op, now)
    if (r.outcome === 'cooldown') return skippedRecord('cooldown')
    state.counted++
    // Recorded before this send: if the send fails we answer 5xx, the sender retries, and the
    // retry finds the record (a duplicate) and sends it again.
    await queue.send(op.id)
    log({ type: 'operation', operation: op.id, state: 'queued', requestId, via: `hook:${source}`, cluster: cl.id, ...target, fingerprint: a.fingerprint })
    return { ...base, outcome: 'accepted', operation: op.id, state: 'queued' }

    async function duplicate(existing: Operation, at: number): Promise<AlertSummary> {
      // A queued record nobody is working on (its message was lost) gets another message;
      // the runner's claim makes a surplus one harmless.
      if (existing.state === 'queued' && (existing.notBefore ?? 0) <= at) await queue.send(existing.id)
      if (existing.state !== 'skipped') state.counted++
      return { ...base, outcome: 'duplicate', operation: existing.id, state: existing.state }
    }
  }

  /** Sends every due or abandoned operation to the queue again (Workers: a cron trigger calls it). */
  async function sweep(): Promise<number> {
    const now = clock.now()
    const ids = await store.due(now, 100, now - leaseMs)
    for (const id of ids) await queue.send(id)
    return ids.length
  }

  return { beforeAuth, routes, runOperation, sweep }
}

function listFilter(q: URLSearchParams) {
  const f: { cluster?: string; namespace?: string; alert?: string; state?: OperationState; limit: number } = { limit: 100 }
  const cluster = q.get('cluster')
  if (cluster !== null) f.cluster = checkName('cluster', cluster)
  const ns = q.get('namespace')
  if (ns !== null) f.namespace = checkName('namespace', ns)
  const alert = q.get('alert')
  if (alert !== null) {
    if (alert === '' || alert.length > 256) throw new CheckpointError('invalid_query', 'alert: 1..256 characters', { field: 'alert' })
    f.alert = alert
  }
  const st = q.get('state')
  if (st !== null) {
    if (!(OPERATION_STATES as readonly string[]).includes(st)) throw new CheckpointError('invalid_query', `state: one of ${OPERATION_STATES.join(', ')}`, { field: 'state' })
    f.state = st as OperationState
  }
  const limit = q.get('limit')
  if (limit !== null) {
    if (!/^\d{1,3}$/.test(limit) || Number(limit) < 1 || Number(limit) > 500) throw new CheckpointError('invalid_query', 'limit: 1..500', { field: 'limit' })
    f.limit = Number(limit)
  }
  return f
}

/** An operation as the status API shows it. */
export function view(op: Operation): Record<string, unknown> {
  const iso = (ms: number) => new Date(ms).toISOString()
  return {
    id: op.id,
    state: op.state,
    source: op.source,
    alert: { name: op.alert, fingerprint: op.fingerprint, startsAt: op.startsAt },
    cluster: op.cluster,
    namespace: op.namespace,
    pod: op.pod,
    container: op.container,
    ...(op.node ? { node: op.node } : {}),
    attempts: op.attempts,
    createdAt: iso(op.createdAt),
    updatedAt: iso(op.updatedAt),
    ...(op.notBefore !== undefined ? { nextAttemptAt: iso(op.notBefore) } : {}),
    ...(op.reason ? { reason: op.reason } : {}),
    ...(op.state === 'succeeded' && op.result ? { archive: op.result.archive, download: op.result.download } : {}),
    ...(op.error && op.state !== 'succeeded' ? { error: { ...op.error, attempts: op.attempts } } : {}),
  }
}
