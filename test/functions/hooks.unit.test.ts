/**
 * Pieces of the webhook feature on their own: config, payload parsing, the Grafana signature,
 * backoff, the SQL operation store (node:sqlite in memory), the runner, and both queue adapters.
 */
import assert from 'node:assert/strict'
import { createHmac } from 'node:crypto'
import { describe, it } from 'node:test'
import { CheckpointError } from '../../shared/errors.ts'
import { parseNotification } from '../../functions/hooks/alerts.ts'
import { parseHooksConfig } from '../../functions/hooks/config.ts'
import { verifyGrafanaSignature } from '../../functions/hooks/signature.ts'
import { consumeBatch, cloudflareQueue } from '../../functions/workers/queue.ts'
import { nodeJobQueue } from '../../functions/node/queue.ts'
import type { JobOutcome, OperationRecord } from '../../functions/operations/model.ts'
import { backoffMs, createRunner, type RunnerDeps } from '../../functions/operations/runner.ts'
import { sqliteDriver } from '../../functions/node/sqlite.ts'
import { SCHEMA, sqlOperationStore } from '../../functions/operations/store.ts'
import { alertmanagerPayload, grafanaPayload } from '../support/gateway/hooks-payloads.ts'

const secret = (n: string) => (n === 'S' ? 'k' : undefined)

function op(over: Partial<OperationRecord> = {}): OperationRecord {
  const id = over.id ?? crypto.randomUUID()
  return {
    id,
    state: 'queued',
    source: 'alertmanager',
    alert: 'A',
    fingerprint: 'f' + id.slice(0, 8),
    startsAt: '2026-11-25T10:00:00Z',
    dedupKey: `f${id.slice(0, 8)}@2026-11-25T10:00:00Z`,
    cluster: 'prod',
    namespace: 'shop',
    pod: `web-${id.slice(0, 4)}`,
    container: 'app',
    sub: 'am',
    attempts: 0,
    createdAt: 1000,
    updatedAt: 1000,
    ...over,
  }
}

describe('hooks config', () => {
  it('has defaults', () => {
    const c = parseHooksConfig({}, secret)
    assert.deepEqual(c.select, [{ checkpoint: ['true'] }])
    assert.equal(c.labels.pod, 'pod')
    assert.equal(c.maxBodyBytes, 1 << 20)
    assert.equal(c.grafana, undefined)
  })
  // Configuration errors are plain Errors without a code: the check is the setting the message
  // opens with, and never a TypeError (a crash on the way would pass a bare `Error`).
  for (const [name, raw, setting] of [
    ['empty select', { select: [] }, /^config: hooks\.select /],
    ['select value not a string', { select: [{ a: 1 }] }, /^config: hooks\.select\[0\]\.a /],
    ['negative cooldown', { cooldownSec: -1 }, /^config: hooks\.cooldownSec /],
    ['zero attempts', { retry: { maxAttempts: 0 } }, /^config: hooks\.retry\.maxAttempts /],
    ['unset grafana secret', { grafana: { secretName: 'NOPE' } }, /^config: secret NOPE \(hooks\.grafana\.secretName\)/],
    ['empty label name', { labels: { pod: '' } }, /^config: hooks\.labels\.pod /],
  ] as const) {
    it(`rejects ${name}`, () => assert.throws(() => parseHooksConfig(raw, secret), (err) => err instanceof Error && !(err instanceof TypeError) && setting.test(err.message)))
  }
  it('resolves the grafana secret by name', () => {
    const c = parseHooksConfig({ grafana: { secretName: 'S', timestampHeader: 'X-Ts' } }, secret)
    assert.equal(c.grafana?.secret, 'k')
    assert.equal(c.grafana?.header, 'X-Grafana-Alerting-Signature')
  })
})

