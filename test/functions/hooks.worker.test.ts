/** The webhook suite against the Worker bundle in miniflare: D1 and Queues in real workerd. */
import assert from 'node:assert/strict'
import { after, before, describe, it } from 'node:test'
import { d1Driver } from '../../functions/workers/d1.ts'
import { SCHEMA, sqlOperationStore } from '../../functions/operations/store.ts'
import { makeWorld, type World } from '../support/gateway/fixtures.ts'
import { waitFor, hooksSuite } from './hooks.suite.ts'
import { GRAFANA_SECRET, hooksConfig, workerHooksTarget, type WorkerHooksTarget } from '../support/gateway/hooks-targets.ts'
import { alertmanagerPayload } from '../support/gateway/hooks-payloads.ts'
import { firing } from './hooks.suite.ts'
import { removeBundle, startWorkerGateway, worldBindings } from '../support/gateway/targets.ts'

after(removeBundle)

describe('webhooks on workerd', { timeout: 120_000 }, () => {
  hooksSuite(workerHooksTarget)
})

describe('webhooks on workerd: lost messages', { timeout: 60_000 }, () => {
  let world: World
  let gw: WorkerHooksTarget
  before(async () => {
    world = await makeWorld()
    gw = await workerHooksTarget(world, hooksConfig(world))
  })
  after(async () => {
    await gw?.close()
    await world?.close()
  })

  it('the cron sweep sends a queued job whose message never arrived', async () => {
    // A record as the webhook writes it, but no queue message (the send was lost).
    const store = sqlOperationStore(d1Driver(await gw.d1()))
    const id = crypto.randomUUID()
    const now = Date.now()
    const target = { cluster: 'prod', namespace: 'shop-lost', pod: 'web', container: 'app', node: 'node-a' }
    await store.insert({ id, state: 'queued', source: 'alertmanager', alert: 'A', fingerprint: 'lost', startsAt: '2026-11-25T10:00:00Z', dedupKey: 'lost@2026-11-25T10:00:00Z', ...target, sub: 'alertmanager', attempts: 0, createdAt: now, updatedAt: now })
    await gw.cron()
    const reader = await world.token({ sub: 'sam', groups: ['sre'], scope: 'checkpoint:read' })
    const op = await waitFor(gw, reader, id)
    assert.equal(op.state, 'succeeded')
    assert.equal(world.agent.seen.filter((s) => s.path === '/checkpoint/shop-lost/web/app').length, 1)
  })

  it('a D1 table from before dispatched_at is migrated on first use and its jobs run', async () => {
    const old = await workerHooksTarget(world, hooksConfig(world))
    try {
      const db = d1Driver(await old.d1())
      await db.run(SCHEMA[0]!.replace(/,\s*dispatched_at INTEGER/, ''), [])
      const id = crypto.randomUUID()
      const now = Date.now()
      await db.run(
        `INSERT INTO operations (id, dedup_key, target_key, state, source, alert, fingerprint, starts_at, cluster, namespace, pod, container, node, sub, attempts, created_at, updated_at) VALUES (?, ?, 'prod/shop-old/web/app', 'queued', 'alertmanager', 'A', 'old', '2026-11-25T10:00:00Z', 'prod', 'shop-old', 'web', 'app', 'node-a', 'alertmanager', 0, ?, ?)`,
        [id, 'old@2026-11-25T10:00:00Z', now, now],
      )
      await old.cron()
      const reader = await world.token({ sub: 'sam', groups: ['sre'], scope: 'checkpoint:read' })
      assert.equal((await waitFor(old, reader, id)).state, 'succeeded')
      const rows = await db.all('SELECT dispatched_at FROM operations WHERE id = ?', [id])
      assert.equal(rows.length, 1, 'the migrated row is still there')
      assert.equal(typeof rows[0]!.dispatched_at, 'number', 'its dispatch was recorded in the new column')
    } finally {
      await old.close()
    }
  })

  it('hooks configured without the D1 or queue binding: a configuration error (500, retried), not a 404', async () => {
    const bare = await startWorkerGateway(worldBindings(world, hooksConfig(world), { GRAFANA_SECRET }))
    try {
      const am = await world.token({ sub: 'alertmanager', azp: 'alertmanager', scope: 'checkpoint:create' })
      const r = await bare.fetch('/v1/hooks/alertmanager', { method: 'POST', headers: { authorization: `Bearer ${am}`, 'content-type': 'application/json' }, body: JSON.stringify(alertmanagerPayload([firing('shop-nobind', 'web', { node: 'node-a' })])) })
      assert.equal(r.status, 500)
      assert.equal(((await r.json()) as { code: string }).code, 'internal')
      // workerd's console reaches us asynchronously: wait (bounded) for the start-up error line.
      for (let i = 0; i < 200 && !bare.logs.some((l) => l.type === 'error'); i++) await new Promise((res) => setTimeout(res, 50))
      assert.ok(bare.logs.some((l) => l.type === 'error'))
    } finally {
      await bare.close()
    }
  })
})
