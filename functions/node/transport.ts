/**
 * Node adapters: the agent over mutual TLS with undici (client certificate + per-cluster CA +
 * expected agent identity), and the Kubernetes API with the cluster's CA.
 */
import { Readable } from 'node:stream'
import { checkServerIdentity, type PeerCertificate } from 'node:tls'
import { Agent, type Dispatcher } from 'undici'
import { agentBase, agentIdentity, type ClusterConfig } from '../config.ts'
import type { AgentTransport, KubeTransport } from '../context.ts'
import { NDJSON } from '../../shared/events.ts'

/** Statuses whose response must not carry a body (the platform Response refuses one). */
const NULL_BODY = new Set([101, 103, 204, 205, 304])

/** Answers up to this size, announced by Content-Length, are read whole before they are handed on. */
const SMALL_BODY = 64 * 1024

/** `https://host:port` of an agent base URL, parsed once per base. */
const origins = new Map<string, string>()
function originOf(base: string): string {
  let o = origins.get(base)
  if (o === undefined) {
    o = new URL(base).origin
    if (origins.size > 1000) origins.clear()
    origins.set(base, o)
  }
  return o
}

/**
 * One request (to an agent or to a Kubernetes API) with undici's dispatcher API rather than its
 * fetch: the same exchange for less CPU per request (no fetch spec machinery or stream wrapping). No redirects are followed (as `redirect: 'manual'`), nothing
 * is decompressed (no Accept-Encoding is sent, so the peer answers identity), `init.signal` aborts
 * it. A request body is sent only as a string (the vault's upload plan); the gateway sends no other.
 * A small answer with a Content-Length (lists, problems) is read here, before the Response is
 * made, which spares a web stream per request; so is every answer when `whole` is set (the
 * Kubernetes API's JSON documents, often chunked). Anything else (event streams, downloads) is
 * handed on as a stream.
 */
async function dispatch(base: string, path: string, init: RequestInit, dispatcher: Dispatcher, whole = false, keep?: Kept): Promise<Response> {
  const url = base + path
  const h = init.headers
  let headers: Record<string, string>
  if (h && typeof h === 'object' && !Array.isArray(h) && !(h instanceof Headers)) headers = h as Record<string, string>
  else {
    headers = {}
    new Headers(h).forEach((v, k) => (headers[k] = v))
  }
  const r = await dispatcher.request({
    origin: originOf(base),
    path: url.slice(url.indexOf('/', url.indexOf('//') + 2)) || '/',
    method: (init.method ?? 'GET') as Dispatcher.HttpMethod,
    headers,
    ...(typeof init.body === 'string' ? { body: init.body } : {}),
    ...(init.signal ? { signal: init.signal } : {}),
  })
  // undici's own record (lowercase names), which @hono/node-server's Response keeps as it is until
  // its `headers` are read (`keep` hands it to callers directly); pairs when a name repeats.
  const values = Object.values(r.headers)
  const record = values.some((v) => typeof v !== 'string') ? undefined : r.headers as Record<string, string>
  const pairs = record ? undefined : Object.entries(r.headers).flatMap(([k, v]) => [v ?? []].flat().map((x): [string, string] => [k, x]))
  const made = (body: ConstructorParameters<typeof Response>[0], bytes?: Uint8Array<ArrayBuffer>) => {
    const res = new Response(body, { status: r.statusCode, headers: record ?? pairs })
    if (keep && record) keep.headers.set(res, record)
    if (keep && bytes) keep.bytes.set(res, bytes)
    return res
  }
  if (NULL_BODY.has(r.statusCode) || init.method === 'HEAD') {
    await r.body.dump().catch(() => {})
    return made(null)
  }
  const length = r.headers['content-length']
  if (whole || (typeof length === 'string' && Number(length) <= SMALL_BODY)) {
    // As bytes, which @hono/node-server's Response keeps as they are (its status and headers are
    // then read without building the platform Response); `keep` lets callers take them directly.
    const bytes = new Uint8Array(await r.body.arrayBuffer())
    return made(bytes, bytes)
  }
  // Event streams are always read by the gateway (relayed event by event): a web stream at once.
  // Anything else (a download) may be handed on unchanged, and then piped as it is (./server.ts).
  return made(r.headers['content-type'] === NDJSON ? Readable.toWeb(r.body) as ReadableStream<Uint8Array> : webBody(r.body))
}

