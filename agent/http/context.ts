/**
 * What every agent handler sees: the dependencies the server was built with, the request context
 * the router fills in, the JSON writer and the no-body check. Problem bodies are written only by
 * server.ts: handlers throw CheckpointErrors.
 */
import type { IncomingMessage, ServerResponse } from 'node:http'
import { CheckpointError } from '../../shared/errors.ts'
import type { ArchiveStore } from '../archives.ts'
import type { Checkpointer } from '../checkpointer.ts'
import type { StatementKey } from '../custody.ts'
import type { Runtime } from '../cri/client.ts'
import type { GrantVerifier } from '../grants.ts'
import type { Logger } from '../log.ts'
import type { Metrics } from '../metrics.ts'
import type { TlsMaterial } from '../tls.ts'

export interface AgentDeps {
  node: string
  tls: TlsMaterial
  allowedClients: readonly string[]
  grants: GrantVerifier
  checkpointer: Checkpointer
  store: ArchiveStore
  runtime: Pick<Runtime, 'version'>
  metrics: Metrics
  log: Logger
  checkpointing: boolean
  defaultTimeoutSeconds: number
  maxTimeoutSeconds: number
  heartbeatIntervalMs: number
  /**
   * Signs an archive's statement again with its sealed object as a second subject (for the vault;
   * the statement beside the archive is never replaced); undefined when the archive has none.
   */
  attestSealed?: (archive: string, sealed: { name: string; sha256: string; size: number }) => Promise<unknown>
  /** The keys statements are signed with, current first; published at GET /statement-keys. */
  statementKeys?: () => readonly Pick<StatementKey, 'keyid' | 'alg' | 'publicKeyPem'>[]
}

export interface Ctx {
  req: IncomingMessage
  res: ServerResponse
  /** The path as sent, not normalized. */
  pathname: string
  query: URLSearchParams
  params: string[]
  requestId: string
  client: string
  log: Logger
}

export type Handler = (ctx: Ctx, d: AgentDeps) => Promise<void>

export function sendJson(res: ServerResponse, status: number, body: string, extra: Record<string, string> = {}): void {
  res.writeHead(status, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(body), 'cache-control': 'no-store', ...extra }).end(body)
}

export function refuseBody(req: IncomingMessage): void {
  const len = req.headers['content-length']
  if ((len !== undefined && len !== '0') || req.headers['transfer-encoding']) {
    throw new CheckpointError('invalid_body', 'this request takes no body', { field: 'body' })
  }
}
