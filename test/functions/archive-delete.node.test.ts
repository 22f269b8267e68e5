/**
 * Archive delete refused by policy, not only for a missing scope: the gateway suite's delete test
 * uses a caller without `checkpoint:delete`. Here the caller holds the scope, and her rule (fixtures
 * `team-a`: alice, create and read on prod/edge namespace team-a) does not allow the action.
 */
import assert from 'node:assert/strict'
import { after, before, describe, it } from 'node:test'
import { makeWorld, type World } from '../support/gateway/fixtures.ts'
import { nodeTarget, type GatewayUnderTest } from '../support/gateway/targets.ts'

describe('archive delete on node: the policy decides, not the scope alone', { timeout: 60_000 }, () => {
  let world: World
  let gw: GatewayUnderTest
  let alice: string
  let name: string
  const path = () => `/v1/clusters/edge/nodes/node-d/checkpoints/${encodeURIComponent(name)}?namespace=team-a`
  before(async () => {
    world = await makeWorld()
    gw = await nodeTarget(world, world.rawConfig())
    alice = await world.token({ sub: 'alice', scope: 'checkpoint:create checkpoint:read checkpoint:delete' })
    // Her own checkpoint: the agent records team-a/web/app as the archive's target.
    const r = await gw.fetch('/v1/clusters/edge/nodes/node-d/checkpoint/team-a/web/app', { method: 'POST', headers: { authorization: `Bearer ${alice}` } })
    assert.equal(r.status, 200)
    name = ((await r.json()) as { archive: { name: string } }).archive.name
  })
  after(async () => {
    await gw?.close()
    await world?.close()
  })

  it('scope checkpoint:delete, rule without delete → 403 forbidden; the agent sees no request', async () => {
    const seen = world.agent.seen.length
    const r = await gw.fetch(path(), { method: 'DELETE', headers: { authorization: `Bearer ${alice}` } })
    assert.equal(r.status, 403)
    const p = (await r.json()) as { code: string; missing?: string }
    assert.equal(p.code, 'forbidden')
    // Refused for the permission, not for the scope she holds.
    assert.match(String(p.missing), /^permission checkpoint:delete /)
    assert.deepEqual(world.agent.seen.slice(seen), [])
    assert.ok(world.agent.archives.get('node-d')?.has(name))
    // The same caller may read it: the action alone was refused.
    const read = await gw.fetch(path(), { headers: { authorization: `Bearer ${alice}` } })
    assert.equal(read.status, 200)
    assert.equal(new Uint8Array(await read.arrayBuffer()).byteLength, 4096)
  })
})
