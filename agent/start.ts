/**
 * Builds a running agent from a config: runtime connection, checkpoint directory, grant
 * verification, TLS and the HTTPS server. `main.ts` owns the process; tests start and stop agents
 * in-process through this factory.
 */
import { readFile } from 'node:fs/promises'
import type { AddressInfo } from 'node:net'
import { join } from 'node:path'
import { ArchiveStore, type ArchiveMeta } from './archives.ts'
import { Checkpointer, type Job } from './checkpointer.ts'
import type { AgentConfig } from './config.ts'
import { connectRuntime, DEFAULT_ENDPOINTS, probeEndpoints, type Runtime, type RuntimeVersion } from './cri/client.ts'
import { createGrantVerifier } from './grants.ts'
import { loadStatementKey, signStatement, statementFor, withSealedSubject, type StatementKey } from './custody.ts'
import { createLogger, type Logger } from './log.ts'
import { Metrics } from './metrics.ts'
import { createAgentServer, type AgentServer } from './http/server.ts'
import { readTls, watchFiles, watchTls } from './tls.ts'
import type { RuntimeInfo } from '../shared/events.ts'

/** The agent's own statement key when none is given, in the checkpoint directory (see custody.ts). */
export const STATEMENT_KEY_FILE = '.statement-key.pem'

/** Used grant ids, in the checkpoint directory (see grants.ts). */
export const USED_GRANTS_FILE = '.used-grants.log'

export interface RunningAgent {
  address: AddressInfo
  url: string
  runtimeInfo: RuntimeInfo
  endpoint: string
  checkpointer: Checkpointer
  store: ArchiveStore
  metrics: Metrics
  http: AgentServer
  /** Stops accepting, lets running checkpoints finish within `graceMs`, removes partial files. */
  shutdown(graceMs?: number): Promise<{ clean: boolean }>
}

/**
 * The node's memory and swap (`/proc/meminfo`; the container sees the node's): the most a
 * checkpoint's pages can take. Without `/proc`, undefined: the preflight always asks the runtime.
 */
export async function nodeMemoryBytes(meminfo = '/proc/meminfo'): Promise<number | undefined> {
  const text = await readFile(meminfo, 'utf8').catch(() => '')
  const kib = (field: string) => Number(new RegExp(`^${field}:\\s+(\\d+) kB$`, 'm').exec(text)?.[1] ?? NaN)
  const total = kib('MemTotal') + (kib('SwapTotal') || 0)
  return Number.isFinite(total) && total > 0 ? total * 1024 : undefined
}

