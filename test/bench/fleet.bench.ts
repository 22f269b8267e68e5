/**
 * The fleet simulation (test/support/fleet.ts, seed 20261130): 1,000 clusters, 50,000 node names,
 * 5,000 rules, 1,000 archives in a list. One JSON line per figure (test/bench/figures.ts), each
 * with a baseline measured in the same run:
 *
 * - `fleet_config_bytes`: the document's size (baseline: the README's example configuration).
 * - `fleet_config_load_ms`: JSON text → the gateway's validated configuration with its policy index
 *   (`parseConfig`), median of 7 (baseline: `JSON.parse` of the same text alone). Goal ≤ 50 ms.
 * - `fleet_config_heap_mib`: V8 heap held by the parsed configuration, after a full GC (baseline:
 *   the heap held by the plain parsed JSON). Goal ≤ 20 MiB. Node's V8 is workerd's engine, so this
 *   stands for an isolate's share; workerd's own memory is not measurable from outside here.
 * - `fleet_decide_p50_us`, `fleet_decide_p99_us`: one decision for a random caller (a team, two
 *   groups) on a random cluster/namespace/pod of the fleet, read action, 20,000 samples timed
 *   one by one (baseline: the plain scan of every rule, test/support/policy-linear.ts, 400
 *   samples). Goal p50 ≤ 5 µs.
 * - `fleet_filter_1000_ms`: filtering a node's list of 1,000 archives for one caller, median of 21
 *   (baseline: the plain scan). Goal ≤ 2 ms.
 * - `fleet_workerd_first_ms`: the first request to a fresh Worker in workerd (miniflare) with the
 *   fleet built in (the bundled source), which validates the document and builds the app
 *   (baseline: the same with the README's example configuration). Median of 3.
 *
 *   node test/bench/fleet.bench.ts          (BENCH_FLEET_CLUSTERS, BENCH_FLEET_RULES to resize)
 */
import { setFlagsFromString } from 'node:v8'
import { runInNewContext } from 'node:vm'
import { exportJWK, generateKeyPair } from 'jose'
import { decide, type Caller, type Resource } from '../../functions/authz.ts'
import { parseConfig } from '../../functions/config.ts'
import { makeTestPki } from '../support/certs.ts'
import { makeFleet, seeded } from '../support/fleet.ts'
import { decideLinear } from '../support/policy-linear.ts'
import { bundleWorkerWith, startWorkerGateway } from '../support/gateway/targets.ts'
import { emit, envNumber, median, noter } from './figures.ts'

const note = noter('fleet')
setFlagsFromString('--expose-gc')
const gc = runInNewContext('gc') as () => void

const CLUSTERS = envNumber('BENCH_FLEET_CLUSTERS', 1000)
const RULES = envNumber('BENCH_FLEET_RULES', 5000)
const fleet = makeFleet({ clusters: CLUSTERS, rules: RULES, nodes: 50_000, kubeTokenSecret: 'FLEET_KUBE_TOKEN' })
const { publicKey } = await generateKeyPair('ES256', { extractable: true })
const auth = { issuers: ['https://idp.example.net'], audience: 'checkpoint-gateway', jwks: { keys: [{ ...(await exportJWK(publicKey)), kid: 'idp-1', alg: 'ES256' }] } }
const fleetDoc = { clusters: fleet.clusters, auth, policy: { rules: fleet.rules }, grants: { issuer: 'checkpoint-gateway' } }
const small = {
  clusters: { 'prod-eu': { agentUrl: 'https://{node}.agents.example.net:10443' } },
  auth,
  policy: { rules: [{ id: 'sre', groups: ['sre'], actions: ['create', 'read', 'delete'], clusters: ['prod-*'], namespaces: ['*'] }] },
  grants: { issuer: 'checkpoint-gateway' },
}
const secret = (n: string) => (n === 'FLEET_KUBE_TOKEN' ? 'token' : undefined)
const text = JSON.stringify(fleetDoc)
emit('fleet_config_bytes', text.length / 1024, 'KiB', JSON.stringify(small).length / 1024)
note(`${Object.keys(fleet.clusters).length} clusters, ${fleet.rules.length} rules, ${fleet.nodes.length} node names`)

const timeIt = (f: () => unknown, n: number) => median(Array.from({ length: n }, () => {
  const t0 = performance.now()
  f()
  return performance.now() - t0
}))
const config = parseConfig(JSON.parse(text), secret)
emit('fleet_config_load_ms', timeIt(() => parseConfig(JSON.parse(text), secret), 7), 'ms', timeIt(() => JSON.parse(text), 7))

