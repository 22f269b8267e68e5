/**
 * Tokens and trust, beyond the gateway suite's table: key-location headers an attacker controls
 * (`jku`, `x5u`, `jwk`, `x5c`) are never followed, odd `kid`s and oversized tokens are refused by
 * code, and the issuer's key set slow or down behaves as documented — cold: 503
 * `auth_unavailable`; warm: a known `kid` keeps working, an unknown one waits for the set. Every
 * log line the gateway wrote is then scanned for tokens, grants and private keys.
 * Prints `{"name","value","unit"}` figures; `bypass`/`5xx`/`leak` counters must be 0.
 */
import assert from 'node:assert/strict'
import { execFile } from 'node:child_process'
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises'
import { createServer, type Server } from 'node:http'
import type { AddressInfo } from 'node:net'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { connect as tlsConnect } from 'node:tls'
import { promisify } from 'node:util'
import { after, before, describe, it } from 'node:test'
import { exportJWK, generateKeyPair, SignJWT, type CryptoKey } from 'jose'
import { makeWorld, type World } from '../support/gateway/fixtures.ts'
import { nodeTarget } from '../support/gateway/targets.ts'
import { makeIdentities, startTestAgent, type Identities, type TestAgent } from '../support/agent-harness.ts'
import { startFakeCri, type FakeCri } from '../support/fake-cri.ts'

type Gateway = Awaited<ReturnType<typeof nodeTarget>>
const figure = (name: string, value: number, unit: string) => console.log(JSON.stringify({ name, value, unit }))
const ALL = 'checkpoint:create checkpoint:read checkpoint:delete'
const PATH = '/v1/clusters/prod/nodes/node-a/checkpoints'
const b64 = (o: unknown) => Buffer.from(JSON.stringify(o)).toString('base64url')

/** A JWKS endpoint the test steers: serving, hanging (never answers) or refusing (500). */
async function steeredJwks(jwks: () => unknown): Promise<{ url: string; mode: 'serve' | 'hang' | 'fail'; hits: number; close(): Promise<void> }> {
  const state = { mode: 'serve' as 'serve' | 'hang' | 'fail', hits: 0 }
  const server: Server = createServer((req, res) => {
    state.hits++
    if (state.mode === 'hang') return // the client's timeout ends it
    if (state.mode === 'fail') return void res.writeHead(500).end()
    res.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify(jwks()))
  })
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r))
  const url = `http://127.0.0.1:${(server.address() as AddressInfo).port}/jwks`
  return Object.assign(state, {
    url,
    close: () => {
      server.closeAllConnections()
      return new Promise<void>((r) => server.close(() => r()))
    },
  })
}

