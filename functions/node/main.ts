/**
 * `npm run start:gateway`: the Node gateway as a process. Reads configuration from the
 * environment, listens, and shuts down gracefully (a second signal exits at once). Deployed as
 * its bundle (./build.ts) with ./start.ts `NODE_FLAGS` and `PROCESS_ENV`, what the npm script
 * does; `node functions/node/main.ts` runs too, with ≈ 40 MiB more RSS idle and more while streaming.
 *
 * Environment:
 * - GATEWAY_CONFIG (JSON) or GATEWAY_CONFIG_FILE — clusters, auth, policy, grants, limits
 *   (on Node a cluster may give `agentCaFile`/`kube.caFile` instead of inline PEM)
 * - GATEWAY_CONFIG_SOURCE — `variable` (default: GATEWAY_CONFIG is the configuration, read once),
 *   `file` (GATEWAY_CONFIG_FILE, read again every GATEWAY_CONFIG_REFRESH_MS: edits are picked up
 *   without a restart) or `store` (versions in OPERATIONS_DB, changed through /v1/admin/config;
 *   GATEWAY_CONFIG seeds an empty store)
 * - GATEWAY_CONFIG_REFRESH_MS — how often the file or the store is asked for a newer version (default 30000)
 * - GRANT_SIGNING_KEYS or GRANT_SIGNING_KEYS_FILE — private JWK(s) for grants
 * - GATEWAY_CLIENT_CERT_FILE, GATEWAY_CLIENT_KEY_FILE — the gateway's mTLS identity
 * - kube token secrets named by `clusters.*.kube.tokenSecret`
 * - HOST (default 127.0.0.1), PORT (default 8080), SHUTDOWN_GRACE_MS (default 10000)
 * - TLS_CERT_FILE, TLS_KEY_FILE — serve HTTPS (agents' --grant-jwks-url must be https)
 * - OPERATIONS_DB — node:sqlite file of webhook jobs and configuration versions; required when
 *   `hooks` is configured or GATEWAY_CONFIG_SOURCE=store
 */
import { readFileSync } from 'node:fs'
import { readFile } from 'node:fs/promises'
import { configSourceSettings } from '../admin/source.ts'
import { loadNodeGrantKeys } from './jws.ts'
import { startNodeGateway } from './start.ts'

function fromEnvOrFile(name: string): string | undefined {
  const inline = process.env[name]
  if (inline) return inline
  const file = process.env[`${name}_FILE`]
  return file ? readFileSync(file, 'utf8') : undefined
}

/** Node-only config conveniences: CA files instead of inline PEM (read into a copy: the document keeps the file names). */
function inlineFiles(document: unknown): unknown {
  const raw = structuredClone(document)
  const root = (raw ?? {}) as { clusters?: Record<string, Record<string, unknown>> }
  if (typeof root !== 'object' || root.clusters === null || typeof root.clusters !== 'object') return raw
  for (const c of Object.values(root.clusters)) {
    if (!c || typeof c !== 'object') continue // parseConfig says what is wrong with it
    if (typeof c.agentCaFile === 'string') {
      c.agentCa = readFileSync(c.agentCaFile, 'utf8')
      delete c.agentCaFile
    }
    const k = c.kube as Record<string, unknown> | undefined
    if (k && typeof k.caFile === 'string') {
      k.ca = readFileSync(k.caFile, 'utf8')
      delete k.caFile
    }
  }
  return raw
}

async function main(): Promise<void> {
  const { kind, refreshMs } = configSourceSettings((n) => process.env[n])
  if (kind === 'bundled') throw new Error('GATEWAY_CONFIG_SOURCE=bundled is for Workers (a document built into the Worker); on Node use file or store')
  const configFile = process.env.GATEWAY_CONFIG_FILE
  if (kind === 'file' && (!configFile || process.env.GATEWAY_CONFIG)) throw new Error('GATEWAY_CONFIG_SOURCE=file reads GATEWAY_CONFIG_FILE (and not GATEWAY_CONFIG): set the one, unset the other')
  const rawConfig = fromEnvOrFile('GATEWAY_CONFIG')
  // The store needs it only while empty (the seed); a missing one is reported then.
  if (!rawConfig && kind === 'variable') throw new Error('GATEWAY_CONFIG or GATEWAY_CONFIG_FILE must be set')
  const document = rawConfig ? JSON.parse(rawConfig) as unknown : undefined
  const keys = await loadNodeGrantKeys(fromEnvOrFile('GRANT_SIGNING_KEYS'))
  const cert = fromEnvOrFile('GATEWAY_CLIENT_CERT')
  const key = fromEnvOrFile('GATEWAY_CLIENT_KEY')
  if (!cert || !key) throw new Error('GATEWAY_CLIENT_CERT(_FILE) and GATEWAY_CLIENT_KEY(_FILE) must be set')
  const port = Number(process.env.PORT ?? 8080)
  if (!Number.isInteger(port) || port < 0 || port > 65535) throw new Error('PORT must be a port number')
  const operationsDb = process.env.OPERATIONS_DB
  // Accepted alerts and configuration versions live in this file: no silent default inside whatever directory we started in.
  if (kind === 'store' && !operationsDb) throw new Error('OPERATIONS_DB must name the node:sqlite file that keeps configuration versions (GATEWAY_CONFIG_SOURCE=store)')
  const hooks = (document as { hooks?: unknown } | undefined)?.hooks !== undefined
  if (hooks && !operationsDb) throw new Error('OPERATIONS_DB must name the node:sqlite file for webhook operations (hooks is configured)')
  const tlsCert = fromEnvOrFile('TLS_CERT')
  const tlsKey = fromEnvOrFile('TLS_KEY')
  if (!tlsCert !== !tlsKey) throw new Error('TLS_CERT(_FILE) and TLS_KEY(_FILE) go together')
  const gw = await startNodeGateway({
    source: { kind, document, refreshMs, secret: (n) => process.env[n], resolve: inlineFiles, ...(kind === 'file' ? { read: () => readFile(configFile!, 'utf8') } : {}) },
    keys, client: { cert, key }, host: process.env.HOST ?? '127.0.0.1', port,
    ...(operationsDb ? { operationsDb } : {}),
    ...(tlsCert && tlsKey ? { tls: { cert: tlsCert, key: tlsKey } } : {}),
  })
  const grace = Number(process.env.SHUTDOWN_GRACE_MS ?? 10_000)
  process.stdout.write(JSON.stringify({ type: 'listening', url: gw.url }) + '\n')
  let stopping = false
  const stop = (signal: string) => {
    if (stopping) process.exit(1) // a second signal: leave now
    stopping = true
    process.stdout.write(JSON.stringify({ type: 'shutdown', signal }) + '\n')
    gw.close(grace).then(() => process.exit(0), () => process.exit(1))
  }
  process.on('SIGTERM', stop)
  process.on('SIGINT', stop)
}

if (import.meta.main) {
  main().catch((err) => {
    process.stderr.write(`checkpoint-gateway: ${(err as Error).message}\n`)
    process.exit(1)
  })
}
