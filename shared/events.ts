/**
 * The checkpoint event stream: what the agent sends as `application/x-ndjson` and the gateway
 * passes through. One JSON object per line; `type` says which. The stream always ends with
 * exactly one `completed` or `failed` event; a stream that ends without one was cut.
 */
import type { ErrorCode } from './errors.ts'
import type { Target } from './names.ts'

export const NDJSON = 'application/x-ndjson'

/** The request was validated, authorized and queued or started. */
export interface AcceptedEvent {
  type: 'accepted'
  requestId: string
  node: string
  target: Target
  /** Seconds the caller is willing to wait; the runtime call itself is never cut short. */
  timeoutSeconds: number
  /** Position in the node's queue; 0 when it started at once. */
  queuePosition: number
  time: string
}

/** The container was found through the CRI runtime. */
export interface ResolvedEvent {
  type: 'resolved'
  containerId: string
  runtime: RuntimeInfo
  time: string
}

/** Sent at a fixed interval while the runtime works, so proxies keep the connection. */
export interface HeartbeatEvent {
  type: 'heartbeat'
  /** Milliseconds since the checkpoint was accepted. */
  elapsedMs: number
  phase: 'queued' | 'checkpointing' | 'hashing'
  time: string
}

export interface CompletedEvent {
  type: 'completed'
  /** Byte-for-byte the kubelet's answer: the archive paths on the node. */
  items: string[]
  archive: ArchiveInfo
  runtime: RuntimeInfo
  containerId: string
  durationMs: number
  time: string
  /** The agent's signed statement of custody: a Sigstore bundle (v0.3) with a DSSE envelope. */
  statement?: unknown
  /** Added by the gateway. */
  cluster?: string
  node?: string
  download?: string
}

export interface FailedEvent {
  type: 'failed'
  status: number
  code: ErrorCode
  message: string
  time: string
  field?: string
  /** The runtime's own error lines (CRIU's dump log) when the agent could read them. */
  runtimeLog?: string[]
  cluster?: string
  node?: string
}

/** A `runtimeLog`: a list of strings. */
export const isRuntimeLog = (v: unknown): v is string[] => Array.isArray(v) && v.every((l) => typeof l === 'string')

export type CheckpointEvent = AcceptedEvent | ResolvedEvent | HeartbeatEvent | CompletedEvent | FailedEvent
export type FinalEvent = CompletedEvent | FailedEvent

export interface RuntimeInfo {
  name: string
  version: string
}

export interface ArchiveInfo {
  name: string
  size: number
  sha256: string
  created: string
}

/**
 * One entry of `GET /checkpoints`. `namespace`, `pod` and `container` come from the agent's record
 * of the checkpoint, not from the name: `<namespace>-<container>` in a name cannot be split safely.
 */
export interface ArchiveEntry extends ArchiveInfo {
  namespace: string
  pod: string
  container: string
  /** False while the digest has not been computed (an archive not written by this agent). */
  sha256Known?: boolean
}

export function encodeEvent(e: CheckpointEvent | StoreEvent): string {
  return JSON.stringify(e) + '\n'
}

/** Splits a byte stream into its lines (without the newline), the last one even if unterminated. */
export async function* ndjsonLines(body: ReadableStream<Uint8Array>): AsyncGenerator<string> {
  const decoder = new TextDecoder()
  let buf = ''
  const reader = body.getReader()
  try {
    for (;;) {
      const { done, value } = await reader.read()
      if (done) break
      buf += decoder.decode(value, { stream: true })
      let nl: number
      while ((nl = buf.indexOf('\n')) >= 0) {
        yield buf.slice(0, nl)
        buf = buf.slice(nl + 1)
      }
    }
    buf += decoder.decode()
    if (buf) yield buf
  } finally {
    reader.releaseLock()
  }
}

/**
 * Splits a byte stream of NDJSON into events. Lines that do not parse are an error: a corrupted
 * stream must not be mistaken for a finished one.
 */
export async function* decodeEvents(body: ReadableStream<Uint8Array>): AsyncGenerator<CheckpointEvent> {
  for await (const line of ndjsonLines(body)) if (line.trim()) yield parseEvent(line.trim())
}

const TYPES = new Set(['accepted', 'resolved', 'heartbeat', 'completed', 'failed'])

export function parseEvent(line: string): CheckpointEvent {
  const e = JSON.parse(line) as { type?: unknown }
  if (!e || typeof e !== 'object' || typeof e.type !== 'string' || !TYPES.has(e.type)) {
    throw new TypeError(`not a checkpoint event: ${line.slice(0, 80)}`)
  }
  return e as CheckpointEvent
}

/**
 * Sealing and uploading an archive (agent: POST /checkpoints/{name}/store, NDJSON): progress
 * events, then `sealed` (every part stored, digests counted on the way) or `failed`.
 */
export interface SealingEvent {
  type: 'sealing'
  /** Archive bytes read, of `total`; sealed bytes produced so far. */
  read: number
  total: number
  sealed: number
  time: string
}

export interface UploadingEvent {
  type: 'uploading'
  /** The part just stored and the sealed bytes stored so far. */
  part: number
  sentBytes: number
  time: string
}

export interface SealedEvent {
  type: 'sealed'
  plaintext: { sha256: string; size: number }
  sealed: { sha256: string; size: number }
  parts: Array<{ partNumber: number; etag: string; size: number }>
  /**
   * The archive's signed statement, signed again with the sealed object as a second subject
   * (`<archive>.zst.age` and its SHA-256); absent for an archive the agent holds no statement for.
   */
  statement?: unknown
  time: string
}

export type StoreEvent = SealingEvent | UploadingEvent | SealedEvent | FailedEvent

const STORE_TYPES = new Set(['sealing', 'uploading', 'sealed', 'failed'])

/** Parses one line of a store stream; throws TypeError for anything else. */
export function parseStoreEvent(line: string): StoreEvent {
  const e = JSON.parse(line) as { type?: unknown }
  if (!e || typeof e !== 'object' || typeof e.type !== 'string' || !STORE_TYPES.has(e.type)) throw new TypeError(`not a store event: ${line.slice(0, 80)}`)
  return e as StoreEvent
}

/** The gateway's outcome of storing an archive in the evidence vault (after `completed`). */
export interface StoredEvent {
  type: 'stored'
  bucket: string
  key: string
  plaintext: { sha256: string; size: number }
  sealed: { sha256: string; size: number }
  /** Fingerprints (16 hex of SHA-256) of the age recipients the archive was sealed to. */
  recipients: string[]
  parts: number
  /** The agent's signed statement, stored beside the object. */
  statementKey?: string
  time: string
}

/** Storing failed; the checkpoint itself succeeded and the archive stays on the node. */
export interface StoreFailedEvent {
  type: 'store_failed'
  code: string
  status: number
  message: string
  time: string
}
