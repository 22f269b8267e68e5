/**
 * Serves a fetch-style app on Node through `@hono/node-server` (Hono's official adapter: streamed
 * request and response, backpressure, the request's signal aborted when the client goes). Measured
 * against the hand-written bridge it replaced: the same CPU per gateway request, less for small
 * answers (test/README.md). Two things of ours on top: a `waitUntil` the shutdown waits for (the
 * outcome line of a checkpoint whose caller hung up), and problem bodies for what the app or the
 * HTTP parser never answered.
 */
import { createServer, type Server, type ServerResponse } from 'node:http'
import { createServer as createHttpsServer } from 'node:https'
import type { AddressInfo } from 'node:net'
import type { Readable } from 'node:stream'
import { getRequestListener, RequestError, type HttpBindings } from '@hono/node-server'
import { RESPONSE_ALREADY_SENT } from '@hono/node-server/utils/response'
import { CheckpointError, parserErrorAnswer } from '../../shared/errors.ts'
import { problemResponse } from '../problem.ts'
import { nodeBodies } from './transport.ts'
import { relayDownload } from './download-relay.ts'

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
  const onRequest = getRequestListener(async (req, env) => {
    const res = await handler(req, {}, ctx)
    // An agent's streamed answer handed on unchanged (a download) goes out as the Node stream it is.
    const web = bodyOf(res)
    const body = web && !web.locked ? nodeBodies.get(web) : undefined
    if (!body) return res
    sendNodeBody(res, body, (env as HttpBindings).outgoing) // an http(s) server: never HTTP/2 here
    return RESPONSE_ALREADY_SENT
  }, {
    // An HTTP/1.0 request without Host still gets a URL, as before.
    hostname: 'localhost',
    // The app never throws (its onError answers); the adapter's own failures get our problems.
    errorHandler: (err) => problemResponse(err instanceof RequestError ? new CheckpointError('malformed_request', 'the request could not be read') : new CheckpointError('internal', 'internal error')),
  })
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

/**
 * The symbol under which @hono/node-server's Response keeps what it was made of ([status, body,
 * headers]) until something reads it as a platform Response. Reading `res.body` builds that
 * platform Response — for bytes or a string, a web stream too — and the adapter then sends the
 * answer by reading that stream instead of writing the bytes (test/README.md, "Where the time
 * goes"). Looked up on the adapter's Response (global once `getRequestListener` ran), not
 * imported: the package does not export it. Without it `res.body` is read as before; a test
 * notices when an adapter version lacks it.
 */
let cacheSymbol: symbol | null | undefined
export function adapterCacheSymbol(): symbol | null {
  return (cacheSymbol ??= Object.getOwnPropertySymbols(new Response(null)).find((s) => s.description === 'cache') ?? null)
}

/** A Response's body stream, without turning an adapter Response into a platform one. */
export function bodyOf(res: Response): ReadableStream<Uint8Array> | null {
  const key = adapterCacheSymbol()
  const cached = key ? (res as unknown as Record<symbol, [number, unknown, unknown] | undefined>)[key] : undefined
  if (cached) return cached[1] instanceof ReadableStream ? cached[1] as ReadableStream<Uint8Array> : null
  return res.body
}

/**
 * Writes `res`'s status and headers, then relays `body` through reused buffers with backpressure
 * (./download-relay.ts); a client that goes away destroys `body`, which aborts the agent's answer. Bytes per
 * CPU-second and RSS: test/README.md.
 */
function sendNodeBody(res: Response, body: Readable, outgoing: ServerResponse): void {
  const headers: Record<string, string> = {}
  res.headers.forEach((v, k) => (headers[k] = v))
  outgoing.writeHead(res.status, headers)
  const length = Number(headers['content-length'] ?? NaN)
  void relayDownload(body, outgoing, Number.isSafeInteger(length) && length > 0 ? { length } : {})
}

/** A request the HTTP parser refused still gets a problem body (a reset connection gets nothing). */
function answerParserError(err: NodeJS.ErrnoException, socket: import('node:stream').Duplex): void {
  if (err.code?.startsWith('HPE_') && socket.writable) socket.end(parserErrorAnswer(err.code))
  else socket.destroy()
}