export async function startAgent(cfg: AgentConfig, opts: { log?: Logger; runtime?: Runtime; nodeMemoryBytes?: number } = {}): Promise<RunningAgent> {
  const log = opts.log ?? createLogger({ level: cfg.logLevel, base: { node: cfg.nodeName } })
  let runtime = opts.runtime
  let endpoint = cfg.runtimeEndpoint ?? 'injected'
  let v: RuntimeVersion | undefined
  if (!runtime) {
    if (cfg.runtimeEndpoint) {
      runtime = connectRuntime(cfg.runtimeEndpoint)
    } else {
      const found = await probeEndpoints(DEFAULT_ENDPOINTS)
      if (!found) throw new Error(`no CRI runtime answered at ${DEFAULT_ENDPOINTS.join(' or ')}; set --runtime-endpoint`)
      ;({ runtime, endpoint, version: v } = found)
    }
  }
  try {
    v ??= await runtime.version()
  } catch (err) {
    runtime.close()
    throw new Error(`CRI runtime at ${endpoint} did not answer Version: ${(err as Error).message}`)
  }
  const runtimeInfo: RuntimeInfo = { name: v.runtimeName, version: v.runtimeVersion }
  log.info('runtime connected', { endpoint, runtime: runtimeInfo, apiVersion: v.runtimeApiVersion })

  const metrics = new Metrics()
  const store = new ArchiveStore(cfg.checkpointDir, cfg.retention, log)
  await store.init()
  // The used-grant journal sits beside the archives: the one directory the agent owns (0700).
  const grants = await createGrantVerifier({ node: cfg.nodeName, ...cfg.grants, journalFile: join(cfg.checkpointDir, USED_GRANTS_FILE) })
  // The statement key: given, or made at first start beside the archives (0600) and kept.
  const keyFile = cfg.statementKey ?? join(cfg.checkpointDir, STATEMENT_KEY_FILE)
  const keys = { current: await loadStatementKey(keyFile, cfg.statementKey ? undefined : cfg.statementKeyAlg), all: [] as StatementKey[] }
  keys.all.push(keys.current)
  const attest = (meta: ArchiveMeta, job: Job, startedAt: Date, completedAt: Date) => {
    const r = job.requester
    return signStatement(statementFor(meta, {
      ...(cfg.grants.cluster ? { cluster: cfg.grants.cluster } : {}),
      node: cfg.nodeName, namespace: meta.namespace, pod: meta.pod, container: meta.container, containerId: meta.containerId,
      image: job.image, runtime: meta.runtime,
      requestId: r?.requestId ?? '', requester: { sub: r?.sub ?? '', ...(r?.client ? { client: r.client } : {}) },
      grant: { jti: r?.jti ?? '', ...(r?.issuer ? { issuer: r.issuer } : {}) },
      ...(r?.reason ? { reason: r.reason } : {}),
      times: { requested: (r?.requestedAt ?? startedAt).toISOString(), started: startedAt.toISOString(), completed: completedAt.toISOString() },
      archive: { size: meta.size },
    }), keys.current)
  }
  const checkpointer = new Checkpointer({
    runtime, runtimeInfo, store, metrics, log, attest,
    maxConcurrent: cfg.maxConcurrent, maxQueue: cfg.maxQueue, diskMarginBytes: cfg.diskMarginBytes,
    nodeMemoryBytes: opts.nodeMemoryBytes ?? await nodeMemoryBytes(),
  })
  const http = createAgentServer({
    node: cfg.nodeName,
    tls: await readTls(cfg.tls),
    allowedClients: cfg.allowedClients,
    grants, checkpointer, store, runtime, metrics, log,
    checkpointing: cfg.checkpointing,
    defaultTimeoutSeconds: cfg.defaultTimeoutSeconds,
    maxTimeoutSeconds: cfg.maxTimeoutSeconds,
    heartbeatIntervalMs: cfg.heartbeatIntervalMs,
    statementKeys: () => keys.all,
    attestSealed: async (archive, sealed) => {
      const bundle = await store.readStatement(archive).catch(() => null)
      if (!bundle) return undefined
      // The node's own statement file is never replaced: the re-signed one travels to the vault.
      return signStatement(withSealedSubject(bundle, sealed), keys.current)
    },
  })
  const address = await http.listen(cfg.listen.port, cfg.listen.host)
  const stopWatch = watchTls(http.server, cfg.tls, cfg.tls.reloadIntervalMs, log)
  // Grant keys rotate by kid through the same kind of mounted file.
  const stopKeys = cfg.grants.jwksFile ? watchFiles([cfg.grants.jwksFile], cfg.tls.reloadIntervalMs, () => grants.reload(), log, 'grant keys') : () => {}
  // A rotated statement key signs from then on; the keys it replaced stay published for old statements.
  const stopStatementKey = cfg.statementKey
    ? watchFiles([cfg.statementKey], cfg.tls.reloadIntervalMs, async () => {
      const next = await loadStatementKey(cfg.statementKey!)
      if (next.keyid === keys.current.keyid) return
      keys.current = next
      keys.all.unshift(next)
      log.info('statement key rotated', { keyid: next.keyid })
    }, log, 'statement key')
    : () => {}
  const host = address.family === 'IPv6' ? `[${address.address}]` : address.address
  log.info('agent listening', { address: `${host}:${address.port}`, checkpointDir: cfg.checkpointDir, checkpointing: cfg.checkpointing })

  let stopping: Promise<{ clean: boolean }> | undefined
  const rt = runtime
  return {
    address, url: `https://${host}:${address.port}`, runtimeInfo, endpoint, checkpointer, store, metrics, http,
    shutdown(graceMs = cfg.shutdownGraceMs) {
      stopping ??= (async () => {
        stopWatch()
        stopKeys()
        stopStatementKey()
        const closed = http.stopAccepting()
        const clean = await checkpointer.close(graceMs)
        // Whatever the runtime is still writing is not an archive: unlink it (the runtime's open
        // file keeps writing into an inode that is freed when it closes).
        for (const p of store.pending) await store.discard(p)
        // Let answers already being written reach their callers, then cut what is left
        // (downloads, idle keep-alive connections).
        let timer: NodeJS.Timeout | undefined
        await Promise.race([closed, new Promise((r) => (timer = setTimeout(r, 5_000)))])
        clearTimeout(timer)
        http.server.closeAllConnections()
        await closed
        rt.close()
        await grants.close()
        log.info('agent stopped', { clean })
        return { clean }
      })()
      return stopping
    },
  }
}
