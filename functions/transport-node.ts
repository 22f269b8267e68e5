/**
 * Node adapters: the agent over mutual TLS with undici (client certificate + per-cluster CA +
 * expected agent identity), and the Kubernetes API with the cluster's CA.
 */
import { checkServerIdentity, type PeerCertificate } from 'node:tls'
import { Agent, fetch as undiciFetch } from 'undici'
import type { AgentTransport, KubeTransport } from './app.ts'
import { agentBase, agentIdentity, type ClusterConfig } from './config.ts'

/** undici's Response → the platform's, so the app sees one class everywhere. */
function toPlatform(r: Awaited<ReturnType<typeof undiciFetch>>): Response {
  return new Response(r.body as ReadableStream<Uint8Array> | null, { status: r.status, statusText: r.statusText, headers: r.headers as unknown as Headers })
}

export interface ClientIdentity {
  /** PEM certificate chain the gateway presents to agents. */
  cert: string
  /** PEM private key of that certificate. */
  key: string
}

/**
 * @example
 * const agents = nodeAgentTransport({ cert: readFileSync('gw.crt', 'utf8'), key: readFileSync('gw.key', 'utf8') })
 */
export function nodeAgentTransport(id: ClientIdentity): AgentTransport & { close(): Promise<void> } {
  const pools = new Map<string, Agent>()

  function pool(cl: ClusterConfig, node: string): Agent {
    const identity = agentIdentity(cl, node)
    const key = identity === undefined ? cl.id : `${cl.id}\0${identity}`
    let a = pools.get(key)
    if (!a) {
      a = new Agent({
        connect: {
          cert: id.cert,
          key: id.key,
          ...(cl.agentCa ? { ca: cl.agentCa } : {}),
          rejectUnauthorized: true,
          ...(identity === undefined
            ? {}
            : {
                checkServerIdentity: (_host: string, cert: PeerCertificate) => checkServerIdentity(identity, cert),
                ...(/^[\d.]+$|:/.test(identity) ? {} : { servername: identity }),
              }),
        },
        keepAliveTimeout: 30_000,
      })
      if (pools.size > 1000) {
        const [oldKey, old] = pools.entries().next().value!
        pools.delete(oldKey)
        old.close().catch(() => {})
      }
      pools.set(key, a)
    }
    return a
  }

  return {
    async fetch(cl, node, path, init) {
      const r = await undiciFetch(agentBase(cl, node) + path, { ...(init as object), dispatcher: pool(cl, node) })
      return toPlatform(r)
    },
    async close() {
      await Promise.all([...pools.values()].map((a) => a.close()))
      pools.clear()
    },
  }
}

export function nodeKubeTransport(): KubeTransport & { close(): Promise<void> } {
  const pools = new Map<string, Agent>()
  return {
    async fetch(cl, path, init) {
      let a = pools.get(cl.id)
      if (!a) {
        a = new Agent({ connect: cl.kube?.ca ? { ca: cl.kube.ca } : {} })
        pools.set(cl.id, a)
      }
      return toPlatform(await undiciFetch(cl.kube!.apiUrl + path, { ...(init as object), dispatcher: a }))
    },
    async close() {
      await Promise.all([...pools.values()].map((a) => a.close()))
      pools.clear()
    },
  }
}
