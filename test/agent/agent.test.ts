/**
 * The agent over real mTLS against the fake CRI server: identity filter, grants, validation,
 * statuses, events, queueing, archives. Faults here are ones a real runtime will not produce on
 * demand; the real-runtime behaviour is in test/e2e/agent.e2e.test.ts.
 */
import assert from 'node:assert/strict'
import { createHash, randomUUID } from 'node:crypto'
import { mkdtemp, readdir, readFile, rm, stat, writeFile, copyFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { connect } from 'node:tls'
import { after, before, describe, it } from 'node:test'
import { SignJWT } from 'jose'
import { GRPC } from '../../agent/cri/errors.ts'
import { ROUTES } from '../../agent/http/server.ts'
import { parseEvent, type CheckpointEvent } from '../../shared/events.ts'
import { archiveName, archiveReadings } from '../../shared/names.ts'
import { startFakeCri, type FakeCri } from '../support/fake-cri.ts'
import { poll, within } from '../support/wait.ts'
import { makeIdentities, notAgentState, startTestAgent, type Identities, type TestAgent } from '../support/agent-harness.ts'

const T = { namespace: 'prod', pod: 'web-0', container: 'app' }
const PATH = `/checkpoint/${T.namespace}/${T.pod}/${T.container}`
const JSON_ACCEPT = { accept: 'application/json' }

let dir: string
let ids: Identities

before(async () => {
  dir = await mkdtemp(join(tmpdir(), 'agent-it-'))
  ids = await makeIdentities(dir)
})
after(async () => {
  await rm(dir, { recursive: true, force: true })
})

/** A fake runtime and an agent on it, fresh for each group. */
async function stack(args: string[] = [], fakeInit = {}, nodeMemoryBytes?: number): Promise<{ cri: FakeCri; a: TestAgent; stop: () => Promise<void> }> {
  const sub = await mkdtemp(join(dir, 's-'))
  const cri = await startFakeCri(join(sub, 'cri.sock'), fakeInit, [
    { id: 'c-app', ...T },
    { id: 'c-old', ...T, attempt: 0, state: 'CONTAINER_EXITED' },
    { id: 'c-side', namespace: 'prod', pod: 'web-0', container: 'sidecar' },
    { id: 'c-b', namespace: 'prod', pod: 'web-1', container: 'app' },
    { id: 'c-c', namespace: 'prod', pod: 'web-2', container: 'app' },
    // prod-x/app and prod/x-app share one archive name.
    { id: 'c-x', namespace: 'prod-x', pod: 'web-0', container: 'app' },
  ])
  const a = await startTestAgent({ ids, endpoint: cri.endpoint, args: ['--heartbeat-interval=1s', ...args], dir: sub, ...(nodeMemoryBytes !== undefined ? { nodeMemoryBytes } : {}) })
  // The fake runtime goes first: a hung CheckpointContainer would hold the agent's shutdown open.
  return { cri, a, stop: async () => { await cri.stop(); await a.stop() } }
}

async function body(r: { body: { text(): Promise<string> } }): Promise<any> {
  return JSON.parse(await r.body.text())
}

async function checkpoint(a: TestAgent, t = T, query = '', accept = JSON_ACCEPT) {
  const path = `/checkpoint/${t.namespace}/${t.pod}/${t.container}${query}`
  return a.fetch(path, { method: 'POST', headers: { ...accept, authorization: `Bearer ${await a.mint({ op: 'checkpoint:create', ...t })}` } })
}

describe('identity filter', () => {
  let s: Awaited<ReturnType<typeof stack>>
  before(async () => { s = await stack() })
  after(async () => { await s.stop() })

  it('answers 403 forbidden on every route to a trusted but unlisted client', async () => {
    assert.ok(ROUTES.length >= 8)
    for (const r of ROUTES) {
      const res = await s.a.fetch(r.example, { method: r.method, as: 'intruder' })
      assert.equal(res.statusCode, 403, `${r.method} ${r.example}`)
      if (r.method !== 'HEAD') assert.equal((await body(res)).code, 'forbidden')
      else await res.body.dump()
    }
    // Unknown paths, too: the filter runs before routing.
    const res = await s.a.fetch('/nope', { as: 'intruder' })
    assert.equal(res.statusCode, 403)
    await res.body.dump()
  })

  it('refuses the TLS handshake without a client certificate or with one from another CA', async () => {
    await assert.rejects(s.a.fetch('/healthz', { as: 'none' }))
    await assert.rejects(s.a.fetch('/healthz', { as: 'foreign' }))
  })

  it('lets the allowed client reach health, readiness and metrics without a grant', async () => {
    const h = await s.a.fetch('/healthz')
    assert.equal(h.statusCode, 200)
    assert.equal((await body(h)).status, 'ok')
    const r = await s.a.fetch('/readyz')
    assert.equal(r.statusCode, 200)
    assert.deepEqual((await body(r)).runtime.name, 'fake-cri')
    const m = await s.a.fetch('/metrics')
    assert.equal(m.statusCode, 200)
    assert.match(await m.body.text(), /^checkpoint_agent_in_flight 0$/m)
  })

  it('closes a connection that tries to renegotiate (the identity is read once per connection)', async () => {
    const url = new URL(s.a.agent.url)
    const socket = connect({ host: url.hostname, port: Number(url.port), ca: ids.pki.ca.certPem, cert: ids.gateway.certPem, key: ids.gateway.keyPem, servername: 'localhost', maxVersion: 'TLSv1.2' })
    const closed = new Promise<void>((resolve) => socket.once('close', () => resolve()))
    socket.on('error', () => {})
    let got = ''
    socket.on('data', (b: Buffer) => { got += b.toString() })
    await new Promise<void>((resolve, reject) => socket.once('secureConnect', resolve).once('error', reject))
    socket.write('GET /healthz HTTP/1.1\r\nhost: localhost\r\n\r\n')
    await poll(async () => (got.includes('"ok"') ? true : undefined), 5000, 'an answer on the connection', 10)
    assert.match(got, /^HTTP\/1\.1 200 /)
    const renegotiated = new Promise<Error | null>((resolve) => socket.renegotiate({ rejectUnauthorized: true }, (err) => resolve(err ?? null)))
    // Sooner than the agent's 5 s keep-alive timeout would close it.
    await within(closed, 2000, 'the agent closes the connection')
    // Had the agent renegotiated, the callback would have had no error and the socket stayed open.
    assert.notEqual(await Promise.race([renegotiated, closed.then(() => 'closed' as const)]), null)
  })

  it('answers 404 for unknown paths and 405 for wrong methods', async () => {
    const r = await s.a.fetch('/nope')
    assert.equal(r.statusCode, 404)
    assert.equal((await body(r)).code, 'not_found')
    const m = await s.a.fetch(PATH, { method: 'GET' })
    assert.equal(m.statusCode, 405)
    assert.equal((await body(m)).code, 'method_not_allowed')
  })
})

describe('grants', () => {
  let s: Awaited<ReturnType<typeof stack>>
  before(async () => { s = await stack() })
  after(async () => { await s.stop() })

  const post = (auth?: string) => s.a.fetch(PATH, { method: 'POST', headers: { ...JSON_ACCEPT, ...(auth ? { authorization: auth } : {}) } })

  it('401 invalid_grant without a grant, with WWW-Authenticate', async () => {
    const r = await post()
    assert.equal(r.statusCode, 401)
    assert.equal(r.headers['www-authenticate'], 'Bearer error="invalid_token"')
    assert.equal((await body(r)).code, 'invalid_grant')
  })

  it('401 for expired, wrong-node, wrong-typ, unknown-kid, tampered and too-long grants', async () => {
    const base = { op: 'checkpoint:create' as const, ...T }
    const bad = [
      await s.a.mint(base, { iatOffset: -600, expiresIn: 60 }),
      await s.a.mint({ ...base, node: 'node-b' }),
      await s.a.mint(base, { typ: 'JWT' }),
      await s.a.mint(base, { kid: 'other' }),
      (await s.a.mint(base)).slice(0, -4) + 'AAAA',
      await s.a.mint(base, { expiresIn: 7200 }),
      'not.a.jwt',
    ]
    for (const g of bad) {
      const r = await post(`Bearer ${g}`)
      assert.equal(r.statusCode, 401, g.slice(0, 20))
      assert.equal((await body(r)).code, 'invalid_grant')
    }
    assert.equal(s.cri.checkpointCalls.length, 0)
  })

  it('403 grant_mismatch for a grant naming another target or operation', async () => {
    for (const claims of [
      { op: 'checkpoint:create' as const, ...T, pod: 'web-1' },
      { op: 'checkpoint:create' as const, ...T, container: 'sidecar' },
      { op: 'checkpoint:read' as const, ...T },
    ]) {
      const r = await post(`Bearer ${await s.a.mint(claims)}`)
      assert.equal(r.statusCode, 403)
      assert.equal((await body(r)).code, 'grant_mismatch')
    }
    assert.equal(s.cri.checkpointCalls.length, 0)
  })

  it('refuses a replayed grant', async () => {
    const g = `Bearer ${await s.a.mint({ op: 'checkpoint:create', ...T })}`
    const first = await post(g)
    assert.equal(first.statusCode, 200)
    await first.body.dump()
    const again = await post(g)
    assert.equal(again.statusCode, 401)
    assert.equal((await body(again)).code, 'invalid_grant')
  })

  it('refuses grants issued well before the agent started', async () => {
    const r = await post(`Bearer ${await s.a.mint({ op: 'checkpoint:create', ...T }, { iatOffset: -30, expiresIn: 120 })}`)
    assert.equal(r.statusCode, 401)
    const p = await body(r)
    assert.equal(p.code, 'invalid_grant')
    assert.equal(p.reason, 'issued_before_start')
  })

  it('refuses a used grant after a restart, however soon (the used-grant journal)', async () => {
    const sub = await mkdtemp(join(dir, 'replay-'))
    const cri = await startFakeCri(join(sub, 'cri.sock'), {}, [{ id: 'c-app', ...T }])
    const list = (a: TestAgent, g: string) => a.fetch('/checkpoints', { headers: { authorization: g } })
    let a = await startTestAgent({ ids, endpoint: cri.endpoint, dir: sub })
    try {
      // Issued a second after the first start; the second start is within the clock tolerance.
      const g = `Bearer ${await a.mint({ op: 'checkpoint:list' })}`
      const first = await list(a, g)
      assert.equal(first.statusCode, 200)
      await first.body.dump()
      await a.stop()
      a = await startTestAgent({ ids, endpoint: cri.endpoint, dir: sub })
      const again = await list(a, g)
      assert.equal(again.statusCode, 401)
      const p = await body(again)
      assert.deepEqual([p.code, p.reason], ['invalid_grant', 'replay'])
      // A fresh grant still works, and a torn last journal line does not stop the next start.
      const fresh = await list(a, `Bearer ${await a.mint({ op: 'checkpoint:list' })}`)
      assert.equal(fresh.statusCode, 200)
      await fresh.body.dump()
      await a.stop()
      const { appendFile } = await import('node:fs/promises')
      await appendFile(join(sub, 'checkpoints', '.used-grants.log'), '{"j":"torn')
      a = await startTestAgent({ ids, endpoint: cri.endpoint, dir: sub })
      const third = await list(a, g)
      assert.equal(third.statusCode, 401)
      await third.body.dump()
    } finally {
      await a.stop()
      await cri.stop()
    }
  })

  it('accepts a grant minted by hand with the audience on the wire, checkpoint-agent:<node>', async () => {
    // Literals, not grantAudience(): the gateway, the fake agent and the harness all compute it.
    assert.equal(s.a.node, 'node-a')
    const now = Math.floor(Date.now() / 1000)
    const g = await new SignJWT({ op: 'checkpoint:list', node: 'node-a' })
      .setProtectedHeader({ alg: 'EdDSA', kid: ids.kid, typ: 'checkpoint-grant+jwt' })
      .setAudience('checkpoint-agent:node-a')
      .setIssuedAt(now)
      .setExpirationTime(now + 60)
      .setJti(randomUUID())
      .setSubject('user:test')
      .sign(ids.grantKey)
    const r = await s.a.fetch('/checkpoints', { headers: { authorization: `Bearer ${g}` } })
    assert.equal(r.statusCode, 200)
    await r.body.dump()
  })

  it('never logs the grant', async () => {
    const g = await s.a.mint({ op: 'checkpoint:create', ...T })
    await (await post(`Bearer ${g}`)).body.dump()
    assert.ok(s.a.logs.length > 0)
    assert.ok(!JSON.stringify(s.a.logs).includes(g.split('.')[2]!))
  })
})

describe('validation (before any runtime call)', () => {
  let s: Awaited<ReturnType<typeof stack>>
  before(async () => { s = await stack(['--max-timeout=600s']) })
  after(async () => { await s.stop() })

  const cases: [string, string, string, string?][] = [
    ['/checkpoint/Prod/web-0/app', 'invalid_name', 'namespace'],
    ['/checkpoint/prod/web_0/app', 'invalid_name', 'pod'],
    ['/checkpoint/prod/web-0/app.x', 'invalid_name', 'container'],
    [`/checkpoint/${'n'.repeat(64)}/web-0/app`, 'invalid_name', 'namespace'],
    ['/checkpoint/prod/%2E%2E/app', 'invalid_name', 'pod'],
    [`${PATH}?timeout=abc`, 'invalid_timeout', 'timeout'],
    [`${PATH}?timeout=-1`, 'invalid_timeout', 'timeout'],
    [`${PATH}?timeout=601`, 'invalid_timeout', 'timeout'],
    [`${PATH}?tiemout=5`, 'invalid_query', 'tiemout'],
    [`${PATH}?timeout=5&timeout=6`, 'invalid_query', 'timeout'],
  ]
  for (const [path, code, field] of cases) {
    it(`${path.slice(0, 60)} → 400 ${code} (${field})`, async () => {
      const r = await s.a.fetch(path, { method: 'POST', headers: JSON_ACCEPT })
      assert.equal(r.statusCode, 400)
      const p = await body(r)
      assert.equal(p.code, code)
      assert.equal(p.field, field)
      assert.equal(r.headers['content-type'], 'application/problem+json')
    })
  }

  it('rejects a body where none belongs', async () => {
    const r = await s.a.fetch(PATH, { method: 'POST', headers: { ...JSON_ACCEPT, authorization: `Bearer ${await s.a.mint({ op: 'checkpoint:create', ...T })}` }, body: '{}' })
    assert.equal(r.statusCode, 400)
    assert.equal((await body(r)).code, 'invalid_body')
  })

  it('made no runtime call for any of them', () => {
    assert.equal(s.cri.checkpointCalls.length, 0)
  })
})

describe('checkpoint', () => {
  let s: Awaited<ReturnType<typeof stack>>
  before(async () => { s = await stack(['--retention-max-per-container=3']) })
  after(async () => { await s.stop() })

  it('answers the kubelet body byte for byte, with a 0600 archive named as the kubelet names it', async () => {
    const r = await checkpoint(s.a)
    assert.equal(r.statusCode, 200)
    assert.equal(r.headers['content-type'], 'application/json')
    const text = await r.body.text()
    const path = JSON.parse(text).items[0] as string
    assert.equal(text, `{"items":["${path}"]}`)
    assert.match(path, new RegExp(`^${s.a.agent.store.dir}/checkpoint-web-0_prod-app-\\d{4}-\\d\\d-\\d\\dT\\d\\d:\\d\\d:\\d\\d(\\.\\d{3})?Z\\.tar$`))
    assert.equal((await stat(path)).mode & 0o777, 0o600)
    assert.equal((await stat(s.a.agent.store.dir)).mode & 0o777, 0o700)
    const call = s.cri.checkpointCalls.at(-1)!
    assert.equal(call.containerId, 'c-app')
    assert.equal(call.deadlineMs, null, 'the runtime call must carry no deadline')
    assert.deepEqual((await readdir(s.a.agent.store.dir)).filter((n) => n.startsWith('.inprogress')), [])
  })

  it('streams accepted → resolved → heartbeat… → completed in NDJSON, with the archive digest', async () => {
    // Heartbeats every 1 s (the smallest interval): 3.5 s leaves room for a late first beat.
    s.cri.behaviour.checkpointDelayMs = 3500
    try {
      const r = await checkpoint(s.a, T, '', { accept: 'application/x-ndjson' })
      assert.equal(r.statusCode, 200)
      assert.equal(r.headers['content-type'], 'application/x-ndjson')
      const events: CheckpointEvent[] = (await r.body.text()).trim().split('\n').map(parseEvent)
      const types = events.map((e) => e.type)
      assert.deepEqual(types.slice(0, 2), ['accepted', 'resolved'])
      assert.equal(types.at(-1), 'completed')
      assert.ok(types.filter((t) => t === 'heartbeat').length >= 2, types.join(','))
      const done = events.at(-1)!
      assert.ok(done.type === 'completed')
      const bytes = await readFile(done.items[0]!)
      assert.equal(done.archive.sha256, createHash('sha256').update(bytes).digest('hex'))
      assert.equal(done.archive.size, bytes.length)
      assert.equal(done.runtime.name, 'fake-cri')
    } finally {
      s.cri.behaviour.checkpointDelayMs = 0
    }
  })

  it('picks the running container of the newest attempt', async () => {
    s.cri.containers.push({ id: 'c-app-2', ...T, attempt: 2 })
    try {
      await (await checkpoint(s.a)).body.dump()
      assert.equal(s.cri.checkpointCalls.at(-1)!.containerId, 'c-app-2')
    } finally {
      s.cri.containers.pop()
    }
  })

  it('keeps at most --retention-max-per-container archives, oldest deleted first', async () => {
    for (let i = 0; i < 3; i++) await (await checkpoint(s.a)).body.dump()
    // Retention runs right after the answer, so give the last pass a moment.
    const mine = async () => (await s.a.agent.store.list()).filter((x) => x.pod === T.pod && x.container === T.container)
    for (let i = 0; i < 250 && (await mine()).length > 3; i++) await new Promise((r) => setTimeout(r, 20))
    assert.equal((await mine()).length, 3)
  })

  it('404 container_not_found for a container that is not running here', async () => {
    for (const t of [{ ...T, container: 'nope' }, { ...T, pod: 'web-9' }, { ...T, namespace: 'dev' }]) {
      const r = await checkpoint(s.a, t)
      assert.equal(r.statusCode, 404)
      assert.equal((await body(r)).code, 'container_not_found')
    }
  })

  it('shares one runtime call between identical concurrent requests', async () => {
    s.cri.behaviour.checkpointDelayMs = 1500
    try {
      const before = s.cri.checkpointCalls.length
      const rs = await Promise.all([checkpoint(s.a), checkpoint(s.a), checkpoint(s.a)])
      const items = await Promise.all(rs.map(async (r) => (assert.equal(r.statusCode, 200), (await body(r)).items[0])))
      assert.equal(s.cri.checkpointCalls.length - before, 1)
      assert.equal(new Set(items).size, 1)
    } finally {
      s.cri.behaviour.checkpointDelayMs = 0
    }
  })

  it('reports metrics by outcome', async () => {
    const text = await (await s.a.fetch('/metrics')).body.text()
    assert.match(text, /checkpoint_agent_checkpoints_total\{outcome="success"\} [1-9]/)
    assert.match(text, /checkpoint_agent_checkpoints_total\{outcome="container_not_found"\} 3/)
    assert.match(text, /checkpoint_agent_checkpoint_duration_seconds_count [1-9]/)
  })
})

describe('runtime faults', () => {
  let s: Awaited<ReturnType<typeof stack>>
  before(async () => { s = await stack() })
  after(async () => { await s.stop() })
  const reset = () => Object.assign(s.cri.behaviour, { checkpointError: undefined, writeNothing: false, checkpointDelayMs: 0, hang: false, hold: false })

  it('UNIMPLEMENTED → 500 runtime_unimplemented naming the runtime and the versions needed', async () => {
    s.cri.behaviour.checkpointError = { code: GRPC.UNIMPLEMENTED, details: 'method CheckpointContainer not implemented' }
    try {
      const r = await checkpoint(s.a)
      assert.equal(r.statusCode, 500)
      const p = await body(r)
      assert.equal(p.code, 'runtime_unimplemented')
      assert.ok(p.detail.includes('fake-cri 9.9.9'))
    } finally { reset() }
  })

  it('a runtime error → 500 checkpoint_failed and no file left behind', async () => {
    s.cri.behaviour.checkpointError = { code: GRPC.UNKNOWN, details: 'criu failed' }
    try {
      const r = await checkpoint(s.a)
      assert.equal(r.statusCode, 500)
      const p = await body(r)
      assert.equal(p.code, 'checkpoint_failed')
      assert.equal(p.runtimeLog, undefined, 'no log named, none read')
      assert.deepEqual((await readdir(s.a.agent.store.dir)).filter(notAgentState), [])
    } finally { reset() }
  })

  it("a failed dump's CRIU error lines come back as runtimeLog, in JSON and in NDJSON", async () => {
    // What runc leaves in the bundle: a log whose Error lines say why (written by hand here).
    const bundle = await mkdtemp(join(dir, 'bundle-'))
    const logPath = join(bundle, 'criu-dump.log')
    await writeFile(logPath, [
      '(00.000051) Version: 4.2.1 (gitid 0)',
      "(00.073961) Error (criu/files-reg.c:1031): Can't dump ghost file /tmp/ghost of 2097152 size, increase limit",
      '(00.074003) Error (criu/cr-dump.c:1545): Dump files (pid: 24128) failed with -1',
      '(00.077112) Error (criu/cr-dump.c:1975): Dumping FAILED.',
      '',
    ].join('\n'))
    const expected = [
      "Error (criu/files-reg.c:1031): Can't dump ghost file /tmp/ghost of 2097152 size, increase limit",
      'Error (criu/cr-dump.c:1545): Dump files (pid: 24128) failed with -1',
      'Error (criu/cr-dump.c:1975): Dumping FAILED.',
    ]
    s.cri.behaviour.checkpointError = { code: GRPC.UNKNOWN, details: `runc did not terminate successfully: exit status 1: criu failed: type DUMP errno 0 path= ${logPath}` }
    try {
      const r = await checkpoint(s.a)
      assert.equal(r.statusCode, 500)
      const p = await body(r)
      assert.deepEqual([p.code, p.runtimeLog], ['checkpoint_failed', expected])
      const streamed = await checkpoint(s.a, T, '', { accept: 'application/x-ndjson' })
      const last = parseEvent((await streamed.body.text()).trim().split('\n').at(-1)!)
      assert.ok(last.type === 'failed')
      assert.deepEqual([last.code, last.runtimeLog], ['checkpoint_failed', expected])
      assert.deepEqual((await readdir(s.a.agent.store.dir)).filter(notAgentState), [])
    } finally { reset() }
  })

  it('success without an archive → 500 checkpoint_failed', async () => {
    s.cri.behaviour.writeNothing = true
    try {
      const r = await checkpoint(s.a)
      assert.equal(r.statusCode, 500)
      assert.equal((await body(r)).code, 'checkpoint_failed')
    } finally { reset() }
  })

  it('in NDJSON a failure after acceptance is a failed event with status and code', async () => {
    s.cri.behaviour.checkpointError = { code: GRPC.INTERNAL, details: 'boom' }
    try {
      const r = await checkpoint(s.a, T, '', { accept: 'application/x-ndjson' })
      const last = parseEvent((await r.body.text()).trim().split('\n').at(-1)!)
      assert.equal(last.type, 'failed')
      assert.ok(last.type === 'failed' && last.status === 500 && last.code === 'checkpoint_failed')
    } finally { reset() }
  })

  it('the caller’s timeout ends the wait (504), not the runtime call; the archive is kept', async () => {
    // The runtime call is held until the caller has its answer: the 504 can only come first.
    s.cri.behaviour.hold = true
    try {
      const before = s.cri.checkpointCalls.length
      // The bound only turns "never answered" into a failure instead of a hang.
      const r = await within(checkpoint(s.a, T, '?timeout=1'), 20_000, 'the 504 while the runtime call is held')
      assert.equal(r.statusCode, 504)
      assert.equal((await body(r)).code, 'timeout')
      assert.equal(s.cri.checkpointCalls.length - before, 1)
      const call = s.cri.checkpointCalls.at(-1)!
      assert.equal(call.answered, false, 'the caller was answered while the runtime call was still pending')
      assert.equal(s.a.agent.checkpointer.runtimeCalls, 1)
      assert.equal(call.deadlineMs, null)
      s.cri.release()
      for (let i = 0; i < 50 && (await s.a.agent.store.list()).length === 0; i++) await new Promise((r) => setTimeout(r, 100))
      assert.equal((await s.a.agent.store.list()).length, 1)
      assert.equal(call.answered, true)
    } finally {
      s.cri.release()
      reset()
    }
  })

  it('stats unavailable still checkpoints (disk check uses the margin only)', async () => {
    s.cri.behaviour.statsError = GRPC.UNAVAILABLE
    try {
      const r = await checkpoint(s.a, { ...T, pod: 'web-2' })
      assert.equal(r.statusCode, 200)
      await r.body.dump()
    } finally { s.cri.behaviour.statsError = undefined }
  })

  it('a hanging runtime keeps the caller only as long as its timeout', async () => {
    // Last in this group: a hung runtime call holds its slot until the runtime answers.
    s.cri.behaviour.hang = true
    try {
      const r = await checkpoint(s.a, { ...T, pod: 'web-1' }, '?timeout=1', { accept: 'application/x-ndjson' })
      const events = (await r.body.text()).trim().split('\n').map(parseEvent)
      const last = events.at(-1)!
      assert.ok(last.type === 'failed' && last.code === 'timeout' && last.status === 504)
    } finally { reset() }
  })

})

describe('preflight and capacity', () => {
  // A node whose memory the disk could not hold: the preflight asks for the working set.
  const BIG_NODE = 2 ** 60

  it('507 insufficient_storage when free space is below the working set plus margin; no runtime call', async () => {
    const s = await stack([], {}, BIG_NODE)
    try {
      s.cri.containers[0]!.workingSetBytes = 2 ** 52
      const r = await checkpoint(s.a)
      assert.equal(r.statusCode, 507)
      assert.equal((await body(r)).code, 'insufficient_storage')
      assert.equal(s.cri.checkpointCalls.length, 0)
      // The working set came from ListContainerStats, asked beside ListContainers: no ContainerStats.
      assert.deepEqual([s.cri.listStatsCalls, s.cri.statsCalls], [1, 0])
    } finally { await s.stop() }
  })

  it('free space for the node\'s whole memory: no working set asked, the checkpoint goes ahead', async () => {
    // The node's memory and swap bound any container's pages, so its working set cannot matter.
    const s = await stack([], {}, 1 << 20)
    try {
      s.cri.containers[0]!.workingSetBytes = 2 ** 52
      const r = await checkpoint(s.a)
      assert.equal(r.statusCode, 200)
      await r.body.dump()
      assert.deepEqual([s.cri.listStatsCalls, s.cri.statsCalls, s.cri.checkpointCalls.length], [0, 0, 1])
    } finally { await s.stop() }
    // The margin counts on top of the node's memory: past the free space, the working set is asked.
    const t = await stack(['--disk-margin=1000T'], {}, 1 << 20)
    try {
      const r = await checkpoint(t.a)
      assert.equal(r.statusCode, 507)
      assert.equal((await body(r)).code, 'insufficient_storage')
      assert.deepEqual([t.cri.listStatsCalls, t.cri.checkpointCalls.length], [1, 0])
    } finally { await t.stop() }
  })

  it('a runtime without ListContainerStats: the working set comes from ContainerStats, and still refuses', async () => {
    const s = await stack([], { listStatsUnimplemented: true }, BIG_NODE)
    try {
      s.cri.containers[0]!.workingSetBytes = 2 ** 52
      const r = await checkpoint(s.a)
      assert.equal(r.statusCode, 507)
      assert.equal((await body(r)).code, 'insufficient_storage')
      assert.deepEqual([s.cri.listStatsCalls, s.cri.statsCalls, s.cri.checkpointCalls.length], [1, 1, 0])
      s.cri.containers[0]!.workingSetBytes = 1000
      const ok = await checkpoint(s.a)
      assert.equal(ok.statusCode, 200)
      await ok.body.dump()
      assert.equal(s.cri.checkpointCalls.length, 1)
    } finally { await s.stop() }
  })

  it('refuses before calling the runtime when the checkpoint directory is gone', async () => {
    const s = await stack()
    try {
      await rm(s.a.agent.store.dir, { recursive: true })
      const r = await checkpoint(s.a)
      assert.equal(r.statusCode, 500)
      assert.equal((await body(r)).code, 'checkpoint_failed')
      assert.equal(s.cri.checkpointCalls.length, 0)
    } finally { await s.stop() }
  })

  it('429 with Retry-After beyond the concurrency cap and queue', async () => {
    const s = await stack(['--max-concurrent=1', '--max-queue=1'], { checkpointDelayMs: 2000 })
    try {
      const first = checkpoint(s.a, T)
      const second = checkpoint(s.a, { ...T, pod: 'web-1' })
      const m = s.a.agent.metrics
      await poll(async () => (m.inFlight === 1 && m.queueDepth === 1 ? true : undefined), 10_000, 'one running, one queued', 10)
      const third = await checkpoint(s.a, { ...T, pod: 'web-2' })
      assert.equal(third.statusCode, 429)
      assert.match(String(third.headers['retry-after']), /^\d+$/)
      assert.equal((await body(third)).code, 'too_many_requests')
      for (const r of await Promise.all([first, second])) {
        assert.equal(r.statusCode, 200)
        await r.body.dump()
      }
    } finally { await s.stop() }
  })

  it('404 checkpointing_disabled when switched off', async () => {
    const s = await stack(['--checkpointing=false'])
    try {
      const r = await checkpoint(s.a)
      assert.equal(r.statusCode, 404)
      assert.equal((await body(r)).code, 'checkpointing_disabled')
    } finally { await s.stop() }
  })
})

describe('archives', () => {
  let s: Awaited<ReturnType<typeof stack>>
  let name: string
  let bytes: Buffer
  before(async () => {
    s = await stack([], { archiveBytes: 3 * 1024 * 1024 + 17 })
    const r = await checkpoint(s.a)
    const path = (await body(r)).items[0] as string
    name = path.split('/').at(-1)!
    bytes = await readFile(path)
  })
  after(async () => { await s.stop() })
  const grant = async (op: 'checkpoint:read' | 'checkpoint:delete' | 'checkpoint:list', archive?: string, namespaces = ['prod']) =>
    `Bearer ${await s.a.mint({ op, ...(archive ? { archive, namespaces } : {}) })}`

  it('lists complete archives with their digest', async () => {
    const r = await s.a.fetch('/checkpoints', { headers: { authorization: await grant('checkpoint:list') } })
    assert.equal(r.statusCode, 200)
    const { items } = await body(r)
    assert.equal(items.length, 1)
    assert.deepEqual({ ...items[0], created: undefined }, {
      name, size: bytes.length, sha256: createHash('sha256').update(bytes).digest('hex'), sha256Known: true,
      namespace: 'prod', pod: 'web-0', container: 'app', created: undefined,
    })
  })

  it('downloads the archive with Content-Length and an ETag from its sha256', async () => {
    const r = await s.a.fetch(`/checkpoints/${name}`, { headers: { authorization: await grant('checkpoint:read', name) } })
    assert.equal(r.statusCode, 200)
    assert.equal(Number(r.headers['content-length']), bytes.length)
    const got = Buffer.from(await r.body.arrayBuffer())
    assert.ok(got.equals(bytes))
    assert.equal(r.headers.etag, `"${createHash('sha256').update(bytes).digest('hex')}"`)
  })

  it('serves Range requests for resume', async () => {
    const r = await s.a.fetch(`/checkpoints/${name}`, { headers: { authorization: await grant('checkpoint:read', name), range: 'bytes=1048576-' } })
    assert.equal(r.statusCode, 206)
    assert.equal(r.headers['content-range'], `bytes 1048576-${bytes.length - 1}/${bytes.length}`)
    assert.ok(Buffer.from(await r.body.arrayBuffer()).equals(bytes.subarray(1048576)))
    const bad = await s.a.fetch(`/checkpoints/${name}`, { headers: { authorization: await grant('checkpoint:read', name), range: `bytes=${bytes.length}-` } })
    assert.equal(bad.statusCode, 416)
    assert.equal((await body(bad)).code, 'invalid_range')
  })

  it('a read grant for one archive does not open another', async () => {
    // The same target a second later: a name that exists nowhere, whatever the clock said.
    const created = archiveReadings(name)!.created
    const other = archiveName({ namespace: 'prod', pod: 'web-0', container: 'app' }, new Date(Date.parse(created) + 1000))
    assert.notEqual(other, name)
    const r = await s.a.fetch(`/checkpoints/${other}`, { headers: { authorization: await grant('checkpoint:read', name) } })
    assert.equal(r.statusCode, 403)
    assert.equal((await body(r)).code, 'grant_mismatch')
  })

  it('serves an archive only to a grant authorized in its recorded namespace', async () => {
    // prod-x/app's archive reads as prod/x-app too: a grant for namespace prod must not open it.
    const r = await checkpoint(s.a, { namespace: 'prod-x', pod: 'web-0', container: 'app' })
    const x = ((await body(r)).items[0] as string).split('/').at(-1)!
    assert.deepEqual(archiveReadings(x)!.readings.map((x) => x.namespace), ['prod', 'prod-x'])
    for (const [method, op] of [['GET', 'checkpoint:read'], ['DELETE', 'checkpoint:delete']] as const) {
      for (const namespaces of [['prod'], [], ['prod-x-y']]) {
        const no = await s.a.fetch(`/checkpoints/${x}`, { method, headers: { authorization: await grant(op, x, namespaces) } })
        assert.equal(no.statusCode, 403, `${method} ${namespaces}`)
        const p = await body(no)
        assert.deepEqual([p.code, p.field], ['grant_mismatch', 'namespace'])
      }
    }
    const yes = await s.a.fetch(`/checkpoints/${x}`, { headers: { authorization: await grant('checkpoint:read', x, ['prod', 'prod-x']) } })
    assert.equal(yes.statusCode, 200)
    await yes.body.dump()
    const del = await s.a.fetch(`/checkpoints/${x}`, { method: 'DELETE', headers: { authorization: await grant('checkpoint:delete', x, ['prod-x']) } })
    assert.equal(del.statusCode, 204)
    await del.body.dump()
  })

  it('an archive it did not write (no record) is served only when every reading is granted', async () => {
    const kubelet = archiveName({ namespace: 'prod-x', pod: 'web-9', container: 'app' }, new Date('2026-01-01T00:00:00Z'))
    await writeFile(join(s.a.agent.store.dir, kubelet), 'kubelet archive', { mode: 0o600 })
    try {
      for (const namespaces of [['prod'], ['prod-x']]) {
        const no = await s.a.fetch(`/checkpoints/${kubelet}`, { headers: { authorization: await grant('checkpoint:read', kubelet, namespaces) } })
        assert.equal(no.statusCode, 403)
        assert.equal((await body(no)).code, 'grant_mismatch')
      }
      const yes = await s.a.fetch(`/checkpoints/${kubelet}`, { headers: { authorization: await grant('checkpoint:read', kubelet, ['prod-x', 'prod']) } })
      assert.equal(yes.statusCode, 200)
      assert.equal(await yes.body.text(), 'kubelet archive')
    } finally {
      await rm(join(s.a.agent.store.dir, kubelet), { force: true })
    }
  })

  it('rejects names that could escape the directory', async () => {
    for (const bad of ['..%2F..%2Fetc%2Fpasswd', '%2E%2E', 'checkpoint-x.tar', '.inprogress-1.tar']) {
      const r = await s.a.fetch(`/checkpoints/${bad}`, { headers: { authorization: await grant('checkpoint:read', decodeURIComponent(bad)) } })
      assert.equal(r.statusCode, 400, bad)
      assert.equal((await body(r)).code, 'invalid_archive_name')
    }
  })

  it('deletes an archive, then answers 404 archive_not_found', async () => {
    const r = await s.a.fetch(`/checkpoints/${name}`, { method: 'DELETE', headers: { authorization: await grant('checkpoint:delete', name) } })
    assert.equal(r.statusCode, 204)
    await r.body.dump()
    const again = await s.a.fetch(`/checkpoints/${name}`, { headers: { authorization: await grant('checkpoint:read', name) } })
    assert.equal(again.statusCode, 404)
    assert.equal((await body(again)).code, 'archive_not_found')
  })
})

describe('lifecycle', () => {
  it('removes partial files left by an earlier run and keeps complete archives', async () => {
    const sub = await mkdtemp(join(dir, 'life-'))
    const cp = join(sub, 'checkpoints')
    const { mkdir } = await import('node:fs/promises')
    await mkdir(cp, { recursive: true })
    await writeFile(join(cp, '.inprogress-1234.tar'), 'partial')
    await writeFile(join(cp, 'checkpoint-web-0_prod-app-2026-01-01T00:00:00Z.tar'), 'whole')
    await writeFile(join(cp, '.checkpoint-gone_prod-app-2026-01-01T00:00:00Z.tar.json'), '{}')
    const cri = await startFakeCri(join(sub, 'cri.sock'))
    const a = await startTestAgent({ ids, endpoint: cri.endpoint, dir: sub })
    try {
      assert.deepEqual((await readdir(cp)).filter(notAgentState), ['checkpoint-web-0_prod-app-2026-01-01T00:00:00Z.tar'])
      const list = await a.agent.store.list()
      assert.equal(list[0]!.sha256Known, false)
    } finally {
      await a.stop()
      await cri.stop()
    }
  })

  it('on shutdown lets a running checkpoint finish and refuses new ones', async () => {
    const s = await stack([], { checkpointDelayMs: 1000 })
    const running = checkpoint(s.a)
    await poll(async () => (s.cri.checkpointCalls.length === 1 ? true : undefined), 10_000, 'the checkpoint in the runtime', 10)
    const stopping = s.a.agent.shutdown(5000)
    const r = await running
    assert.equal(r.statusCode, 200)
    const path = (await body(r)).items[0]
    assert.deepEqual(await stopping, { clean: true })
    assert.ok((await stat(path)).size > 0)
    await assert.rejects(checkpoint(s.a))
    await s.stop()
  })

  it('with --cluster, refuses a grant for the same node name in another cluster', async () => {
    const s = await stack(['--cluster=prod-eu'])
    try {
      const ask = async (cluster?: string) => s.a.fetch('/checkpoints', { headers: { authorization: `Bearer ${await s.a.mint({ op: 'checkpoint:list', ...(cluster ? { cluster } : {}) })}` } })
      const other = await ask('prod-us')
      assert.equal(other.statusCode, 403)
      assert.equal((await body(other)).code, 'grant_mismatch')
      const none = await ask()
      assert.equal(none.statusCode, 403)
      await none.body.dump()
      const mine = await ask('prod-eu')
      assert.equal(mine.statusCode, 200)
      await mine.body.dump()
    } finally { await s.stop() }
  })

  it('answers 503 auth_unavailable, not 401, when the grant key set cannot be fetched', async () => {
    const sub = await mkdtemp(join(dir, 'jwks-'))
    const cri = await startFakeCri(join(sub, 'cri.sock'), {}, [{ id: 'c-app', ...T }])
    // A port nothing listens on: the key set fetch fails.
    const { createServer } = await import('node:net')
    const port = await new Promise<number>((r) => { const srv = createServer().listen(0, '127.0.0.1', () => { const p = (srv.address() as { port: number }).port; srv.close(() => r(p)) }) })
    const { loadConfig } = await import('../../agent/config.ts')
    const { startAgent } = await import('../../agent/start.ts')
    const { memoryLogger } = await import('../../agent/log.ts')
    const cfg = loadConfig(['--listen=127.0.0.1:0', '--node-name=node-a', `--tls-cert=${ids.server.cert}`, `--tls-key=${ids.server.key}`, `--tls-ca=${ids.pki.ca.cert}`,
      '--allowed-clients=uri:spiffe://test.local/gateway', `--grant-jwks-url=https://127.0.0.1:${port}/jwks.json`, `--checkpoint-dir=${join(sub, 'cp')}`, `--runtime-endpoint=${cri.endpoint}`], {})
    const agent = await startAgent(cfg, { log: memoryLogger() })
    const { Agent } = await import('undici')
    const client = new Agent({ connect: { ca: ids.pki.ca.certPem, cert: ids.gateway.certPem, key: ids.gateway.keyPem, servername: 'localhost' } })
    try {
      const { mintGrant } = await import('../support/agent-harness.ts')
      const r = await client.request({ origin: agent.url, path: '/checkpoints', method: 'GET', headers: { authorization: `Bearer ${await mintGrant(ids, { op: 'checkpoint:list', node: 'node-a' })}` } })
      assert.equal(r.statusCode, 503)
      assert.equal((await body(r)).code, 'auth_unavailable')
    } finally {
      await client.close()
      await agent.shutdown(1000)
      await cri.stop()
    }
  })

  it('after the grace period fails queued checkpoints but still waits for the one in the runtime', async () => {
    const s = await stack(['--max-concurrent=1'], { checkpointDelayMs: 1500 })
    try {
      const running = checkpoint(s.a, T)
      await poll(async () => (s.cri.checkpointCalls.length === 1 ? true : undefined), 10_000, 'the first checkpoint in the runtime', 10)
      const queued = checkpoint(s.a, { ...T, pod: 'web-1' })
      await poll(async () => (s.a.agent.metrics.queueDepth === 1 ? true : undefined), 10_000, 'the second one queued', 10)
      // Their answers are read below: a cut connection must not fail the test first as an unhandled rejection.
      for (const p of [running, queued]) p.catch(() => {})
      // Whether the runtime call had been answered when shutdown resolved, read at that moment.
      const result = await s.a.agent.shutdown(100).then((r) => ({ ...r, runtimeAnswered: s.cri.checkpointCalls[0]!.answered }))
      assert.deepEqual(result, { clean: false, runtimeAnswered: true }, 'shutdown waited for the runtime call')
      const [a, b] = await Promise.all([running, queued])
      assert.equal(a.statusCode, 200)
      await a.body.dump()
      assert.equal(b.statusCode, 503)
      assert.equal((await body(b)).code, 'shutting_down')
      assert.equal(s.cri.checkpointCalls.length, 1)
      assert.equal(s.a.agent.checkpointer.runtimeCalls, 0)
    } finally { await s.stop() }
  })

  it('re-reads a rotated grant key file: a grant from the new key is honoured', async () => {
    const s = await stack(['--tls-reload-interval=1s'])
    const original = await readFile(ids.jwksFile)
    try {
      const { generateKeyPair, exportJWK } = await import('jose')
      const { mintGrant } = await import('../support/agent-harness.ts')
      const next = await generateKeyPair('EdDSA', { extractable: true })
      const rotated = { ...ids, grantKey: next.privateKey, kid: 'grant-key-2' }
      const mint = () => mintGrant(rotated, { op: 'checkpoint:list', node: s.a.node })
      const before = await s.a.fetch('/checkpoints', { headers: { authorization: `Bearer ${await mint()}` } })
      assert.equal(before.statusCode, 401)
      assert.equal((await body(before)).code, 'invalid_grant')
      const jwks = JSON.parse(original.toString())
      jwks.keys.push({ ...(await exportJWK(next.publicKey)), kid: 'grant-key-2', alg: 'EdDSA', use: 'sig' })
      await writeFile(ids.jwksFile, JSON.stringify(jwks))
      let status = 0
      for (let i = 0; i < 30 && status !== 200; i++) {
        await new Promise((r) => setTimeout(r, 200))
        const r = await s.a.fetch('/checkpoints', { headers: { authorization: `Bearer ${await mint()}` } })
        status = r.statusCode
        await r.body.dump()
      }
      assert.equal(status, 200)
    } finally {
      await writeFile(ids.jwksFile, original)
      await s.stop()
    }
  })

  it('re-reads rotated certificates for new connections while an open stream goes on', async () => {
    const s = await stack(['--tls-reload-interval=1s'], { checkpointDelayMs: 2500 })
    try {
      const streaming = checkpoint(s.a, T, '', { accept: 'application/x-ndjson' })
      await new Promise((r) => setTimeout(r, 300))
      const next = await s.a.ids.pki.issue('server2', { cn: 'agent-rotated', dns: ['localhost'], ips: ['127.0.0.1'] })
      // The harness points the agent at ids.server's files: rotate those in place.
      const orig = { cert: await readFile(ids.server.cert), key: await readFile(ids.server.key) }
      await copyFile(next.cert, ids.server.cert)
      await copyFile(next.key, ids.server.key)
      try {
        const { connect } = await import('node:tls')
        let cn = ''
        for (let i = 0; i < 30 && cn !== 'agent-rotated'; i++) {
          await new Promise((r) => setTimeout(r, 200))
          cn = await new Promise<string>((resolve, reject) => {
            const sock = connect({ host: '127.0.0.1', port: s.a.agent.address.port, ca: ids.pki.ca.certPem, cert: ids.gateway.certPem, key: ids.gateway.keyPem, servername: 'localhost' }, () => {
              resolve(String(sock.getPeerCertificate().subject.CN))
              sock.end()
            })
            sock.on('error', reject)
          })
        }
        assert.equal(cn, 'agent-rotated')
        const r = await streaming
        const last = parseEvent((await r.body.text()).trim().split('\n').at(-1)!)
        assert.equal(last.type, 'completed')
      } finally {
        await writeFile(ids.server.cert, orig.cert)
        await writeFile(ids.server.key, orig.key)
      }
    } finally { await s.stop() }
  })
})
