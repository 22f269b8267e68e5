/**
 * The gateway suite: the same tests against every gateway under test (Node entry, Worker in
 * workerd, mounted under a prefix in another Hono app). Download links are expected with the
 * gateway's `basePath`.
 * Assertions are on status, `code`, `field` and headers — never on message text.
 */
import assert from 'node:assert/strict'
import { after, before, describe, it } from 'node:test'
import { createHash, createHmac } from 'node:crypto'
import { request as httpRequest } from 'node:http'
import { NDJSON, type CheckpointEvent } from '../../shared/events.ts'
import { grantAudience } from '../../shared/grant.ts'
import { archiveBytes, FAKE_RUNTIME_LOG } from '../support/gateway/fake-agent.ts'
import { makeWorld, type World } from '../support/gateway/fixtures.ts'
import type { GatewayUnderTest, MakeGatewayUnderTest } from '../support/gateway/targets.ts'

const ALL = 'checkpoint:create checkpoint:read checkpoint:delete'
const b64 = (o: unknown) => Buffer.from(JSON.stringify(o)).toString('base64url')

async function problem(r: Response): Promise<Record<string, unknown>> {
  assert.match(r.headers.get('content-type') ?? '', /^application\/problem\+json/)
  return (await r.json()) as Record<string, unknown>
}

/** A raw HTTP/1.1 request (fetch refuses a body on GET): status and parsed body. */
function raw(base: string, method: string, path: string, headers: Record<string, string>, body?: string | string[]): Promise<{ status: number; body: Record<string, unknown> }> {
  return new Promise((resolve, reject) => {
    const req = httpRequest(base + path, { method, headers, agent: false }, (res) => {
      let text = ''
      res.setEncoding('utf8')
      res.on('data', (d: string) => (text += d))
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body: text ? (JSON.parse(text) as Record<string, unknown>) : {} }))
    })
    req.on('error', reject)
    for (const chunk of typeof body === 'string' ? [body] : (body ?? [])) req.write(chunk)
    req.end()
  })
}

async function events(r: Response): Promise<CheckpointEvent[]> {
  const text = await r.text()
  return text.split('\n').filter(Boolean).map((l) => JSON.parse(l) as CheckpointEvent)
}

