/**
 * The agent's HTTP surface as the gateway sees it. Every request is mutual TLS plus a grant in
 * `Authorization: Bearer <grant>`; answers are problem+json on error.
 *
 * - `POST /checkpoint/{namespace}/{pod}/{container}?timeout=<s>` — kubelet-compatible. `Accept:
 *   application/json` → 200 `{"items":["<path>"]}`; `Accept: application/x-ndjson` → 200 and a
 *   stream of {@link CheckpointEvent}s ending in `completed` or `failed`.
 * - `GET /checkpoints` → `{"items": ArchiveEntry[]}`
 * - `GET /checkpoints/{name}` → the archive (Range, ETag = sha256), `DELETE` → 204.
 * - `GET /checkpoints/{name}/statement` → the archive's signed statement (a Sigstore bundle).
 * - `POST /checkpoints/{name}/store` with an {@link UploadPlanBody} → NDJSON {@link StoreEvent}s:
 *   the archive sealed (zstd, age) and PUT part by part to the presigned URLs; grant op
 *   `checkpoint:store` whose `plan` is the SHA-256 of the exact body.
 * - `GET /statement-keys`, `GET /healthz`, `GET /readyz`, `GET /metrics` (mTLS, no grant).
 */
import type { Target } from './names.ts'
import type { StoreEvent } from './events.ts'

export const AGENT_PATHS = {
  checkpoint: (t: Target) => `/checkpoint/${t.namespace}/${t.pod}/${t.container}`,
  list: () => '/checkpoints',
  archive: (name: string) => `/checkpoints/${encodeURIComponent(name)}`,
  statement: (name: string) => `/checkpoints/${encodeURIComponent(name)}/statement`,
  store: (name: string) => `/checkpoints/${encodeURIComponent(name)}/store`,
  statementKeys: () => '/statement-keys',
} as const

/** What the gateway sends the agent to seal and upload an archive. */
export interface UploadPlanBody {
  /** age X25519 recipients (`age1…`). */
  recipients: string[]
  /** Bytes per part (the last is smaller). */
  partSize: number
  /** Presigned PUT URLs, part 1 first. */
  urls: string[]
}

/** Largest plan body the agent reads: 10,000 part URLs (S3's and R2's limit) of up to ≈ 1.2 KiB. */
export const MAX_PLAN_BYTES = 12 * 1024 * 1024

/** Part sizes a plan may ask for, in MiB: S3's 5 MiB minimum; the agent holds one part in memory. */
export const MIN_PART_MIB = 5
export const MAX_PART_MIB = 512

/** Media type of a Sigstore bundle (v0.3) — how signed statements are served and stored. */
export const BUNDLE_MEDIA_TYPE = 'application/vnd.dev.sigstore.bundle.v0.3+json'

/** Header carrying the caller's request id end to end. */
export const REQUEST_ID_HEADER = 'x-request-id'

/** A request id a caller may choose; anything else is replaced by a fresh UUID. */
export const REQUEST_ID_PATTERN = /^[A-Za-z0-9._:-]{1,128}$/
