/**
 * Serves a fetch-style app with node:http. A hand-written bridge instead of @hono/node-server: we
 * need exactly three things from it — a streamed request, a streamed response with backpressure
 * that cancels upstream when the client goes, and a `waitUntil` the shutdown can wait for — and
 * keep the dependency list short.
 */
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http'
import { createServer as createHttpsServer } from 'node:https'
import type { AddressInfo } from 'node:net'
import { CheckpointError, parserErrorAnswer } from '../../shared/errors.ts'
import { problemResponse } from '../problem.ts'
import { abortIncoming, incomingRequest } from './request.ts'

export type FetchHandler = (req: Request, env: unknown, ctx: ExecutionContextLike) => Response | Promise<Response>

export interface ExecutionContextLike {
  waitUntil(p: Promise<unknown>): void
  passThroughOnException(): void
  props: Record<string, unknown>
}

export interface Served {
  server: Server
  url: string
  /** Stops accepting, waits for open requests and background work (up to `graceMs`), then closes. */
  close(graceMs?: number): Promise<void>
}

/**
 * @example
 * const { url, close } = await serveFetch(app.fetch, { host: '127.0.0.1', port: 0 })
 */
export async function serveFetch(handler: FetchHandler, opts: { host: string; port: number; tls?: { cert: string; key: string } }): Promise<Served> {
  const background = new Set<Promise<unknown>>()
  const ctx: ExecutionContextLike = {
    waitUntil(p) {
      const q = p.catch(() => {}).finally(() => background.delete(q))
      background.add(q)
    },
    passThroughOnException() {},
    props: {},
  }
  const onRequest = (req: IncomingMessage, res: ServerResponse) => {
    handle(handler, ctx, req, res).catch((err) => {
      if (res.headersSent) res.destroy(err as Error)
      else answerInternal(res).catch(() => res.destroy())
    })
  }
  const timeouts = { requestTimeout: 0, headersTimeout: 30_000, keepAliveTimeout: 5_000 }
  // HTTPS when given a certificate: agents fetch /.well-known/jwks.json only over https.
  const server: Server = opts.tls ? createHttpsServer({ ...timeouts, ...opts.tls, minVersion: 'TLSv1.2' }, onRequest) : createServer(timeouts, onRequest)
  server.on('clientError', (err: NodeJS.ErrnoException, socket) => answerParserError(err, socket))
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject)
    server.listen(opts.port, opts.host, () => resolve())
  })
  const addr = server.address() as AddressInfo
  const host = addr.family === 'IPv6' ? `[${addr.address}]` : addr.address
  return {
    server,
    url: `${opts.tls ? 'https' : 'http'}://${host}:${addr.port}`,
    async close(graceMs = 10_000) {
      const closed = new Promise<void>((r) => server.close(() => r()))
      server.closeIdleConnections()
      const timer = new Promise<void>((r) => setTimeout(r, graceMs).unref())
      await Promise.race([Promise.all([closed, ...background]), timer])
      server.closeAllConnections()
    },
  }
}

async function handle(handler: FetchHandler, ctx: ExecutionContextLike, req: IncomingMessage, res: ServerResponse): Promise<void> {
  const request = incomingRequest(req)
  // One listener for the whole exchange: the client going aborts the request's signal and, once
  // the body is being relayed, cancels it.
  let reader: ReadableStreamDefaultReader<Uint8Array> | undefined
  let gone = false
  res.once('close', () => {
    if (res.writableFinished) return
    gone = true
    abortIncoming(request)
    reader?.cancel().catch(() => {})
  })
  const response = await handler(request, {}, ctx)
  const out: Record<string, string | string[]> = {}
  response.headers.forEach((v, k) => {
    if (k !== 'set-cookie') out[k] = v
  })
  const cookies = response.headers.getSetCookie()
  if (cookies.length) out['set-cookie'] = cookies
  res.writeHead(response.status, response.statusText || undefined, out)
  if (!response.body || req.method === 'HEAD') {
    await response.body?.cancel()
    res.end()
    return
  }
  reader = response.body.getReader()
  if (gone) reader.cancel().catch(() => {})
  try {
    for (;;) {
      const { done, value } = await reader.read()
      if (done || gone) break
      if (!res.write(value)) {
        await new Promise<void>((r) => {
          const go = () => {
            res.off('drain', go)
            res.off('close', go)
            r()
          }
          res.on('drain', go)
          res.on('close', go)
        })
      }
    }
  } catch {
    gone = true
  }
  if (gone) res.destroy()
  else res.end()
}

/** The app threw instead of answering (it never should): the gateway's own 500 problem. */
async function answerInternal(res: ServerResponse): Promise<void> {
  const problem = problemResponse(new CheckpointError('internal', 'internal error'))
  res.writeHead(problem.status, Object.fromEntries(problem.headers))
  res.end(await problem.text())
}

/** A request the HTTP parser refused still gets a problem body (a reset connection gets nothing). */
function answerParserError(err: NodeJS.ErrnoException, socket: import('node:stream').Duplex): void {
  if (err.code?.startsWith('HPE_') && socket.writable) socket.end(parserErrorAnswer(err.code))
  else socket.destroy()
}