describe('tokens and trust', () => {
  let world: World
  let gw: Gateway
  let attacker: Awaited<ReturnType<typeof steeredJwks>>
  let attackerKey: CryptoKey
  const counters = { bypass: 0, '5xx': 0, attacker_fetches: 0 }
  const gateways: Gateway[] = []

  before(async () => {
    world = await makeWorld()
    gw = await nodeTarget(world, world.rawConfig())
    gateways.push(gw)
    const pair = await generateKeyPair('ES256', { extractable: true })
    attackerKey = pair.privateKey as CryptoKey
    const attackerJwk = { ...(await exportJWK(pair.publicKey)), kid: 'evil', alg: 'ES256', use: 'sig' }
    attacker = await steeredJwks(() => ({ keys: [attackerJwk] }))
  })
  after(async () => {
    for (const g of gateways) await g.close()
    await attacker?.close()
    await world?.close()
  })

  const refusedWith = async (g: Gateway, token: string, status: number, code: string) => {
    const r = await g.fetch(PATH, { headers: { authorization: `Bearer ${token}` } })
    const body = (await r.json()) as { code?: string }
    if (r.status < 400) counters.bypass++
    if (r.status >= 500 && status < 500) counters['5xx']++
    assert.deepEqual([r.status, body.code], [status, code])
  }
  const now = () => Math.floor(Date.now() / 1000)
  const claims = () => ({ sub: 'sam', groups: ['sre'], scope: ALL })
  const signedBy = async (key: CryptoKey, header: Record<string, unknown>) =>
    new SignJWT(claims()).setProtectedHeader({ alg: 'ES256', typ: 'JWT', ...header }).setIssuer('https://idp.test').setAudience('checkpoint-gateway').setIssuedAt().setExpirationTime(now() + 300).sign(key)

  it('key-location headers are never followed: jku, x5u, an embedded jwk, x5c', async () => {
    const pub = (await exportJWK((await generateKeyPair('ES256', { extractable: true })).publicKey))
    const tokens = [
      await signedBy(attackerKey, { kid: 'evil', jku: attacker.url }),
      await signedBy(attackerKey, { kid: 'evil', x5u: attacker.url }),
      await signedBy(attackerKey, { jwk: { ...(await exportJWK(attackerKey)), d: undefined } }),
      await signedBy(attackerKey, { kid: world.idp.kid, jku: attacker.url }),
      await signedBy(attackerKey, { x5c: ['MIIB'], jwk: pub }),
    ]
    for (const t of tokens) await refusedWith(gw, t, 401, 'unauthenticated')
    counters.attacker_fetches = attacker.hits
    assert.equal(attacker.hits, 0)
  })

  it('odd kids: missing, not a string, huge, duplicated in the header → 401, never a 5xx', async () => {
    const body = b64({ ...claims(), iss: 'https://idp.test', aud: 'checkpoint-gateway', exp: now() + 300 })
    const forged = (head: unknown) => `${b64(head)}.${body}.${Buffer.alloc(64).toString('base64url')}`
    for (const head of [
      { alg: 'ES256' },
      { alg: 'ES256', kid: 42 },
      { alg: 'ES256', kid: ['idp-1', 'idp-1'] },
      { alg: 'ES256', kid: 'k'.repeat(4000) },
      { alg: 'ES256', kid: world.idp.kid, crit: ['exp'] },
    ]) await refusedWith(gw, forged(head), 401, 'unauthenticated')
    // The same member twice in the header text: JSON.parse keeps the last; either way not ours.
    const twice = `${Buffer.from(`{"alg":"ES256","kid":"${world.idp.kid}","kid":"evil"}`).toString('base64url')}.${body}.${Buffer.alloc(64).toString('base64url')}`
    await refusedWith(gw, twice, 401, 'unauthenticated')
  })

  it('oversized tokens: ≈ 11 KiB verified like any other; past the header limit → 431 with a problem body', async () => {
    const big = await world.token({ ...claims(), pad: 'x'.repeat(8 * 1024) })
    // Validly signed, but larger than the token cache takes: still verified and accepted or refused by policy, never a 5xx.
    const r = await gw.fetch(PATH, { headers: { authorization: `Bearer ${big}` } })
    assert.equal(r.status, 200)
    await r.body?.cancel()
    await refusedWith(gw, `${big.slice(0, -10)}AAAAAAAAAA`, 401, 'unauthenticated')
    const huge = await world.token({ ...claims(), pad: 'x'.repeat(20 * 1024) })
    const h = await fetch(gw.url + PATH, { headers: { authorization: `Bearer ${huge}` } })
    assert.equal(h.status, 431)
    assert.equal(((await h.json()) as { code: string }).code, 'headers_too_large')
  })

  it('issuer keys down with a cold cache → 503 auth_unavailable with Retry-After; never 401, never the agent', async () => {
    const idp = await steeredJwks(() => world.idp.jwks)
    idp.mode = 'fail'
    const cold = await nodeTarget(world, world.rawConfig({ jwksUrl: idp.url }))
    gateways.push(cold)
    const before = world.agent.seen.length
    const r = await cold.fetch(PATH, { headers: { authorization: `Bearer ${await world.token(claims())}` } })
    assert.equal(r.status, 503)
    assert.equal(((await r.json()) as { code: string }).code, 'auth_unavailable')
    assert.match(r.headers.get('retry-after') ?? '', /^\d+$/)
    assert.equal(world.agent.seen.length, before)
    await idp.close()
  })

  it('issuer keys slow with a cold cache → 503 auth_unavailable, not a hung request', async () => {
    const idp = await steeredJwks(() => world.idp.jwks)
    idp.mode = 'hang'
    const cold = await nodeTarget(world, world.rawConfig({ jwksUrl: idp.url }))
    gateways.push(cold)
    const r = await cold.fetch(PATH, { headers: { authorization: `Bearer ${await world.token(claims())}` }, signal: AbortSignal.timeout(30_000) })
    assert.equal(r.status, 503)
    assert.equal(((await r.json()) as { code: string }).code, 'auth_unavailable')
    await idp.close()
  })

  it('warm cache: a known kid keeps working while the issuer is down; an unknown kid within the refetch cooldown is 401 without a fetch', async () => {
    const idp = await steeredJwks(() => world.idp.jwks)
    const warm = await nodeTarget(world, world.rawConfig({ jwksUrl: idp.url }))
    gateways.push(warm)
    const ok = await warm.fetch(PATH, { headers: { authorization: `Bearer ${await world.token(claims())}` } })
    assert.equal(ok.status, 200)
    await ok.body?.cancel()
    idp.mode = 'fail'
    // A new token (not the cached text) with the known kid: verified against the cached set.
    const again = await warm.fetch(PATH, { headers: { authorization: `Bearer ${await world.token({ ...claims(), jti: 'second' })}` } })
    assert.equal(again.status, 200)
    await again.body?.cancel()
    const hits = idp.hits
    // jose refetches a set at most once per cooldown (30 s here): the warm set has no such kid.
    const unknown = await warm.fetch(PATH, { headers: { authorization: `Bearer ${await world.token(claims(), { kid: 'rotated', key: world.stranger.privateKey })}` } })
    assert.equal(unknown.status, 401)
    assert.equal(((await unknown.json()) as { code: string }).code, 'unauthenticated')
    assert.equal(idp.hits, hits)
    figure('trust_issuer_fetches_while_down', idp.hits - hits, 'requests')
    await idp.close()
  })

  it('no log line of any gateway in this file holds a token, a grant, a signature or a private key', async () => {
    const lines = gateways.flatMap((g) => g.logs).map((l) => JSON.stringify(l))
    const jwtLike = /eyJ[A-Za-z0-9_-]{10,}\.eyJ[A-Za-z0-9_-]{10,}/
    const secretLike = /PRIVATE KEY|"d":"|Bearer /
    const leaks = lines.filter((l) => jwtLike.test(l) || secretLike.test(l))
    figure('trust_log_lines_scanned', lines.length, 'lines')
    figure('trust_log_leak', leaks.length, 'lines')
    figure('trust_bypass', counters.bypass, 'requests')
    figure('trust_5xx', counters['5xx'], 'requests')
    figure('trust_attacker_key_fetches', counters.attacker_fetches, 'requests')
    assert.ok(lines.length > 10)
    assert.deepEqual(leaks, [])
    assert.deepEqual([counters.bypass, counters['5xx']], [0, 0])
  })
})

