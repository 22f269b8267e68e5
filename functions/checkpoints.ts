/**
 * `POST /v1/clusters/{cluster}[/nodes/{node}]/checkpoint/{namespace}/{pod}/{container}`: validate →
 * authorize → find the node (named, or through the Kubernetes API) → sign a grant → start the
 * agent's checkpoint → relay its events (NDJSON) or wait for the last one (JSON).
 */
import type { Handler } from 'hono'
import { NDJSON, type CompletedEvent, type FinalEvent } from '../shared/events.ts'
import { checkName, checkQuery, checkTarget, parseTimeout } from '../shared/names.ts'
import type { AgentClient, CheckpointStart } from './agent-client.ts'
import type { AuditTrail } from './audit.ts'
import { decide } from './authz.ts'
import type { GatewayConfig } from './config.ts'
import { NO_STORE, type Ctx, type Env } from './context.ts'
import type { ResolveNode } from './kube.ts'
import { failedEventFailure, problemResponse, runtimeLogOf } from './problem.ts'
import { clusterOf, refuseBody } from './request.ts'

export interface CheckpointRouteDeps {
  config: GatewayConfig
  agent: AgentClient
  resolveNode: ResolveNode
  trail: AuditTrail
}

/** The handler of both checkpoint routes; `nodeInPath` for the one that names the node. */
export function createCheckpointHandler(deps: CheckpointRouteDeps, nodeInPath: boolean): Handler<Env> {
  const { config, agent, resolveNode, trail } = deps
  return async function createCheckpoint(c) {
    refuseBody(c)
    const url = new URL(c.req.url)
    checkQuery(url.searchParams, ['timeout'])
    const cluster = checkName('cluster', c.req.param('cluster'))
    let node = nodeInPath ? checkName('node', c.req.param('node')) : undefined
    const target = checkTarget({ namespace: c.req.param('namespace'), pod: c.req.param('pod'), container: c.req.param('container') })
    const timeout = parseTimeout(url.searchParams.get('timeout'), config.limits.defaultTimeoutSec, config.limits.maxTimeoutSec)
    const streaming = wantsNdjson(c.req.header('accept'))
    Object.assign(c.get('audit'), { cluster, ...(node ? { node } : {}), ...target })
    trail.authorize(c, 'create', decide(config.policy, c.get('caller'), 'create', { cluster, ...target }))
    const cl = clusterOf(config, cluster)
    node ??= await resolveNode(cl, target)
    const audit = c.get('audit')
    audit.node = node
    const headers = await agent.grantHeaders(c.get('caller').sub, audit.requestId, { op: 'checkpoint:create', cluster, node, ...target }, timeout + config.grants.marginSec)
    const started = await agent.startCheckpoint(cl, node, target, timeout, headers)
    if ('failure' in started) return trail.problem(c, started.failure.err, { status: started.failure.status, extra: { cluster: cl.id, node } })
    deferOutcome(c, trail, started)
    if (streaming) {
      return new Response(started.relay.readable, { status: 200, headers: { 'content-type': NDJSON, ...NO_STORE } })
    }
    started.relay.readable.cancel().catch(() => {})
    const f = await started.relay.final
    if (f.type === 'failed') {
      const { err, status } = failedEventFailure(f)
      return problemResponse(err, { status, extra: { cluster, node, ...runtimeLogOf(f) }, requestId: audit.requestId })
    }
    return c.json(jsonResult(f), 200, NO_STORE)
  }
}

/** The outcome line waits for the agent's stream to end, whether or not the caller stayed. */
function deferOutcome(c: Ctx, trail: AuditTrail, started: Extract<CheckpointStart, { relay: unknown }>): void {
  const audit = c.get('audit')
  const t0 = c.get('started')
  const { relay } = started
  audit.deferred = true
  c.executionCtx.waitUntil(
    relay.done.then(async () => {
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
  }
}

function wantsNdjson(accept: string | undefined): boolean {
  if (!accept) return false
  return accept.split(',').some((part) => part.split(';')[0]!.trim().toLowerCase() === NDJSON)
}
