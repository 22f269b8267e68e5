/**
 * `POST /v1/clusters/{cluster}[/nodes/{node}]/checkpoint/{namespace}/{pod}/{container}`: validate →
 * authorize → find the node (named, or through the Kubernetes API) → sign a grant → start the
 * agent's checkpoint → relay its events (NDJSON) or wait for the last one (JSON).
 */
import type { Handler } from 'hono'
import { AGENT_PATHS } from '../shared/agent-api.ts'
import { CheckpointError } from '../shared/errors.ts'
import { encodeEvent, NDJSON, type CompletedEvent, type FinalEvent, type StoredEvent, type StoreFailedEvent } from '../shared/events.ts'
import { checkName, checkQuery, checkTarget, parseTimeout } from '../shared/names.ts'
import type { AgentClient, CheckpointStart } from './agent-client.ts'
import type { AuditTrail } from './audit.ts'
import { decide } from './authz.ts'
import type { GatewayConfig } from './config.ts'
import { NO_STORE, type Clock, type Ctx, type Env } from './context.ts'
import type { ResolveNode } from './kube.ts'
import { failedEventFailure, problemResponse, runtimeLogOf } from './problem.ts'
import { clusterOf, refuseBody, wantsNdjson } from './request.ts'
import { chooseRecipients, recipientsAsked, storeFromNode, type Vault } from './vault/flow.ts'
import { collectStatementKeys, statementHint, type StatementKeyStore } from './custody/keys.ts'
import { custodySubject, noteCustody, type CustodyLog } from './custody/log.ts'

export interface CheckpointRouteDeps {
  config: GatewayConfig
  agent: AgentClient
  resolveNode: ResolveNode
  trail: AuditTrail
  clock: Clock
  /** The evidence vault, when configured: `?store=vault` (or `vault.store: always`) seals and stores. */
  vault?: Vault
  custody?: CustodyLog
  statementKeys?: StatementKeyStore
}

/** `?reason=`: 1..256 characters, no control characters; it goes into the grant and the signed statement. */
function reasonOf(raw: string | null): string | undefined {
  if (raw === null) return undefined
  if (raw.length < 1 || raw.length > 256 || /[\u0000-\u001f\u007f]/.test(raw)) throw new CheckpointError('invalid_query', 'reason: 1..256 characters, no control characters', { field: 'reason' })
  return raw
}