/** What the agent transport keeps beside its Responses: small bodies' bytes, and every answer's header record. */
interface Kept {
  bytes: WeakMap<Response, Uint8Array<ArrayBuffer>>
  headers: WeakMap<Response, Record<string, string>>
}

/**
 * Streamed answers by their web stream, so the Node server can send the body as the Node stream it
 * is (./server.ts) when the app hands it on unchanged (a download): no web-stream hop per chunk.
 */
export const nodeBodies = new WeakMap<ReadableStream<Uint8Array>, Readable>()

/**
 * A web stream over `body` that touches it only when first read: a body the server pipes directly
 * never gets the web side's listeners (which would also take its chunks). Read as a web stream it
 * is one hop more than `Readable.toWeb` (≈ 0.3 ms a request measured on event streams, hence not
 * used for those). Cancelling it destroys `body`, which aborts the agent's answer.
 */
function webBody(body: Readable): ReadableStream<Uint8Array> {
  let reader: ReadableStreamDefaultReader<Uint8Array> | undefined
  const web = new ReadableStream<Uint8Array>({
    async pull(c) {
      reader ??= (Readable.toWeb(body) as ReadableStream<Uint8Array>).getReader()
      const { value, done } = await reader.read()
      if (done) c.close()
      else c.enqueue(value)
    },
    async cancel(reason) {
      if (reader) await reader.cancel(reason)
      else body.destroy()
    },
  }, { highWaterMark: 0 })
  nodeBodies.set(web, body)
  return web
}

export interface ClientIdentity {
  /** PEM certificate chain the gateway presents to agents. */
  cert: string
  /** PEM private key of that certificate. */
  key: string
}

/**
 * @example
 * const agents = nodeAgentTransport({ cert: readFileSync('gw.crt', 'utf8'), key: readFileSync('gw.key', 'utf8') })
 */
export function nodeAgentTransport(id: ClientIdentity): AgentTransport & { close(): Promise<void> } {
  const pools = new Map<string, Agent>()

  function pool(cl: ClusterConfig, node: string): Agent {
    const identity = agentIdentity(cl, node)
    const key = identity === undefined ? cl.id : `${cl.id}\0${identity}`
    let a = pools.get(key)
    if (!a) {
      a = new Agent({
        connect: {
          cert: id.cert,
          key: id.key,
          ...(cl.agentCa ? { ca: cl.agentCa } : {}),
          rejectUnauthorized: true,
          ...(identity === undefined
            ? {}
            : {
                checkServerIdentity: (_host: string, cert: PeerCertificate) => checkServerIdentity(identity, cert),
                ...(/^[\d.]+$|:/.test(identity) ? {} : { servername: identity }),
              }),
        },
        keepAliveTimeout: 30_000,
      })
      if (pools.size > 1000) {
        const [oldKey, old] = pools.entries().next().value!
        pools.delete(oldKey)
        old.close().catch(() => {})
      }
      pools.set(key, a)
    }
    return a
  }

  const kept: Kept = { bytes: new WeakMap(), headers: new WeakMap() }
  return {
    fetch: async (cl, node, path, init) => dispatch(agentBase(cl, node), path, init, pool(cl, node), false, kept),
    bytes: (res) => kept.bytes.get(res),
    headers: (res) => kept.headers.get(res),
    async close() {
      await Promise.all([...pools.values()].map((a) => a.close()))
      pools.clear()
    },
  }
}

export function nodeKubeTransport(): KubeTransport & { close(): Promise<void> } {
  const pools = new Map<string, Agent>()
  return {
    async fetch(cl, path, init) {
      let a = pools.get(cl.id)
      if (!a) {
        a = new Agent({ connect: cl.kube?.ca ? { ca: cl.kube.ca } : {} })
        pools.set(cl.id, a)
      }
      // Read whole: the app parses the pod document or drops an error answer, never streams it.
      return dispatch(cl.kube!.apiUrl, path, init, a, true)
    },
    async close() {
      await Promise.all([...pools.values()].map((a) => a.close()))
      pools.clear()
    },
  }
}