describe('payloads', () => {
  it('parses both versions and ignores unknown keys', async () => {
    const am = await parseNotification('alertmanager', JSON.stringify(alertmanagerPayload([{ labels: { a: 'b' } }], { notification_reason: 'x', truncatedAlerts: 2 })))
    assert.equal(am.truncatedAlerts, 2)
    assert.equal(am.alerts[0]!.status, 'firing')
    const gf = await parseNotification('grafana', JSON.stringify(grafanaPayload([{ labels: { a: 'b' }, status: 'resolved' }])))
    assert.equal(gf.alerts[0]!.status, 'resolved')
  })
  it('versions are not interchangeable', async () => {
    await assert.rejects(parseNotification('grafana', JSON.stringify(alertmanagerPayload([]))), (e: CheckpointError) => e.code === 'invalid_body' && e.field === 'version')
  })
  it('derives a stable fingerprint when none is given', async () => {
    const body = (labels: Record<string, string>) => JSON.stringify({ version: '4', alerts: [{ status: 'firing', labels, startsAt: '2026-01-01T00:00:00Z' }] })
    const a = await parseNotification('alertmanager', body({ x: '1', y: '2' }))
    const b = await parseNotification('alertmanager', body({ y: '2', x: '1' }))
    const c = await parseNotification('alertmanager', body({ x: '1', y: '3' }))
    assert.match(a.alerts[0]!.fingerprint, /^[0-9a-f]{16}$/)
    assert.equal(a.alerts[0]!.fingerprint, b.alerts[0]!.fingerprint)
    assert.notEqual(a.alerts[0]!.fingerprint, c.alerts[0]!.fingerprint)
  })
  for (const [name, body, field] of [
    ['not an object', '[]', 'body'],
    ['bad truncatedAlerts', JSON.stringify({ version: '4', alerts: [], truncatedAlerts: -1 }), 'truncatedAlerts'],
  ] as const) {
    it(`rejects ${name}`, async () => {
      await assert.rejects(parseNotification('alertmanager', body), (e: CheckpointError) => e.code === 'invalid_body' && e.field === field)
    })
  }
  it('an alert without its own status takes the notification\'s', async () => {
    const body = (status?: string) => JSON.stringify({ version: '4', ...(status ? { status } : {}), alerts: [{ labels: { a: 'b' }, startsAt: '2026-01-01T00:00:00Z' }] })
    assert.deepEqual((await parseNotification('alertmanager', body('firing'))).alerts.map((a) => [a.status, a.invalid]), [['firing', undefined]])
    assert.deepEqual((await parseNotification('alertmanager', body('resolved'))).alerts.map((a) => [a.status, a.invalid]), [['resolved', undefined]])
    // Neither says: that alert is unusable, the notification is not.
    assert.deepEqual((await parseNotification('alertmanager', body())).alerts.map((a) => a.invalid), ['alerts[0].status'])
  })
  const ok = { status: 'firing', labels: { a: 'b' }, startsAt: '2026-01-01T00:00:00Z' }
  for (const [name, odd, field] of [
    ['bad startsAt', { status: 'firing', startsAt: 'yesterday' }, 'alerts[0].startsAt'],
    ['annotations not strings', { ...ok, annotations: { a: {} } }, 'alerts[0].annotations'],
    ['labels not strings', { ...ok, labels: { a: 1 } }, 'alerts[0].labels'],
    ['an unknown status', { ...ok, status: 'pending' }, 'alerts[0].status'],
    ['a long fingerprint', { ...ok, fingerprint: 'f'.repeat(129) }, 'alerts[0].fingerprint'],
    ['not an object', 'x', 'alerts[0]'],
  ] as const) {
    it(`an alert with ${name} is marked invalid; the one beside it is kept`, async () => {
      const n = await parseNotification('alertmanager', JSON.stringify({ version: '4', status: 'firing', alerts: [odd, ok] }))
      assert.deepEqual(n.alerts.map((a) => a.invalid), [field, undefined])
      assert.equal(n.alerts[1]!.status, 'firing')
    })
  }
})

