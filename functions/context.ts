/**
 * What the gateway's parts see of the world: the dependencies a runtime entry injects ({@link Deps})
 * and the per-request context Hono carries ({@link Env}). Declarations only: every part imports
 * them from here and none from app.ts.
 */
import type { StatementKeyStore } from './custody/keys.ts'
import type { CustodyLog } from './custody/log.ts'
import type { Context, Hono } from 'hono'
import type { ConfigSource } from './admin/model.ts'
import type { Caller } from './authz.ts'
import type { ClusterConfig, GatewayConfig } from './config.ts'
import type { GrantKeys } from './grants.ts'
import type { Operations } from './operations/model.ts'
import type { R2BucketLike } from './vault/r2.ts'

/** Reaches a node's agent over mutual TLS. `path` starts with '/'; the transport adds the base URL. */
export interface AgentTransport {
  fetch(cluster: ClusterConfig, node: string, path: string, init: RequestInit): Promise<Response>
  /**
   * The body of an answer this transport already read whole (a small one), so that callers hand
   * on or parse the bytes without the platform Response's body machinery; undefined for a
   * streamed answer, or a transport that keeps none (the body is then read from the Response).
   */
  bytes?(res: Response): Uint8Array<ArrayBuffer> | undefined
  /**
   * The answer's headers as the transport received them (lowercase names), so that callers read
   * them without building the platform Headers; undefined for a transport that keeps none.
   */
  headers?(res: Response): Readonly<Record<string, string>> | undefined
}

/** Reaches a cluster's Kubernetes API (`path` starts with /api/). */
export interface KubeTransport {
  fetch(cluster: ClusterConfig, path: string, init: RequestInit): Promise<Response>
}

export interface Clock {
  now(): number
}

/** Writes one structured log/audit line. Never given tokens, grants or keys. */
export type Log = (line: Record<string, unknown>) => void

export interface Deps {
  config: GatewayConfig
  agents: AgentTransport
  kube?: KubeTransport
  keys: GrantKeys
  clock: Clock
  log: Log
  /** Operation records and the job queue; enables /v1/hooks/* and /v1/operations. */
  operations?: Operations
  /** Where `config` came from and how to change it; enables /v1/admin/config. */
  admin?: AdminDeps
  /** The archives' hash-chained custody log; enables /v1/custody/… (off without a database). */
  custody?: CustodyLog
  /** The agents' statement keys the gateway collected; enables /v1/clusters/{cluster}/statement-keys. */
  statementKeys?: StatementKeyStore
  /**
   * The prefix another Hono app mounts the gateway under (`outer.route('/forensics', gateway.app)`
   * → '/forensics'); absent when it serves at the root. Hono's route() does not tell a mounted
   * app where it is, and the `download` links the gateway writes (answers and job records) must
   * carry the prefix to be followed, so it is given here.
   */
  basePath?: string
  /** R2 bucket bindings by name, for the vault's `r2` backend (Workers' env; absent on Node). */
  bucket?: (binding: string) => R2BucketLike | undefined
}

/** What the admin API needs besides the active configuration (functions/live.ts supplies it). */
export interface AdminDeps {
  source: ConfigSource
  /** Parses and checks a document as this runtime would run it (secrets, bindings); throws an `Error` naming the field. */
  validate(raw: unknown): GatewayConfig
  /** Makes this isolate serve the newest stored version now (after a change made through it). */
  activate(): Promise<void>
}

/** The app, the queue consumer's entry and the lost-job sweep (no-ops without `deps.operations`). */
export interface Gateway {
  app: Hono<Env>
  runOperation(opId: string): Promise<void>
  sweepOperations(): Promise<number>
}

/** What an audit line says about a request; handlers fill it in as they learn. */
export interface Audit {
  requestId: string
  method: string
  route?: string
  sub?: string
  client?: string
  op?: string
  cluster?: string
  node?: string
  namespace?: string
  pod?: string
  container?: string
  archive?: string
  decision?: 'allow' | 'deny'
  rule?: string
  status?: number
  code?: string
  sha256?: string
  /** The vault's object key, or why storing failed. */
  stored?: string
  storeFailed?: string
  /** The configuration version read or written (/v1/admin/config). */
  configVersion?: number
  dryRun?: boolean
  /** The handler writes the outcome itself, when a stream ends. */
  deferred?: boolean
}

export type Env = { Variables: { caller: Caller; audit: Audit; started: number } }
export type Ctx = Context<Env>

/** Answers about live state are never cached. */
export const NO_STORE = { 'cache-control': 'no-store' }