/**
 * A client certificate of the agent's own CA, with the gateway's identity, that expired yesterday:
 * `openssl ca` is the one OpenSSL 3.0 command that sets both dates.
 */
async function expiredGatewayCert(ids: Identities, dir: string): Promise<{ cert: string; key: string }> {
  const run = (args: string[]) => promisify(execFile)('openssl', args)
  const day = (d: Date) => d.toISOString().replace(/[-:T]/g, '').slice(2, 14) + 'Z'
  const key = join(dir, 'expired.key')
  const csr = join(dir, 'expired.csr')
  const crt = join(dir, 'expired.crt')
  const cfg = join(dir, 'ca.cnf')
  await writeFile(join(dir, 'index.txt'), '')
  await writeFile(cfg, [
    '[ca]', 'default_ca = x', '[x]', `database = ${join(dir, 'index.txt')}`, `new_certs_dir = ${dir}`, 'rand_serial = yes',
    'default_md = sha256', 'policy = any', 'x509_extensions = ext', '[any]', 'commonName = supplied',
    '[ext]', 'basicConstraints = critical,CA:FALSE', 'keyUsage = critical,digitalSignature', 'extendedKeyUsage = clientAuth',
    'subjectAltName = URI:spiffe://test.local/gateway',
  ].join('\n') + '\n')
  await run(['genpkey', '-algorithm', 'EC', '-pkeyopt', 'ec_paramgen_curve:P-256', '-out', key])
  await run(['req', '-new', '-key', key, '-out', csr, '-subj', '/CN=gateway'])
  const now = Date.now()
  await run(['ca', '-batch', '-config', cfg, '-cert', ids.pki.ca.cert, '-keyfile', join(ids.pki.dir, 'ca.key'), '-in', csr, '-out', crt, '-notext',
    '-startdate', day(new Date(now - 3 * 86_400_000)), '-enddate', day(new Date(now - 86_400_000))])
  // Refused for its dates alone: without the time check the same chain verifies.
  const { stdout } = await run(['verify', '-no_check_time', '-CAfile', ids.pki.ca.cert, '-purpose', 'sslclient', crt])
  assert.match(stdout, /: OK$/m)
  await assert.rejects(run(['verify', '-CAfile', ids.pki.ca.cert, crt]), /expired/)
  return { cert: await readFile(crt, 'utf8'), key: await readFile(key, 'utf8') }
}

