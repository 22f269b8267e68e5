/**
 * Pod → node through a cluster's Kubernetes API, for checkpoints that name no node. Answers are
 * kept for `limits.kubeCacheMs`: a burst of checkpoints of one pod asks the API once.
 */
import { CheckpointError } from '../shared/errors.ts'
import { checkName, type Target } from '../shared/names.ts'
import type { ClusterConfig, GatewayConfig } from './config.ts'
import type { Clock, KubeTransport } from './context.ts'

/** The node `target`'s pod runs on in cluster `cl`. */
export type ResolveNode = (cl: ClusterConfig, target: Target) => Promise<string>

interface PodDocument {
  spec?: { nodeName?: unknown; containers?: Array<{ name?: unknown }> }
}

/** Entries beyond this push out the oldest. */
const CACHE_MAX = 10_000

/**
 * @example
 * const resolveNode = createNodeResolver({ config, kube, clock })
 * const node = await resolveNode(cl, { namespace: 'shop', pod: 'web-0', container: 'app' })
 */
export function createNodeResolver({ config, kube, clock }: { config: GatewayConfig; kube: KubeTransport | undefined; clock: Clock }): ResolveNode {
  const cache = new Map<string, { node: string; expires: number }>()

  async function fetchPod(transport: KubeTransport, cl: ClusterConfig, token: string, t: Target): Promise<PodDocument> {
    const ac = new AbortController()
    const timer = setTimeout(() => ac.abort(), config.limits.agentHeadersTimeoutMs)
    try {
      const res = await transport.fetch(cl, `/api/v1/namespaces/${t.namespace}/pods/${t.pod}`, {
        headers: { authorization: `Bearer ${token}`, accept: 'application/json' },
        redirect: 'manual',
        signal: ac.signal,
      })
      if (res.status === 404) {
        await res.body?.cancel()
        throw new CheckpointError('not_found', `pod ${t.namespace}/${t.pod} not found in cluster ${cl.id}`, { field: 'pod' })
      }
      if (!res.ok) {
        await res.body?.cancel()
        throw new CheckpointError('bad_gateway', `the Kubernetes API of cluster ${cl.id} answered ${res.status}`)
      }
      return (await res.json()) as PodDocument
    } catch (err) {
      if (err instanceof CheckpointError) throw err
      if (ac.signal.aborted) throw new CheckpointError('timeout', `the Kubernetes API of cluster ${cl.id} did not answer in time`)
      throw new CheckpointError('bad_gateway', `the Kubernetes API of cluster ${cl.id} is unreachable`, { cause: err })
    } finally {
      clearTimeout(timer)
    }
  }

  return async function resolveNode(cl, t) {
    if (!cl.kube || !kube) {
      throw new CheckpointError('invalid_name', `cluster ${cl.id} has no Kubernetes API configured; name the node: POST /v1/clusters/${cl.id}/nodes/{node}/checkpoint/${t.namespace}/${t.pod}/${t.container}`, { field: 'node' })
    }
    const key = `${cl.id}/${t.namespace}/${t.pod}/${t.container}`
    const hit = cache.get(key)
    if (hit && hit.expires > clock.now()) return hit.node
    const pod = await fetchPod(kube, cl, cl.kube.token, t)
    const node = pod.spec?.nodeName
    if (typeof node !== 'string' || node === '') throw new CheckpointError('conflict', `pod ${t.namespace}/${t.pod} is not scheduled on a node`, { field: 'pod' })
    checkName('node', node)
    if (Array.isArray(pod.spec?.containers) && !pod.spec.containers.some((k) => k.name === t.container)) {
      throw new CheckpointError('container_not_found', `pod ${t.namespace}/${t.pod} has no container ${t.container}`, { field: 'container' })
    }
    cache.set(key, { node, expires: clock.now() + config.limits.kubeCacheMs })
    if (cache.size > CACHE_MAX) cache.delete(cache.keys().next().value!)
    return node
  }
}
