/**
 * `GET /v1/operations[/{id}]`: the webhook jobs, as far as the caller may read their targets.
 */
import type { Handler } from 'hono'
import { CheckpointError } from '../../shared/errors.ts'
import { checkName, checkQuery, parseLimit } from '../../shared/names.ts'
import { decide, requireAllowed } from '../authz.ts'
import type { GatewayConfig } from '../config.ts'
import { NO_STORE, type Env } from '../context.ts'
import { OPERATION_STATES, type OperationFilter, type OperationRecord, type OperationState, type OperationStore } from './model.ts'

export interface OperationRouteDeps {
  config: GatewayConfig
  store: OperationStore
}

export function createOperationListHandler({ config, store }: OperationRouteDeps): Handler<Env> {
  return async function listOperations(c) {
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
  }
}

export function createOperationHandler({ config, store }: OperationRouteDeps): Handler<Env> {
  return async function getOperation(c) {
    checkQuery(new URL(c.req.url).searchParams, [])
    const id = c.req.param('id') ?? ''
    const op = /^[0-9a-f-]{36}$/.test(id) ? await store.get(id) : null
    if (!op) throw new CheckpointError('not_found', 'no such operation', { field: 'id' })
    requireAllowed(decide(config.policy, c.get('caller'), 'read', op))
    return c.json(view(op), 200, NO_STORE)
  }
}

function listFilter(q: URLSearchParams): OperationFilter {
  const f: OperationFilter = { limit: 100 }
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
  f.limit = parseLimit(q.get('limit'), 100, 500)
  return f
}

/** An operation as the status API shows it. */
function view(op: OperationRecord): Record<string, unknown> {
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
    ...(op.state === 'succeeded' && op.result?.stored ? { stored: op.result.stored } : {}),
    ...(op.state === 'succeeded' && op.result?.storeFailed ? { storeFailed: op.result.storeFailed } : {}),
    ...(op.error && op.state !== 'succeeded' ? { error: { ...op.error, attempts: op.attempts } } : {}),
  }
}
