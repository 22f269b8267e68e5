/**
 * The webhook handler without a server (app.request): what happens when the queue refuses a
 * send. The record is written first, the answer is 5xx so the sender retries, and the retry
 * finds the record and sends it again — nothing accepted is lost.
 */
import assert from 'node:assert/strict'
import { after, before, describe, it } from 'node:test'
import { createGateway } from '../../functions/app.ts'
import { parseConfig } from '../../functions/config.ts'
import { loadGrantKeys } from '../../functions/grants.ts'
import { sqliteDriver } from '../../functions/node/sqlite.ts'
import { sqlOperationStore } from '../../functions/operations/store.ts'
import { makeWorld, type World } from '../support/gateway/fixtures.ts'
import { alertmanagerPayload } from '../support/gateway/hooks-payloads.ts'
import { firing } from './hooks.suite.ts'
import { AM_CLIENT, GRAFANA_SECRET, hooksConfig } from '../support/gateway/hooks-targets.ts'

describe('webhook handler: queue failures', () => {
  let world: World
  before(async () => {
    world = await makeWorld()
  })
  after(() => world?.close())

  it('a failed send answers 500; the retried notification re-sends the recorded job', async () => {
    const raw = hooksConfig(world)
    raw.auth = { ...(raw.auth as object), jwks: world.idp.jwks, jwksUrl: undefined }
    const config = parseConfig(JSON.parse(JSON.stringify(raw)), (n) => (n === 'GRAFANA_SECRET' ? GRAFANA_SECRET : n === 'KUBE_TOKEN_PROD' ? 'x' : undefined))
    const store = sqlOperationStore(sqliteDriver(':memory:'))
    const sent: string[] = []
    let broken = true
    const gw = createGateway({
      config,
      agents: { fetch: async () => new Response(null, { status: 599 }) },
      keys: await loadGrantKeys(world.grantKeys),
      clock: { now: Date.now },
      log: () => {},
      operations: {
        store,
        queue: {
          async send(id) {
            if (broken) throw new Error('queue unavailable')
            sent.push(id)
          },
        },
      },
    })
    const token = await world.token({ sub: 'am', azp: AM_CLIENT, scope: 'checkpoint:create' })
    const body = JSON.stringify(alertmanagerPayload([firing('shop-q', 'web', { node: 'node-a' })]))
    const post = () => gw.app.request('/v1/hooks/alertmanager', { method: 'POST', headers: { authorization: `Bearer ${token}`, 'content-type': 'application/json' }, body })
    const first = await post()
    assert.equal(first.status, 500)
    assert.equal(((await first.json()) as { code: string }).code, 'internal')
    const [rec] = await store.list({ namespace: 'shop-q', limit: 10 })
    assert.equal(rec?.state, 'queued')
    broken = false
    const second = await post()
    assert.equal(second.status, 200)
    const a = (await second.json()) as { alerts: Array<{ outcome: string; operation: string }> }
    assert.deepEqual([a.alerts[0]!.outcome, a.alerts[0]!.operation], ['duplicate', rec!.id])
    assert.deepEqual(sent, [rec!.id])
  })
})
