/**
 * The gateway's side of the agent API. Every request carries a grant signed for exactly it and the
 * request id, and waits for the agent's response headers no longer than
 * `limits.agentHeadersTimeoutMs` (a body may take as long as it takes). It knows nothing of the
 * request that came in: the route handlers and the job runner both use it, and tests can with a
 * fake {@link AgentTransport}.
 */
import { AGENT_PATHS, REQUEST_ID_HEADER } from '../shared/agent-api.ts'
import { CheckpointError } from '../shared/errors.ts'
import { NDJSON, type ArchiveEntry, type FinalEvent } from '../shared/events.ts'
import type { GrantClaims } from '../shared/grant.ts'
import { isArchiveName, type Target } from '../shared/names.ts'
import type { ClusterConfig, GatewayConfig } from './config.ts'
import type { AgentTransport, Clock } from './context.ts'
import type { GrantKeys } from './grants.ts'
import { agentFailure, type AgentFailure } from './problem.ts'
import { relayEvents, type Relay } from './relay.ts'

export interface AgentClientDeps {
  config: GatewayConfig
  agents: AgentTransport
  keys: GrantKeys
  clock: Clock
  /** Prefix of the links the gateway writes (see Deps.basePath). */
  basePath: string
}

/** A checkpoint under way (its relayed event stream), or the agent's failure; `final` marks one after the agent accepted. */
export type CheckpointStart = { relay: Relay } | { failure: AgentFailure; final: boolean }

export interface AgentClient {
  /** One request to a node's agent, with the headers deadline. */
  forward(cl: ClusterConfig, node: string, path: string, init: RequestInit): Promise<Response>
  /** The body of a forwarded answer the transport read whole ({@link AgentTransport.bytes}), else undefined. */
  bytes(res: Response): Uint8Array<ArrayBuffer> | undefined
  /** One header of a forwarded answer, from the transport's record when it keeps one ({@link AgentTransport.headers}). */
  header(res: Response, name: string): string | null
  /** The headers of one agent request: a grant for `sub` bound to `claims`, and the request id. */
  grantHeaders(sub: string, requestId: string, claims: Omit<GrantClaims, 'sub'>, ttlSec: number): Promise<Record<string, string>>
  /**
   * Asks the agent for a checkpoint (always the event stream) and relays it with the gateway's
   * additions on the final event. An error answer is the agent's failure; `final` marks one that
   * came after the agent accepted the request (never worth a retry).
   */
  startCheckpoint(cl: ClusterConfig, node: string, target: Target, timeoutSec: number, headers: Record<string, string>, holdOpen?: boolean): Promise<CheckpointStart>
  /** The agent's archive list (GET /checkpoints), or the agent's failure. */
  list(cl: ClusterConfig, node: string, headers: Record<string, string>): Promise<ArchiveEntry[] | AgentFailure>
  /** The gateway's link to an archive (`?namespace=` picks the reading the caller was authorized for). */
  downloadPath(cluster: string, node: string, name: string, namespace?: string): string
}

/**
 * @example
 * const agent = createAgentClient({ config, agents, keys, clock, basePath: '' })
 * const headers = await agent.grantHeaders(sub, requestId, { op: 'checkpoint:list', cluster, node }, 60)
 * const items = await agent.list(cl, node, headers)
 */
export function createAgentClient({ config, agents, keys, clock, basePath }: AgentClientDeps): AgentClient {
  async function forward(cl: ClusterConfig, node: string, path: string, init: RequestInit): Promise<Response> {
    const ac = new AbortController()
    const ms = config.limits.agentHeadersTimeoutMs
    const timer = setTimeout(() => ac.abort(), ms)
    try {
      return await agents.fetch(cl, node, path, { ...init, redirect: 'manual', signal: ac.signal })
    } catch (err) {
      // A transport that knows why (a binding missing from the deployment) says so itself.
      if (err instanceof CheckpointError) throw err
      if (ac.signal.aborted) throw new CheckpointError('timeout', `agent on node ${node} did not answer within ${ms} ms`, { extra: { cluster: cl.id, node } })
      throw new CheckpointError('bad_gateway', `agent on node ${node} is unreachable`, { cause: err, extra: { cluster: cl.id, node } })
    } finally {
      clearTimeout(timer)
    }
  }

  function downloadPath(cluster: string, node: string, name: string, namespace?: string): string {
    const q = namespace ? `?namespace=${namespace}` : ''
    return `${basePath}/v1/clusters/${cluster}/nodes/${node}/checkpoints/${encodeURIComponent(name)}${q}`
  }

  const bytes = (res: Response) => agents.bytes?.(res)
  const header = (res: Response, name: string) => {
    const kept = agents.headers?.(res)
    return kept ? kept[name] ?? null : res.headers.get(name)
  }
  const decoder = new TextDecoder()

  return {
    forward,
    bytes,
    header,
    downloadPath,
    async grantHeaders(sub, requestId, claims, ttlSec) {
      const grant = await keys.sign({ ...claims, sub }, clock.now(), ttlSec, config.grants.issuer)
      return { authorization: `Bearer ${grant}`, [REQUEST_ID_HEADER]: requestId }
    },
    async startCheckpoint(cl, node, target, timeoutSec, headers, holdOpen = false) {
      const res = await forward(cl, node, `${AGENT_PATHS.checkpoint(target)}?timeout=${timeoutSec}`, { method: 'POST', headers: { ...headers, accept: NDJSON } })
      if (res.status >= 300) return { failure: await agentFailure(res), final: false }
      if (!res.body || !(header(res, 'content-type') ?? '').startsWith(NDJSON)) {
        await res.body?.cancel()
        return { failure: { err: new CheckpointError('bad_gateway', `agent on node ${node} did not answer with an event stream`), status: 502 }, final: true }
      }
      const cluster = cl.id
      const decorate = (e: FinalEvent): FinalEvent =>
        e.type === 'completed' ? { ...e, cluster, node, download: downloadPath(cluster, node, e.archive.name, target.namespace) } : { ...e, cluster, node }
      return { relay: relayEvents(res.body, decorate, () => clock.now(), holdOpen) }
    },
    async list(cl, node, headers) {
      const res = await forward(cl, node, AGENT_PATHS.list(), { method: 'GET', headers: { ...headers, accept: 'application/json' } })
      if (res.status !== 200) return agentFailure(res)
      const unreadable = (cause?: unknown) => new CheckpointError('bad_gateway', `agent on node ${node} sent an unreadable list`, { cause, extra: { cluster: cl.id, node } })
      let body: { items?: unknown }
      try {
        const whole = bytes(res)
        body = (whole ? JSON.parse(decoder.decode(whole)) : await res.json()) as { items?: unknown }
      } catch (err) {
        throw unreadable(err)
      }
      if (!Array.isArray(body.items)) throw unreadable()
      return (body.items as ArchiveEntry[]).filter((e) => e && typeof e.name === 'string' && isArchiveName(e.name))
    },
  }
}
