/**
 * A simulated fleet, generated from a seed: `clusters` cluster entries (agent URL templates, every
 * tenth with a Kubernetes API) and `teams` × 3 policy rules written the way the README shows them
 * (one per team × action, namespace globs, a few per-cluster and per-pod rules), plus node names
 * and archives to ask about. Deterministic: the same seed, the same fleet.
 */

/** mulberry32: small, fast and good enough to spread names; not for anything secret. */
export function seeded(seed: number): () => number {
  let a = seed >>> 0
  return () => {
    a = (a + 0x6d2b79f5) >>> 0
    let t = a
    t = Math.imul(t ^ (t >>> 15), t | 1)
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61)
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296
  }
}

export interface Fleet {
  clusters: Record<string, Record<string, unknown>>
  rules: Array<Record<string, unknown>>
  nodes: string[]
  teams: number
  clusterIds: string[]
}

export function makeFleet(o: { seed?: number; clusters?: number; rules?: number; nodes?: number; agentUrl?: string; kubeTokenSecret?: string } = {}): Fleet {
  const rnd = seeded(o.seed ?? 20261130)
  const pick = <T>(xs: readonly T[]) => xs[Math.floor(rnd() * xs.length)]!
  const clusterIds = Array.from({ length: o.clusters ?? 1000 }, (_, i) => `${pick(['prod', 'staging', 'edge', 'lab'])}-${pick(['eu', 'us', 'ap'])}-${String(i).padStart(4, '0')}`)
  const clusters: Fleet['clusters'] = {}
  for (const [i, id] of clusterIds.entries()) {
    clusters[id] = {
      agentUrl: o.agentUrl ?? `https://{node}.${id}.agents.example.net:10443`,
      agentIdentity: `spiffe://${id}.example.net/agent/{node}`,
      ...(i % 10 === 0 ? { kube: { apiUrl: `https://api.${id}.example.net:6443`, tokenSecret: o.kubeTokenSecret ?? 'FLEET_KUBE_TOKEN' } } : {}),
    }
  }
  const teams = Math.ceil((o.rules ?? 5000) / 3)
  const rules: Fleet['rules'] = []
  for (let t = 0; t < teams; t++) {
    for (const action of ['create', 'read', 'delete'] as const) {
      if (rules.length >= (o.rules ?? 5000)) break
      const r: Record<string, unknown> = { id: `team-${t}-${action}`, groups: [`team-${t}`], actions: [action], clusters: t % 7 === 0 ? [pick(clusterIds)] : ['prod-*', 'staging-*'], namespaces: [`team-${t}`, `team-${t}-*`] }
      if (t % 50 === 0) r.pods = [`api-*`]
      rules.push(r)
    }
  }
  const nodes = Array.from({ length: o.nodes ?? 50_000 }, (_, i) => `ip-10-${(i >> 8) & 255}-${i & 255}-${Math.floor(rnd() * 250)}.compute.internal`)
  return { clusters, rules, nodes, teams, clusterIds }
}
