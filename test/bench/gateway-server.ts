/**
 * The Node gateway as its own process for the gateway bench (spawned with an IPC channel, usually
 * under `taskset -c 0`). Configuration comes in `BENCH_GATEWAY` (JSON: `config` raw
 * GATEWAY_CONFIG, `grantKeys`, `client` {cert, key}, optional `tls` {cert, key} to serve HTTPS); it answers `{ url }` over IPC once
 * listening. Logs go to stdout as in production (the bench points stdout at /dev/null).
 *
 * `--crypto <token>` instead measures this process's crypto ceiling for one request: jose ES256
 * verification of the caller's token against the configured JWKS, and EdDSA grant signing with
 * the gateway's own `GrantKeys`, each for `BENCH_CRYPTO_MS` (default 1000) ms; answers
 * `{ verify, sign }` per second over IPC and exits.
 *
 * `--minimal-hop <agentUrl> <node>` instead serves the least a Node process does for the
 * gateway's list, download and checkpoint requests (the bench's baseline for requests per
 * CPU-second and added latency): a grant signed with the same `GrantKeys`, the agent called with
 * undici `request` over the same client identity, its answer piped back. Answers `{ url }` like
 * the gateway. With `--auth` after those, it also does the work no gateway of this kind can skip:
 * the caller's token through the gateway's own authenticator (with its verified-token cache), the
 * policy decision, and the audit's two lines (decision, outcome) to stdout — still without Hono,
 * @hono/node-server, Request/Response objects or problem bodies. `--hono` (with `--auth`) serves
 * that work from a one-route Hono app through the gateway's own Node server (functions/node/server.ts).
 *
 * SIGTERM closes the gateway and exits 0 (so `--cpu-prof` writes its profile).
 */
import { createLocalJWKSet, jwtVerify } from 'jose'
import { parseConfig } from '../../functions/config.ts'
import { loadGrantKeys } from '../../functions/grants.ts'
import { loadNodeGrantKeys } from '../../functions/node/jws.ts'
import { startNodeGateway } from '../../functions/node/start.ts'
import type { GrantClaims } from '../../shared/grant.ts'

interface BenchGateway {
  config: Record<string, unknown>
  grantKeys: unknown
  client: { cert: string; key: string }
  /** PEM server certificate and key: serve HTTPS (a TLS front), as TLS_CERT_FILE/TLS_KEY_FILE do. */
  tls?: { cert: string; key: string }
}

const send = (m: unknown) => process.send?.(m)
const o = JSON.parse(process.env.BENCH_GATEWAY ?? 'null') as BenchGateway | null
if (!o) throw new Error('BENCH_GATEWAY is not set')
const config = parseConfig(o.config, () => undefined)
// BENCH_GRANT_SIGNER=jose: grants signed through WebCrypto as on Workers, for paired runs.
const keys = await (process.env.BENCH_GRANT_SIGNER === 'jose' ? loadGrantKeys : loadNodeGrantKeys)(o.grantKeys)