describe('grafana signature', () => {
  const cfg = { secret: 'k', header: 'X-Sig', maxAgeSec: 60, subject: 'g', groups: [] }
  const body = new TextEncoder().encode('{"a":1}')
  const sig = (data: string, key = 'k') => createHmac('sha256', key).update(data).digest('hex')
  it('body only', async () => {
    assert.deepEqual(await verifyGrafanaSignature(cfg, new Headers({ 'X-Sig': sig('{"a":1}') }), body, 0), { ok: true })
    assert.deepEqual(await verifyGrafanaSignature(cfg, new Headers({ 'X-Sig': sig('{"a":1}', 'other') }), body, 0), { ok: false, reason: 'mismatch' })
    assert.deepEqual(await verifyGrafanaSignature(cfg, new Headers({}), body, 0), { ok: false, reason: 'missing' })
    assert.deepEqual(await verifyGrafanaSignature(cfg, new Headers({ 'X-Sig': 'abc' }), body, 0), { ok: false, reason: 'malformed' })
  })
  it('with a timestamp', async () => {
    const c = { ...cfg, timestampHeader: 'X-Ts' }
    const now = 1_800_000_000_000
    const ts = String(now / 1000)
    assert.deepEqual(await verifyGrafanaSignature(c, new Headers({ 'X-Sig': sig(`${ts}:{"a":1}`), 'X-Ts': ts }), body, now), { ok: true })
    assert.deepEqual(await verifyGrafanaSignature(c, new Headers({ 'X-Sig': sig(`${ts}:{"a":1}`), 'X-Ts': ts }), body, now + 61_000), { ok: false, reason: 'stale' })
    assert.deepEqual(await verifyGrafanaSignature(c, new Headers({ 'X-Sig': sig('{"a":1}'), 'X-Ts': ts }), body, now), { ok: false, reason: 'mismatch' })
    assert.deepEqual(await verifyGrafanaSignature(c, new Headers({ 'X-Sig': sig('{"a":1}') }), body, now), { ok: false, reason: 'missing' })
  })
})

describe('backoff', () => {
  const r = { maxAttempts: 5, baseDelayMs: 1000, maxDelayMs: 5000 }
  it('doubles, honours Retry-After, caps', () => {
    assert.deepEqual([1, 2, 3, 4].map((a) => backoffMs(r, a)), [1000, 2000, 4000, 5000])
    assert.equal(backoffMs(r, 1, 3), 3000)
    assert.equal(backoffMs(r, 1, 600), 5000)
  })
})

describe('operation store (node:sqlite)', () => {
  const fresh = () => sqlOperationStore(sqliteDriver(':memory:'))
  it('create-if-absent: created, duplicate by dedup key, cooldown by target', async () => {
    const s = fresh()
    const a = op()
    assert.equal((await s.createIfAbsent(a, 0)).outcome, 'created')
    const dup = await s.createIfAbsent({ ...a, id: crypto.randomUUID() }, 0)
    assert.equal(dup.outcome, 'duplicate')
    assert.equal(dup.outcome === 'duplicate' && dup.op.id, a.id)
    const sameTarget = op({ pod: a.pod, createdAt: 2000 })
    assert.equal((await s.createIfAbsent(sameTarget, 500)).outcome, 'cooldown')
    assert.equal((await s.createIfAbsent(sameTarget, 1000)).outcome, 'created')
  })
  it('skipped records never block', async () => {
    const s = fresh()
    const skipped = op({ state: 'skipped', reason: 'storm' })
    delete skipped.dedupKey
    await s.insert(skipped)
    assert.equal((await s.createIfAbsent(op({ pod: skipped.pod }), 0)).outcome, 'created')
    assert.equal((await s.get(skipped.id))?.reason, 'storm')
  })
  it('claim is once; a stale lease is taken over', async () => {
    const s = fresh()
    const a = op()
    await s.createIfAbsent(a, 0)
    const c1 = await s.claim(a.id, 2000, 0)
    assert.deepEqual([c1?.state, c1?.attempts], ['running', 1])
    assert.equal(await s.claim(a.id, 2001, 1000), null)
    const c2 = await s.claim(a.id, 9000, 5000)
    assert.equal(c2?.attempts, 2)
  })
  it('update, due, requeueRunning, list', async () => {
    const s = fresh()
    const [a, b, c] = [op({ createdAt: 1 }), op({ createdAt: 2, namespace: 'pay' }), op({ createdAt: 3 })]
    for (const x of [a, b, c]) await s.createIfAbsent(x, 0)
    await s.claim(a.id, 10, 0)
    await s.update(a.id, { state: 'queued', updatedAt: 11, notBefore: 100, error: { code: 'bad_gateway', message: 'm', status: 502 } })
    await s.claim(b.id, 10, 0)
    assert.deepEqual(await s.due(50, 10), [c.id])
    assert.deepEqual(await s.due(100, 10), [a.id, c.id])
    assert.equal(await s.requeueRunning(20), 1)
    assert.deepEqual(await s.due(100, 10), [a.id, b.id, c.id])
    assert.equal((await s.get(a.id))?.error?.code, 'bad_gateway')
    assert.deepEqual((await s.list({ namespace: 'pay', limit: 10 })).map((o) => o.id), [b.id])
    assert.deepEqual((await s.list({ cluster: 'prod', limit: 2 })).map((o) => o.id), [c.id, b.id])
    assert.deepEqual(await s.list({ state: 'succeeded', limit: 10 }), [])
  })
})

