/**
 * The gateway on Node: the app composed with the Node adapters — undici mTLS transports, the
 * node:http server, node:sqlite for operation records and configuration versions, and the
 * in-process job queue. Tests and main.ts call {@link startNodeGateway}; it has no process side
 * effects of its own.
 */
import { DEFAULT_REFRESH_MS, fileSource, storeSource, variableSource } from '../admin/source.ts'
import { sqlConfigStore } from '../admin/store.ts'
import type { SourceKind } from '../admin/model.ts'
import { createGateway } from '../app.ts'
import { parseConfig, type GatewayConfig } from '../config.ts'
import type { Clock, Log } from '../context.ts'
import type { GrantKeys } from '../grants.ts'
import { createLiveGateway, type LiveGateway } from '../live.ts'
import { sqlOperationStore } from '../operations/store.ts'
import { sqlStatementKeys } from '../custody/keys.ts'
import { sqlCustodyLog } from '../custody/log.ts'
import { nodeJobQueue, type NodeJobQueueOptions } from './queue.ts'
import { serveFetch, type FetchHandler, type Served } from './server.ts'
import { sqliteDriver } from './sqlite.ts'
import { nodeAgentTransport, nodeKubeTransport, type ClientIdentity } from './transport.ts'

/** A configuration document and where it lives (`GATEWAY_CONFIG_SOURCE`): the gateway follows its versions. */
export interface NodeConfigSource {
  kind: SourceKind
  /** The `GATEWAY_CONFIG` document: the configuration (variable), or the seed of an empty store. */
  document?: unknown
  /** Looks up secrets the document names (Kubernetes tokens, the Grafana HMAC key). */
  secret(name: string): string | undefined
  /** Node conveniences applied before validation (CA files read into PEM): see main.ts. */
  resolve?(raw: unknown): unknown
  /** Default 30000 (functions/admin/source.ts). */
  refreshMs?: number
  /** The `file` source: reads the file's text (again at every refresh). */
  read?: () => Promise<string>
}

export interface NodeGatewayOptions {
  /** A parsed configuration, fixed for the life of the process (no admin API). Give this or `source`. */
  config?: GatewayConfig
  /** The configuration as a document from a source: versions followed, /v1/admin/config served. */
  source?: NodeConfigSource
  keys: GrantKeys
  client: ClientIdentity
  host?: string
  port?: number
  /** PEM certificate chain and key: serve HTTPS instead of HTTP. */
  tls?: { cert: string; key: string }
  log?: Log
  clock?: Clock
  /**
   * node:sqlite file for operation records and, with the store source, configuration versions
   * (default in memory: lost on restart). Opened when the configuration has `hooks` or the source is the store.
   */
  operationsDb?: string
  queue?: Pick<NodeJobQueueOptions, 'concurrency' | 'capacity' | 'sweepMs'>
}

const hasHooks = (doc: unknown) => !!doc && typeof doc === 'object' && (doc as Record<string, unknown>).hooks !== undefined

/**
 * Node flags the gateway runs with (`npm run start:gateway`; the gateway bench and the entry's test
 * use the same list). A 1 MiB young generation: a streamed download turns every chunk into short-lived
 * objects holding off-heap buffers, and with V8's default young generation they piled up to ≈ +100 MiB
 * of RSS before a collection; with it, ≈ +20 (test/README.md, "Where the time goes"). A 16 MiB
 * initial old generation: with a heap of ≈ 10 MiB, V8 otherwise kept starting full GCs that freed
 * nothing (≈ 27 a second while a download streamed, in about half of the runs), which cost a third
 * of the download's speed; with it, none after the first seconds and the same RSS.
 */
export const NODE_FLAGS: readonly string[] = ['--max-semi-space-size=1', '--initial-old-space-size=16']

/**
 * Environment the gateway process starts with (`npm run start:gateway`; the bench and the entry's
 * test too). One glibc malloc arena: while streaming, helper threads otherwise grow arenas of their
 * own that stay resident (≈ +12 MiB while streaming 2 GiB; test/README.md).
 */
export const PROCESS_ENV: Readonly<Record<string, string>> = { MALLOC_ARENA_MAX: '1' }

/**
 * @example
 * const gw = await startNodeGateway({ source: { kind: 'store', document, secret: (n) => process.env[n] }, keys, client: { cert, key }, port: 0, operationsDb })
 * await fetch(gw.url + '/healthz'); await gw.close()
 */
export async function startNodeGateway(options: NodeGatewayOptions): Promise<Served> {
  const { source } = options
  if (!options.config === !source) throw new TypeError('startNodeGateway: give exactly one of config and source')
  const agents = nodeAgentTransport(options.client)
  const kube = nodeKubeTransport()
  const clock = options.clock ?? { now: Date.now }
  const log: Log = options.log ?? ((line) => process.stdout.write(JSON.stringify({ time: new Date().toISOString(), ...line }) + '\n'))
  // The database holds webhook operations, configuration versions and the custody log: opened for
  // hooks or the store source, or whenever a file is named (a custody log needs a durable place).
  const wantsDb = options.operationsDb !== undefined || (options.config ? options.config.hooks !== undefined : source!.kind === 'store' || hasHooks(source!.document))
  const db = wantsDb ? sqliteDriver(options.operationsDb ?? ':memory:') : undefined
  const store = db && sqlOperationStore(db)
  const jobs = store && nodeJobQueue({ store, run: (id) => gateway.runOperation(id), now: () => clock.now(), log, ...options.queue })
  const operations = store && jobs ? { store, queue: jobs } : undefined
  const custody = db && sqlCustodyLog(db, () => clock.now())
  const statementKeys = db && sqlStatementKeys(db, () => clock.now())
  const deps = { agents, kube, keys: options.keys, clock, log, ...(custody ? { custody } : {}), ...(statementKeys ? { statementKeys } : {}) }
  let gateway: Pick<LiveGateway, 'fetch' | 'runOperation' | 'sweepOperations'>
  if (options.config) {
    const fixed = createGateway({ ...deps, config: options.config, ...(operations ? { operations } : {}) })
    gateway = { fetch: async (req, env, ctx) => fixed.app.fetch(req, env as never, ctx as never), runOperation: fixed.runOperation, sweepOperations: fixed.sweepOperations }
  } else {
    const s = source!
    const validate = (raw: unknown) => {
      const config = parseConfig(s.resolve ? s.resolve(raw) : raw, s.secret)
      if (config.vault?.backend === 'r2') throw new Error('config: vault.backend "r2" needs a Workers R2 binding; on Node use "s3" (R2 has an S3 endpoint)')
      return config
    }
    const live = createLiveGateway({
      source: s.kind === 'store' ? storeSource({ store: sqlConfigStore(db!), seed: s.document, validate, clock }) : s.kind === 'file' ? fileSource(s.read!) : variableSource(s.document),
      validate,
      deps,
      ...(operations ? { operations } : {}),
      refreshMs: s.refreshMs ?? DEFAULT_REFRESH_MS,
    })
    try {
      await live.current() // a configuration that cannot run stops the start, as before
    } catch (err) {
      db?.close()
      await Promise.all([agents.close(), kube.close()])
      throw err
    }
    gateway = live
  }
  const served = await serveFetch(gateway.fetch as FetchHandler, { host: options.host ?? '127.0.0.1', port: options.port ?? 8080, ...(options.tls ? { tls: options.tls } : {}) })
  await jobs?.start()
  return {
    ...served,
    async close(graceMs?: number) {
      await served.close(graceMs)
      await jobs?.close(graceMs ?? 10_000)
      db?.close()
      await Promise.all([agents.close(), kube.close()])
    },
  }
}
