/**
 * The agent's HTTPS server: mutual TLS, one identity filter before every route, then a straight
 * line per handler — read params, validate, check the grant, look up, act, answer.
 */
import { randomUUID } from 'node:crypto'
import { createServer, type Server } from 'node:https'
import type { IncomingMessage, ServerResponse } from 'node:http'
import type { AddressInfo } from 'node:net'
import type { TLSSocket } from 'node:tls'
import { asCheckpointError, CheckpointError, parserErrorAnswer, PROBLEM_CONTENT_TYPE, toProblem } from '../shared/errors.ts'
import { encodeEvent, isRuntimeLog, NDJSON, type ArchiveEntry, type CheckpointEvent, type FailedEvent } from '../shared/events.ts'
import { checkGrantCoversArchive } from '../shared/grant.ts'
import { checkQuery, checkTarget, parseTimeout, type Target } from '../shared/names.ts'
import { REQUEST_ID_HEADER, REQUEST_ID_PATTERN } from '../shared/agent-api.ts'
import type { ArchiveStore } from './archives.ts'
import { sendFileRange } from './files.ts'
import type { Checkpointer, Job, JobResult } from './checkpointer.ts'
import type { Runtime } from './cri/client.ts'
import type { GrantVerifier, VerifiedGrant } from './grants.ts'
import type { Logger } from './log.ts'
import type { Metrics } from './metrics.ts'
import { allowedIdentity, type TlsMaterial } from './tls.ts'

export interface AgentDeps {
  node: string
  tls: TlsMaterial
  allowedClients: readonly string[]
  grants: GrantVerifier
  checkpointer: Checkpointer
  store: ArchiveStore
  runtime: Pick<Runtime, 'version'>
  metrics: Metrics
  log: Logger
  checkpointing: boolean
  defaultTimeoutSeconds: number
  maxTimeoutSeconds: number
  heartbeatIntervalMs: number
}

interface Ctx {
  req: IncomingMessage
  res: ServerResponse
  /** The path as sent, not normalized. */
  pathname: string
  query: URLSearchParams
  params: string[]
  requestId: string
  client: string
  log: Logger
}

type Handler = (ctx: Ctx, d: AgentDeps) => Promise<void>

interface Route {
  method: string
  pattern: RegExp
  /** An example path, for the test that proves no route bypasses the identity filter. */
  example: string
  handler: Handler
}

/** Every route the agent serves. */
export const ROUTES: readonly Route[] = [
  { method: 'POST', pattern: /^\/checkpoint\/([^/]+)\/([^/]+)\/([^/]+)$/, example: '/checkpoint/ns/pod/c', handler: checkpoint },
  { method: 'GET', pattern: /^\/checkpoints$/, example: '/checkpoints', handler: listArchives },
  { method: 'GET', pattern: /^\/checkpoints\/([^/]+)$/, example: '/checkpoints/x.tar', handler: download },
  { method: 'HEAD', pattern: /^\/checkpoints\/([^/]+)$/, example: '/checkpoints/x.tar', handler: download },
  { method: 'DELETE', pattern: /^\/checkpoints\/([^/]+)$/, example: '/checkpoints/x.tar', handler: removeArchive },
  { method: 'GET', pattern: /^\/healthz$/, example: '/healthz', handler: healthz },
  { method: 'GET', pattern: /^\/readyz$/, example: '/readyz', handler: readyz },
  { method: 'GET', pattern: /^\/metrics$/, example: '/metrics', handler: metrics },
]

export interface AgentServer {
  server: Server
  listen(port: number, host: string): Promise<AddressInfo>
  /** Stops accepting connections; open streams continue. */
  stopAccepting(): Promise<void>
}

export function createAgentServer(d: AgentDeps): AgentServer {
  const server = createServer({
    ...d.tls,
    requestCert: true,
    rejectUnauthorized: true,
    minVersion: 'TLSv1.2',
  }, (req, res) => void handle(req, res, d))
  // Checkpoints of large containers take minutes; heartbeats keep the stream alive, so the
  // server must not cut it.
  server.requestTimeout = 0
  server.headersTimeout = 30_000
  server.keepAliveTimeout = 5_000
  // A request the HTTP parser refuses (oversized headers) still gets a problem body.
  server.on('clientError', (err: NodeJS.ErrnoException, socket) => {
    if (err.code?.startsWith('HPE_') && socket.writable) socket.end(parserErrorAnswer(err.code))
    else socket.destroy()
  })
  return {
    server,
    listen: (port, host) => new Promise((resolve, reject) => {
      server.once('error', reject)
      server.listen(port, host, () => {
        server.off('error', reject)
        resolve(server.address() as AddressInfo)
      })
    }),
    stopAccepting: () => new Promise((resolve) => {
      server.close(() => resolve())
      server.closeIdleConnections()
    }),
  }
}