/** Runner deps with the tests' usual timing; `d` gives the store, queue, agent and what differs. */
const runnerDeps = (d: Pick<RunnerDeps, 'store' | 'queue' | 'checkpoint' | 'reconcile'> & Partial<RunnerDeps>): RunnerDeps => ({
  clock: { now: () => 1000 },
  log: () => {},
  retry: { maxAttempts: 2, baseDelayMs: 100, maxDelayMs: 1000 },
  timeoutSec: 30,
  leaseMs: 60_000,
  dispatchWindowMs: 5000,
  ...d,
})

describe('runner', () => {
  const retry = { maxAttempts: 2, baseDelayMs: 100, maxDelayMs: 1000 }
  async function run(outcomes: JobOutcome[]) {
    const store = sqlOperationStore(sqliteDriver(':memory:'))
    const sent: Array<[string, number | undefined]> = []
    // The runner catches what its dependencies throw: calls are recorded and asserted afterwards.
    const reconciled: unknown[] = []
    let now = 1000
    const runner = createRunner(runnerDeps({
      store,
      queue: { send: async (id, d) => void sent.push([id, d]) },
      checkpoint: async (job) => {
        await job.dispatching?.('n1')
        return outcomes.shift()!
      },
      reconcile: async (job, since) => (reconciled.push([job.requestId, since]), null),
      clock: { now: () => now++ },
      retry,
    }))
    const a = op()
    await store.createIfAbsent(a, 0)
    return { store, sent, reconciled, runner, id: a.id }
  }
  const fail = (status: number, retryable: boolean): JobOutcome => ({ ok: false, status, code: 'x', message: 'm', retryable })
  it('retries a retryable failure with backoff, then fails', async () => {
    const { store, sent, reconciled, runner, id } = await run([fail(503, true), fail(503, true)])
    await runner(id)
    assert.deepEqual(reconciled, [], 'reconcile without a dispatch')
    const q = await store.get(id)
    assert.deepEqual([q?.state, q?.attempts, q?.dispatchedAt], ['queued', 1, undefined])
    assert.deepEqual(sent, [[id, 100]])
    await runner(id)
    const f = await store.get(id)
    assert.deepEqual([f?.state, f?.attempts, f?.error?.status], ['failed', 2, 503])
    await runner(id) // a late redelivery is a no-op
    assert.equal((await store.get(id))?.attempts, 2)
    assert.deepEqual(reconciled, [], 'reconcile without a dispatch')
  })
  it('a non-retryable failure is final at once', async () => {
    const { store, reconciled, runner, id } = await run([fail(404, false)])
    await runner(id)
    assert.deepEqual(reconciled, [], 'reconcile without a dispatch')
    assert.deepEqual([(await store.get(id))?.state, (await store.get(id))?.attempts], ['failed', 1])
  })
  it('records success', async () => {
    const archive = { name: 'checkpoint-w_shop-app-2026-01-01T00:00:00Z.tar', size: 1, sha256: 'a'.repeat(64), created: '2026-01-01T00:00:00Z' }
    const { store, reconciled, runner, id } = await run([{ ok: true, node: 'n1', archive, download: '/d' }])
    await runner(id)
    assert.deepEqual(reconciled, [], 'reconcile without a dispatch')
    const s = await store.get(id)
    assert.deepEqual([s?.state, s?.node, s?.result?.archive.sha256], ['succeeded', 'n1', archive.sha256])
  })
})

