/**
 * The agent's HTTP surface as the gateway sees it. Every request is mutual TLS plus a grant in
 * `Authorization: Bearer <grant>`; answers are problem+json on error.
 *
 * - `POST /checkpoint/{namespace}/{pod}/{container}?timeout=<s>` — kubelet-compatible. `Accept:
 *   application/json` → 200 `{"items":["<path>"]}`; `Accept: application/x-ndjson` → 200 and a
 *   stream of {@link CheckpointEvent}s ending in `completed` or `failed`.
 * - `GET /checkpoints` → `{"items": ArchiveEntry[]}`
 * - `GET /checkpoints/{name}` → the archive (Range, ETag = sha256), `DELETE` → 204.
 * - `GET /healthz`, `GET /readyz`, `GET /metrics` (mTLS, no grant).
 */
import type { Target } from './names.ts'

export const AGENT_PATHS = {
  checkpoint: (t: Target) => `/checkpoint/${t.namespace}/${t.pod}/${t.container}`,
  list: () => '/checkpoints',
  archive: (name: string) => `/checkpoints/${encodeURIComponent(name)}`,
} as const

/** Header carrying the caller's request id end to end. */
export const REQUEST_ID_HEADER = 'x-request-id'

/** A request id a caller may choose; anything else is replaced by a fresh UUID. */
export const REQUEST_ID_PATTERN = /^[A-Za-z0-9._:-]{1,128}$/
