/**
 * A node's archives: `GET …/nodes/{node}/checkpoints` (the list, filtered by what the caller may
 * read) and `GET`/`DELETE …/checkpoints/{name}` (download with Range and validators, delete).
 * An archive name joins namespace and container with '-': authorization covers every reading of
 * it unless `?namespace=` picks one, and the grant tells the agent which namespaces were allowed.
 */
import type { Handler } from 'hono'
import { AGENT_PATHS } from '../shared/agent-api.ts'
import { CheckpointError } from '../shared/errors.ts'
import { archiveInNamespace, archiveMatches, archiveReadings, checkName, checkQuery, isArchiveName } from '../shared/names.ts'
import type { AgentClient } from './agent-client.ts'
import { stampedResponse, type AuditTrail } from './audit.ts'
import { decide, decideArchive, type Decision } from './authz.ts'
import type { ClusterConfig, GatewayConfig } from './config.ts'
import { NO_STORE, type Ctx, type Env } from './context.ts'
import { agentFailure } from './problem.ts'
import { clusterOf, refuseBody } from './request.ts'
import { custodySubject, noteCustody, type CustodyLog } from './custody/log.ts'

export interface ArchiveRouteDeps {
  config: GatewayConfig
  agent: AgentClient
  trail: AuditTrail
  custody?: CustodyLog
}

/** Request headers a download passes to the agent, and answer headers it passes back. */
const CONDITIONAL = ['range', 'if-range', 'if-none-match', 'if-match', 'if-modified-since']
const DOWNLOAD_HEADERS = ['content-type', 'content-length', 'content-range', 'accept-ranges', 'etag', 'last-modified', 'content-disposition', 'digest', 'repr-digest', 'x-checkpoint-sha256']

export function createListHandler({ config, agent, trail }: ArchiveRouteDeps): Handler<Env> {
  return async function listArchives(c) {
    refuseBody(c)
    checkQuery(new URL(c.req.url).searchParams, [])
    const cluster = checkName('cluster', c.req.param('cluster'))
    const node = checkName('node', c.req.param('node'))
    Object.assign(c.get('audit'), { cluster, node })
    const caller = c.get('caller')
    trail.authorize(c, 'read', decide(config.policy, caller, 'read', { cluster }))
    const cl = clusterOf(config, cluster)
    const headers = await agent.grantHeaders(caller.sub, c.get('audit').requestId, { op: 'checkpoint:list', cluster, node }, config.grants.readTtlSec)
    const list = await agent.list(cl, node, headers)
    if (!Array.isArray(list)) return trail.problem(c, list.err, { status: list.status, extra: { cluster: cl.id, node } })
    const items = []
    for (const e of list) {
      // The agent's own record names the target; an archive it did not write (sha256Known false)
      // has only its name, whose namespace/container split is ambiguous: every reading must pass.
      const exact = e.sha256Known !== false && archiveMatches(e.name, { namespace: e.namespace, pod: e.pod, container: e.container })
      const decision = exact ? decide(config.policy, caller, 'read', { cluster, namespace: e.namespace, pod: e.pod, container: e.container }) : decideArchive(config.policy, caller, 'read', cluster, e.name)
      if (decision.allow) items.push({ ...e, download: agent.downloadPath(cluster, node, e.name, exact ? e.namespace : undefined) })
    }
    // Its headers a plain record with the request id (no Headers object made for this answer).
    return stampedResponse(c, JSON.stringify({ cluster, node, items }), 200, { 'content-type': 'application/json', ...NO_STORE })
  }
}

