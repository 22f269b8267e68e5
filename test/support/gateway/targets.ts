/**
 * The two ways the suite reaches a gateway: the Node entry (real HTTP on loopback) and the
 * Worker bundle in miniflare (real workerd; the agent reached through a `network` service binding
 * with tlsOptions — the local stand-in for the `mtls_certificates` binding).
 */
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import { readFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { Hono } from 'hono'
import { createGateway } from '../../../functions/app.ts'
import { parseConfig } from '../../../functions/config.ts'
import { loadGrantKeys } from '../../../functions/grants.ts'
import { loadNodeGrantKeys } from '../../../functions/node/jws.ts'
import { serveFetch, type FetchHandler } from '../../../functions/node/server.ts'
import { startNodeGateway, type NodeGatewayOptions } from '../../../functions/node/start.ts'
import { nodeAgentTransport, nodeKubeTransport } from '../../../functions/node/transport.ts'
import { KUBE_TOKEN, type World } from './fixtures.ts'

export interface GatewayUnderTest {
  name: string
  /** The gateway on the real loopback listener (`http://127.0.0.1:<port>[basePath]`), for requests fetch will not send. */
  url: string
  /** Where another app mounts the gateway (its links carry it); absent at the root. */
  basePath?: string
  /** A request to a path of the gateway's API (`/v1/…`), or to a link the gateway wrote. */
  fetch(path: string, init?: RequestInit): Promise<Response>
  /** Audit and log lines the gateway wrote. */
  logs: Array<Record<string, unknown>>
  close(): Promise<void>
}

export type MakeGatewayUnderTest = (world: World, raw: Record<string, unknown>) => Promise<GatewayUnderTest>

const secrets = (n: string) => (n === 'KUBE_TOKEN_PROD' ? KUBE_TOKEN : undefined)

/**
 * The Node entry on a loopback port with the world's grant keys and client certificate, `raw`
 * parsed with `secretOf`; `extra` adds or overrides options (an operations db, the queue…).
 */
export async function startNodeTarget(
  world: World,
  raw: Record<string, unknown>,
  secretOf: (name: string) => string | undefined,
  extra: Pick<NodeGatewayOptions, 'operationsDb' | 'queue'> = {},
): Promise<GatewayUnderTest> {
  const logs: Array<Record<string, unknown>> = []
  const gw = await startNodeGateway({
    config: parseConfig(structuredClone(raw), secretOf),
    // Node's own Ed25519 signer, as the Node entry uses; the mounted target keeps jose's.
    keys: await loadNodeGrantKeys(world.grantKeys),
    client: { cert: world.pki.clientCert, key: world.pki.clientKey },
    port: 0,
    log: (l) => logs.push(l),
    ...extra,
  })
  return {
    name: 'node',
    url: gw.url,
    logs,
    fetch: (path, init) => fetch(gw.url + path, init),
    close: () => gw.close(2000),
  }
}

export const nodeTarget: MakeGatewayUnderTest = (world, raw) => startNodeTarget(world, raw, secrets)

/**
 * The Node gateway with `GATEWAY_CONFIG_SOURCE=file`: `raw` written to a file it reads again at
 * every refresh (`refreshMs`, default 0: every request). `file` is where it lives, to change it.
 */
export async function startFileTarget(world: World, raw: Record<string, unknown>, o: { refreshMs?: number } = {}): Promise<GatewayUnderTest & { file: string }> {
  const dir = mkdtempSync(join(tmpdir(), 'cp-file-config-'))
  const file = join(dir, 'gateway.json')
  writeFileSync(file, JSON.stringify(raw))
  const logs: Array<Record<string, unknown>> = []
  const gw = await startNodeGateway({
    source: { kind: 'file', document: raw, secret: secrets, read: () => readFile(file, 'utf8'), refreshMs: o.refreshMs ?? 0 },
    keys: await loadNodeGrantKeys(world.grantKeys),
    client: { cert: world.pki.clientCert, key: world.pki.clientKey },
    port: 0,
    log: (l) => logs.push(l),
  })
  return {
    name: 'node (file source)',
    url: gw.url,
    file,
    logs,
    fetch: (path, init) => fetch(gw.url + path, init),
    async close() {
      await gw.close(2000)
      rmSync(dir, { recursive: true, force: true })
    },
  }
}

export const fileTarget: MakeGatewayUnderTest = (world, raw) => startFileTarget(world, raw)

/**
 * The gateway mounted under `basePath` in another Hono app (`outer.route(basePath, gateway.app)`),
 * served on Node with the Node transports; the outer app answers `GET /outer` itself.
 */
export function mountedTarget(basePath: string): MakeGatewayUnderTest {
  return async (world, raw) => {
    const logs: Array<Record<string, unknown>> = []
    const agents = nodeAgentTransport({ cert: world.pki.clientCert, key: world.pki.clientKey })
    const kube = nodeKubeTransport()
    const gateway = createGateway({
      config: parseConfig(structuredClone(raw), secrets),
      agents,
      kube,
      keys: await loadGrantKeys(world.grantKeys),
      clock: { now: Date.now },
      log: (l) => logs.push(l),
      basePath,
    })
    const outer = new Hono()
    outer.get('/outer', (c) => c.text('outer'))
    outer.route(basePath, gateway.app)
    const served = await serveFetch(outer.fetch as unknown as FetchHandler, { host: '127.0.0.1', port: 0 })
    const url = served.url + basePath
    return {
      name: `mounted at ${basePath}`,
      url,
      basePath,
      logs,
      // Links the gateway wrote carry the prefix already.
      fetch: (path, init) => fetch(path.startsWith(`${basePath}/`) ? served.url + path : url + path, init),
      async close() {
        await served.close(2000)
        await Promise.all([agents.close(), kube.close()])
      },
    }
  }
}

let bundled: Promise<{ dir: string; script: string }> | undefined

const WORKER_ENTRY = fileURLToPath(new URL('../../../functions/workers/worker.ts', import.meta.url))

/** Builds a Worker entry (default functions/workers/worker.ts) with esbuild as wrangler would, into a new directory. */
async function buildWorker(prefix: string, plugins: import('esbuild').Plugin[] = [], entry = WORKER_ENTRY): Promise<{ dir: string; script: string }> {
  const { build } = await import('esbuild')
  const dir = mkdtempSync(join(tmpdir(), prefix))
  const script = join(dir, 'worker.js')
  await build({
    entryPoints: [entry],
    bundle: true,
    format: 'esm',
    platform: 'neutral',
    target: 'es2022',
    mainFields: ['module', 'main'],
    conditions: ['workerd', 'worker', 'browser', 'import'],
    outfile: script,
    logLevel: 'error',
    plugins,
  })
  return { dir, script }
}

/** Bundles functions/workers/worker.ts with esbuild once per process. */
export function bundleWorker(): Promise<{ dir: string; script: string }> {
  bundled ??= buildWorker('cp-worker-')
  return bundled
}

/**
 * A bundle of the Worker with `document` as functions/workers/bundled-config.json (what a
 * deployment commits before `wrangler deploy`), in its own directory; not cached.
 */
export async function bundleWorkerWith(document: unknown): Promise<{ dir: string; script: string; remove(): void }> {
  const { dir, script } = await buildWorker('cp-worker-bundled-', [{
    name: 'bundled-config',
    setup(b) {
      b.onLoad({ filter: /bundled-config\.json$/ }, () => ({ contents: JSON.stringify(document), loader: 'json' }))
    },
  }])
  return { dir, script, remove: () => rmSync(dir, { recursive: true, force: true }) }
}

/** Another Worker module (a bench's stand-in for the gateway) bundled like the gateway's, for `startWorkerGateway({ bundle })`; not cached. */
export async function bundleWorkerEntry(entry: string): Promise<{ dir: string; script: string; remove(): void }> {
  const { dir, script } = await buildWorker('cp-worker-entry-', [], entry)
  return { dir, script, remove: () => rmSync(dir, { recursive: true, force: true }) }
}

/** The Worker with `GATEWAY_CONFIG_SOURCE=bundled`: the configuration built in, no `GATEWAY_CONFIG` variable. */
export const bundledWorkerTarget: MakeGatewayUnderTest = async (world, raw) => {
  const bundle = await bundleWorkerWith(raw)
  const o = worldBindings(world, raw)
  const gw = await startWorkerGateway({ ...o, bundle, secrets: { ...o.secrets, GATEWAY_CONFIG_SOURCE: 'bundled' }, noConfigVariable: true })
  return { name: 'workerd (bundled source)', url: gw.url, logs: gw.logs, fetch: gw.fetch, close: async () => { await gw.close(); bundle.remove() } }
}

export function removeBundle(): void {
  bundled?.then(({ dir }) => rmSync(dir, { recursive: true, force: true })).catch(() => {})
}

/** The Workers compatibility date of wrangler.toml. */
export const COMPATIBILITY_DATE = '2025-09-01'

export interface WorkerGatewayOptions {
  /** GATEWAY_CONFIG, as JSON-able raw configuration. */
  config: Record<string, unknown>
  /** GRANT_SIGNING_KEYS: a private JWK or a list. */
  grantKeys: unknown
  /** The gateway's client certificate and key (PEM) presented to agents: the `AGENT_MTLS` binding. */
  client: { cert: string; key: string }
  /** PEM of the CA that signs agent server certificates. */
  ca: string
  /** Other string bindings: secrets the configuration names (KUBE_TOKEN_<CLUSTER>, the Grafana HMAC key). */
  secrets?: Record<string, string>
  /** The loopback port of the real HTTP listener. Default 0 (any free port). */
  port?: number
  /** `OPERATIONS_DB` (D1) and `CHECKPOINT_JOBS` (a queue this Worker also consumes), as wrangler.toml declares them. */
  bindings?: { d1?: boolean; queues?: boolean; r2?: string[] }
  /** Called with each structured line the gateway logs (they are kept in `logs` too). */
  onLog?: (line: Record<string, unknown>) => void
  /** Another bundle than the shared one (bundleWorkerWith). */
  bundle?: { dir: string; script: string }
  /** Bind no GATEWAY_CONFIG (the bundled source). */
  noConfigVariable?: boolean
  /**
   * The caller handles SIGINT/SIGTERM. Miniflare otherwise installs handlers that kill workerd
   * and `process.exit(130)` at once, cutting any teardown short (its `exit` hook stays).
   */
  ownSignals?: boolean
}

export interface WorkerGateway {
  /** `http://127.0.0.1:<port>`: the real loopback listener. */
  url: string
  /** miniflare's dispatchFetch against the listener's URL. */
  fetch(path: string, init?: RequestInit): Promise<Response>
  /** The gateway's structured log lines. */
  logs: Array<Record<string, unknown>>
  mf: import('miniflare').Miniflare
  close(): Promise<void>
}

/**
 * The Worker bundle in miniflare (real workerd), bound as wrangler.toml binds it: the agents
 * through a `network` service with a client certificate (the local stand-in for the
 * `mtls_certificates` binding), `KUBE` for Kubernetes APIs on loopback, and optionally D1 and
 * Queues for the webhooks.
 *
 * @example
 * const gw = await startWorkerGateway({ config, grantKeys, client: { cert, key }, ca, bindings: { d1: true, queues: true } })
 * try { await gw.fetch('/healthz') } finally { await gw.close() }
 */
export async function startWorkerGateway(o: WorkerGatewayOptions): Promise<WorkerGateway> {
  const { Miniflare } = await import('miniflare')
  const { dir, script } = o.bundle ?? await bundleWorker()
  const logs: Array<Record<string, unknown>> = []
  const local = { allow: ['local', 'private'] }
  const signalsBefore = { SIGINT: process.listeners('SIGINT'), SIGTERM: process.listeners('SIGTERM') }
  const mf = new Miniflare({
    modules: true,
    scriptPath: script,
    modulesRoot: dir,
    compatibilityDate: COMPATIBILITY_DATE,
    host: '127.0.0.1',
    port: o.port ?? 0,
    bindings: { ...(o.noConfigVariable ? {} : { GATEWAY_CONFIG: JSON.stringify(o.config) }), GRANT_SIGNING_KEYS: JSON.stringify(o.grantKeys), ...o.secrets },
    ...(o.bindings?.d1 ? { d1Databases: ['OPERATIONS_DB'] } : {}),
    ...(o.bindings?.r2 ? { r2Buckets: o.bindings.r2 } : {}),
    ...(o.bindings?.queues
      ? {
        queueProducers: { CHECKPOINT_JOBS: { queueName: 'checkpoint-jobs' } },
        queueConsumers: { 'checkpoint-jobs': { maxBatchSize: 10, maxBatchTimeout: 1, maxRetries: 3 } },
      }
      : {}),
    serviceBindings: {
      AGENT_MTLS: {
        network: {
          ...local,
          tlsOptions: { keypair: { privateKey: o.client.key, certificateChain: o.client.cert }, trustedCertificates: [o.ca] },
        },
      },
      KUBE: { network: local },
    },
    handleStructuredLogs({ message }: { message: string }) {
      let line: Record<string, unknown>
      try {
        line = JSON.parse(message) as Record<string, unknown>
      } catch {
        return // not one of ours
      }
      logs.push(line)
      o.onLog?.(line)
    },
    // workerd echoes console output on stdio too; the structured copy above is the one kept.
    handleRuntimeStdio(stdout: NodeJS.ReadableStream, stderr: NodeJS.ReadableStream) {
      stdout.resume()
      stderr.resume()
    },
  })
  if (o.ownSignals) {
    for (const sig of ['SIGINT', 'SIGTERM'] as const) {
      for (const l of process.listeners(sig)) if (!signalsBefore[sig].includes(l)) process.removeListener(sig, l)
    }
  }
  let url: string
  try {
    url = (await mf.ready).href.replace(/\/$/, '')
  } catch (err) {
    await mf.dispose().catch(() => {})
    throw err
  }
  return {
    url,
    logs,
    mf,
    fetch: async (path, init) => (await mf.dispatchFetch(url + path, init as never)) as unknown as Response,
    close: () => mf.dispose(),
  }
}

/** The suite's world as a Worker gateway's bindings (`secrets` adds to KUBE_TOKEN_PROD). */
export function worldBindings(world: World, raw: Record<string, unknown>, secrets: Record<string, string> = {}): WorkerGatewayOptions {
  return {
    config: raw,
    grantKeys: world.grantKeys,
    client: { cert: world.pki.clientCert, key: world.pki.clientKey },
    ca: world.pki.caCert,
    secrets: { KUBE_TOKEN_PROD: KUBE_TOKEN, ...secrets },
  }
}

export const workerTarget: MakeGatewayUnderTest = async (world, raw) => {
  const gw = await startWorkerGateway(worldBindings(world, raw))
  return { name: 'workerd', url: gw.url, logs: gw.logs, fetch: gw.fetch, close: gw.close }
}
