/**
 * Cloudflare Workers entry. Config comes from vars and secrets (see wrangler.toml); the agent is
 * reached through the cluster's `mtls_certificates` binding (in miniflare: a `network` service
 * with `tlsOptions`, which has the same `fetch`). The app is built once per isolate, so the
 * remote JWKS cache and the pod → node cache live as long as the isolate.
 */
import { CheckpointError } from '../../shared/errors.ts'
import { createGateway } from '../app.ts'
import { agentBase, parseConfig } from '../config.ts'
import type { AgentTransport, KubeTransport } from '../context.ts'
import { loadGrantKeys } from '../grants.ts'
import { sqlOperationStore } from '../operations/store.ts'
import { problemResponse } from '../problem.ts'
import { d1Driver, type D1Like } from './d1.ts'
import { cloudflareQueue, consumeBatch, type QueueBindingLike, type QueueMessageLike } from './queue.ts'

interface FetcherLike {
  fetch(input: string, init?: RequestInit): Promise<Response>
}

interface ExecutionContextLike {
  waitUntil(p: Promise<unknown>): void
  passThroughOnException(): void
  props?: unknown
}

type WorkerEnv = Record<string, unknown> & {
  GATEWAY_CONFIG?: unknown
  GRANT_SIGNING_KEYS?: string
  /** D1 database of operation records and the Queues producer for checkpoint jobs (see wrangler.toml). */
  OPERATIONS_DB?: D1Like
  CHECKPOINT_JOBS?: QueueBindingLike
}

/** A deployment without the binding (wrangler dev cannot emulate mtls_certificates) is ours to fix: 500, naming it. */
function binding(env: WorkerEnv, name: string): FetcherLike {
  const b = env[name] as FetcherLike | undefined
  if (!b || typeof b.fetch !== 'function') throw new CheckpointError('internal', `binding ${name} is not configured (see wrangler.toml)`)
  return b
}

async function build(env: WorkerEnv) {
  const raw = typeof env.GATEWAY_CONFIG === 'string' ? JSON.parse(env.GATEWAY_CONFIG) : env.GATEWAY_CONFIG
  const config = parseConfig(raw, (name) => (typeof env[name] === 'string' ? (env[name] as string) : undefined))
  const keys = await loadGrantKeys(env.GRANT_SIGNING_KEYS)
  const agents: AgentTransport = {
    fetch: (cl, node, path, init) => binding(env, cl.mtlsBinding).fetch(agentBase(cl, node) + path, init),
  }
  const kube: KubeTransport = {
    fetch: (cl, path, init) => {
      const url = cl.kube!.apiUrl + path
      return cl.kube!.binding ? binding(env, cl.kube!.binding).fetch(url, init) : fetch(url, init)
    },
  }
  let operations
  if (config.hooks) {
    // Webhooks configured without their storage would answer 404, which Alertmanager does not
    // retry: the alerts would be lost. A configuration error (500, retried) instead.
    const missing = [['OPERATIONS_DB', env.OPERATIONS_DB], ['CHECKPOINT_JOBS', env.CHECKPOINT_JOBS]].filter(([, v]) => !v).map(([n]) => n)
    if (missing.length) throw new Error(`hooks are configured but binding ${missing.join(' and ')} is missing (see wrangler.toml)`)
    operations = { store: sqlOperationStore(d1Driver(env.OPERATIONS_DB!)), queue: cloudflareQueue(env.CHECKPOINT_JOBS!) }
  }
  return createGateway({
    config,
    agents,
    kube,
    keys,
    clock: { now: Date.now },
    log: (line) => console.log(JSON.stringify(line)),
    ...(operations ? { operations } : {}),
  })
}

let app: ReturnType<typeof build> | undefined

export default {
  async fetch(request: Request, env: WorkerEnv, ctx: ExecutionContextLike): Promise<Response> {
    app ??= build(env)
    let built: Awaited<ReturnType<typeof build>>
    try {
      built = await app
    } catch (err) {
      app = undefined
      console.log(JSON.stringify({ type: 'error', error: `configuration: ${(err as Error).message}` }))
      return problemResponse(new CheckpointError('internal', 'gateway misconfigured'))
    }
    return built.app.fetch(request, env, ctx as never)
  },

  /** Checkpoint jobs queued by /v1/hooks/*; a configuration error leaves the batch for redelivery. */
  async queue(batch: { messages: readonly QueueMessageLike[] }, env: WorkerEnv): Promise<void> {
    app ??= build(env)
    const built = await app.catch((err) => {
      app = undefined
      throw err
    })
    await consumeBatch(batch.messages, (id) => built.runOperation(id), (line) => console.log(JSON.stringify(line)))
  },

  /** Cron trigger: re-sends queued jobs whose message was lost and running ones whose worker died. */
  async scheduled(_controller: unknown, env: WorkerEnv): Promise<void> {
    app ??= build(env)
    const built = await app.catch((err) => {
      app = undefined
      throw err
    })
    const n = await built.sweepOperations()
    if (n > 0) console.log(JSON.stringify({ type: 'operations_swept', count: n }))
  },
}