async function handle(req: IncomingMessage, res: ServerResponse, d: AgentDeps): Promise<void> {
  const header = req.headers[REQUEST_ID_HEADER]
  const requestId = typeof header === 'string' && REQUEST_ID_PATTERN.test(header) ? header : randomUUID()
  res.setHeader(REQUEST_ID_HEADER, requestId)
  const log = d.log.child({ requestId })
  // The identity filter: before any route is looked at.
  const client = allowedIdentity(req.socket as TLSSocket, d.allowedClients)
  if (!client) {
    log.warn('client identity not allowed', { path: req.url?.slice(0, 200) })
    return sendError(res, new CheckpointError('forbidden', 'client certificate identity is not allowed on this agent'))
  }
  // Split the raw target by hand: WHATWG URL parsing would resolve %2E%2E segments before routing.
  const raw = req.url ?? '/'
  const q = raw.indexOf('?')
  const pathname = q < 0 ? raw : raw.slice(0, q)
  const query = new URLSearchParams(q < 0 ? '' : raw.slice(q + 1))
  const ctx: Ctx = { req, res, pathname, query, params: [], requestId, client, log }
  try {
    let methodMismatch = false
    for (const r of ROUTES) {
      const m = r.pattern.exec(ctx.pathname)
      if (!m) continue
      if (r.method !== req.method) {
        methodMismatch = true
        continue
      }
      ctx.params = m.slice(1).map((p) => {
        try {
          return decodeURIComponent(p)
        } catch {
          throw new CheckpointError('invalid_name', 'path segment is not valid percent-encoding')
        }
      })
      return await r.handler(ctx, d)
    }
    throw methodMismatch
      ? new CheckpointError('method_not_allowed', `${req.method} is not allowed here`)
      : new CheckpointError('not_found', `no route ${ctx.pathname.slice(0, 100)}`)
  } catch (err) {
    const e = asCheckpointError(err)
    if (e.code === 'internal') log.error('unhandled error', { err })
    if (!res.headersSent) sendError(res, e)
    else if (!res.writableEnded) res.destroy()
  } finally {
    // Drain any request body we did not read, so keep-alive stays healthy.
    req.resume()
  }
}

function sendError(res: ServerResponse, e: CheckpointError): void {
  const body = JSON.stringify(toProblem(e))
  const headers: Record<string, string | number> = { 'content-type': PROBLEM_CONTENT_TYPE, 'content-length': Buffer.byteLength(body), ...e.headers }
  if (e.code === 'invalid_grant') headers['www-authenticate'] = 'Bearer error="invalid_token"'
  res.writeHead(e.status, headers).end(body)
}

function sendJson(res: ServerResponse, status: number, body: string, extra: Record<string, string> = {}): void {
  res.writeHead(status, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(body), 'cache-control': 'no-store', ...extra }).end(body)
}

function refuseBody(req: IncomingMessage): void {
  const len = req.headers['content-length']
  if ((len !== undefined && len !== '0') || req.headers['transfer-encoding']) {
    throw new CheckpointError('invalid_body', 'this request takes no body', { field: 'body' })
  }
}

