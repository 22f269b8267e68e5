/**
 * Cloudflare Workers entry. Config comes from vars and secrets (see wrangler.toml): the
 * `GATEWAY_CONFIG` variable, or with `GATEWAY_CONFIG_SOURCE=store` versioned documents in the
 * `OPERATIONS_DB` D1 database (seeded from the variable). The agent is reached through the
 * cluster's `mtls_certificates` binding (in miniflare: a `network` service with `tlsOptions`,
 * which has the same `fetch`). One live gateway per isolate (functions/live.ts): the app of the
 * active version, rebuilt when a newer version is found, so the remote JWKS cache lives as long
 * as the isolate and the pod → node cache as long as the version.
 */
import { CheckpointError } from '../../shared/errors.ts'
import { bundledSource, configSourceSettings, storeSource, variableSource } from '../admin/source.ts'
import bundled from './bundled-config.json' with { type: 'json' }
import { sqlConfigStore } from '../admin/store.ts'
import { agentBase, jsonValue, parseConfig, type GatewayConfig } from '../config.ts'
import type { AgentTransport, KubeTransport } from '../context.ts'
import { loadGrantKeys } from '../grants.ts'
import { createLiveGateway, type LiveGateway } from '../live.ts'
import { sqlOperationStore } from '../operations/store.ts'
import { sqlStatementKeys } from '../custody/keys.ts'
import { sqlCustodyLog } from '../custody/log.ts'
import { problemResponse } from '../problem.ts'
import type { R2BucketLike } from '../vault/r2.ts'
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
  /** `variable` (default) or `store`; and how often an isolate looks for a newer version (ms, default 30000). */
  GATEWAY_CONFIG_SOURCE?: string
  GATEWAY_CONFIG_REFRESH_MS?: string
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

async function build(env: WorkerEnv): Promise<LiveGateway> {
  const vars = (name: string) => (typeof env[name] === 'string' ? (env[name] as string) : undefined)
  // wrangler.toml may give the interval as a TOML number.
  const { kind, refreshMs } = configSourceSettings((name) => (typeof env[name] === 'number' ? String(env[name]) : vars(name)))
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
  const bucket = (name: string) => {
    const b = env[name] as R2BucketLike | undefined
    return b && typeof b.createMultipartUpload === 'function' ? b : undefined
  }
  const db = env.OPERATIONS_DB && d1Driver(env.OPERATIONS_DB)
  const operations = db && env.CHECKPOINT_JOBS ? { store: sqlOperationStore(db), queue: cloudflareQueue(env.CHECKPOINT_JOBS) } : undefined
  const validate = (raw: unknown): GatewayConfig => {
    const config = parseConfig(raw, vars)
    // Webhooks configured without their storage would answer 404, which Alertmanager does not
    // retry: the alerts would be lost. A configuration error instead (500 at start, retried; 400 for a change).
    if (config.hooks && !operations) {
      const missing = [['OPERATIONS_DB', env.OPERATIONS_DB], ['CHECKPOINT_JOBS', env.CHECKPOINT_JOBS]].filter(([, v]) => !v).map(([n]) => n)
      throw new Error(`config: hooks are configured but binding ${missing.join(' and ')} is missing (see wrangler.toml)`)
    }
    if (config.vault?.backend === 'r2' && !bucket(config.vault.r2!.binding)) throw new Error(`config: vault.r2.binding: no R2 bucket binding ${config.vault.r2!.binding} (see wrangler.toml [[r2_buckets]])`)
    return config
  }
  const seed = env.GATEWAY_CONFIG === undefined ? undefined : jsonValue(env.GATEWAY_CONFIG, 'GATEWAY_CONFIG')
  const clock = { now: Date.now }
  let source
  if (kind === 'file') throw new Error('GATEWAY_CONFIG_SOURCE=file is for Node; on Workers use bundled, store or variable')
  if (kind === 'bundled') {
    source = bundledSource(bundled)
  } else if (kind === 'store') {
    if (!db) throw new Error('GATEWAY_CONFIG_SOURCE=store keeps the configuration in the OPERATIONS_DB D1 database: the binding is missing (see wrangler.toml)')
    source = storeSource({ store: sqlConfigStore(db), seed, validate, clock })
  } else {
    source = variableSource(seed)
  }
  return createLiveGateway({
    source,
    validate,
    deps: { agents, kube, keys, clock, bucket, log: (line) => console.log(JSON.stringify(line)), ...(db ? { custody: sqlCustodyLog(db, clock.now), statementKeys: sqlStatementKeys(db, clock.now) } : {}) },
    ...(operations ? { operations } : {}),
    refreshMs,
  })
}

let live: Promise<LiveGateway> | undefined

/** The isolate's live gateway; a failure to set it up is retried by the next event. */
function liveOf(env: WorkerEnv): Promise<LiveGateway> {
  return (live ??= build(env).catch((err) => {
    live = undefined
    throw err
  }))
}

export default {
  async fetch(request: Request, env: WorkerEnv, ctx: ExecutionContextLike): Promise<Response> {
    let gateway: LiveGateway
    try {
      gateway = await liveOf(env)
    } catch (err) {
      console.log(JSON.stringify({ type: 'error', error: `configuration: ${(err as Error).message}` }))
      return problemResponse(new CheckpointError('internal', 'gateway misconfigured'))
    }
    return gateway.fetch(request, env, ctx)
  },

  /** Checkpoint jobs queued by /v1/hooks/*; a configuration error leaves the batch for redelivery. */
  async queue(batch: { messages: readonly QueueMessageLike[] }, env: WorkerEnv): Promise<void> {
    const gateway = await liveOf(env)
    await consumeBatch(batch.messages, (id) => gateway.runOperation(id), (line) => console.log(JSON.stringify(line)))
  },

  /** Cron trigger: re-sends queued jobs whose message was lost and running ones whose worker died. */
  async scheduled(_controller: unknown, env: WorkerEnv): Promise<void> {
    const n = await (await liveOf(env)).sweepOperations()
    if (n > 0) console.log(JSON.stringify({ type: 'operations_swept', count: n }))
  },
}