describe('runner: a job found again after its dispatch', () => {
  const archive = { name: 'checkpoint-w_shop-app-2026-01-01T00:00:00Z.tar', size: 1, sha256: 'a'.repeat(64), created: '2026-01-01T00:00:00Z' }
  /** A job the last process dispatched at t=1000 and then lost (its record is still running). */
  async function lost(found: Array<JobOutcome | null>) {
    const store = sqlOperationStore(sqliteDriver(':memory:'))
    const sent: Array<[string, number | undefined]> = []
    // The runner catches what its dependencies throw: calls are recorded and asserted afterwards.
    const looked: number[] = []
    const lookedOn: string[] = []
    const resent: string[] = []
    let now = 2000
    const runner = createRunner(runnerDeps({
      store,
      queue: { send: async (id, d) => void sent.push([id, d]) },
      checkpoint: async (job) => {
        resent.push(job.requestId)
        return { ok: false, status: 500, code: 'internal', message: 'sent again', retryable: false }
      },
      reconcile: async (job, since) => {
        lookedOn.push(job.node)
        looked.push(since)
        return found.shift()!
      },
      clock: { now: () => now },
    }))
    const a = op()
    await store.createIfAbsent(a, 0)
    await store.claim(a.id, 1000, 0)
    await store.markDispatched(a.id, 1000, 'n1')
    await store.requeueRunning(1500) // the restart
    /** Nothing went to the agent again, and every look was on the dispatch's node. */
    const neverResent = () => {
      assert.deepEqual(resent, [], 'a dispatched job was sent to the agent again')
      assert.deepEqual(lookedOn, looked.map(() => 'n1'), 'looked on the node the job was dispatched to')
    }
    return { store, sent, looked, neverResent, runner, id: a.id, at: (t: number) => void (now = t) }
  }
  it('its archive on the node → succeeded with it, no second request', async () => {
    const { store, looked, neverResent, runner, id } = await lost([{ ok: true, node: 'n1', archive, download: '/d' }])
    await runner(id)
    neverResent()
    const s = await store.get(id)
    assert.deepEqual([s?.state, s?.result?.archive.name, s?.node], ['succeeded', archive.name, 'n1'])
    assert.deepEqual(looked, [1000])
  })
  it('none yet → waits within the dispatch window, then fails as interrupted; never re-sent', async () => {
    const { store, sent, looked, neverResent, runner, id, at } = await lost([null, null, null])
    await runner(id)
    neverResent()
    let s = await store.get(id)
    assert.deepEqual([s?.state, s?.dispatchedAt, sent.length], ['queued', 1000, 1])
    at(5900)
    await runner(id)
    s = await store.get(id)
    assert.equal(s?.state, 'queued')
    assert.ok(sent[1]![1]! <= 101, 'the last look is just after the window closes')
    at(6001)
    await runner(id)
    s = await store.get(id)
    assert.deepEqual([s?.state, s?.error?.code, s?.error?.status], ['failed', 'checkpoint_failed', 500])
    assert.deepEqual(looked, [1000, 1000, 1000])
    neverResent()
  })
  it('a list that cannot be read is not a retry of the checkpoint either', async () => {
    const { store, looked, neverResent, runner, id, at } = await lost([{ ok: false, status: 502, code: 'bad_gateway', message: 'm', retryable: false }])
    at(9000)
    await runner(id)
    neverResent()
    assert.deepEqual(looked, [1000])
    assert.deepEqual([(await store.get(id))?.state, (await store.get(id))?.error?.code], ['failed', 'checkpoint_failed'])
  })
  it('a dispatch the store could not record is not sent, and is retried', async () => {
    const store = sqlOperationStore(sqliteDriver(':memory:'))
    const sent: unknown[] = []
    const reached: string[] = []
    const runner = createRunner(runnerDeps({
      store: { ...store, markDispatched: async () => Promise.reject(new Error('store down')) },
      queue: { send: async (id) => void sent.push(id) },
      checkpoint: async (job) => {
        await job.dispatching?.('n1')
        reached.push(job.requestId)
        return { ok: true, node: 'n1', archive, download: '/d' }
      },
      reconcile: async () => null,
      retry: { maxAttempts: 3, baseDelayMs: 100, maxDelayMs: 1000 },
    }))
    const a = op()
    await store.createIfAbsent(a, 0)
    await runner(a.id)
    assert.deepEqual(reached, [])
    const s = await store.get(a.id)
    assert.deepEqual([s?.state, s?.dispatchedAt, sent], ['queued', undefined, [a.id]])
  })
})

