/**
 * A fleet-sized configuration (1,000 clusters, 5,000 rules, ≈ 0.85 MB of JSON; test/support/fleet.ts)
 * runs on both runtimes: the Node gateway and the Worker in workerd (the bundled source — a
 * variable of this size is over Workers' 5 KB limit). The world's own clusters and rules are in it,
 * so a caller the policy allows lists archives (200) and a team caller is refused (403) by the same
 * index that holds the 5,000 rules. Time to the first answer is printed, not judged.
 */
import assert from 'node:assert/strict'
import { after, before, describe, it } from 'node:test'
import { makeWorld, type World } from '../support/gateway/fixtures.ts'
import { bundledWorkerTarget, nodeTarget, type GatewayUnderTest, type MakeGatewayUnderTest } from '../support/gateway/targets.ts'
import { makeFleet } from '../support/fleet.ts'

const fleet = makeFleet({ clusters: 1000, rules: 5000, kubeTokenSecret: 'KUBE_TOKEN_PROD' })

for (const [name, make] of [['node', nodeTarget], ['workerd (bundled)', bundledWorkerTarget]] as Array<[string, MakeGatewayUnderTest]>) {
  describe(`a 1,000-cluster, 5,000-rule configuration on ${name}`, { timeout: 120_000 }, () => {
    let world: World
    let gw: GatewayUnderTest
    let raw: Record<string, any>
    before(async () => {
      world = await makeWorld()
      raw = world.rawConfig({ staticJwks: true })
      raw.clusters = { ...fleet.clusters, ...raw.clusters }
      raw.policy.rules = [...fleet.rules, ...raw.policy.rules]
      gw = await make(world, raw)
    })
    after(async () => {
      await gw?.close()
      await world?.close()
    })

    it('answers by its policy: allowed 200, a team of the fleet refused 403, an unknown cluster 404', async () => {
      const size = JSON.stringify(raw).length
      assert.ok(Object.keys(raw.clusters).length >= 1000 && raw.policy.rules.length >= 5000 && size > 400_000, `${size} bytes`)
      const sre = await world.token({ sub: 'sam', groups: ['sre'], scope: 'checkpoint:read' })
      const team = await world.token({ sub: 'tia', groups: ['team-42'], scope: 'checkpoint:read' })
      const t0 = performance.now()
      const allowed = await gw.fetch('/v1/clusters/prod/nodes/node-a/checkpoints', { headers: { authorization: `Bearer ${sre}` } })
      console.log(JSON.stringify({ name: `fleet_first_answer_${name.split(' ')[0]}`, value: Math.round(performance.now() - t0), unit: 'ms', bytes: size }))
      assert.equal(allowed.status, 200)
      const refused = await gw.fetch('/v1/clusters/prod/nodes/node-a/checkpoints', { headers: { authorization: `Bearer ${team}` } })
      assert.deepEqual([refused.status, ((await refused.json()) as { code: string }).code], [403, 'forbidden'])
      const unknown = await gw.fetch('/v1/clusters/nowhere-0000/nodes/node-a/checkpoints', { headers: { authorization: `Bearer ${sre}` } })
      assert.deepEqual([unknown.status, ((await unknown.json()) as { code: string }).code], [404, 'not_found'])
      // A fleet cluster exists: the sre rule does not cover it, so it is refused rather than unknown.
      const fleetCluster = await gw.fetch(`/v1/clusters/${fleet.clusterIds[1]}/nodes/${fleet.nodes[0]}/checkpoints`, { headers: { authorization: `Bearer ${team}` } })
      assert.equal(fleetCluster.status, 403)
    })
  })
}
