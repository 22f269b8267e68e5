/**
 * The audit trail of a request: an id and a record from the first middleware on, one `decision`
 * line per authorization, one `outcome` line per /v1 request (a streaming handler writes its own
 * when the stream ends), and problem answers that record their code on the way out.
 */
import type { MiddlewareHandler } from 'hono'
import { REQUEST_ID_HEADER, REQUEST_ID_PATTERN } from '../shared/agent-api.ts'
import type { CheckpointError } from '../shared/errors.ts'
import { requireAllowed, type Action, type Decision } from './authz.ts'
import type { Audit, Clock, Ctx, Env, Log } from './context.ts'
import { problemResponse } from './problem.ts'

export interface AuditTrail {
  readonly log: Log
  /** Records a decision on the request and logs it; a deny throws `forbidden`. */
  authorize(c: Ctx, action: Action, decision: Decision): void
  /** Writes the request's outcome line. */
  outcome(audit: Audit, started: number): void
  /** A problem answer to the request, its code kept for the outcome line. */
  problem(c: Ctx, err: CheckpointError, opts?: { status?: number; extra?: Record<string, unknown> }): Response
  /** An `internal` error is our bug: its cause (stack) goes to the log, never to the caller. */
  internal(err: CheckpointError, requestId: string | undefined): void
}

export function createAuditTrail({ log, clock }: { log: Log; clock: Clock }): AuditTrail {
  const internal = (err: CheckpointError, requestId: string | undefined): void => {
    if (err.code === 'internal') log({ type: 'error', requestId, error: String((err.cause as Error | undefined)?.stack ?? err.cause ?? err.message) })
  }
  return {
    log,
    internal,
    authorize(c, action, decision) {
      const a = c.get('audit')
      a.op = `checkpoint:${action}`
      a.decision = decision.allow ? 'allow' : 'deny'
      if (decision.rule) a.rule = decision.rule
      const { deferred: _d, status: _s, code: _c, sha256: _h, ...who } = a
      log({ type: 'decision', ...who, ...(decision.missing ? { missing: decision.missing } : {}) })
      requireAllowed(decision)
    },
    outcome(audit, started) {
      const { deferred: _, ...rest } = audit
      log({ type: 'outcome', ...rest, durationMs: clock.now() - started })
    },
    problem(c, err, opts = {}) {
      const a = c.get('audit')
      if (a) a.code = err.code
      internal(err, a?.requestId)
      return problemResponse(err, { ...opts, ...(a ? { requestId: a.requestId } : {}) })
    },
  }
}

/** Answers made with the request's id already in their headers ({@link stampedResponse}). */
const stamped = new WeakSet<Response>()

/**
 * An answer whose headers, a plain record, already carry the request's id: {@link requestContext}
 * then leaves them alone, and on Node they reach the client without ever being a `Headers` (the
 * download path: test/README.md, "Where the time goes").
 */
export function stampedResponse(c: Ctx, body: ConstructorParameters<typeof Response>[0], status: number, headers: Record<string, string>): Response {
  const res = new Response(body, { status, headers: { ...headers, [REQUEST_ID_HEADER]: c.get('audit').requestId } })
  stamped.add(res)
  return res
}

/** Gives every request an id (the caller's, when well-formed) and an audit record; the answer carries the id. */
export const requestContext = (clock: Clock): MiddlewareHandler<Env> =>
  async function requestContext(c, next) {
    const given = c.req.header(REQUEST_ID_HEADER)
    const requestId = given && REQUEST_ID_PATTERN.test(given) ? given : crypto.randomUUID()
    c.set('audit', { requestId, method: c.req.method })
    c.set('started', clock.now())
    await next()
    if (!stamped.has(c.res)) c.res.headers.set(REQUEST_ID_HEADER, requestId)
  }

/** Writes the outcome line of every request it wraps, unless the handler took that over (a stream). */
export const auditOutcome = (trail: AuditTrail): MiddlewareHandler<Env> =>
  async function auditOutcome(c, next) {
    await next()
    const a = c.get('audit')
    if (a.deferred) return
    a.status = c.res.status
    trail.outcome(a, c.get('started'))
  }