export function createArchiveHandler(deps: ArchiveRouteDeps, action: 'read' | 'delete'): Handler<Env> {
  const { config, agent } = deps
  return async function archive(c) {
    const { cluster, node, name, decision, namespaces } = archiveRequest(config, c, action)
    const subject = custodySubject(cluster, node, name)
    const note = (event: 'downloaded' | 'deleted' | 'refused', details: Record<string, unknown>) => noteCustody(c, deps.custody, deps.trail.log, subject, event, details)
    if (!decision.allow) note('refused', { action, missing: decision.missing })
    deps.trail.authorize(c, action, decision)
    const cl = clusterOf(config, cluster)
    const op = action === 'read' ? 'checkpoint:read' : 'checkpoint:delete'
    const headers = await agent.grantHeaders(c.get('caller').sub, c.get('audit').requestId, { op, cluster, node, archive: name, namespaces }, config.grants.readTtlSec)
    if (action === 'delete') {
      const res = await agent.forward(cl, node, AGENT_PATHS.archive(name), { method: 'DELETE', headers })
      if (res.status >= 300) return agentError(deps, c, res, cl, node, note)
      await res.body?.cancel()
      note('deleted', {})
      return new Response(null, { status: 204 })
    }
    for (const h of CONDITIONAL) {
      const v = c.req.header(h)
      if (v !== undefined) headers[h] = v
    }
    const res = await agent.forward(cl, node, AGENT_PATHS.archive(name), { method: 'GET', headers })
    if (res.status >= 400 || (res.status !== 200 && res.status !== 206 && res.status !== 304)) return agentError(deps, c, res, cl, node, note)
    const range = agent.header(res, 'content-range')
    if (res.status !== 304) note('downloaded', { status: res.status, ...(range ? { range } : {}) })
    const out: Record<string, string> = { ...NO_STORE }
    for (const h of DOWNLOAD_HEADERS) {
      const v = agent.header(res, h)
      if (v !== null) out[h] = v
    }
    out['content-type'] ??= 'application/x-tar'
    // A small archive the transport read whole goes out as its bytes (no stream to relay).
    return stampedResponse(c, res.status === 304 ? null : (agent.bytes(res) ?? res.body), res.status, out)
  }
}

/**
 * Reads and checks a request about one archive (`…/{cluster}/{node}/{name}?namespace=`, no body):
 * its names, and the caller's decision on it with the namespaces that decision covers.
 */
export function archiveRequest(config: GatewayConfig, c: Ctx, action: 'read' | 'delete') {
  refuseBody(c)
  const url = new URL(c.req.url)
  checkQuery(url.searchParams, ['namespace'])
  const cluster = checkName('cluster', c.req.param('cluster'))
  const node = checkName('node', c.req.param('node'))
  const name = c.req.param('name') ?? ''
  if (!isArchiveName(name)) {
    throw new CheckpointError('invalid_archive_name', `archive name ${JSON.stringify(name.slice(0, 80))}: must be checkpoint-<pod>_<namespace>-<container>-<RFC3339>.tar`, { field: 'name' })
  }
  Object.assign(c.get('audit'), { cluster, node, archive: name })
  const namespace = url.searchParams.get('namespace')
  return { cluster, node, name, namespace, ...archiveDecision(config, c, action, cluster, name, namespace) }
}

/**
 * The decision on one archive, and the namespaces it covers. Those travel in the grant: the agent
 * serves the archive only if its recorded namespace is one of them, so `?namespace=` can pick a
 * reading, never widen one.
 */
function archiveDecision(config: GatewayConfig, c: Ctx, action: 'read' | 'delete', cluster: string, name: string, ns: string | null): { decision: Decision; namespaces: string[] } {
  const caller = c.get('caller')
  if (ns === null) {
    return { decision: decideArchive(config.policy, caller, action, cluster, name), namespaces: archiveReadings(name)?.readings.map((r) => r.namespace) ?? [] }
  }
  checkName('namespace', ns)
  const t = archiveInNamespace(name, ns)
  if (!t) throw new CheckpointError('invalid_archive_name', `archive ${name} is not in namespace ${ns}`, { field: 'namespace' })
  return { decision: decide(config.policy, caller, action, { cluster, ...t }), namespaces: [ns] }
}

async function agentError({ trail }: ArchiveRouteDeps, c: Ctx, res: Response, cl: ClusterConfig, node: string, note: (event: 'refused', details: Record<string, unknown>) => void): Promise<Response> {
  const f = await agentFailure(res)
  if (f.err.extra?.['agentCode'] === 'grant_mismatch' && f.err.extra['agentField'] === 'namespace') {
    note('refused', { missing: 'archive namespace (agent record)' })
    // The archive exists, but not in a namespace the caller was authorized in: to the caller it
    // is absent (a 403 would tell it that this name belongs to someone else).
    const a = c.get('audit')
    a.decision = 'deny'
    trail.log({ type: 'decision', requestId: a.requestId, sub: a.sub, op: a.op, cluster: cl.id, node, archive: a.archive, decision: 'deny', missing: 'archive namespace (agent record)' })
    return trail.problem(c, new CheckpointError('archive_not_found', `no archive ${a.archive ?? ''} in the namespaces you may access on node ${node}`, { field: 'namespace' }), { extra: { cluster: cl.id, node } })
  }
  const r = trail.problem(c, f.err, { status: f.status, extra: { cluster: cl.id, node } })
  const range = res.headers.get('content-range')
  if (f.status === 416 && range) r.headers.set('content-range', range)
  return r
}
