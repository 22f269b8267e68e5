/**
 * The gateway on Node: the app composed with the Node adapters — undici mTLS transports, the
 * node:http server, node:sqlite operation records and the in-process job queue. Tests and main.ts
 * call {@link startNodeGateway}; it has no process side effects of its own.
 */
import { createGateway } from '../app.ts'
import type { GatewayConfig } from '../config.ts'
import type { Clock, Log } from '../context.ts'
import type { GrantKeys } from '../grants.ts'
import { sqlOperationStore } from '../operations/store.ts'
import { nodeJobQueue, type NodeJobQueueOptions } from './queue.ts'
import { serveFetch, type FetchHandler, type Served } from './server.ts'
import { sqliteDriver } from './sqlite.ts'
import { nodeAgentTransport, nodeKubeTransport, type ClientIdentity } from './transport.ts'

export interface NodeGatewayOptions {
  config: GatewayConfig
  keys: GrantKeys
  client: ClientIdentity
  host?: string
  port?: number
  /** PEM certificate chain and key: serve HTTPS instead of HTTP. */
  tls?: { cert: string; key: string }
  log?: Log
  clock?: Clock
  /** node:sqlite file for operation records (default in memory: lost on restart). Used when `config.hooks` is set. */
  operationsDb?: string
  queue?: Pick<NodeJobQueueOptions, 'concurrency' | 'capacity' | 'sweepMs'>
}

/**
 * @example
 * const gw = await startNodeGateway({ config, keys, client: { cert, key }, port: 0 })
 * await fetch(gw.url + '/healthz'); await gw.close()
 */
export async function startNodeGateway(options: NodeGatewayOptions): Promise<Served> {
  const agents = nodeAgentTransport(options.client)
  const kube = nodeKubeTransport()
  const clock = options.clock ?? { now: Date.now }
  const log: Log = options.log ?? ((line) => process.stdout.write(JSON.stringify({ time: new Date().toISOString(), ...line }) + '\n'))
  const db = options.config.hooks ? sqliteDriver(options.operationsDb ?? ':memory:') : undefined
  const store = db && sqlOperationStore(db)
  const jobs = store && nodeJobQueue({ store, run: (id) => gateway.runOperation(id), now: () => clock.now(), log, ...options.queue })
  const gateway = createGateway({ config: options.config, agents, kube, keys: options.keys, clock, log, ...(store && jobs ? { operations: { store, queue: jobs } } : {}) })
  const served = await serveFetch(gateway.app.fetch as unknown as FetchHandler, { host: options.host ?? '127.0.0.1', port: options.port ?? 8080, ...(options.tls ? { tls: options.tls } : {}) })
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