export function gatewaySuite(make: MakeGatewayUnderTest): void {
  let world: World
  let gw: GatewayUnderTest
  let sre: string
  let alice: string

  const post = (path: string, token: string, accept?: string) =>
    gw.fetch(path, { method: 'POST', headers: { authorization: `Bearer ${token}`, ...(accept ? { accept } : {}) }, signal: AbortSignal.timeout(8000) })
  const get = (path: string, token: string, headers: Record<string, string> = {}) =>
    gw.fetch(path, { headers: { authorization: `Bearer ${token}`, ...headers }, signal: AbortSignal.timeout(8000) })

  before(async () => {
    world = await makeWorld()
    gw = await make(world, world.rawConfig())
    sre = await world.token({ sub: 'sam', groups: ['sre'], scope: ALL })
    alice = await world.token({ sub: 'alice', scp: ['checkpoint:create', 'checkpoint:read'] })
  })
  after(async () => {
    await gw?.close()
    await world?.close()
  })

  describe('public routes', () => {
    it('healthz', async () => {
      const r = await gw.fetch('/healthz')
      assert.equal(r.status, 200)
      assert.deepEqual(await r.json(), { status: 'ok' })
    })
    it('publishes grant keys without private parts', async () => {
      const r = await gw.fetch('/.well-known/jwks.json')
      assert.equal(r.status, 200)
      const { keys } = (await r.json()) as { keys: Array<Record<string, unknown>> }
      assert.deepEqual(keys.map((k) => k.kid), ['grant-1', 'grant-2'])
      for (const k of keys) {
        assert.equal(k.d, undefined)
        assert.equal(k.use, 'sig')
      }
    })
    it('describes itself at /openapi.json (OpenAPI 3.1, its own prefix as the server)', async () => {
      const r = await gw.fetch('/openapi.json')
      assert.equal(r.status, 200)
      const d = (await r.json()) as { openapi: string; servers: Array<{ url: string }>; paths: Record<string, unknown> }
      assert.equal(d.openapi, '3.1.0')
      assert.deepEqual(d.servers, [{ url: gw.basePath || '/' }])
      assert.ok(d.paths['/v1/clusters/{cluster}/nodes/{node}/checkpoints/{name}'])
    })
    it('unknown route is 404 not_found', async () => {
      const r = await gw.fetch('/nope')
      assert.equal(r.status, 404)
      assert.equal((await problem(r)).code, 'not_found')
    })
  })

  describe('authentication', () => {
    const routes: Array<[string, string]> = [
      ['POST', '/v1/clusters/prod/nodes/node-a/checkpoint/team-a/web/app'],
      ['POST', '/v1/clusters/prod/checkpoint/team-a/web/app'],
      ['GET', '/v1/clusters/prod/nodes/node-a/checkpoints'],
      ['GET', '/v1/clusters/prod/nodes/node-a/checkpoints/checkpoint-web_team-a-app-2026-01-01T00:00:00Z.tar'],
      ['DELETE', '/v1/clusters/prod/nodes/node-a/checkpoints/checkpoint-web_team-a-app-2026-01-01T00:00:00Z.tar'],
      ['GET', '/v1/anything-else'],
    ]
    for (const [method, path] of routes) {
      it(`${method} ${path} needs a token`, async () => {
        const r = await gw.fetch(path, { method })
        assert.equal(r.status, 401)
        assert.equal((await problem(r)).code, 'unauthenticated')
        assert.match(r.headers.get('www-authenticate') ?? '', /^Bearer/)
      })
    }

    const now = () => Math.floor(Date.now() / 1000)
    const bad: Array<[string, () => Promise<string>]> = [
      ['expired', () => world.token({ sub: 'sam', scope: ALL }, { exp: now() - 120 })],
      ['nbf in the future', () => world.token({ sub: 'sam', scope: ALL }, { nbf: now() + 300 })],
      ['wrong issuer', () => world.token({ sub: 'sam', scope: ALL }, { iss: 'https://evil.test' })],
      ['wrong audience', () => world.token({ sub: 'sam', scope: ALL }, { aud: 'someone-else' })],
      ['alg none', async () => `${b64({ alg: 'none', typ: 'JWT' })}.${b64({ sub: 'sam', iss: 'https://idp.test', aud: 'checkpoint-gateway', exp: now() + 300, scope: ALL })}.`],
      [
        'HS256 signed with the public key',
        async () => {
          const head = b64({ alg: 'HS256', kid: world.idp.kid, typ: 'JWT' })
          const body = b64({ sub: 'sam', iss: 'https://idp.test', aud: 'checkpoint-gateway', exp: now() + 300, scope: ALL, groups: ['sre'] })
          const sig = createHmac('sha256', JSON.stringify(world.idp.publicJwk)).update(`${head}.${body}`).digest('base64url')
          return `${head}.${body}.${sig}`
        },
      ],
      ['unknown kid', () => world.token({ sub: 'sam', scope: ALL }, { kid: 'who-knows', key: world.stranger.privateKey })],
      ['bad signature (known kid, other key)', () => world.token({ sub: 'sam', scope: ALL }, { key: world.stranger.privateKey })],
      ['malformed', async () => 'not.a.jwt'],
      ['no sub', () => world.token({ scope: ALL, groups: ['sre'] })],
    ]
    for (const [name, mk] of bad) {
      it(`rejects ${name}`, async () => {
        const before = world.agent.seen.length
        const r = await post('/v1/clusters/prod/nodes/node-a/checkpoint/team-a/web/app', await mk())
        assert.equal(r.status, 401)
        assert.equal((await problem(r)).code, 'unauthenticated')
        assert.equal(r.headers.get('www-authenticate'), 'Bearer error="invalid_token"')
        assert.equal(world.agent.seen.length, before)
      })
    }
    it('rejects a non-Bearer scheme', async () => {
      const r = await gw.fetch('/v1/clusters/prod/nodes/node-a/checkpoints', { headers: { authorization: 'Basic c2FtOnB3' } })
      assert.equal(r.status, 401)
      assert.equal((await problem(r)).code, 'unauthenticated')
    })
  })

  describe('authorization', () => {
    it('allows alice in her namespace', async () => {
      const r = await post('/v1/clusters/edge/nodes/node-a/checkpoint/team-a/web/app', alice)
      assert.equal(r.status, 200)
    })
    it('denies alice in another namespace, naming the permission', async () => {
      const r = await post('/v1/clusters/edge/nodes/node-a/checkpoint/team-b/web/app', alice)
      assert.equal(r.status, 403)
      const p = await problem(r)
      assert.equal(p.code, 'forbidden')
      assert.match(String(p.missing), /checkpoint:create/)
    })
    it('denies alice on a cluster outside her rule, even a missing one (no existence leak)', async () => {
      for (const cl of ['dead', 'nowhere']) {
        const r = await post(`/v1/clusters/${cl}/nodes/node-a/checkpoint/team-a/web/app`, alice)
        assert.equal(r.status, 403)
        assert.equal((await problem(r)).code, 'forbidden')
      }
    })
    it('denies a token without the scope', async () => {
      const t = await world.token({ sub: 'sam', groups: ['sre'], scope: 'checkpoint:read' })
      const r = await post('/v1/clusters/prod/nodes/node-a/checkpoint/team-a/web/app', t)
      assert.equal(r.status, 403)
      assert.match(String((await problem(r)).missing), /^scope checkpoint:create$/)
    })
    it('denies a subject no rule names', async () => {
      const t = await world.token({ sub: 'mallory', scope: ALL })
      const r = await post('/v1/clusters/prod/nodes/node-a/checkpoint/team-a/web/app', t)
      assert.equal(r.status, 403)
    })
    it('matches client ids (azp) against rules', async () => {
      const t = await world.token({ sub: 'svc', azp: 'ci-bot', scope: 'checkpoint:read' })
      const r = await get('/v1/clusters/edge/nodes/node-a/checkpoints', t)
      assert.equal(r.status, 200)
      const r2 = await get('/v1/clusters/prod/nodes/node-a/checkpoints', t)
      assert.equal(r2.status, 403)
    })
    it('writes a decision line and an outcome line, never the token', async () => {
      const r = await post('/v1/clusters/edge/nodes/node-a/checkpoint/team-b/web/app', alice, undefined)
      const id = r.headers.get('x-request-id')
      await r.body?.cancel()
      await waitFor(() => gw.logs.some((l) => l.requestId === id && l.type === 'outcome'))
      const mine = gw.logs.filter((l) => l.requestId === id)
      assert.deepEqual(mine.map((l) => l.type), ['decision', 'outcome'])
      assert.equal(mine[0]!.decision, 'deny')
      assert.equal(mine[1]!.status, 403)
      const all = JSON.stringify(gw.logs)
      assert.ok(!all.includes(alice) && !all.includes('Bearer'))
    })
  })

  describe('validation (before any network call)', () => {
    const cases: Array<[string, string, string, string]> = [
      ['bad cluster', '/v1/clusters/Prod/nodes/node-a/checkpoint/team-a/web/app', 'invalid_name', 'cluster'],
      ['bad node', '/v1/clusters/prod/nodes/Node_A/checkpoint/team-a/web/app', 'invalid_name', 'node'],
      ['bad namespace', '/v1/clusters/prod/nodes/node-a/checkpoint/team.a/web/app', 'invalid_name', 'namespace'],
      ['bad pod', '/v1/clusters/prod/nodes/node-a/checkpoint/team-a/-web/app', 'invalid_name', 'pod'],
      ['bad container', '/v1/clusters/prod/nodes/node-a/checkpoint/team-a/web/App', 'invalid_name', 'container'],
      ['timeout not a number', '/v1/clusters/prod/nodes/node-a/checkpoint/team-a/web/app?timeout=1m', 'invalid_timeout', 'timeout'],
      ['timeout too large', '/v1/clusters/prod/nodes/node-a/checkpoint/team-a/web/app?timeout=601', 'invalid_timeout', 'timeout'],
      ['unknown query', '/v1/clusters/prod/nodes/node-a/checkpoint/team-a/web/app?timout=5', 'invalid_query', 'timout'],
      ['repeated query', '/v1/clusters/prod/nodes/node-a/checkpoint/team-a/web/app?timeout=5&timeout=6', 'invalid_query', 'timeout'],
    ]
    for (const [name, path, code, field] of cases) {
      it(`${name} → ${code}`, async () => {
        const before = world.agent.seen.length
        const r = await post(path, sre)
        assert.equal(r.status, 400)
        const p = await problem(r)
        assert.equal(p.code, code)
        assert.equal(p.field, field)
        assert.equal(world.agent.seen.length, before)
      })
    }
    it('bad archive name → invalid_archive_name', async () => {
      const r = await get('/v1/clusters/prod/nodes/node-a/checkpoints/..%2Fetc%2Fpasswd', sre)
      assert.equal(r.status, 400)
      const p = await problem(r)
      assert.equal(p.code, 'invalid_archive_name')
      assert.equal(p.field, 'name')
    })
    it('unknown query on list → invalid_query', async () => {
      const r = await get('/v1/clusters/prod/nodes/node-a/checkpoints?all=1', sre)
      assert.equal(r.status, 400)
      assert.equal((await problem(r)).code, 'invalid_query')
    })
    const archivePath = '/v1/clusters/prod/nodes/node-a/checkpoints/checkpoint-web_team-a-app-2026-01-01T00:00:00Z.tar?namespace=team-a'
    const bodiless: Array<[string, string]> = [
      ['POST', '/v1/clusters/prod/nodes/node-a/checkpoint/team-a/web/app'],
      ['POST', '/v1/clusters/prod/checkpoint/team-a/web/app'],
      ['GET', '/v1/clusters/prod/nodes/node-a/checkpoints'],
      ['GET', archivePath],
      ['DELETE', archivePath],
    ]
    for (const [method, path] of bodiless) {
      it(`${method} ${path.replace(/\?.*$/, '')} with a body → 400 invalid_body (body)`, async () => {
        const before = world.agent.seen.length
        const r = await raw(gw.url, method, path, { authorization: `Bearer ${sre}`, 'content-type': 'application/json', 'content-length': '2' }, '{}')
        assert.deepEqual([r.status, r.body.code, r.body.field], [400, 'invalid_body', 'body'])
        assert.equal(world.agent.seen.length, before)
      })
    }
    it('a chunked body is refused too; an empty one (content-length 0) is not', async () => {
      const before = world.agent.seen.length
      const r = await raw(gw.url, 'POST', bodiless[0]![1], { authorization: `Bearer ${sre}`, 'transfer-encoding': 'chunked' }, ['{', '}'])
      assert.deepEqual([r.status, r.body.code, r.body.field], [400, 'invalid_body', 'body'])
      assert.equal(world.agent.seen.length, before)
      const ok = await raw(gw.url, 'GET', bodiless[2]![1], { authorization: `Bearer ${sre}`, 'content-length': '0' })
      assert.equal(ok.status, 200)
    })
    it('unknown cluster → 404 not_found', async () => {
      const r = await post('/v1/clusters/nowhere/nodes/node-a/checkpoint/team-a/web/app', sre)
      assert.equal(r.status, 404)
      const p = await problem(r)
      assert.equal(p.code, 'not_found')
      assert.equal(p.field, 'cluster')
    })
  })

  describe('checkpoint', () => {
    it('JSON mode: one body with items, archive, cluster, node, download; the grant covers exactly this', async () => {
      const r = await gw.fetch('/v1/clusters/prod/nodes/node-a/checkpoint/team-a/web/app?timeout=45', {
        method: 'POST',
        headers: { authorization: `Bearer ${sre}`, 'x-request-id': 'req-json-1' },
      })
      assert.equal(r.status, 200)
      assert.equal(r.headers.get('x-request-id'), 'req-json-1')
      const b = (await r.json()) as Record<string, any>
      assert.equal(b.cluster, 'prod')
      assert.equal(b.node, 'node-a')
      assert.equal(b.items.length, 1)
      assert.equal(b.archive.sha256, createHash('sha256').update(archiveBytes(4096)).digest('hex'))
      assert.equal(b.download, `${gw.basePath ?? ''}/v1/clusters/prod/nodes/node-a/checkpoints/${encodeURIComponent(b.archive.name)}?namespace=team-a`)
      const seen = world.agent.seen.findLast((s) => s.requestId === 'req-json-1')!
      assert.equal(seen.path, '/checkpoint/team-a/web/app')
      assert.equal(seen.claims!.op, 'checkpoint:create')
      assert.equal(seen.claims!.sub, 'sam')
      assert.equal((seen.claims as Record<string, unknown>).aud, grantAudience('node-a'))
      const c = seen.claims as Record<string, number>
      assert.ok(c.exp! - c.iat! >= 45 && c.exp! - c.iat! <= 120)
    })
    it('NDJSON mode: events pass through as they come, final event decorated', async () => {
      const t0 = Date.now()
      const r = await post('/v1/clusters/prod/nodes/node-a/checkpoint/team-a/slow/app', sre, NDJSON)
      assert.equal(r.status, 200)
      assert.match(r.headers.get('content-type') ?? '', /^application\/x-ndjson/)
      const reader = r.body!.getReader()
      const first = await reader.read()
      const tFirst = Date.now() - t0
      let text = new TextDecoder().decode(first.value)
      for (;;) {
        const { done, value } = await reader.read()
        if (done) break
        text += new TextDecoder().decode(value)
      }
      const tEnd = Date.now() - t0
      // Streamed, not buffered: the first bytes came before the final event existed (≥ 600 ms of heartbeats).
      assert.ok(!new TextDecoder().decode(first.value).includes('"completed"'), `first bytes at ${tFirst} ms, end at ${tEnd} ms, the first chunk already final: not streamed`)
      const evs = text.split('\n').filter(Boolean).map((l) => JSON.parse(l) as CheckpointEvent)
      assert.deepEqual(evs.map((e) => e.type), ['accepted', 'resolved', ...Array(6).fill('heartbeat'), 'completed'])
      const last = evs.at(-1)!
      assert.equal(last.type, 'completed')
      if (last.type === 'completed') {
        assert.equal(last.cluster, 'prod')
        assert.equal(last.node, 'node-a')
        assert.ok((last.download ?? '').startsWith(`${gw.basePath ?? ''}/v1/clusters/prod/nodes/node-a/checkpoints/checkpoint-slow_team-a-app-`), last.download)
      }
    })
    it('a caller that disconnects does not abort the checkpoint on the node', async () => {
      const ac = new AbortController()
      const r = await gw.fetch('/v1/clusters/prod/nodes/node-d/checkpoint/team-a/slow/app', {
        method: 'POST',
        headers: { authorization: `Bearer ${sre}`, accept: NDJSON, 'x-request-id': 'req-gone-1' },
        signal: ac.signal,
      })
      await r.body!.getReader().read()
      ac.abort()
      await waitFor(() => world.agent.streams.filter((s) => s.pod === 'slow').some((s) => s.finished))
      const s = world.agent.streams.filter((x) => x.pod === 'slow').at(-1)!
      assert.equal(s.aborted, false)
      await waitFor(() => gw.logs.some((l) => l.requestId === 'req-gone-1' && l.type === 'outcome'))
      const out = gw.logs.find((l) => l.requestId === 'req-gone-1' && l.type === 'outcome')!
      assert.equal(out.status, 200)
      assert.match(String(out.sha256), /^[0-9a-f]{64}$/)
    })
    it('finds the node through the Kubernetes API', async () => {
      const r = await post('/v1/clusters/prod/checkpoint/team-a/web/sidecar', sre)
      assert.equal(r.status, 200)
      assert.equal(((await r.json()) as { node: string }).node, 'node-b')
    })
    it('cluster without a Kubernetes API → 400 naming the node field', async () => {
      const r = await post('/v1/clusters/edge/checkpoint/team-a/web/app', sre)
      assert.equal(r.status, 400)
      const p = await problem(r)
      assert.equal(p.code, 'invalid_name')
      assert.equal(p.field, 'node')
    })
    it('pod unknown to Kubernetes → 404, unscheduled → 409, no such container → 404', async () => {
      const r1 = await post('/v1/clusters/prod/checkpoint/team-a/missing/app', sre)
      assert.equal(r1.status, 404)
      assert.equal((await problem(r1)).code, 'not_found')
      const r2 = await post('/v1/clusters/prod/checkpoint/team-a/unscheduled/app', sre)
      assert.equal(r2.status, 409)
      assert.equal((await problem(r2)).code, 'conflict')
      const r3 = await post('/v1/clusters/prod/checkpoint/team-a/web/nope', sre)
      assert.equal(r3.status, 404)
      assert.equal((await problem(r3)).code, 'container_not_found')
    })
  })

  describe('error mapping', () => {
    const agentErrors: Array<[string, number, string]> = [
      ['fail-404', 404, 'container_not_found'],
      ['fail-500', 500, 'runtime_error'],
      ['fail-503', 503, 'runtime_unavailable'],
      ['fail-html', 502, 'bad_gateway'],
    ]
    for (const [pod, agentStatus, agentCode] of [['fail-grant', 401, 'invalid_grant'], ['fail-mismatch', 403, 'grant_mismatch']] as const) {
      it(`agent ${pod} (${agentStatus} ${agentCode}: the gateway's grant refused) → 502 bad_gateway naming the agent's answer`, async () => {
        for (const accept of [undefined, NDJSON]) {
          const r = await post(`/v1/clusters/prod/nodes/node-a/checkpoint/team-a/${pod}/app`, sre, accept)
          assert.equal(r.status, 502)
          const p = await problem(r)
          assert.deepEqual([p.code, p.agentCode, p.agentStatus, p.cluster, p.node], ['bad_gateway', agentCode, agentStatus, 'prod', 'node-a'])
        }
      })
    }
    for (const [pod, status, code] of agentErrors) {
      it(`agent ${pod} → ${status} ${code} with cluster and node`, async () => {
        const r = await post(`/v1/clusters/prod/nodes/node-a/checkpoint/team-a/${pod}/app`, sre)
        assert.equal(r.status, status)
        const p = await problem(r)
        assert.equal(p.code, code)
        assert.equal(p.status, status)
        assert.equal(p.cluster, 'prod')
        assert.equal(p.node, 'node-a')
        if (pod === 'fail-503') assert.equal(r.headers.get('retry-after'), '7')
      })
    }
    it("failed event → its status, code and the runtime's log lines (JSON mode)", async () => {
      const r = await post('/v1/clusters/prod/nodes/node-a/checkpoint/team-a/stream-fail/app', sre)
      assert.equal(r.status, 500)
      const p = await problem(r)
      assert.equal(p.code, 'checkpoint_failed')
      assert.equal(p.node, 'node-a')
      assert.deepEqual(p.runtimeLog, FAKE_RUNTIME_LOG)
    })
    it('failed event is passed through, decorated (NDJSON mode)', async () => {
      const r = await post('/v1/clusters/prod/nodes/node-a/checkpoint/team-a/stream-fail/app', sre, NDJSON)
      assert.equal(r.status, 200)
      const last = (await events(r)).at(-1)!
      assert.equal(last.type, 'failed')
      if (last.type === 'failed') {
        assert.equal(last.code, 'checkpoint_failed')
        assert.equal(last.cluster, 'prod')
        assert.deepEqual(last.runtimeLog, FAKE_RUNTIME_LOG)
      }
    })
    it('a stream cut before its final event → bad_gateway', async () => {
      const r = await post('/v1/clusters/prod/nodes/node-a/checkpoint/team-a/stream-cut/app', sre)
      assert.equal(r.status, 502)
      assert.equal((await problem(r)).code, 'bad_gateway')
      const r2 = await post('/v1/clusters/prod/nodes/node-a/checkpoint/team-a/stream-cut/app', sre, NDJSON)
      const last = (await events(r2)).at(-1)!
      assert.equal(last.type, 'failed')
      if (last.type === 'failed') assert.equal(last.code, 'bad_gateway')
    })
    it('agent unreachable → 502 bad_gateway', async () => {
      const r = await post('/v1/clusters/dead/nodes/node-a/checkpoint/team-a/web/app', sre)
      assert.equal(r.status, 502)
      const p = await problem(r)
      assert.equal(p.code, 'bad_gateway')
      assert.equal(p.node, 'node-a')
    })
    it('agent with a certificate from another CA → 502 bad_gateway', async () => {
      const before = world.impostor.seen.length
      const r = await post('/v1/clusters/rogue/nodes/node-a/checkpoint/team-a/web/app', sre)
      assert.equal(r.status, 502)
      assert.equal((await problem(r)).code, 'bad_gateway')
      assert.equal(world.impostor.seen.length, before)
    })
    it('agent headers too slow → 504 timeout', async () => {
      const r = await post('/v1/clusters/prod/nodes/node-a/checkpoint/team-a/slow-headers/app', sre)
      assert.equal(r.status, 504)
      assert.equal((await problem(r)).code, 'timeout')
    })
  })

  describe('archives', () => {
    let name: string
    let download: string
    before(async () => {
      const r = await post('/v1/clusters/edge/nodes/node-c/checkpoint/team-a/db/main', sre)
      const b = (await r.json()) as { archive: { name: string }; download: string }
      name = b.archive.name
      download = b.download
      const r2 = await post('/v1/clusters/edge/nodes/node-c/checkpoint/team-b/db/main', sre)
      assert.equal(r2.status, 200)
      await r2.body?.cancel()
    })
    it('list: sre sees everything, alice only her namespace, each with a download path', async () => {
      const all = (await (await get('/v1/clusters/edge/nodes/node-c/checkpoints', sre)).json()) as { items: Array<{ name: string; namespace: string; download: string }> }
      assert.deepEqual(all.items.map((i) => i.namespace).sort(), ['team-a', 'team-b'])
      const r = await get('/v1/clusters/edge/nodes/node-c/checkpoints', alice)
      assert.equal(r.status, 200)
      const mine = (await r.json()) as typeof all
      assert.deepEqual(mine.items.map((i) => i.name), [name])
      assert.equal(mine.items[0]!.download, download)
    })
    it('download streams the archive with its ETag', async () => {
      const r = await get(download, alice, { 'x-request-id': 'req-dl-1' })
      assert.equal(r.status, 200)
      assert.equal(r.headers.get('etag'), `"${createHash('sha256').update(archiveBytes(4096)).digest('hex')}"`)
      // The gateway's own headers, each once: the caller's request id, no caching, a type.
      assert.equal(r.headers.get('x-request-id'), 'req-dl-1')
      assert.equal(r.headers.get('cache-control'), 'no-store')
      assert.equal(r.headers.get('content-type'), 'application/x-tar')
      assert.equal(r.headers.get('content-length'), '4096')
      assert.deepEqual(new Uint8Array(await r.arrayBuffer()), archiveBytes(4096))
    })
    it('download passes Range through', async () => {
      const r = await get(download, alice, { range: 'bytes=10-19' })
      assert.equal(r.status, 206)
      assert.equal(r.headers.get('content-range'), 'bytes 10-19/4096')
      assert.deepEqual(new Uint8Array(await r.arrayBuffer()), archiveBytes(4096).subarray(10, 20))
      const seen = world.agent.seen.findLast((s) => s.range !== undefined)!
      assert.equal(seen.range, 'bytes=10-19')
    })
    it('a caller that hangs up mid-download: the agent\'s answer is cut too, and the gateway keeps serving', async () => {
      const r = await post('/v1/clusters/edge/nodes/node-c/checkpoint/team-a/big/main', sre)
      const big = (await r.json()) as { download: string; archive: { size: number } }
      assert.equal(big.archive.size, 8 << 20)
      for (let i = 0; i < 3; i++) {
        const d = await get(big.download, sre)
        assert.equal(d.status, 200)
        const reader = d.body!.getReader()
        const first = await reader.read()
        assert.ok(first.value && first.value.byteLength > 0)
        await reader.cancel()
      }
      await new Promise((res) => setTimeout(res, 300))
      const h = await gw.fetch('/healthz')
      assert.equal(h.status, 200)
      // Each hang-up reached the agent: its answer was cut, not read to the end for nobody.
      const cut = world.agent.downloads.filter((d) => d.name.startsWith('checkpoint-big_')).slice(-3)
      assert.deepEqual(cut.map((d) => [d.finished, d.aborted]), [[false, true], [false, true], [false, true]])
      const again = await get(big.download, sre)
      assert.equal(new Uint8Array(await again.arrayBuffer()).byteLength, 8 << 20)
    })
    it('unsatisfiable Range → 416 invalid_range', async () => {
      const r = await get(download, alice, { range: 'bytes=99999-' })
      assert.equal(r.status, 416)
      assert.equal((await problem(r)).code, 'invalid_range')
      assert.equal(r.headers.get('content-range'), 'bytes */4096')
    })
    it('If-None-Match → 304', async () => {
      const etag = `"${createHash('sha256').update(archiveBytes(4096)).digest('hex')}"`
      const r = await get(download, alice, { 'if-none-match': etag })
      assert.equal(r.status, 304)
      await r.body?.cancel()
    })
    it('list: an archive the agent did not write is shown only if every reading of its name may be read', async () => {
      // Kubelet-made archives: the agent knows only the name, and lists its first reading.
      const ambiguous = 'checkpoint-db_team-a-main-2026-01-01T00:00:00Z.tar' // team/a-main or team-a/main
      const plain = 'checkpoint-db_team-main-2026-01-01T00:00:00Z.tar' // team/main only
      world.agent.archives.set('node-k', new Map([[ambiguous, archiveBytes(16)], [plain, archiveBytes(16)]]))
      const tess = await world.token({ sub: 'tess', scope: 'checkpoint:read' })
      const r = await get('/v1/clusters/edge/nodes/node-k/checkpoints', tess)
      assert.equal(r.status, 200)
      const mine = (await r.json()) as { items: Array<{ name: string; download: string; sha256Known: boolean }> }
      assert.deepEqual(mine.items.map((i) => [i.name, i.sha256Known]), [[plain, false]])
      assert.equal(mine.items[0]!.download, `${gw.basePath ?? ''}/v1/clusters/edge/nodes/node-k/checkpoints/${encodeURIComponent(plain)}`)
      const all = (await (await get('/v1/clusters/edge/nodes/node-k/checkpoints', sre)).json()) as typeof mine
      assert.deepEqual(all.items.map((i) => i.name).sort(), [ambiguous, plain].sort())
    })
    it('download without ?namespace is allowed only if every reading of the name is', async () => {
      const plain = download.replace(/\?.*$/, '')
      const r = await get(plain, sre)
      assert.equal(r.status, 200)
      await r.body?.cancel()
      const r2 = await get(plain, alice)
      assert.equal(r2.status, 403)
    })
    it('wrong ?namespace for the archive → 400', async () => {
      const r = await get(download.replace('namespace=team-a', 'namespace=team-b'), sre)
      assert.equal(r.status, 400)
      assert.equal((await problem(r)).code, 'invalid_archive_name')
    })
    it('delete: alice lacks the permission; sre deletes; gone afterwards', async () => {
      const del = (t: string) => gw.fetch(download, { method: 'DELETE', headers: { authorization: `Bearer ${t}` } })
      const r1 = await del(alice)
      assert.equal(r1.status, 403)
      assert.equal((await problem(r1)).code, 'forbidden')
      const r2 = await del(sre)
      assert.equal(r2.status, 204)
      const r3 = await del(sre)
      assert.equal(r3.status, 404)
      assert.equal((await problem(r3)).code, 'archive_not_found')
      const r4 = await get(download, alice)
      assert.equal(r4.status, 404)
      assert.equal((await problem(r4)).code, 'archive_not_found')
    })
  })

  describe('an archive name never chooses its own namespace', () => {
    // team-a/app and team/a-app share one archive name: checkpoint-web_team-a-app-<time>.tar.
    let name: string
    let tom: string
    const at = (ns?: string) => `/v1/clusters/edge/nodes/node-x/checkpoints/${encodeURIComponent(name)}${ns ? `?namespace=${ns}` : ''}`
    before(async () => {
      const r = await post('/v1/clusters/edge/nodes/node-x/checkpoint/team-a/web/app', sre)
      assert.equal(r.status, 200)
      name = ((await r.json()) as { archive: { name: string } }).archive.name
      tom = await world.token({ sub: 'tom', scope: 'checkpoint:read checkpoint:delete' })
    })
    it('a caller of namespace "team" reading it as team/a-app → 404, the bytes never sent', async () => {
      const r = await get(at('team'), tom)
      assert.equal(r.status, 404)
      const p = await problem(r)
      assert.deepEqual([p.code, p.field], ['archive_not_found', 'namespace'])
      const seen = world.agent.seen.findLast((s) => s.path.endsWith(encodeURIComponent(name)))!
      assert.deepEqual((seen.claims as { namespaces?: string[] }).namespaces, ['team'])
    })
    it('… nor delete it: 404, and the archive is still there', async () => {
      const r = await gw.fetch(at('team'), { method: 'DELETE', headers: { authorization: `Bearer ${tom}` } })
      assert.equal(r.status, 404)
      assert.equal((await problem(r)).code, 'archive_not_found')
      assert.ok(world.agent.archives.get('node-x')?.has(name))
    })
    it('the grant names the namespace authorized; the owner\'s reading is served', async () => {
      const r = await get(at('team-a'), alice)
      assert.equal(r.status, 200)
      assert.equal(new Uint8Array(await r.arrayBuffer()).byteLength, 4096)
      const seen = world.agent.seen.findLast((s) => s.path.endsWith(encodeURIComponent(name)))!
      assert.deepEqual((seen.claims as { namespaces?: string[] }).namespaces, ['team-a'])
    })
    it('without ?namespace= every reading is authorized and granted', async () => {
      const r = await get(at(), sre)
      assert.equal(r.status, 200)
      await r.body?.cancel()
      const seen = world.agent.seen.findLast((s) => s.path.endsWith(encodeURIComponent(name)))!
      assert.deepEqual((seen.claims as { namespaces?: string[] }).namespaces, ['team', 'team-a'])
    })
  })

  describe('key set outage', () => {
    let down: GatewayUnderTest
    before(async () => {
      down = await make(world, world.rawConfig({ jwksUrl: world.deadUrl.replace('https:', 'http:') + '/jwks' }))
    })
    after(async () => {
      await down?.close()
    })
    it('JWKS unreachable → 503 auth_unavailable', async () => {
      const r = await down.fetch('/v1/clusters/prod/nodes/node-a/checkpoints', { headers: { authorization: `Bearer ${sre}` } })
      assert.equal(r.status, 503)
      assert.equal((await problem(r)).code, 'auth_unavailable')
    })
    it('but a malformed token is still 401', async () => {
      const r = await down.fetch('/v1/clusters/prod/nodes/node-a/checkpoints', { headers: { authorization: 'Bearer x.y.z' } })
      assert.equal(r.status, 401)
    })
  })
}

async function waitFor(cond: () => boolean, ms = 5000): Promise<void> {
  const end = Date.now() + ms
  while (!cond()) {
    if (Date.now() > end) throw new Error('condition not met in time')
    await new Promise((r) => setTimeout(r, 20))
  }
}