if (process.argv[2] === '--crypto') {
  const token = process.argv[3]!
  const ms = Number(process.env.BENCH_CRYPTO_MS ?? 1000)
  const set = createLocalJWKSet(config.auth.jwks!)
  const opts = { issuer: config.auth.issuers, audience: config.auth.audience, algorithms: config.auth.algorithms }
  const rate = async (fn: () => Promise<unknown>) => {
    for (let i = 0; i < 200; i++) await fn() // warm-up
    let n = 0
    const t0 = performance.now()
    while (performance.now() - t0 < ms) {
      await fn()
      n++
    }
    return n / ((performance.now() - t0) / 1000)
  }
  const verify = await rate(() => jwtVerify(token, set, opts))
  const claims = { op: 'checkpoint:list' as const, cluster: 'bench', node: 'node-a', sub: 'sam' }
  const sign = await rate(() => keys.sign(claims, Date.now(), 60, config.grants.issuer))
  send({ verify, sign })
  process.disconnect?.()
} else if (process.argv[2] === '--minimal-hop') {
  // The least a Node process does for the gateway's requests: a node:http server that signs one
  // grant (the gateway's own GrantKeys) and relays the agent's answer with undici's `request` over
  // the same mutual TLS — no caller token, no policy, no Hono, no audit, no problem bodies, no
  // validation beyond picking the route.
  const agentUrl = process.argv[3]!
  const node = process.argv[4]!
  const withAuth = process.argv.includes('--auth')
  const withHono = process.argv.includes('--hono')
  const cl = [...config.clusters.values()][0]!
  const { Agent, request } = await import('undici')
  const { createServer } = await import('node:http')
  const { Readable } = await import('node:stream')
  const { archiveReadings } = await import('../../shared/names.ts')
  const { createAuthenticator } = await import('../../functions/authn.ts')
  const { decide, decideArchive } = await import('../../functions/authz.ts')
  const authenticate = withAuth ? createAuthenticator(config.auth, Date.now) : undefined
  const log = (line: Record<string, unknown>) => process.stdout.write(JSON.stringify({ time: new Date().toISOString(), ...line }) + '\n')
  const pool = new Agent({ connect: { cert: o.client.cert, key: o.client.key, ca: cl.agentCa, servername: 'localhost' }, keepAliveTimeout: 30_000 })
  const prefix = `/v1/clusters/${cl.id}/nodes/${node}/`
  /** The hop's work for one request: the agent's answer (status, its type and length, its body), or null for no route; `done` writes the outcome line. */
  const work = async (method: string, url: string, authorization: string | undefined) => {
    const rest = url.slice(prefix.length)
    const base = { cluster: cl.id, node, sub: 'sam' }
    let claims: GrantClaims, path: string, accept: string
    if (method === 'GET' && rest === 'checkpoints') [claims, path, accept] = [{ op: 'checkpoint:list', ...base }, '/checkpoints', 'application/json']
    else if (method === 'GET' && rest.startsWith('checkpoints/')) {
      const archive = decodeURIComponent(rest.slice('checkpoints/'.length))
      const namespaces = archiveReadings(archive)?.readings.map((r) => r.namespace) ?? []
      ;[claims, path, accept] = [{ op: 'checkpoint:read', ...base, archive, namespaces }, `/checkpoints/${encodeURIComponent(archive)}`, '*/*']
    } else if (method === 'POST' && rest.startsWith('checkpoint/')) {
      const [namespace, pod, container] = rest.slice('checkpoint/'.length).split('/')
      ;[claims, path, accept] = [{ op: 'checkpoint:create', ...base, namespace, pod, container }, `/checkpoint/${namespace}/${pod}/${container}?timeout=60`, 'application/x-ndjson']
    } else return null
    const started = Date.now()
    const audit: Record<string, unknown> = { requestId: crypto.randomUUID(), method, cluster: cl.id, node, op: claims.op }
    if (authenticate) {
      const caller = await authenticate(authorization)
      audit.sub = caller.sub
      const d = claims.op === 'checkpoint:read' ? decideArchive(config.policy, caller, 'read', cl.id, claims.archive!)
        : claims.op === 'checkpoint:create' ? decide(config.policy, caller, 'create', { cluster: cl.id, namespace: claims.namespace!, pod: claims.pod!, container: claims.container! })
          : decide(config.policy, caller, 'read', { cluster: cl.id })
      log({ type: 'decision', ...audit, decision: d.allow ? 'allow' : 'deny', ...(d.rule ? { rule: d.rule } : {}) })
      if (!d.allow) return { status: 403, headers: {}, body: null, done: () => {} }
    }
    const grant = await keys.sign({ ...claims, sub: (audit.sub as string | undefined) ?? 'sam' }, Date.now(), 60, config.grants.issuer)
    const r = await request(agentUrl + path, { dispatcher: pool, method: method as 'GET' | 'POST', headers: { authorization: `Bearer ${grant}`, accept } })
    const headers: Record<string, string> = {}
    for (const k of ['content-type', 'content-length']) if (typeof r.headers[k] === 'string') headers[k] = r.headers[k]
    const done = () => { if (authenticate) log({ type: 'outcome', ...audit, status: r.statusCode, durationMs: Date.now() - started }) }
    return { status: r.statusCode, headers, body: r.body, done }
  }
  let url: string
  let close: () => Promise<void>
  if (withHono) {
    // The same work behind a one-route Hono app on the gateway's own Node server (serveFetch):
    // what the framework, its adapter and web Request/Response objects add, without the gateway's
    // middleware, transport or handlers. Small answers are read whole, as the gateway's transport does.
    const { Hono } = await import('hono')
    const { serveFetch } = await import('../../functions/node/server.ts')
    const app = new Hono()
    app.all('*', async (c) => {
      const r = await work(c.req.method, new URL(c.req.url).pathname, c.req.header('authorization'))
      if (!r) return c.body(null, 404)
      if (!r.body) return c.body(null, r.status as 403)
      const small = Number(r.headers['content-length'] ?? Infinity) <= 64 * 1024
      const body = small ? new Uint8Array(await r.body.arrayBuffer()) : Readable.toWeb(r.body) as ReadableStream<Uint8Array>
      r.done()
      return new Response(body, { status: r.status, headers: r.headers })
    })
    const served = await serveFetch(app.fetch, { host: '127.0.0.1', port: 0 })
    url = served.url
    close = () => served.close(1000)
  } else {
    const server = createServer(async (req, res) => {
      try {
        const r = await work(req.method ?? 'GET', req.url ?? '', req.headers.authorization)
        if (!r) return void res.writeHead(404).end()
        if (!r.body) return void res.writeHead(r.status).end()
        res.writeHead(r.status, r.headers)
        r.body.pipe(res)
        res.once('finish', r.done)
      } catch (err) {
        res.writeHead(502).end(String(err))
      }
    })
    server.keepAliveTimeout = 30_000
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r))
    url = `http://127.0.0.1:${(server.address() as import('node:net').AddressInfo).port}`
    close = async () => { server.closeAllConnections(); server.close() }
  }
  send({ url })
  const stop = () => { void close().then(() => pool.close()).finally(() => process.exit(0)) }
  process.on('SIGTERM', stop)
  process.on('disconnect', stop)
} else {
  const gw = await startNodeGateway({ config, keys, client: o.client, port: 0, ...(o.tls ? { tls: o.tls } : {}) })
  const sampled = process.env.BENCH_ALLOC_PROFILE ? await sampleAllocations(process.env.BENCH_ALLOC_PROFILE) : undefined
  send({ url: gw.url })
  let stopping = false
  const stop = () => {
    if (stopping) return
    stopping = true
    Promise.resolve(sampled?.()).then(() => gw.close(1000)).then(() => process.exit(0), () => process.exit(1))
  }
  process.on('SIGTERM', stop)
  process.on('disconnect', stop)
}

/**
 * BENCH_ALLOC_PROFILE=<file>: V8's sampling heap profiler over the process's life, counting every
 * sampled allocation including those the garbage collector has freed since (what `--heap-prof`
 * leaves out), written as a .heapprofile when the process stops — where the bytes a request
 * allocates come from. With BENCH_ALLOC_PROFILE_SURVIVORS=1, only what outlived the young
 * generation (promoted, freed later by a full GC or still live): what makes the scavenges costly.
 */
async function sampleAllocations(file: string): Promise<() => Promise<void>> {
  const { Session } = await import('node:inspector/promises')
  const { writeFile } = await import('node:fs/promises')
  const session = new Session()
  session.connect()
  await session.post('HeapProfiler.startSampling', { samplingInterval: 4096, includeObjectsCollectedByMajorGC: true, includeObjectsCollectedByMinorGC: process.env.BENCH_ALLOC_PROFILE_SURVIVORS !== '1' })
  return async () => {
    const { profile } = await session.post('HeapProfiler.stopSampling')
    await writeFile(file, JSON.stringify(profile))
    session.disconnect()
  }
}
