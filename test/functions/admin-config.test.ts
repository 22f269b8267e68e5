/**
 * The admin API (/v1/admin/config) on Node (node:sqlite) and in workerd (the Worker bundle with
 * real D1): read with ETag, change with If-Match, dry runs and their summaries, history, the
 * refresh bound, refusals (403, 409, 412, 428, 400) — the suite in admin.suite.ts. And the
 * summary and the source settings on their own.
 */
import assert from 'node:assert/strict'
import { after, before, describe, it } from 'node:test'
import { capSummary, summarize } from '../../functions/admin/diff.ts'
import { configSourceSettings } from '../../functions/admin/source.ts'
import { adminSuite, nodeAdminTarget, workerAdminTarget } from './admin.suite.ts'
import { makeWorld } from '../support/gateway/fixtures.ts'
import { removeBundle, startWorkerGateway, worldBindings } from '../support/gateway/targets.ts'

after(removeBundle)

describe('admin config on node', { timeout: 60_000 }, () => {
  adminSuite({ store: nodeAdminTarget('store'), variable: nodeAdminTarget('variable') })
})

describe('admin config on workerd', { timeout: 120_000 }, () => {
  adminSuite({ store: workerAdminTarget('store'), variable: workerAdminTarget('variable') })
})

describe('workerd: concurrent requests share one configuration check', { timeout: 120_000 }, () => {
  // An isolate checks the store at most every GATEWAY_CONFIG_REFRESH_MS and concurrent requests
  // wait for the same check (functions/live.ts): in workerd a promise made during one request is
  // awaited by others. With the refresh at 0 every request checks; a cold isolate's first build
  // is shared too. None may hang or fail.
  let world: Awaited<ReturnType<typeof makeWorld>>
  let gw: Awaited<ReturnType<typeof startWorkerGateway>>
  before(async () => {
    world = await makeWorld()
    gw = await startWorkerGateway({ ...worldBindings(world, world.rawConfig(), { GATEWAY_CONFIG_SOURCE: 'store', GATEWAY_CONFIG_REFRESH_MS: '0' }), bindings: { d1: true } })
  })
  after(async () => {
    await gw?.close()
    await world?.close()
  })

  it('40 concurrent requests, 5 times from a cold isolate: every one answers 200', async () => {
    const token = await world.token({ sub: 'sam', groups: ['sre'], scope: 'checkpoint:read' })
    for (let round = 0; round < 5; round++) {
      const statuses = await Promise.all(Array.from({ length: 40 }, () =>
        fetch(`${gw.url}/v1/clusters/prod/nodes/node-a/checkpoints`, { headers: { authorization: `Bearer ${token}` }, signal: AbortSignal.timeout(15_000) }).then(async (r) => (await r.body?.cancel(), r.status), (e: Error) => e.name)))
      assert.deepEqual([...new Set(statuses)], [200], `round ${round + 1}: ${statuses.join(' ')}`)
    }
  })
})

describe('configuration summary', () => {
  const rule = (id: string, extra: Record<string, unknown> = {}) => ({ id, groups: ['ops'], actions: ['read'], clusters: ['prod'], namespaces: ['web'], ...extra })
  const doc = (...rules: unknown[]) => ({ clusters: { prod: { agentUrl: 'https://{node}.x' } }, auth: { a: 1, b: 2 }, policy: { rules } })

  it('a permission another rule still grants is not lost; one only the removed rule granted is', () => {
    const s = summarize(doc(rule('a'), rule('b', { namespaces: ['web', 'db'] })), doc(rule('b', { namespaces: ['web', 'db'] })))
    assert.deepEqual(s.rules, { added: [], removed: ['a'], changed: [] })
    assert.deepEqual(s.permissions, [])
    const t = summarize(doc(rule('a'), rule('b', { namespaces: ['db'] })), doc(rule('b', { namespaces: ['db'] })))
    assert.deepEqual(t.permissions, [{ change: 'lost', caller: 'group:ops', action: 'read', clusters: ['prod'], namespaces: ['web'], rules: ['a'] }])
  })

  it('key order, list order and checkpoint: prefixes are not changes; pods narrowing is carried along', () => {
    const before = doc(rule('a', { actions: ['read', 'create'] }))
    const after = { policy: { rules: [{ namespaces: ['web'], clusters: ['prod'], actions: ['checkpoint:create', 'read'], groups: ['ops'], id: 'a' }] }, auth: { b: 2, a: 1 }, clusters: { prod: { agentUrl: 'https://{node}.x' } } }
    assert.deepEqual(summarize(before, after), { clusters: { added: [], removed: [], changed: [] }, rules: { added: [], removed: [], changed: [] }, permissions: [], sections: [] })
    const narrowed = summarize(doc(rule('a')), doc(rule('a', { pods: ['db-?'] })))
    assert.deepEqual(narrowed.rules.changed, ['a'])
    assert.deepEqual(narrowed.permissions.map((p) => [p.change, p.pods]), [['gained', ['db-?']], ['lost', undefined]])
  })

  it('a policy given as JSON text reads as the same policy; the first version gains everything', () => {
    assert.deepEqual(summarize(doc(rule('a')), { ...doc(), policy: JSON.stringify({ rules: [rule('a')] }) }).permissions, [])
    const first = summarize(null, doc(rule('a', { subjects: ['ann'] })))
    assert.deepEqual(first.clusters.added, ['prod'])
    assert.deepEqual(first.permissions.map((p) => p.caller), ['group:ops', 'subject:ann'])
    assert.deepEqual(first.sections, ['auth'])
  })

  it('the history keeps at most `max` items a list, and says so', () => {
    const many = doc(...Array.from({ length: 5 }, (_, i) => rule(`r${i}`, { groups: [`g${i}`] })))
    const s = capSummary(summarize(null, many), 3)
    assert.equal(s.rules.added.length, 3)
    assert.equal(s.permissions.length, 3)
    assert.equal(s.truncated, true)
    assert.equal(capSummary(summarize(null, many)).truncated, undefined)
  })

  it('source settings: variable by default, 30 s; anything else is refused', () => {
    assert.deepEqual(configSourceSettings(() => undefined), { kind: 'variable', refreshMs: 30_000 })
    const env = (v: Record<string, string>) => (n: string) => v[n]
    assert.deepEqual(configSourceSettings(env({ GATEWAY_CONFIG_SOURCE: 'store', GATEWAY_CONFIG_REFRESH_MS: '0' })), { kind: 'store', refreshMs: 0 })
    assert.throws(() => configSourceSettings(env({ GATEWAY_CONFIG_SOURCE: 'kv' })), /^Error: GATEWAY_CONFIG_SOURCE/)
    assert.throws(() => configSourceSettings(env({ GATEWAY_CONFIG_REFRESH_MS: '30s' })), /^Error: GATEWAY_CONFIG_REFRESH_MS/)
    assert.throws(() => configSourceSettings(env({ GATEWAY_CONFIG_REFRESH_MS: '600000' })), /^Error: GATEWAY_CONFIG_REFRESH_MS/)
  })
})
