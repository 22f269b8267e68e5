/** The webhook suite against the Worker bundle in miniflare: D1 and Queues in real workerd. */
import assert from 'node:assert/strict'
import { after, before, describe, it } from 'node:test'
import { d1Driver } from '../../functions/operations/d1.ts'
import { sqlOperationStore } from '../../functions/operations/store.ts'
import { makeWorld, type World } from './fixtures.ts'
import { waitFor, hooksSuite } from './hooks-fixtures/suite.ts'
import { hooksConfig, workerHooksTarget, type WorkerHooksTarget } from './hooks-fixtures/targets.ts'
import { removeBundle } from './targets.ts'

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
})
