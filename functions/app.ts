/**
 * The checkpoint gateway: one Hono app that runs unchanged on Cloudflare Workers and on Node.
 * Everything that differs between runtimes (how the agent is reached over mTLS, how config is
 * read, where logs go) comes in through {@link Deps}; handlers never ask which runtime they are on.
 *
 * Every /v1 request: authenticate (401/503) → validate (400) → authorize (403) → find the
 * cluster (404) → sign a grant → forward to the node's agent → map the answer.
 */
import { Hono, type Context, type MiddlewareHandler } from 'hono'
import { CheckpointError, ERROR_STATUS, asCheckpointError, isErrorCode } from '../shared/errors.ts'
import { isRuntimeLog, NDJSON, type ArchiveEntry, type CompletedEvent, type FailedEvent, type FinalEvent } from '../shared/events.ts'
import type { GrantClaims } from '../shared/grant.ts'
import { AGENT_PATHS, REQUEST_ID_HEADER, REQUEST_ID_PATTERN } from '../shared/agent-api.ts'
import { archiveInNamespace, archiveMatches, archiveReadings, checkName, checkQuery, checkTarget, isArchiveName, parseTimeout, type Target } from '../shared/names.ts'
import { createAuthenticator } from './authn.ts'
import { decide, decideArchive, requireAllowed, type Action, type Caller, type Decision } from './authz.ts'
import type { ClusterConfig, GatewayConfig } from './config.ts'
import type { GrantKeys } from './grants.ts'
import { agentFailure, problemResponse, type AgentFailure } from './problem.ts'
import { relayEvents, type Relay } from './relay.ts'
import { createOperations, type Operations } from './hooks/index.ts'
import { RETRYABLE_FINAL, RETRYABLE_STATUS, type CheckpointJob, type JobOutcome } from './operations/runner.ts'

/** Reaches a node's agent over mutual TLS. `path` starts with '/'; the transport adds the base URL. */
export interface AgentTransport {
  fetch(cluster: ClusterConfig, node: string, path: string, init: RequestInit): Promise<Response>
}

/** Reaches a cluster's Kubernetes API (`path` starts with /api/). */
export interface KubeTransport {
  fetch(cluster: ClusterConfig, path: string, init: RequestInit): Promise<Response>
}

export interface Clock {
  now(): number
}

/** Writes one structured log/audit line. Never given tokens, grants or keys. */
export type Log = (line: Record<string, unknown>) => void

export interface Deps {
  config: GatewayConfig
  agents: AgentTransport
  kube?: KubeTransport
  keys: GrantKeys
  clock: Clock
  log: Log
  /** Operation records and the job queue; enables /v1/hooks/* and /v1/operations. */
  operations?: Operations
}

/** The app, the queue consumer's entry and the lost-job sweep (no-ops without `deps.operations`). */
export interface Gateway {
  app: Hono<Env>
  runOperation(opId: string): Promise<void>
  sweepOperations(): Promise<number>
}

/** What an audit line says about a request; handlers fill it in as they learn. */
export interface Audit {
  requestId: string
  method: string
  route?: string
  sub?: string
  client?: string
  op?: string
  cluster?: string
  node?: string
  namespace?: string
  pod?: string
  container?: string
  archive?: string
  decision?: 'allow' | 'deny'
  rule?: string
  status?: number
  code?: string
  sha256?: string
  /** The handler writes the outcome itself, when a stream ends. */
  deferred?: boolean
}

export type Env = { Variables: { caller: Caller; audit: Audit; started: number } }
type Ctx = Context<Env>

const NO_STORE = { 'cache-control': 'no-store' }
/** How much earlier than the dispatch an agent's `created` stamp may be and still be that job's archive. */
const DISPATCH_CLOCK_SLACK_MS = 2000

/** The agent's `runtimeLog` (CRIU's error lines) of a failed event, as a spreadable member. */
const runtimeLogOf = (f: FailedEvent): { runtimeLog?: string[] } => (isRuntimeLog(f.runtimeLog) && f.runtimeLog.length ? { runtimeLog: f.runtimeLog } : {})

