/**
 * Stable error codes spoken by the agent and the gateway, and the HTTP status each one carries.
 * Clients and tests match on `code`, never on message text.
 */
export const ERROR_STATUS = {
  // 400: the request itself is wrong; nothing downstream was touched.
  invalid_name: 400,
  invalid_timeout: 400,
  invalid_query: 400,
  invalid_body: 400,
  invalid_archive_name: 400,
  invalid_range: 416,
  /** A recipient that is not an age X25519 recipient (`age1…`), or none configured for the target. */
  invalid_recipient: 400,
  /** A configuration document the gateway would not run (the detail names the field). */
  invalid_config: 400,
  /** The HTTP parser refused the request before any route saw it. */
  malformed_request: 400,
  headers_too_large: 431,
  // 401 / 403: identity and permission.
  unauthenticated: 401,
  invalid_grant: 401,
  forbidden: 403,
  grant_mismatch: 403,
  // 404: absent, or switched off (the kubelet answers 404 when its feature gate is off).
  not_found: 404,
  container_not_found: 404,
  archive_not_found: 404,
  checkpointing_disabled: 404,
  method_not_allowed: 405,
  conflict: 409,
  /** `If-Match` names a version that is no longer the newest (someone else changed it first). */
  precondition_failed: 412,
  payload_too_large: 413,
  /** A change that must name the version it replaces came without `If-Match`. */
  precondition_required: 428,
  // 429 / 503: come back later.
  too_many_requests: 429,
  shutting_down: 503,
  runtime_unavailable: 503,
  /** The gateway cannot fetch the token issuer's keys: a 503, never a 401. */
  auth_unavailable: 503,
  // 5xx: the node could not do it.
  internal: 500,
  runtime_error: 500,
  runtime_unimplemented: 500,
  checkpoint_failed: 500,
  bad_gateway: 502,
  /** Object storage refused an evidence upload or read (a 4xx of its own: expired URL, no such upload). */
  storage_rejected: 502,
  /** Object storage could not be reached or answered 5xx, after retries. */
  storage_unavailable: 503,
  timeout: 504,
  insufficient_storage: 507,
} as const satisfies Record<string, number>

export type ErrorCode = keyof typeof ERROR_STATUS

/** Is `code` one of ours? Used when parsing a peer's answer. */
export function isErrorCode(code: unknown): code is ErrorCode {
  return typeof code === 'string' && Object.hasOwn(ERROR_STATUS, code)
}

/**
 * An error with a stable code, the HTTP status that goes with it and, for bad input, the field at
 * fault. Thrown by validation and by handlers; turned into problem+json at the boundary.
 *
 * @example
 * throw new CheckpointError('invalid_name', 'pod: must be a DNS-1123 subdomain', { field: 'pod' })
 */
export class CheckpointError extends Error {
  readonly code: ErrorCode
  readonly status: number
  readonly field?: string
  /** Extra headers (Retry-After) and detail members for the problem body. */
  readonly headers?: Record<string, string>
  readonly extra?: Record<string, unknown>

  constructor(
    code: ErrorCode,
    message: string,
    opts: { field?: string; headers?: Record<string, string>; extra?: Record<string, unknown>; cause?: unknown } = {},
  ) {
    super(message, opts.cause === undefined ? undefined : { cause: opts.cause })
    this.name = 'CheckpointError'
    this.code = code
    this.status = ERROR_STATUS[code]
    if (opts.field !== undefined) this.field = opts.field
    if (opts.headers !== undefined) this.headers = opts.headers
    if (opts.extra !== undefined) this.extra = opts.extra
  }
}

/** RFC 9457 problem details, with our stable `code` and the failing `field` when there is one. */
export interface Problem {
  type: string
  title: string
  status: number
  code: ErrorCode
  detail: string
  field?: string
  [extra: string]: unknown
}

export const PROBLEM_CONTENT_TYPE = 'application/problem+json'

/** The problem+json body for an error. */
export function toProblem(err: CheckpointError): Problem {
  const p: Problem = {
    type: `https://checkpoint-gateway.dev/problems/${err.code}`,
    title: err.code.replaceAll('_', ' '),
    status: err.status,
    code: err.code,
    detail: err.message,
  }
  if (err.field !== undefined) p.field = err.field
  if (err.extra) for (const [k, v] of Object.entries(err.extra)) if (!(k in p)) p[k] = v
  return p
}

/** Anything that is not a CheckpointError is a bug of ours: `internal`, with the cause kept. */
export function asCheckpointError(err: unknown): CheckpointError {
  return err instanceof CheckpointError ? err : new CheckpointError('internal', 'internal error', { cause: err })
}

/**
 * The raw HTTP/1.1 answer to a request the server's parser refused before any handler ran (Node's
 * `clientError`): oversized headers are 431 `headers_too_large`, anything else 400
 * `malformed_request` — a problem body either way, and the connection closed.
 */
export function parserErrorAnswer(parserCode: string | undefined): string {
  const err = parserCode === 'HPE_HEADER_OVERFLOW'
    ? new CheckpointError('headers_too_large', 'the request headers are larger than this server accepts')
    : new CheckpointError('malformed_request', 'the request is not valid HTTP/1.1')
  const body = JSON.stringify(toProblem(err))
  const reason = err.status === 431 ? 'Request Header Fields Too Large' : 'Bad Request'
  return `HTTP/1.1 ${err.status} ${reason}\r\ncontent-type: ${PROBLEM_CONTENT_TYPE}\r\ncache-control: no-store\r\ncontent-length: ${body.length}\r\nconnection: close\r\n\r\n${body}`
}