describe('mutual TLS and grants at the agent', () => {
  let dir: string
  let ids: Identities
  let cri: FakeCri
  let a: TestAgent
  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'trust-agent-'))
    ids = await makeIdentities(dir)
    cri = await startFakeCri(join(dir, 'cri.sock'), {}, [{ id: 'c-app', namespace: 'prod', pod: 'web-0', container: 'app' }])
    a = await startTestAgent({ ids, endpoint: cri.endpoint, dir })
  })
  after(async () => {
    await a?.stop()
    await cri?.stop()
    await rm(dir, { recursive: true, force: true })
  })

  /** A TLS handshake with the given client identity: 'ok' or the error code that ended it. */
  const handshake = (id: { cert: string; key: string } | undefined) => new Promise<string>((resolve) => {
    const u = new URL(a.agent.url)
    const s = tlsConnect({ port: Number(u.port), host: u.hostname, servername: 'localhost', ca: ids.pki.ca.certPem, ...(id ? id : {}) })
    // TLS 1.3: the server's verdict on the client certificate arrives after the client's handshake.
    s.once('secureConnect', () => {
      s.write('GET /healthz HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n')
      let got = ''
      s.on('data', (c: Buffer) => (got += c.toString()))
      s.once('close', () => resolve(/^HTTP\/1\.1 200/.test(got) ? 'ok' : 'refused'))
    })
    s.once('error', (e: NodeJS.ErrnoException) => resolve(e.code ?? 'error'))
  })

  it('an expired client certificate, none, or one of another CA never gets an answer; the gateway\'s does', async () => {
    const expired = await expiredGatewayCert(ids, await mkdtemp(join(dir, 'ca-')))
    const results = {
      valid: await handshake({ cert: ids.gateway.certPem, key: ids.gateway.keyPem }),
      expired: await handshake(expired),
      none: await handshake(undefined),
      otherCa: await handshake({ cert: ids.foreign.certPem, key: ids.foreign.keyPem }),
    }
    assert.equal(results.valid, 'ok', JSON.stringify(results))
    for (const k of ['expired', 'none', 'otherCa'] as const) assert.notEqual(results[k], 'ok', k)
    figure('trust_agent_mtls_bypass', Object.values(results).filter((r) => r === 'ok').length - 1, 'handshakes')
  })

  it('grants: expired, for another node, another target, another operation → refused; a replay too; no grant in the agent\'s log', async () => {
    const post = async (g: string) => a.fetch('/checkpoint/prod/web-0/app', { method: 'POST', headers: { accept: 'application/json', authorization: `Bearer ${g}` } })
    const base = { op: 'checkpoint:create' as const, namespace: 'prod', pod: 'web-0', container: 'app' }
    const cases: Array<[string, string, number]> = [
      ['expired', await a.mint(base, { iatOffset: -300, expiresIn: 60 }), 401],
      ['another node', await a.mint({ ...base, node: 'node-b' }), 401],
      ['another target', await a.mint({ ...base, pod: 'web-1' }), 403],
      ['another operation', await a.mint({ op: 'checkpoint:read', archive: 'checkpoint-web-0_prod-app-2026-01-01T00:00:00Z.tar', namespaces: ['prod'] }), 403],
    ]
    let accepted = 0
    for (const [name, g, status] of cases) {
      const r = await post(g)
      if (r.statusCode < 400) accepted++
      assert.equal(r.statusCode, status, name)
      await r.body.dump()
    }
    const g = await a.mint(base)
    const first = await post(g)
    assert.equal(first.statusCode, 200)
    await first.body.dump()
    const replay = await post(g)
    assert.equal(replay.statusCode, 401)
    await replay.body.dump()
    assert.equal(cri.checkpointCalls.length, 1)
    figure('trust_agent_accepted_invalid', accepted, 'requests')
    // Nothing the agent logged carries a grant, a signature or key material.
    const lines = a.logs.map((l) => JSON.stringify(l))
    const leaks = lines.filter((l) => /eyJ[A-Za-z0-9_-]{10,}\.eyJ/.test(l) || /PRIVATE KEY|"d":"|Bearer /.test(l) || l.includes(g.split('.')[2]!))
    figure('trust_agent_log_leak', leaks.length, 'lines')
    assert.deepEqual(leaks, [])
  })
})