/**
 * Builds the gateway with its job runner (Workers' `queue()` handler and Node's queue call it).
 *
 * @example
 * const { app } = createGateway({ config, agents, keys, clock: { now: Date.now }, log: (l) => console.log(JSON.stringify(l)) })
 * export default { fetch: app.fetch }
 */
export function createGateway(deps: Deps): Gateway {
  const { config, keys, clock, log } = deps
  const authenticate = createAuthenticator(config.auth, () => clock.now())
  const nodeCache = new Map<string, { node: string; expires: number }>()
  const app = new Hono<Env>()
  const ops = deps.operations ? createOperations({ ...deps.operations, config, clock, log, checkpoint: checkpointJob, reconcile: reconcileJob }) : undefined

  app.use('*', async function requestContext(c, next) {
    const given = c.req.header(REQUEST_ID_HEADER)
    const requestId = given && REQUEST_ID_PATTERN.test(given) ? given : crypto.randomUUID()
    c.set('audit', { requestId, method: c.req.method })
    c.set('started', clock.now())
    await next()
    c.res.headers.set(REQUEST_ID_HEADER, requestId)
  })

  app.get('/healthz', (c) => c.json({ status: 'ok' }, 200, NO_STORE))
  app.get('/.well-known/jwks.json', (c) => c.json(keys.jwks(), 200, { 'cache-control': 'public, max-age=300' }))

  app.use('/v1/*', async function auditOutcome(c, next) {
    await next()
    const a = c.get('audit')
    if (a.deferred) return
    a.status = c.res.status
    writeOutcome(a, c.get('started'))
  })

  ops?.beforeAuth(app)

  app.use('/v1/*', async function authn(c, next) {
    if (c.get('caller')) return next() // already authenticated (a signed webhook)
    const caller = await authenticate(c.req.header('authorization'))
    c.set('caller', caller)
    const a = c.get('audit')
    a.sub = caller.sub
    if (caller.client !== undefined) a.client = caller.client
    await next()
  } satisfies MiddlewareHandler<Env>)

  app.post('/v1/clusters/:cluster/nodes/:node/checkpoint/:namespace/:pod/:container', (c) => createCheckpoint(c, true))
  app.post('/v1/clusters/:cluster/checkpoint/:namespace/:pod/:container', (c) => createCheckpoint(c, false))
  app.get('/v1/clusters/:cluster/nodes/:node/checkpoints', listArchives)
  app.get('/v1/clusters/:cluster/nodes/:node/checkpoints/:name', (c) => archiveOp(c, 'read'))
  app.delete('/v1/clusters/:cluster/nodes/:node/checkpoints/:name', (c) => archiveOp(c, 'delete'))
  ops?.routes(app)

  app.notFound((c) => errorResponse(c, new CheckpointError('not_found', `no route for ${c.req.method} ${new URL(c.req.url).pathname.slice(0, 200)}`)))
  app.onError((err, c) => errorResponse(c, asCheckpointError(err)))

  function errorResponse(c: Ctx, err: CheckpointError, opts: { status?: number; extra?: Record<string, unknown> } = {}): Response {
    const a = c.get('audit')
    if (a) a.code = err.code
    logInternal(err, a?.requestId)
    return problemResponse(err, { ...opts, ...(a ? { requestId: a.requestId } : {}) })
  }

  /** An `internal` error is our bug: its cause (stack) goes to the log, never to the caller. */
  function logInternal(err: CheckpointError, requestId: string | undefined): void {
    if (err.code === 'internal') log({ type: 'error', requestId, error: String((err.cause as Error | undefined)?.stack ?? err.cause ?? err.message) })
  }

  function writeOutcome(a: Audit, started: number): void {
    const { deferred: _, ...rest } = a
    log({ type: 'outcome', ...rest, durationMs: clock.now() - started })
  }

  function authorize(c: Ctx, action: Action, decision: Decision): void {
    const a = c.get('audit')
    a.op = `checkpoint:${action}`
    a.decision = decision.allow ? 'allow' : 'deny'
    if (decision.rule) a.rule = decision.rule
    const { deferred: _d, status: _s, code: _c, sha256: _h, ...who } = a
    log({ type: 'decision', ...who, ...(decision.missing ? { missing: decision.missing } : {}) })
    requireAllowed(decision)
  }

  function clusterOf(id: string): ClusterConfig {
    const cl = config.clusters.get(id)
    if (!cl) throw new CheckpointError('not_found', `cluster ${id} is not registered`, { field: 'cluster' })
    return cl
  }

  /** Forwards with a deadline on the response headers only; the body may take as long as it takes. */
  async function forward(cl: ClusterConfig, node: string, path: string, init: RequestInit): Promise<Response> {
    const ac = new AbortController()
    const ms = config.limits.agentHeadersTimeoutMs
    const timer = setTimeout(() => ac.abort(), ms)
    try {
      return await deps.agents.fetch(cl, node, path, { ...init, redirect: 'manual', signal: ac.signal })
    } catch (err) {
      if (ac.signal.aborted) throw new CheckpointError('timeout', `agent on node ${node} did not answer within ${ms} ms`, { extra: { cluster: cl.id, node } })
      throw new CheckpointError('bad_gateway', `agent on node ${node} is unreachable`, { cause: err, extra: { cluster: cl.id, node } })
    } finally {
      clearTimeout(timer)
    }
  }

  /** The headers of one agent request: a grant for `sub` bound to `claims`, and the request id. */
  async function grantHeaders(sub: string, requestId: string, claims: Omit<GrantClaims, 'sub'>, ttlSec: number): Promise<Record<string, string>> {
    const grant = await keys.sign({ ...claims, sub }, clock.now(), ttlSec, config.grants.issuer)
    return { authorization: `Bearer ${grant}`, [REQUEST_ID_HEADER]: requestId }
  }

  function grantFor(c: Ctx, claims: Omit<GrantClaims, 'sub'>, ttlSec: number): Promise<Record<string, string>> {
    return grantHeaders(c.get('caller').sub, c.get('audit').requestId, claims, ttlSec)
  }

  /**
   * Asks the agent for a checkpoint (always the event stream) and relays it with the gateway's
   * additions on the final event. An error answer is the agent's failure; `final` marks one that
   * came after the agent accepted the request (never worth a retry).
   */
  async function startCheckpoint(cl: ClusterConfig, node: string, target: Target, timeoutSec: number, headers: Record<string, string>): Promise<{ relay: Relay } | { failure: AgentFailure; final: boolean }> {
    const res = await forward(cl, node, `${AGENT_PATHS.checkpoint(target)}?timeout=${timeoutSec}`, { method: 'POST', headers: { ...headers, accept: NDJSON } })
    if (res.status >= 300) return { failure: await agentFailure(res), final: false }
    if (!res.body || !(res.headers.get('content-type') ?? '').startsWith(NDJSON)) {
      await res.body?.cancel()
      return { failure: { err: new CheckpointError('bad_gateway', `agent on node ${node} did not answer with an event stream`), status: 502 }, final: true }
    }
    const cluster = cl.id
    const decorate = (e: FinalEvent): FinalEvent =>
      e.type === 'completed' ? { ...e, cluster, node, download: downloadPath(cluster, node, e.archive.name, target.namespace) } : { ...e, cluster, node }
    return { relay: relayEvents(res.body, decorate, () => clock.now()) }
  }

  /** The agent's archive list (GET /checkpoints), or the agent's failure. */
  async function agentList(cl: ClusterConfig, node: string, headers: Record<string, string>): Promise<ArchiveEntry[] | AgentFailure> {
    const res = await forward(cl, node, AGENT_PATHS.list(), { method: 'GET', headers: { ...headers, accept: 'application/json' } })
    if (res.status !== 200) return agentFailure(res)
    const unreadable = (cause?: unknown) => new CheckpointError('bad_gateway', `agent on node ${node} sent an unreadable list`, { cause, extra: { cluster: cl.id, node } })
    let body: { items?: unknown }
    try {
      body = (await res.json()) as { items?: unknown }
    } catch (err) {
      throw unreadable(err)
    }
    if (!Array.isArray(body.items)) throw unreadable()
    return (body.items as ArchiveEntry[]).filter((e) => e && typeof e.name === 'string' && isArchiveName(e.name))
  }

  async function agentError(c: Ctx, res: Response, cl: ClusterConfig, node: string): Promise<Response> {
    const f = await agentFailure(res)
    if (f.err.extra?.['agentCode'] === 'grant_mismatch' && f.err.extra['agentField'] === 'namespace') {
      // The archive exists, but not in a namespace the caller was authorized in: to the caller it
      // is absent (a 403 would tell it that this name belongs to someone else).
      const a = c.get('audit')
      a.decision = 'deny'
      log({ type: 'decision', requestId: a.requestId, sub: a.sub, op: a.op, cluster: cl.id, node, archive: a.archive, decision: 'deny', missing: 'archive namespace (agent record)' })
      return errorResponse(c, new CheckpointError('archive_not_found', `no archive ${a.archive ?? ''} in the namespaces you may access on node ${node}`, { field: 'namespace' }), { extra: { cluster: cl.id, node } })
    }
    const r = failureResponse(c, f, cl, node)
    const range = res.headers.get('content-range')
    if (f.status === 416 && range) r.headers.set('content-range', range)
    return r
  }

  function failureResponse(c: Ctx, f: AgentFailure, cl: ClusterConfig, node: string): Response {
    return errorResponse(c, f.err, { status: f.status, extra: { cluster: cl.id, node } })
  }

  /** Bodies where none belong are refused (400) before anything else happens. */
  function refuseBody(c: Ctx): void {
    const length = c.req.header('content-length')
    if ((length !== undefined && length.trim() !== '0') || c.req.header('transfer-encoding') !== undefined) {
      throw new CheckpointError('invalid_body', `${c.req.method} on this route takes no body`, { field: 'body' })
    }
  }

  async function resolveNode(cl: ClusterConfig, t: Target): Promise<string> {
    if (!cl.kube || !deps.kube) {
      throw new CheckpointError('invalid_name', `cluster ${cl.id} has no Kubernetes API configured; name the node: POST /v1/clusters/${cl.id}/nodes/{node}/checkpoint/${t.namespace}/${t.pod}/${t.container}`, { field: 'node' })
    }
    const key = `${cl.id}/${t.namespace}/${t.pod}/${t.container}`
    const hit = nodeCache.get(key)
    if (hit && hit.expires > clock.now()) return hit.node
    const ac = new AbortController()
    const timer = setTimeout(() => ac.abort(), config.limits.agentHeadersTimeoutMs)
    let res: Response
    let pod: { spec?: { nodeName?: unknown; containers?: Array<{ name?: unknown }> } }
    try {
      res = await deps.kube.fetch(cl, `/api/v1/namespaces/${t.namespace}/pods/${t.pod}`, {
        headers: { authorization: `Bearer ${cl.kube.token}`, accept: 'application/json' },
        redirect: 'manual',
        signal: ac.signal,
      })
      if (res.status === 404) {
        await res.body?.cancel()
        throw new CheckpointError('not_found', `pod ${t.namespace}/${t.pod} not found in cluster ${cl.id}`, { field: 'pod' })
      }
      if (!res.ok) {
        await res.body?.cancel()
        throw new CheckpointError('bad_gateway', `the Kubernetes API of cluster ${cl.id} answered ${res.status}`)
      }
      pod = (await res.json()) as typeof pod
    } catch (err) {
      if (err instanceof CheckpointError) throw err
      if (ac.signal.aborted) throw new CheckpointError('timeout', `the Kubernetes API of cluster ${cl.id} did not answer in time`)
      throw new CheckpointError('bad_gateway', `the Kubernetes API of cluster ${cl.id} is unreachable`, { cause: err })
    } finally {
      clearTimeout(timer)
    }
    const node = pod.spec?.nodeName
    if (typeof node !== 'string' || node === '') throw new CheckpointError('conflict', `pod ${t.namespace}/${t.pod} is not scheduled on a node`, { field: 'pod' })
    checkName('node', node)
    if (Array.isArray(pod.spec?.containers) && !pod.spec.containers.some((k) => k.name === t.container)) {
      throw new CheckpointError('container_not_found', `pod ${t.namespace}/${t.pod} has no container ${t.container}`, { field: 'container' })
    }
    nodeCache.set(key, { node, expires: clock.now() + config.limits.kubeCacheMs })
    if (nodeCache.size > 10_000) nodeCache.delete(nodeCache.keys().next().value!)
    return node
  }

  function downloadPath(cluster: string, node: string, name: string, namespace?: string): string {
    const q = namespace ? `?namespace=${namespace}` : ''
    return `/v1/clusters/${cluster}/nodes/${node}/checkpoints/${encodeURIComponent(name)}${q}`
  }

  async function createCheckpoint(c: Ctx, nodeInPath: boolean): Promise<Response> {
    refuseBody(c)
    const url = new URL(c.req.url)
    checkQuery(url.searchParams, ['timeout'])
    const cluster = checkName('cluster', c.req.param('cluster'))
    let node = nodeInPath ? checkName('node', c.req.param('node')) : undefined
    const target = checkTarget({ namespace: c.req.param('namespace'), pod: c.req.param('pod'), container: c.req.param('container') })
    const timeout = parseTimeout(url.searchParams.get('timeout'), config.limits.defaultTimeoutSec, config.limits.maxTimeoutSec)
    const streaming = wantsNdjson(c.req.header('accept'))
    Object.assign(c.get('audit'), { cluster, ...(node ? { node } : {}), ...target })
    authorize(c, 'create', decide(config.policy, c.get('caller'), 'create', { cluster, ...target }))
    const cl = clusterOf(cluster)
    node ??= await resolveNode(cl, target)
    const audit = c.get('audit')
    audit.node = node
    const headers = await grantFor(c, { op: 'checkpoint:create', cluster, node, ...target }, timeout + config.grants.marginSec)
    const started = await startCheckpoint(cl, node, target, timeout, headers)
    if ('failure' in started) return failureResponse(c, started.failure, cl, node)
    const { relay } = started
    audit.deferred = true
    const t0 = c.get('started')
    c.executionCtx.waitUntil(
      relay.done.then(async () => {
        const f = await relay.final
        audit.status = f.type === 'completed' ? 200 : f.status
        if (f.type === 'completed') audit.sha256 = f.archive.sha256
        else audit.code = f.code
        writeOutcome(audit, t0)
      }),
    )
    if (streaming) {
      return new Response(relay.readable, { status: 200, headers: { 'content-type': NDJSON, ...NO_STORE } })
    }
    relay.readable.cancel().catch(() => {})
    const f = await relay.final
    if (f.type === 'failed') {
      const code = isErrorCode(f.code) ? f.code : 'bad_gateway'
      const status = Number.isInteger(f.status) && f.status >= 400 && f.status <= 599 ? f.status : ERROR_STATUS[code]
      const err = new CheckpointError(code, f.message, f.field ? { field: f.field } : {})
      return problemResponse(err, { status, extra: { cluster, node, ...runtimeLogOf(f) }, requestId: audit.requestId })
    }
    return c.json(jsonResult(f), 200, NO_STORE)
  }

  /** A checkpoint for a background job: the same resolution, grant and forwarding, JSON outcome. */
  async function checkpointJob(j: CheckpointJob): Promise<JobOutcome> {
    let node = j.node
    const { cluster, target } = j
    try {
      const cl = clusterOf(cluster)
      node ??= await resolveNode(cl, target)
      const headers = await grantHeaders(j.sub, j.requestId, { op: 'checkpoint:create', cluster, node, ...target }, j.timeoutSec + config.grants.marginSec)
      await j.dispatching?.(node)
      const started = await startCheckpoint(cl, node, target, j.timeoutSec, headers)
      if ('failure' in started) {
        const { err, status } = started.failure
        const ra = Number(err.headers?.['Retry-After'])
        return { ok: false, node, status, code: err.code, message: err.message, retryable: !started.final && (RETRYABLE_STATUS.has(status) || RETRYABLE_FINAL.has(err.code)), ...(ra > 0 ? { retryAfterSec: ra } : {}) }
      }
      const { relay } = started
      relay.readable.cancel().catch(() => {})
      const f = await relay.final
      if (f.type === 'completed') return { ok: true, node, archive: f.archive, download: f.download! }
      return { ok: false, node, status: f.status, code: f.code, message: f.message, retryable: RETRYABLE_FINAL.has(f.code), ...runtimeLogOf(f) }
    } catch (err) {
      const e = asCheckpointError(err)
      logInternal(e, j.requestId)
      return { ok: false, ...(node ? { node } : {}), status: e.status, code: e.code, message: e.message, retryable: RETRYABLE_STATUS.has(e.status) }
    }
  }

  /** Finds the archive a dispatched job made: the earliest of its target created since `since`. */
  async function reconcileJob(j: CheckpointJob & { node: string }, since: number): Promise<JobOutcome | null> {
    const { cluster, node, target } = j
    try {
      const cl = clusterOf(cluster)
      const headers = await grantHeaders(j.sub, j.requestId, { op: 'checkpoint:list', cluster, node }, config.grants.readTtlSec)
      const items = await agentList(cl, node, headers)
      if (!Array.isArray(items)) return { ok: false, node, status: items.status, code: items.err.code, message: items.err.message, retryable: false }
      // The agent stamps `created` with its own clock (and the name with whole seconds): some slack.
      const from = since - DISPATCH_CLOCK_SLACK_MS
      const hits = items
        .filter((e) => e.sha256Known !== false && e.namespace === target.namespace && e.pod === target.pod && e.container === target.container && archiveMatches(e.name, target) && Date.parse(e.created) >= from)
        .sort((a, b) => Date.parse(a.created) - Date.parse(b.created))
      const e = hits[0]
      if (!e) return null
      return { ok: true, node, archive: { name: e.name, size: e.size, sha256: e.sha256, created: e.created }, download: downloadPath(cluster, node, e.name, target.namespace) }
    } catch (err) {
      const e = asCheckpointError(err)
      logInternal(e, j.requestId)
      return { ok: false, node, status: e.status, code: e.code, message: e.message, retryable: false }
    }
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

  async function listArchives(c: Ctx): Promise<Response> {
    refuseBody(c)
    checkQuery(new URL(c.req.url).searchParams, [])
    const cluster = checkName('cluster', c.req.param('cluster'))
    const node = checkName('node', c.req.param('node'))
    Object.assign(c.get('audit'), { cluster, node })
    const caller = c.get('caller')
    authorize(c, 'read', decide(config.policy, caller, 'read', { cluster }))
    const cl = clusterOf(cluster)
    const headers = await grantFor(c, { op: 'checkpoint:list', cluster, node }, config.grants.readTtlSec)
    const list = await agentList(cl, node, headers)
    if (!Array.isArray(list)) return failureResponse(c, list, cl, node)
    const items = []
    for (const e of list) {
      // The agent's own record names the target; an archive it did not write (sha256Known false)
      // has only its name, whose namespace/container split is ambiguous: every reading must pass.
      const exact = e.sha256Known !== false && archiveMatches(e.name, { namespace: e.namespace, pod: e.pod, container: e.container })
      const d = exact ? decide(config.policy, caller, 'read', { cluster, namespace: e.namespace, pod: e.pod, container: e.container }) : decideArchive(config.policy, caller, 'read', cluster, e.name)
      if (d.allow) items.push({ ...e, download: downloadPath(cluster, node, e.name, exact ? e.namespace : undefined) })
    }
    return c.json({ cluster, node, items }, 200, NO_STORE)
  }

  async function archiveOp(c: Ctx, action: 'read' | 'delete'): Promise<Response> {
    refuseBody(c)
    const url = new URL(c.req.url)
    checkQuery(url.searchParams, ['namespace'])
    const cluster = checkName('cluster', c.req.param('cluster'))
    const node = checkName('node', c.req.param('node'))
    const name = c.req.param('name') ?? ''
    if (!isArchiveName(name)) {
      throw new CheckpointError('invalid_archive_name', `archive name ${JSON.stringify(name.slice(0, 80))}: must be checkpoint-<pod>_<namespace>-<container>-<RFC3339>.tar`, { field: 'name' })
    }
    const ns = url.searchParams.get('namespace')
    const caller = c.get('caller')
    let decision: Decision
    // The namespaces this decision covers travel in the grant: the agent serves the archive only if
    // its recorded namespace is one of them, so `?namespace=` can pick a reading, never widen one.
    let namespaces: string[]
    Object.assign(c.get('audit'), { cluster, node, archive: name })
    if (ns !== null) {
      checkName('namespace', ns)
      const t = archiveInNamespace(name, ns)
      if (!t) throw new CheckpointError('invalid_archive_name', `archive ${name} is not in namespace ${ns}`, { field: 'namespace' })
      decision = decide(config.policy, caller, action, { cluster, ...t })
      namespaces = [ns]
    } else {
      decision = decideArchive(config.policy, caller, action, cluster, name)
      namespaces = archiveReadings(name)?.readings.map((r) => r.namespace) ?? []
    }
    authorize(c, action, decision)
    const cl = clusterOf(cluster)
    const op = action === 'read' ? 'checkpoint:read' : 'checkpoint:delete'
    const headers = await grantFor(c, { op, cluster, node, archive: name, namespaces }, config.grants.readTtlSec)
    if (action === 'delete') {
      const res = await forward(cl, node, AGENT_PATHS.archive(name), { method: 'DELETE', headers })
      if (res.status >= 300) return agentError(c, res, cl, node)
      await res.body?.cancel()
      return new Response(null, { status: 204 })
    }
    for (const h of ['range', 'if-range', 'if-none-match', 'if-match', 'if-modified-since']) {
      const v = c.req.header(h)
      if (v !== undefined) headers[h] = v
    }
    const res = await forward(cl, node, AGENT_PATHS.archive(name), { method: 'GET', headers })
    if (res.status >= 400 || (res.status !== 200 && res.status !== 206 && res.status !== 304)) return agentError(c, res, cl, node)
    const out = new Headers(NO_STORE)
    for (const h of ['content-type', 'content-length', 'content-range', 'accept-ranges', 'etag', 'last-modified', 'content-disposition', 'digest', 'repr-digest', 'x-checkpoint-sha256']) {
      const v = res.headers.get(h)
      if (v !== null) out.set(h, v)
    }
    if (!out.has('content-type')) out.set('content-type', 'application/x-tar')
    return new Response(res.status === 304 ? null : res.body, { status: res.status, headers: out })
  }

  return { app, runOperation: ops?.runOperation ?? (async () => {}), sweepOperations: ops?.sweep ?? (async () => 0) }
}

function wantsNdjson(accept: string | undefined): boolean {
  if (!accept) return false
  return accept.split(',').some((part) => part.split(';')[0]!.trim().toLowerCase() === NDJSON)
}