describe('operation store: migration', () => {
  it('a table from before dispatched_at gets the column, once, and keeps its rows', async () => {
    const db = sqliteDriver(':memory:')
    const old = SCHEMA[0]!.replace(/,\s*dispatched_at INTEGER/, '')
    assert.notEqual(old, SCHEMA[0])
    await db.run(old, [])
    const a = op()
    await db.run(`INSERT INTO operations (id, dedup_key, target_key, state, source, alert, fingerprint, starts_at, cluster, namespace, pod, container, sub, attempts, created_at, updated_at) VALUES (?, ?, 'k', 'queued', 'alertmanager', 'A', 'f', 's', 'prod', 'shop', 'web', 'app', 'am', 0, 1, 1)`, [a.id, 'x@y'])
    const s = sqlOperationStore(db)
    assert.equal((await s.get(a.id))?.state, 'queued')
    await s.claim(a.id, 10, 0)
    await s.markDispatched(a.id, 20, 'n1')
    assert.deepEqual([(await s.get(a.id))?.dispatchedAt, (await s.get(a.id))?.node], [20, 'n1'])
    // A second store on the same database (another isolate): the guarded ALTER is a no-op.
    assert.equal((await sqlOperationStore(db).get(a.id))?.dispatchedAt, 20)
  })
})

describe('queues', () => {
  it('node queue: bounded concurrency; what does not fit is found by the sweep', async () => {
    const store = sqlOperationStore(sqliteDriver(':memory:'))
    const ids: string[] = []
    for (let i = 0; i < 5; i++) {
      const o = op({ createdAt: i })
      ids.push(o.id)
      await store.createIfAbsent(o, -1)
    }
    let running = 0
    let peak = 0
    const done: string[] = []
    const q = nodeJobQueue({
      store,
      now: () => 10,
      log: () => {},
      concurrency: 2,
      capacity: 2,
      sweepMs: 20,
      run: async (id) => {
        running++
        peak = Math.max(peak, running)
        await new Promise((r) => setTimeout(r, 10))
        await store.claim(id, 10, 0)
        await store.update(id, { state: 'succeeded', updatedAt: 11 })
        done.push(id)
        running--
      },
    })
    await q.start()
    for (const id of ids) await q.send(id)
    const deadline = Date.now() + 5000
    while (done.length < 5 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 10))
    await q.close(1000)
    assert.deepEqual(done.sort(), ids.sort())
    assert.ok(peak <= 2)
  })
  it('cloudflare producer rounds delays up to seconds', async () => {
    const sent: unknown[] = []
    const q = cloudflareQueue({ send: async (b, o) => void sent.push([b, o]) })
    await q.send('a')
    await q.send('b', 1500)
    assert.deepEqual(sent, [[{ id: 'a' }, {}], [{ id: 'b' }, { delaySeconds: 2 }]])
  })
  it('consumer acks done messages and retries failed ones', async () => {
    const acts: string[] = []
    const msg = (id: unknown) => ({ body: { id }, ack: () => void acts.push(`ack ${id}`), retry: () => void acts.push(`retry ${id}`) })
    await consumeBatch([msg('ok'), msg('boom'), msg(7)], async (id) => {
      if (id === 'boom') throw new Error('store down')
    }, () => {})
    assert.deepEqual(acts.sort(), ['ack 7', 'ack ok', 'retry boom'])
  })
})

describe('operation store: due and leases', () => {
  it('a retry is not claimed before it is due; an abandoned run is found by due()', async () => {
    const s = sqlOperationStore(sqliteDriver(':memory:'))
    const a = op()
    const b = op()
    await s.createIfAbsent(a, 0)
    await s.createIfAbsent(b, 0)
    await s.claim(a.id, 10, 0)
    await s.update(a.id, { state: 'queued', updatedAt: 10, notBefore: 5000 })
    assert.equal(await s.claim(a.id, 1000, 0), null)
    assert.equal((await s.claim(a.id, 5000, 0))?.attempts, 2)
    await s.claim(b.id, 20, 0)
    assert.deepEqual(await s.due(30, 10), [])
    assert.deepEqual(await s.due(30, 10, 25), [b.id])
  })
})
