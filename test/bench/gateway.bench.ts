/**
 * Gateway benchmarks (not assertions). Prints JSON lines {"name","value","unit","baseline","ratio"}:
 * - added latency of a download (4 KiB archive) through the gateway over a direct mTLS call to
 *   the fake agent, on Node and on workerd (miniflare)
 * - authenticated requests/s through the Node gateway (list, 16 concurrent)
 * - rejected bad-signature tokens/s through the Node gateway
 * Run: npm run bench:gateway
 */
import { Agent, request } from 'undici'
import { makeWorld } from '../functions/fixtures.ts'
import { nodeTarget, removeBundle, workerTarget, type Target } from '../functions/targets.ts'

const N = Number(process.env.BENCH_N ?? 400)
const out = (name: string, value: number, unit: string, baseline: number | null) =>
  console.log(JSON.stringify({ name, value: +value.toFixed(3), unit, baseline: baseline === null ? null : +baseline.toFixed(3), ratio: baseline ? +(value / baseline).toFixed(3) : null }))

const median = (xs: number[]) => xs.sort((a, b) => a - b)[Math.floor(xs.length / 2)]!

const world = await makeWorld()
const sre = await world.token({ sub: 'sam', groups: ['sre'], scope: 'checkpoint:create checkpoint:read checkpoint:delete' }, { exp: Math.floor(Date.now() / 1000) + 3600 })
const bad = await world.token({ sub: 'sam', groups: ['sre'], scope: 'checkpoint:read' }, { key: world.stranger.privateKey })
const targets: Target[] = []
try {
  const node = await nodeTarget(world, world.rawConfig())
  targets.push(node)
  const created = (await (await node.fetch('/v1/clusters/edge/nodes/node-a/checkpoint/team-a/web/app', { method: 'POST', headers: { authorization: `Bearer ${sre}` } })).json()) as { archive: { name: string }; download: string }

  // Direct: mTLS GET of the archive from the fake agent. It needs a grant, which only the gateway
  // makes, so the baseline signs one per request the way the gateway does.
  const { loadGrantKeys } = await import('../../functions/grants.ts')
  const keys = await loadGrantKeys(world.grantKeys)
  const direct = new Agent({ connect: { ca: world.pki.caCert, cert: world.pki.clientCert, key: world.pki.clientKey } })
  const directMs: number[] = []
  for (let i = 0; i < N; i++) {
    const g = await keys.sign({ op: 'checkpoint:read', cluster: 'edge', node: 'node-a', archive: created.archive.name, sub: 'sam' }, Date.now(), 60, 'checkpoint-gateway-test')
    const t0 = performance.now()
    const r = await request(`${world.agent.url}/n/node-a/checkpoints/${encodeURIComponent(created.archive.name)}`, { dispatcher: direct, headers: { authorization: `Bearer ${g}` } })
    await r.body.arrayBuffer()
    directMs.push(performance.now() - t0)
  }
  const base = median(directMs)
  out('agent.direct.download.p50', base, 'ms', null)

  async function via(t: Target): Promise<number> {
    const ms: number[] = []
    for (let i = 0; i < N; i++) {
      const t0 = performance.now()
      const r = await t.fetch(created.download, { headers: { authorization: `Bearer ${sre}` } })
      await r.arrayBuffer()
      ms.push(performance.now() - t0)
    }
    return median(ms)
  }
  const viaNode = await via(node)
  out('gateway.node.download.p50', viaNode, 'ms', base)
  out('gateway.node.added_latency.p50', viaNode - base, 'ms', null)

  async function rate(name: string, token: string, expect: number) {
    const total = N * 4
    let done = 0
    const t0 = performance.now()
    await Promise.all(
      Array.from({ length: 16 }, async () => {
        while (done < total) {
          done++
          const r = await node.fetch('/v1/clusters/edge/nodes/node-a/checkpoints', { headers: { authorization: `Bearer ${token}` } })
          await r.arrayBuffer()
          if (r.status !== expect) throw new Error(`${name}: status ${r.status}`)
        }
      }),
    )
    out(name, total / ((performance.now() - t0) / 1000), 'req/s', null)
  }
  await rate('gateway.node.authenticated_list', sre, 200)
  await rate('gateway.node.rejected_bad_signature', bad, 401)

  if (process.env.BENCH_WORKERD !== '0') {
    const w = await workerTarget(world, world.rawConfig())
    targets.push(w)
    const viaW = await via(w)
    out('gateway.workerd.download.p50', viaW, 'ms', base)
    out('gateway.workerd.added_latency.p50', viaW - base, 'ms', null)
  }
  await direct.close()
} finally {
  for (const t of targets) await t.close()
  await world.close()
  removeBundle()
}
