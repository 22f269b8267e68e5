/**
 * The gateway mounted in another Hono app (`outer.route('/forensics', gateway.app)`), served on
 * Node: the whole gateway suite through the prefix (its download links carry it), and the outer
 * app keeping its own routes and its own 404 outside the prefix.
 */
import assert from 'node:assert/strict'
import { after, before, describe, it } from 'node:test'
import { createGateway } from '../../functions/app.ts'
import { parseConfig } from '../../functions/config.ts'
import { loadGrantKeys } from '../../functions/grants.ts'
import { makeWorld, type World } from '../support/gateway/fixtures.ts'
import { gatewaySuite } from './gateway.suite.ts'
import { mountedTarget, type GatewayUnderTest } from '../support/gateway/targets.ts'

const PREFIX = '/forensics'

describe('gateway mounted under /forensics', { timeout: 60_000 }, () => gatewaySuite(mountedTarget(PREFIX)))

describe('the app it is mounted in', () => {
  let world: World
  let gw: GatewayUnderTest
  before(async () => {
    world = await makeWorld()
    gw = await mountedTarget(PREFIX)(world, world.rawConfig())
  })
  after(async () => {
    await gw?.close()
    await world?.close()
  })

  const listener = () => gw.url.slice(0, -PREFIX.length)

  it('keeps its own routes', async () => {
    const r = await fetch(`${listener()}/outer`)
    assert.equal(r.status, 200)
    assert.equal(await r.text(), 'outer')
  })
  it('answers outside the prefix itself: not the gateway, not a problem body', async () => {
    const r = await fetch(`${listener()}/v1/clusters/prod/nodes/node-a/checkpoints`)
    assert.equal(r.status, 404)
    assert.doesNotMatch(r.headers.get('content-type') ?? '', /problem\+json/)
    assert.equal(r.headers.get('x-request-id'), null)
  })
  it('an unknown route under the prefix is the gateway 404 problem, with the request id', async () => {
    const r = await fetch(`${gw.url}/v1/nope`, { headers: { authorization: `Bearer ${await world.token({ sub: 'sam', groups: ['sre'], scope: 'checkpoint:read' })}` } })
    assert.equal(r.status, 404)
    assert.match(r.headers.get('content-type') ?? '', /^application\/problem\+json/)
    const body = (await r.json()) as { code: string; requestId: string }
    assert.equal(body.code, 'not_found')
    assert.equal(body.requestId, r.headers.get('x-request-id'))
  })
})

describe('basePath', () => {
  it('is checked when the gateway is built: a leading slash, no trailing one', async () => {
    const world = await makeWorld()
    try {
      const config = parseConfig(world.rawConfig(), () => 'token')
      const keys = await loadGrantKeys(world.grantKeys)
      const base = { config, agents: { fetch: async () => new Response(null, { status: 599 }) }, keys, clock: { now: Date.now }, log: () => {} }
      for (const basePath of ['forensics', '/forensics/', '/a b']) assert.throws(() => createGateway({ ...base, basePath }), /basePath/)
      assert.doesNotThrow(() => createGateway({ ...base, basePath: '/api/forensics' }))
    } finally {
      await world.close()
    }
  })
})
