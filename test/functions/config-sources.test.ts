/**
 * The gateway suite with the configuration sources not covered elsewhere (the variable: the
 * gateway suites; the store: the admin suite): `file` on Node (GATEWAY_CONFIG_FILE, read again at
 * each refresh) and `bundled` on Workers (the document built into the Worker, real workerd). Then
 * the file source's own promises: an edit is picked up without a restart, a broken edit never
 * becomes active (the log says where it is wrong) and the admin API refuses changes by code.
 */
import assert from 'node:assert/strict'
import { writeFile } from 'node:fs/promises'
import { after, before, describe, it } from 'node:test'
import { gatewaySuite } from './gateway.suite.ts'
import { makeWorld, type World } from '../support/gateway/fixtures.ts'
import { bundledWorkerTarget, fileTarget, startFileTarget } from '../support/gateway/targets.ts'

describe('configuration sources', { timeout: 180_000 }, () => {
  describe('file (Node)', () => gatewaySuite(fileTarget))
  describe('bundled (workerd)', () => gatewaySuite(bundledWorkerTarget))

  describe('file: changes without a restart', () => {
    let world: World
    let gw: Awaited<ReturnType<typeof startFileTarget>>
    let raw: Record<string, any>
    before(async () => {
      world = await makeWorld()
      raw = world.rawConfig()
      gw = await startFileTarget(world, raw, { refreshMs: 0 })
    })
    after(async () => {
      await gw?.close()
      await world?.close()
    })
    const list = async (token: string) => (await gw.fetch('/v1/clusters/prod/nodes/node-a/checkpoints', { headers: { authorization: `Bearer ${token}` } })).status

    it('an edit takes effect on the next refresh; a broken edit never does, and the log says where', async () => {
      const stranger = await world.token({ sub: 'stranger', scope: 'checkpoint:read' })
      assert.equal(await list(stranger), 403)
      const changed = structuredClone(raw)
      changed.policy.rules.push({ id: 'stranger-reads', subjects: ['stranger'], actions: ['read'], clusters: ['prod'], namespaces: ['*'] })
      await writeFile(gw.file, JSON.stringify(changed))
      assert.equal(await list(stranger), 200)
      // Broken: the version before stays active.
      const broken = structuredClone(changed)
      broken.policy.rules.push({ id: 'bad', subjects: ['x'], actions: ['fly'], clusters: ['prod'], namespaces: ['*'] })
      await writeFile(gw.file, JSON.stringify(broken))
      assert.equal(await list(stranger), 200)
      const refused = gw.logs.find((l) => l.type === 'error' && /not activated/.test(String(l.error)))
      assert.ok(refused, JSON.stringify(gw.logs.slice(-3)))
      assert.match(String(refused.error), /policy\.rules|actions|fly/)
      await writeFile(gw.file, '{ not json')
      assert.equal(await list(stranger), 200)
    })

    it('the admin API answers the file as version 0 and refuses a change: 409 conflict, source file', async () => {
      const admin = await world.token({ sub: 'root', scope: 'checkpoint:admin' })
      const withAdmin = structuredClone(raw)
      withAdmin.policy.rules.push({ id: 'admin', subjects: ['root'], actions: ['admin'], clusters: ['*'], namespaces: ['*'] })
      await writeFile(gw.file, JSON.stringify(withAdmin))
      const got = await gw.fetch('/v1/admin/config', { headers: { authorization: `Bearer ${admin}` } })
      assert.equal(got.status, 200)
      assert.deepEqual([got.headers.get('x-config-source'), got.headers.get('x-config-version')], ['file', '0'])
      const put = await gw.fetch('/v1/admin/config', { method: 'PUT', headers: { authorization: `Bearer ${admin}`, 'content-type': 'application/json', 'if-match': got.headers.get('etag')! }, body: JSON.stringify(withAdmin) })
      const problem = (await put.json()) as { code: string; source: string }
      assert.deepEqual([put.status, problem.code, problem.source], [409, 'conflict', 'file'])
    })
  })
})