/** The handler of both checkpoint routes; `nodeInPath` for the one that names the node. */
export function createCheckpointHandler(deps: CheckpointRouteDeps, nodeInPath: boolean): Handler<Env> {
  const { config, agent, resolveNode, trail, vault, clock } = deps
  return async function createCheckpoint(c) {
    refuseBody(c)
    const url = new URL(c.req.url)
    checkQuery(url.searchParams, ['timeout', 'reason', 'store', 'recipient'])
    const reason = reasonOf(url.searchParams.get('reason'))
    const storeParam = url.searchParams.get('store')
    if (storeParam !== null && storeParam !== 'vault') throw new CheckpointError('invalid_query', 'store: only "vault"', { field: 'store' })
    if (storeParam !== null && !vault) throw new CheckpointError('invalid_query', 'store: this gateway has no evidence vault configured', { field: 'store' })
    if (url.searchParams.has('recipient') && storeParam === null && vault?.cfg.store !== 'always') throw new CheckpointError('invalid_query', 'recipient: only with store=vault', { field: 'recipient' })
    const cluster = checkName('cluster', c.req.param('cluster'))
    let node = nodeInPath ? checkName('node', c.req.param('node')) : undefined
    const target = checkTarget({ namespace: c.req.param('namespace'), pod: c.req.param('pod'), container: c.req.param('container') })
    const timeout = parseTimeout(url.searchParams.get('timeout'), config.limits.defaultTimeoutSec, config.limits.maxTimeoutSec)
    const streaming = wantsNdjson(c.req.header('accept'))
    Object.assign(c.get('audit'), { cluster, ...(node ? { node } : {}), ...target })
    trail.authorize(c, 'create', decide(config.policy, c.get('caller'), 'create', { cluster, ...target }))
    // Stored when asked or always; no recipient for the target is refused before anything is frozen.
    const storing = vault && (storeParam === 'vault' || vault.cfg.store === 'always') ? vault : undefined
    const recipients = storing ? chooseRecipients(storing.cfg, cluster, target.namespace, recipientsAsked(url.searchParams.get('recipient'))) : []
    const cl = clusterOf(config, cluster)
    node ??= await resolveNode(cl, target)
    const audit = c.get('audit')
    audit.node = node
    const sub = c.get('caller').sub
    const headers = await agent.grantHeaders(sub, audit.requestId, { op: 'checkpoint:create', cluster, node, ...target, ...(reason ? { reason } : {}) }, timeout + config.grants.marginSec)
    const started = await agent.startCheckpoint(cl, node, target, timeout, headers, storing !== undefined)
    if ('failure' in started) return trail.problem(c, started.failure.err, { status: started.failure.status, extra: { cluster: cl.id, node } })
    const { relay } = started
    const n = node
    // The custody log's first entries: the archive made (with its digest and statement key), then the vault's outcome.
    void relay.final.then((f) => {
      if (f.type !== 'completed') return
      const hint = statementHint(f.statement)
      noteCustody(c, deps.custody, trail.log, custodySubject(cluster, n, f.archive.name), 'created', { sha256: f.archive.sha256, size: f.archive.size, namespace: target.namespace, pod: target.pod, container: target.container, ...(reason ? { reason } : {}), ...(hint ? { statementKey: hint } : {}) })
      if (deps.statementKeys) c.executionCtx.waitUntil(collectStatementKeys(deps.statementKeys, agent, cl, n, hint, trail.log))
    })
    // After `completed`: seal and store, its events on the same stream, then the end of it.
    const stored = storing
      ? relay.final.then(async (f): Promise<StoredEvent | StoreFailedEvent | undefined> => {
        // The caller's stream ends whatever happens below: never left open.
        try {
          if (f.type !== 'completed') return undefined
          return await storeFromNode(storing, agent, config, {
            cl, node: n, target, sub, requestId: audit.requestId, archive: f.archive, recipients, now: () => clock.now(),
            ...(f.statement !== undefined ? { statement: f.statement } : {}),
            emit: (e) => relay.write(encodeEvent(e as never)),
            note: (event, details) => noteCustody(c, deps.custody, trail.log, custodySubject(cluster, n, f.archive.name), event, details),
          })
        } finally {
          relay.end()
        }
      })
      : Promise.resolve(undefined)
    deferOutcome(c, trail, started, stored)
    if (streaming) {
      return new Response(relay.readable, { status: 200, headers: { 'content-type': NDJSON, ...NO_STORE } })
    }
    relay.readable.cancel().catch(() => {})
    const f = await relay.final
    if (f.type === 'failed') {
      const { err, status } = failedEventFailure(f)
      return problemResponse(err, { status, extra: { cluster, node, ...runtimeLogOf(f) }, requestId: audit.requestId })
    }
    const vaultOutcome = await stored
    return c.json({ ...jsonResult(f), ...(vaultOutcome?.type === 'stored' ? { stored: vaultOutcome } : vaultOutcome ? { storeFailed: vaultOutcome } : {}) }, 200, NO_STORE)
  }
}

/** The outcome line waits for the agent's stream to end, whether or not the caller stayed. */
function deferOutcome(c: Ctx, trail: AuditTrail, started: Extract<CheckpointStart, { relay: unknown }>, stored: Promise<StoredEvent | StoreFailedEvent | undefined>): void {
  const audit = c.get('audit')
  const t0 = c.get('started')
  const { relay } = started
  audit.deferred = true
  c.executionCtx.waitUntil(
    Promise.all([relay.done, stored.catch(() => undefined)]).then(async ([, vaultOutcome]) => {
      if (vaultOutcome?.type === 'stored') audit.stored = vaultOutcome.key
      if (vaultOutcome?.type === 'store_failed') audit.storeFailed = vaultOutcome.code
      const f: FinalEvent = await relay.final
      if (f.type === 'completed') {
        audit.status = 200
        audit.sha256 = f.archive.sha256
      } else {
        const { err, status } = failedEventFailure(f)
        audit.status = status
        audit.code = err.code
      }
      trail.outcome(audit, t0)
    }),
  )
}

function jsonResult(f: CompletedEvent) {
  return {
    items: f.items,
    archive: f.archive,
    cluster: f.cluster,
    node: f.node,
    download: f.download,
    containerId: f.containerId,
    runtime: f.runtime,
    durationMs: f.durationMs,
    ...(f.statement !== undefined ? { statement: f.statement } : {}),
  }
}
