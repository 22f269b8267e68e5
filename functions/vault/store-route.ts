/**
 * `POST /v1/clusters/{cluster}/nodes/{node}/checkpoints/{name}/store[?namespace=&recipient=]`:
 * seals an archive already on the node and stores it in the vault, with its signed statement when
 * the agent has one. Storing exports the archive, so it needs the `read` action on its target.
 * `Accept: application/x-ndjson` streams `sealing`/`uploading` and ends with `stored` or
 * `store_failed`; otherwise the answer waits: 200 with `stored`, or the failure as a problem.
 */
import type { Handler } from 'hono'
import { AGENT_PATHS } from '../../shared/agent-api.ts'
import { CheckpointError, isErrorCode } from '../../shared/errors.ts'
import { encodeEvent, NDJSON, type StoredEvent, type StoreFailedEvent } from '../../shared/events.ts'
import { archiveInNamespace, archiveReadings, checkName, checkQuery, isArchiveName, type Target } from '../../shared/names.ts'
import type { AgentClient } from '../agent-client.ts'
import type { AuditTrail } from '../audit.ts'
import { decide } from '../authz.ts'
import type { GatewayConfig } from '../config.ts'
import { NO_STORE, type Clock, type Env } from '../context.ts'
import { custodySubject, noteCustody, type CustodyLog } from '../custody/log.ts'
import { problemResponse } from '../problem.ts'
import { clusterOf, refuseBody, wantsNdjson } from '../request.ts'
import { chooseRecipients, recipientsAsked, storeFromNode, type Vault } from './flow.ts'

export interface StoreRouteDeps {
  config: GatewayConfig
  agent: AgentClient
  trail: AuditTrail
  vault: Vault
  clock: Clock
  custody?: CustodyLog
}

/** The archive's target: the reading `?namespace=` picks, or its only reading. */
function targetOf(name: string, namespace: string | null): Target {
  if (namespace !== null) {
    const t = archiveInNamespace(name, checkName('namespace', namespace))
    if (!t) throw new CheckpointError('invalid_archive_name', `archive ${name} is not in namespace ${namespace}`, { field: 'namespace' })
    return t
  }
  const r = archiveReadings(name)!
  if (r.readings.length !== 1) throw new CheckpointError('invalid_query', `archive ${name} can be read in namespaces ${r.readings.map((x) => x.namespace).join(', ')}: name one with ?namespace=`, { field: 'namespace' })
  return { namespace: r.readings[0]!.namespace, pod: r.pod, container: r.readings[0]!.container }
}

export function createStoreArchiveHandler(deps: StoreRouteDeps): Handler<Env> {
  const { config, agent, trail, vault, clock } = deps
  return async function storeExisting(c) {
    refuseBody(c)
    const url = new URL(c.req.url)
    checkQuery(url.searchParams, ['namespace', 'recipient'])
    const cluster = checkName('cluster', c.req.param('cluster'))
    const node = checkName('node', c.req.param('node'))
    const name = c.req.param('name') ?? ''
    if (!isArchiveName(name)) throw new CheckpointError('invalid_archive_name', `archive name ${JSON.stringify(name.slice(0, 80))}: must be checkpoint-<pod>_<namespace>-<container>-<RFC3339>.tar`, { field: 'name' })
    const audit = c.get('audit')
    Object.assign(audit, { cluster, node, archive: name })
    const target = targetOf(name, url.searchParams.get('namespace'))
    Object.assign(audit, target)
    trail.authorize(c, 'read', decide(config.policy, c.get('caller'), 'read', { cluster, ...target }))
    const recipients = chooseRecipients(vault.cfg, cluster, target.namespace, recipientsAsked(url.searchParams.get('recipient')))
    const cl = clusterOf(config, cluster)
    const sub = c.get('caller').sub
    const read = await agent.grantHeaders(sub, audit.requestId, { op: 'checkpoint:list', cluster, node }, config.grants.readTtlSec)
    const list = await agent.list(cl, node, read)
    if (!Array.isArray(list)) return trail.problem(c, list.err, { status: list.status, extra: { cluster, node } })
    // The agent's record decides the namespace (a kubelet archive has none: the grant's namespaces decide, on the agent).
    const entry = list.find((e) => e.name === name && (e.sha256Known === false || e.namespace === target.namespace))
    if (!entry) throw new CheckpointError('archive_not_found', `no archive ${name} in namespace ${target.namespace} on node ${node}`)
    const statement = await statementOf(deps, cl, node, name, target, sub, audit.requestId)
    const stream = wantsNdjson(c.req.header('accept')) ? new TransformStream<Uint8Array, Uint8Array>() : undefined
    const writer = stream?.writable.getWriter()
    const encoder = new TextEncoder()
    const run = storeFromNode(vault, agent, config, {
      cl, node, target, sub, requestId: audit.requestId, recipients, now: () => clock.now(),
      archive: { name, size: entry.size, sha256: entry.sha256Known === false ? '' : entry.sha256 },
      ...(statement !== undefined ? { statement } : {}),
      emit: (e) => void writer?.write(encoder.encode(encodeEvent(e as never))).catch(() => {}),
      note: (event, details) => noteCustody(c, deps.custody, trail.log, custodySubject(cluster, node, name), event, details),
    })
    if (stream && writer) {
      const t0 = c.get('started')
      audit.deferred = true
      c.executionCtx.waitUntil(run.then((out) => {
        outcome(audit, out)
        trail.outcome(audit, t0)
        return writer.close()
      }).catch(() => writer.abort().catch(() => {})))
      return new Response(stream.readable, { status: 200, headers: { 'content-type': NDJSON, ...NO_STORE } })
    }
    const out = await run
    outcome(audit, out)
    if (out.type === 'stored') return c.json({ stored: out }, 200, NO_STORE)
    return problemResponse(new CheckpointError(isErrorCode(out.code) ? out.code : 'internal', out.message), { status: out.status, extra: { cluster, node }, requestId: audit.requestId })
  }
}

function outcome(audit: { status?: number; code?: string; stored?: string; storeFailed?: string }, out: StoredEvent | StoreFailedEvent): void {
  if (out.type === 'stored') {
    audit.status = 200
    audit.stored = out.key
  } else {
    audit.status = out.status
    audit.code = out.code
    audit.storeFailed = out.code
  }
}

/** The archive's signed statement from the agent, when it has one (it travels with the evidence). */
async function statementOf(d: StoreRouteDeps, cl: ReturnType<typeof clusterOf>, node: string, name: string, t: Target, sub: string, requestId: string): Promise<unknown> {
  const headers = await d.agent.grantHeaders(sub, requestId, { op: 'checkpoint:read', cluster: cl.id, node, archive: name, namespaces: [t.namespace] }, d.config.grants.readTtlSec)
  const res = await d.agent.forward(cl, node, AGENT_PATHS.statement(name), { method: 'GET', headers })
  if (res.status !== 200) {
    await res.body?.cancel()
    return undefined
  }
  return res.json().catch(() => undefined)
}