/** Heap held by what `make` returns, after full collections on both sides. */
function heldMiB(make: () => unknown): number {
  gc()
  gc()
  const before = process.memoryUsage().heapUsed
  const kept = make()
  gc()
  gc()
  const after = process.memoryUsage().heapUsed
  if (kept === undefined) throw new Error('nothing kept')
  return (after - before) / 1024 / 1024
}
emit('fleet_config_heap_mib', heldMiB(() => parseConfig(JSON.parse(text), secret)), 'MiB', heldMiB(() => JSON.parse(text)))

// Decisions: random team callers on random fleet resources.
const rnd = seeded(7)
const samples = Array.from({ length: 20_000 }, (): [Caller, Resource] => {
  const t = Math.floor(rnd() * fleet.teams)
  const caller: Caller = { sub: `user-${t}`, groups: [`team-${t}`, `team-${Math.floor(rnd() * fleet.teams)}`], scopes: new Set(['checkpoint:read']) }
  const ns = rnd() < 0.5 ? `team-${t}-web` : `team-${Math.floor(rnd() * fleet.teams)}`
  return [caller, { cluster: fleet.clusterIds[Math.floor(rnd() * fleet.clusterIds.length)]!, namespace: ns, pod: rnd() < 0.5 ? 'api-0' : 'web-0', container: 'app' }]
})
// The two evaluations agree on every sample (checked apart from the timing, which it would disturb).
const disagree = samples.filter(([caller, res]) => decide(config.policy, caller, 'read', res).allow !== decideLinear(config.policy, caller, 'read', res).allow).length
if (disagree) throw new Error(`the indexed and the plain policy disagree on ${disagree} of ${samples.length} decisions`)
const percentiles = (d: typeof decide, n: number) => {
  const times: number[] = []
  for (const [caller, res] of samples.slice(0, n)) {
    const t0 = performance.now()
    d(config.policy, caller, 'read', res)
    times.push((performance.now() - t0) * 1000)
  }
  times.sort((a, b) => a - b)
  return { p50: times[Math.floor(n * 0.5)]!, p99: times[Math.floor(n * 0.99)]! }
}
percentiles(decide, 2000) // warm-up
const fast = percentiles(decide, samples.length)
const slow = percentiles(decideLinear as typeof decide, 400)
emit('fleet_decide_p50_us', fast.p50, 'µs', slow.p50)
emit('fleet_decide_p99_us', fast.p99, 'µs', slow.p99)
const allowed = samples.filter(([c, r]) => decide(config.policy, c, 'read', r).allow).length
note(`${allowed} of ${samples.length} sampled decisions allow`)

const lister: Caller = samples[0]![0]
const archives: Resource[] = Array.from({ length: 1000 }, (_, i) => ({ cluster: 'prod-eu-0001', namespace: i % 3 === 0 ? `team-${lister.groups[0]!.slice(5)}-x` : `team-${(i * 7) % fleet.teams}`, pod: `p-${i}`, container: 'app' }))
const filterWith = (d: typeof decide) => () => archives.filter((a) => d(config.policy, lister, 'read', a).allow)
emit('fleet_filter_1000_ms', timeIt(filterWith(decide), 21), 'ms', timeIt(filterWith(decideLinear as typeof decide), 3))

// workerd: the first request of a fresh Worker with the document built in.
const pki = await makeTestPki()
async function firstRequestMs(doc: unknown): Promise<number> {
  const bundle = await bundleWorkerWith(doc)
  try {
    const runs: number[] = []
    for (let i = 0; i < 3; i++) {
      const gw = await startWorkerGateway({
        config: {}, noConfigVariable: true, bundle,
        grantKeys: { ...(await exportJWK((await generateKeyPair('EdDSA', { extractable: true })).privateKey)), kid: 'g', alg: 'EdDSA' },
        client: { cert: pki.clientCert, key: pki.clientKey }, ca: pki.caCert,
        secrets: { GATEWAY_CONFIG_SOURCE: 'bundled', FLEET_KUBE_TOKEN: 'token' },
      })
      try {
        const t0 = performance.now()
        const r = await gw.fetch('/v1/clusters/prod-eu/nodes/n/checkpoints')
        runs.push(performance.now() - t0)
        if (r.status !== 401) throw new Error(`workerd answered ${r.status}: ${await r.text()}`)
      } finally {
        await gw.close()
      }
    }
    return median(runs)
  } finally {
    bundle.remove()
  }
}
emit('fleet_workerd_first_ms', await firstRequestMs(fleetDoc), 'ms', await firstRequestMs(small))