async function checkpoint(ctx: Ctx, d: AgentDeps): Promise<void> {
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
    const resolved = await d.checkpointer.resolve(target)
    await d.checkpointer.preflight(resolved)
    const { job, joined, queuePosition } = d.checkpointer.submit(resolved)
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

async function listArchives(ctx: Ctx, d: AgentDeps): Promise<void> {
  checkQuery(ctx.query, [])
  await d.grants.verify(ctx.req.headers.authorization, { op: 'checkpoint:list' })
  const items = (await d.store.list()).map(({ path: _p, mtimeMs: _m, ...entry }) => entry)
  sendJson(ctx.res, 200, JSON.stringify({ items }))
}

async function removeArchive(ctx: Ctx, d: AgentDeps): Promise<void> {
  const name = ctx.params[0]!
  checkQuery(ctx.query, [])
  refuseBody(ctx.req)
  const grant: VerifiedGrant = await d.grants.verify(ctx.req.headers.authorization, { op: 'checkpoint:delete', archive: name })
  checkGrantCoversArchive(grant, name, recordedTarget(await d.store.get(name)))
  await d.store.remove(name)
  ctx.log.info('archive deleted', { client: ctx.client, sub: grant.sub, archive: name })
  ctx.res.writeHead(204).end()
}

/** Parses a single `bytes=` range against `size`; null = serve it all; throws for unsatisfiable. */
export function parseRange(header: string | undefined, size: number): { start: number; end: number } | null {
  if (!header) return null
  const m = /^bytes=(\d*)-(\d*)$/.exec(header.trim())
  if (!m || (m[1] === '' && m[2] === '')) return null // multiple or malformed ranges: whole body (RFC 9110 allows ignoring)
  let start: number
  let end: number
  if (m[1] === '') {
    const n = Number(m[2])
    if (n === 0) throw new CheckpointError('invalid_range', 'empty suffix range')
    start = Math.max(0, size - n)
    end = size - 1
  } else {
    start = Number(m[1])
    end = m[2] === '' ? size - 1 : Math.min(Number(m[2]), size - 1)
    if (m[2] !== '' && Number(m[2]) < start) return null
  }
  if (start >= size) throw new CheckpointError('invalid_range', `range starts at ${start}, archive has ${size} bytes`, { headers: { 'content-range': `bytes */${size}` } })
  return { start, end }
}

async function download(ctx: Ctx, d: AgentDeps): Promise<void> {
  const { req, res } = ctx
  const name = ctx.params[0]!
  checkQuery(ctx.query, [])
  const grant = await d.grants.verify(req.headers.authorization, { op: 'checkpoint:read', archive: name })
  const a = await d.store.get(name)
  checkGrantCoversArchive(grant, name, recordedTarget(a))
  const etag = a.sha256Known ? `"${a.sha256}"` : `W/"${a.size.toString(16)}-${Math.floor(a.mtimeMs).toString(16)}"`
  const ifRange = req.headers['if-range']
  const range = ifRange && ifRange !== etag ? null : parseRange(req.headers.range, a.size)
  const headers: Record<string, string | number> = {
    'content-type': 'application/x-tar',
    'accept-ranges': 'bytes',
    etag,
    'last-modified': new Date(a.mtimeMs).toUTCString(),
    'cache-control': 'no-store',
    'content-disposition': `attachment; filename="${a.name}"`,
  }
  if (a.sha256Known) headers['x-checkpoint-sha256'] = a.sha256
  if (req.headers['if-none-match'] === etag) return void res.writeHead(304, headers).end()
  const start = range?.start ?? 0
  const end = range?.end ?? a.size - 1
  headers['content-length'] = a.size === 0 ? 0 : end - start + 1
  if (range) headers['content-range'] = `bytes ${start}-${end}/${a.size}`
  res.writeHead(range ? 206 : 200, headers)
  ctx.log.info('archive download', { client: ctx.client, sub: grant.sub, archive: name, start, end })
  if (req.method === 'HEAD' || a.size === 0) return void res.end()
  await sendFileRange(a.path, start, end, res).catch((err) => {
    ctx.log.warn('download cut', { archive: name, err })
    res.destroy()
  })
}

/** The target the agent recorded when it wrote the archive; null for one it did not write. */
function recordedTarget(a: ArchiveEntry): Target | null {
  return a.sha256Known ? { namespace: a.namespace, pod: a.pod, container: a.container } : null
}

async function healthz(ctx: Ctx): Promise<void> {
  sendJson(ctx.res, 200, '{"status":"ok"}')
}

async function readyz(ctx: Ctx, d: AgentDeps): Promise<void> {
  let timer: NodeJS.Timeout | undefined
  try {
    const v = await Promise.race([
      d.runtime.version(),
      new Promise<never>((_, rej) => (timer = setTimeout(() => rej(new Error('runtime did not answer Version within 3s')), 3000))),
    ])
    sendJson(ctx.res, 200, JSON.stringify({ status: 'ready', node: d.node, runtime: { name: v.runtimeName, version: v.runtimeVersion, apiVersion: v.runtimeApiVersion } }))
  } catch (err) {
    throw new CheckpointError('runtime_unavailable', `runtime not ready: ${(err as Error).message}`, { cause: err })
  } finally {
    clearTimeout(timer)
  }
}

async function metrics(ctx: Ctx, d: AgentDeps): Promise<void> {
  const body = d.metrics.render()
  ctx.res.writeHead(200, { 'content-type': 'text/plain; version=0.0.4; charset=utf-8', 'content-length': Buffer.byteLength(body) }).end(body)
}
