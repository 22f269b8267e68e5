/**
 * Node only: nothing accepted is lost across a restart (same node:sqlite file), and a run of
 * 10-alert notifications is accepted whole.
 */
import assert from 'node:assert/strict'
import { after, before, describe, it } from 'node:test'
import { makeWorld, type World } from '../support/gateway/fixtures.ts'
import { alertmanagerPayload } from '../support/gateway/hooks-payloads.ts'
import { firing, waitFor } from './hooks.suite.ts'
import { AM_CLIENT, hooksConfig, nodeHooksTarget, tempDir } from '../support/gateway/hooks-targets.ts'
import type { GatewayUnderTest } from '../support/gateway/targets.ts'
import { sqliteDriver } from '../../functions/node/sqlite.ts'
import { sqlOperationStore } from '../../functions/operations/store.ts'

describe('webhooks on node: restarts', { timeout: 90_000 }, () => {
  let world: World
  let am: string
  let reader: string
  const tmp = tempDir()
  const open: GatewayUnderTest[] = []
  const start = async (raw: Record<string, unknown>, db: string, queue?: { concurrency?: number }) => {
    const gw = await nodeHooksTarget({ dbFile: `${tmp.dir}/${db}`, ...(queue ? { queue } : {}) })(world, raw)
    open.push(gw)
    return gw
  }
  const stop = async (gw: GatewayUnderTest) => {
    await gw.close()
    open.splice(open.indexOf(gw), 1)
  }
  const post = async (gw: GatewayUnderTest, body: unknown) => {
    const r = await gw.fetch('/v1/hooks/alertmanager', { method: 'POST', headers: { authorization: `Bearer ${am}`, 'content-type': 'application/json' }, body: JSON.stringify(body) })
    assert.equal(r.status, 202)
    return (await r.json()) as { accepted: number; alerts: Array<{ outcome: string; operation: string }> }
  }

  /** The suite's config plus cluster `flaky`, whose agent URL the test chooses. */
  const flakyConfig = (agentUrl: string, hooks: Record<string, unknown> = {}) => {
    const raw = hooksConfig(world, hooks)
    const clusters = raw.clusters as Record<string, Record<string, unknown>>
    clusters.flaky = { ...clusters.edge, agentUrl }
    for (const r of (raw.policy as { rules: Array<{ id: string; clusters: string[] }> }).rules) if (r.id === 'alertmanager') r.clusters.push('flaky')
    return raw
  }

  before(async () => {
    world = await makeWorld()
    am = await world.token({ sub: 'alertmanager', azp: AM_CLIENT, scope: 'checkpoint:create' })
    reader = await world.token({ sub: 'sam', groups: ['sre'], scope: 'checkpoint:read' })
  })
  after(async () => {
    for (const gw of open) await gw.close()
    await world?.close()
    tmp.remove()
  })

  it('accepted, stopped before the job ran, started again: the job completes', async () => {
    const raw = hooksConfig(world)
    const first = await start(raw, 'a.sqlite', { concurrency: 0 })
    const a = await post(first, alertmanagerPayload([firing('shop-restart', 'web', { node: 'node-a' })]))
    const id = a.alerts[0]!.operation
    assert.equal((await waitFor(first, reader, id, () => true)).state, 'queued')
    await stop(first)
    const second = await start(raw, 'a.sqlite')
    const op = await waitFor(second, reader, id)
    assert.equal(op.state, 'succeeded')
    assert.equal(op.attempts, 1)
    await stop(second)
  })

  it('agent down, gateway restarted, agent back: the retry on the new process completes', async () => {
    // The test must see the queued retry before it runs: 4 s leaves room on a busy machine.
    const hooks = { retry: { maxAttempts: 3, baseDelayMs: 4000, maxDelayMs: 4000 } }
    const first = await start(flakyConfig(`${world.deadUrl}/n/{node}`, hooks), 'b.sqlite')
    const a = await post(first, alertmanagerPayload([firing('shop-restart', 'web', { cluster: 'flaky', node: 'node-a' })]))
    const id = a.alerts[0]!.operation
    const waiting = await waitFor(first, reader, id, (o) => o.attempts === 1 && o.state === 'queued')
    assert.equal(waiting.error?.code, 'bad_gateway')
    await stop(first)
    const second = await start(flakyConfig(`${world.agent.url}/n/{node}`, hooks), 'b.sqlite')
    const op = await waitFor(second, reader, id)
    assert.equal(op.state, 'succeeded')
    assert.equal(op.attempts, 2)
    await stop(second)
  })

  it('a job that was running when the process died runs again at start', async () => {
    const file = `${tmp.dir}/d.sqlite`
    const db = sqliteDriver(file)
    const id = crypto.randomUUID()
    const now = Date.now()
    await sqlOperationStore(db).insert({
      id, state: 'running', source: 'alertmanager', alert: 'A', fingerprint: 'crashed', startsAt: '2026-11-25T10:00:00Z', dedupKey: 'crashed@2026-11-25T10:00:00Z',
      cluster: 'prod', namespace: 'shop-crash', pod: 'web', container: 'app', node: 'node-a', sub: 'alertmanager', attempts: 1, createdAt: now, updatedAt: now,
    })
    db.close()
    const gw = await start(hooksConfig(world), 'd.sqlite')
    const op = await waitFor(gw, reader, id)
    assert.deepEqual([op.state, op.attempts], ['succeeded', 2])
    await stop(gw)
  })

  it('a job already sent to the agent when the process stopped is reconciled, never sent again', async () => {
    const raw = hooksConfig(world)
    const path = '/checkpoint/shop-inflight/slow-4000ms/app'
    const first = await start(raw, 'e.sqlite')
    const a = await post(first, alertmanagerPayload([firing('shop-inflight', 'slow-4000ms', { node: 'node-a' })]))
    const id = a.alerts[0]!.operation
    const deadline = Date.now() + 5000
    while (!world.agent.seen.some((s) => s.path === path)) {
      assert.ok(Date.now() < deadline, 'the job never reached the agent')
      await new Promise((r) => setTimeout(r, 20))
    }
    // Stops while the agent is still checkpointing (the agent goes on regardless).
    await stop(first)
    const second = await start(raw, 'e.sqlite')
    const op = await waitFor(second, reader, id)
    assert.equal(op.state, 'succeeded')
    assert.equal(world.agent.seen.filter((s) => s.path === path && s.method === 'POST').length, 1, 'one checkpoint in all')
    assert.equal(world.agent.archives.get('node-a')?.has(op.archive!.name), true)
    assert.ok(second.logs.some((l) => l.type === 'operation' && l.operation === id && l.reconciled === true && l.state === 'succeeded'))
    await stop(second)
  })

  it('10-alert notifications, one after another, are each accepted whole', async () => {
    // Its answer latency was printed here as a figure; figures belong to test/bench.
    const gw = await start(hooksConfig(world, { maxPerNotification: 10, cooldownSec: 0 }), 'c.sqlite')
    for (let i = 0; i < 40; i++) {
      const alerts = Array.from({ length: 10 }, (_, j) => firing('shop-bench', `web-${i}-${j}`, { node: 'node-a' }))
      const a = await post(gw, alertmanagerPayload(alerts))
      assert.equal(a.accepted, 10)
    }
    await stop(gw)
  })
})
