/**
 * The gateway's one error table: our errors → problem+json responses, and the agent's answers →
 * our errors. Status is never "improved": an agent 4xx stays a 4xx, a 5xx stays a 5xx — except
 * the agent's 401/403, which judge the gateway's grant or client certificate, not the caller
 * (who passed the gateway's own checks): those are 502 `bad_gateway` with `agentCode` and
 * `agentStatus`.
 */
import { CheckpointError, ERROR_STATUS, PROBLEM_CONTENT_TYPE, isErrorCode, toProblem, type ErrorCode } from '../shared/errors.ts'
import { isRuntimeLog, type FailedEvent } from '../shared/events.ts'

/** 503 when the token issuer's key set cannot be fetched. */
export class AuthUnavailableError extends CheckpointError {
  constructor(message: string, cause?: unknown) {
    super('auth_unavailable', message, { cause, headers: { 'Retry-After': '5' } })
    this.name = 'AuthUnavailableError'
  }
}

/** A problem+json response for an error; `status` overrides the code's own (agent pass-through). */
export function problemResponse(err: CheckpointError, opts: { status?: number; extra?: Record<string, unknown>; requestId?: string } = {}): Response {
  const body = toProblem(err)
  if (opts.status !== undefined) body.status = opts.status
  if (opts.extra) for (const [k, v] of Object.entries(opts.extra)) if (v !== undefined && !(k in body)) body[k] = v
  if (opts.requestId) body.requestId = opts.requestId
  const headers = new Headers({ 'content-type': PROBLEM_CONTENT_TYPE, 'cache-control': 'no-store' })
  if (err.headers) for (const [k, v] of Object.entries(err.headers)) headers.set(k, v)
  return new Response(JSON.stringify(body), { status: body.status, headers })
}

/** The code we use for an agent status when its body names no code of ours. */
const STATUS_FALLBACK: Record<number, ErrorCode> = {
  400: 'invalid_body',
  404: 'not_found',
  405: 'method_not_allowed',
  409: 'conflict',
  413: 'payload_too_large',
  416: 'invalid_range',
  429: 'too_many_requests',
  503: 'runtime_unavailable',
  504: 'timeout',
  507: 'insufficient_storage',
}

export interface AgentFailure {
  err: CheckpointError
  /** The agent's status, kept as is (401/403 → 502, see above). */
  status: number
}

/**
 * Reads an agent's error answer (problem+json, or anything else a proxy in between produced).
 * The body is read up to 16 KiB.
 */
export async function agentFailure(res: Response): Promise<AgentFailure> {
  let body: unknown = undefined
  try {
    const text = await readCapped(res, 16_384)
    body = JSON.parse(text)
  } catch {
    // not JSON: keep the status, pick the code from it
  }
  const b = (body ?? {}) as { code?: unknown; detail?: unknown; field?: unknown }
  const status = res.status >= 400 && res.status <= 599 ? res.status : 502
  const detail = typeof b.detail === 'string' ? b.detail.slice(0, 500) : `agent answered ${res.status}`
  if (status === 401 || status === 403) {
    // invalid_grant, grant_mismatch, forbidden (our client certificate): the gateway's problem.
    const agentCode = typeof b.code === 'string' && /^[a-z_]{1,64}$/.test(b.code) ? b.code : status === 401 ? 'invalid_grant' : 'forbidden'
    const agentField = typeof b.field === 'string' && /^[a-z_]{1,64}$/.test(b.field) ? { agentField: b.field } : {}
    const err = new CheckpointError('bad_gateway', `the agent refused the gateway's credentials (${status} ${agentCode}): ${detail}`, { extra: { agentCode, agentStatus: status, ...agentField } })
    return { err, status: 502 }
  }
  let code: ErrorCode
  if (isErrorCode(b.code) && Math.floor(ERROR_STATUS[b.code] / 100) === Math.floor(status / 100)) code = b.code
  else code = STATUS_FALLBACK[status] ?? (status >= 500 ? 'bad_gateway' : 'invalid_body')
  const headers: Record<string, string> = {}
  const ra = res.headers.get('retry-after')
  if (ra) headers['Retry-After'] = ra
  const err = new CheckpointError(code, detail, {
    ...(typeof b.field === 'string' ? { field: b.field } : {}),
    ...(ra ? { headers } : {}),
  })
  return { err, status }
}

/**
 * A `failed` event as the error it reports: its code when it is one of ours (else `bad_gateway`),
 * its status when that is an error status (else the code's). The one reading of a final event for
 * the JSON answer, the outcome line and a job's record.
 */
export function failedEventFailure(f: FailedEvent): AgentFailure {
  const code = isErrorCode(f.code) ? f.code : 'bad_gateway'
  const status = Number.isInteger(f.status) && f.status >= 400 && f.status <= 599 ? f.status : ERROR_STATUS[code]
  return { err: new CheckpointError(code, f.message, f.field ? { field: f.field } : {}), status }
}

/** The agent's `runtimeLog` (CRIU's error lines) of a failed event, as a spreadable member. */
export const runtimeLogOf = (f: FailedEvent): { runtimeLog?: string[] } => (isRuntimeLog(f.runtimeLog) && f.runtimeLog.length ? { runtimeLog: f.runtimeLog } : {})

async function readCapped(res: Response, max: number): Promise<string> {
  if (!res.body) return ''
  const reader = res.body.getReader()
  const chunks: Uint8Array[] = []
  let n = 0
  try {
    for (;;) {
      const { done, value } = await reader.read()
      if (done) break
      chunks.push(value)
      n += value.byteLength
      if (n >= max) break
    }
  } finally {
    reader.cancel().catch(() => {})
  }
  const all = new Uint8Array(Math.min(n, max))
  let off = 0
  for (const c of chunks) {
    const take = Math.min(c.byteLength, all.byteLength - off)
    all.set(c.subarray(0, take), off)
    off += take
  }
  return new TextDecoder().decode(all)
}
