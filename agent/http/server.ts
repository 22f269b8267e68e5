/**
 * The agent's HTTPS server: mutual TLS, one identity filter before every route, the route table,
 * and the agent's one writer of problem bodies. Handlers live one module per resource and throw
 * CheckpointErrors; this file turns them into answers.
 */
import { randomUUID } from 'node:crypto'
import { createServer, type Server } from 'node:https'
import type { IncomingMessage, ServerResponse } from 'node:http'
import type { AddressInfo } from 'node:net'
import type { TLSSocket } from 'node:tls'
import { asCheckpointError, CheckpointError, parserErrorAnswer, PROBLEM_CONTENT_TYPE, toProblem } from '../../shared/errors.ts'
import { REQUEST_ID_HEADER, REQUEST_ID_PATTERN } from '../../shared/agent-api.ts'
import { allowedIdentity } from '../tls.ts'
import { download, listArchives, removeArchive, statement, statementKeys } from './archives.ts'
import { store } from './store.ts'
import { checkpoint } from './checkpoint.ts'
import type { AgentDeps, Ctx, Handler } from './context.ts'
import { healthz, metrics, readyz } from './probes.ts'

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
  { method: 'GET', pattern: /^\/checkpoints\/([^/]+)\/statement$/, example: '/checkpoints/x.tar/statement', handler: statement },
  { method: 'POST', pattern: /^\/checkpoints\/([^/]+)\/store$/, example: '/checkpoints/x.tar/store', handler: store },
  { method: 'GET', pattern: /^\/statement-keys$/, example: '/statement-keys', handler: statementKeys },
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
  // A TLS 1.2 client could renegotiate and present another certificate on the same connection;
  // the identity filter reads a connection's certificate once (agent/tls.ts), so no connection
  // may renegotiate (an attempt closes it).
  server.on('secureConnection', (socket: TLSSocket) => socket.disableRenegotiation())
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
    if (!res.headersSent) sendError(res, e, !req.complete)
    else if (!res.writableEnded) res.destroy()
  } finally {
    // Drain any request body we did not read, so keep-alive stays healthy.
    req.resume()
  }
}

/** `unreadBody`: the request's body was refused half-read, so the connection closes after the answer. */
function sendError(res: ServerResponse, e: CheckpointError, unreadBody = false): void {
  const body = JSON.stringify(toProblem(e))
  const headers: Record<string, string | number> = { 'content-type': PROBLEM_CONTENT_TYPE, 'content-length': Buffer.byteLength(body), ...e.headers }
  if (unreadBody) headers.connection = 'close'
  if (e.code === 'invalid_grant') headers['www-authenticate'] = 'Bearer error="invalid_token"'
  res.writeHead(e.status, headers).end(body)
}
