/**
 * Bearer JWT authentication with jose. Issuers, audience and algorithms come from config; keys
 * from a remote JWKS (one `createRemoteJWKSet` per URL per isolate) or a static set. Any token
 * problem is 401 `unauthenticated`; a key set we cannot fetch is 503 `auth_unavailable`.
 *
 * Verified tokens are remembered for a short while (see {@link TokenCache}): a client sends the
 * same token with every request, and its signature check is most of a request's CPU.
 */
import type { MiddlewareHandler } from 'hono'
import { createLocalJWKSet, createRemoteJWKSet, errors, jwtVerify, type JWTPayload, type JWTVerifyGetKey } from 'jose'
import { CheckpointError } from '../shared/errors.ts'
import type { Caller } from './authz.ts'
import type { AuthConfig } from './config.ts'
import type { Env } from './context.ts'
import { AuthUnavailableError } from './problem.ts'

const INVALID_TOKEN = { 'WWW-Authenticate': 'Bearer error="invalid_token"' }

/** Remote key sets live for the isolate: jose caches keys and rate-limits refetches inside them. */
const remoteSets = new Map<string, JWTVerifyGetKey>()

function remoteSet(url: string): JWTVerifyGetKey {
  let set = remoteSets.get(url)
  if (!set) {
    set = createRemoteJWKSet(new URL(url), { timeoutDuration: 3000, cooldownDuration: 30_000, cacheMaxAge: 600_000 })
    remoteSets.set(url, set)
  }
  return set
}

/** Errors that mean "this token is bad" rather than "the key set is unreachable". */
function isTokenFault(err: unknown): boolean {
  return (
    err instanceof errors.JWKSNoMatchingKey ||
    err instanceof errors.JWKSMultipleMatchingKeys ||
    err instanceof errors.JOSEAlgNotAllowed ||
    err instanceof errors.JOSENotSupported ||
    err instanceof errors.JWSInvalid ||
    err instanceof errors.JWTInvalid
  )
}

export type Authenticate = (authorization: string | undefined) => Promise<Caller>

/** How many verified tokens an authenticator remembers, and for how long at most. */
const TOKEN_CACHE_MAX = 1000
export const TOKEN_CACHE_TTL_MS = 60_000
/** Longer tokens are verified every time (bounds the cache's memory: 1,000 × 4 KiB of token, and its claims). */
const TOKEN_CACHE_MAX_CHARS = 4096

interface Verified {
  payload: JWTPayload
  /** Clock time (ms) after which the entry is dropped: at most TTL after it was verified. */
  until: number
}

/**
 * Verified caller tokens by their exact text, for at most {@link TOKEN_CACHE_TTL_MS} (so a key
 * the issuer withdraws stops being honoured within that bound, on top of the key set's own
 * cache), never past the token's `exp` (plus the clock tolerance), at most
 * {@link TOKEN_CACHE_MAX} entries (oldest first out). Only successes are stored. A hit repeats
 * the time checks jose makes (`nbf`, `exp` with the same tolerance and clock); everything else
 * jose checks (signature, algorithm, issuer, audience, required claims) depends on the token's
 * text and the authenticator's fixed options alone.
 */
export class TokenCache {
  readonly #entries = new Map<string, Verified>()
  readonly #max: number
  readonly #ttlMs: number
  readonly #toleranceSec: number

  constructor(toleranceSec: number, max = TOKEN_CACHE_MAX, ttlMs = TOKEN_CACHE_TTL_MS) {
    this.#toleranceSec = toleranceSec
    this.#max = max
    this.#ttlMs = ttlMs
  }

  get size(): number {
    return this.#entries.size
  }

  /** The payload of a token verified earlier that is still valid at `nowMs`, else undefined. */
  get(token: string, nowMs: number): JWTPayload | undefined {
    const e = this.#entries.get(token)
    if (!e) return undefined
    // As jose: whole seconds of `currentDate`, tolerance on both sides.
    const now = Math.floor(nowMs / 1000)
    const { nbf, exp } = e.payload
    if (nowMs >= e.until || (typeof nbf === 'number' && nbf > now + this.#toleranceSec) || (typeof exp === 'number' && exp <= now - this.#toleranceSec)) {
      this.#entries.delete(token)
      return undefined
    }
    return e.payload
  }

  /** Remembers a token jose has just verified at `nowMs`. */
  set(token: string, payload: JWTPayload, nowMs: number): void {
    if (token.length > TOKEN_CACHE_MAX_CHARS || this.#max <= 0) return
    let until = nowMs + this.#ttlMs
    // The first instant jose would call it expired: now - tolerance >= exp, in whole seconds.
    if (typeof payload.exp === 'number') until = Math.min(until, (payload.exp + this.#toleranceSec) * 1000)
    if (until <= nowMs) return
    this.#entries.delete(token)
    while (this.#entries.size >= this.#max) this.#entries.delete(this.#entries.keys().next().value!)
    this.#entries.set(token, { payload, until })
  }
}

const BEARER = /^Bearer ([A-Za-z0-9._~+/-]+=*)$/i

/**
 * Builds the authenticator once (per app, i.e. per isolate).
 *
 * @example
 * const authenticate = createAuthenticator(config.auth)
 * const caller = await authenticate(req.headers.get('authorization') ?? undefined)
 */
export function createAuthenticator(auth: AuthConfig, now: () => number, cache: TokenCache = new TokenCache(auth.clockToleranceSec)): Authenticate {
  let keys: JWTVerifyGetKey
  if (auth.jwksUrl) {
    const remote = remoteSet(auth.jwksUrl)
    keys = async function remoteKey(header, token) {
      try {
        return await remote(header, token)
      } catch (err) {
        if (isTokenFault(err)) throw err
        throw new AuthUnavailableError('the token issuer key set is unreachable; try again later', err)
      }
    }
  } else {
    keys = createLocalJWKSet(auth.jwks!)
  }
  const options = {
    issuer: auth.issuers,
    audience: auth.audience,
    algorithms: auth.algorithms,
    clockTolerance: auth.clockToleranceSec,
    requiredClaims: ['exp', 'sub'],
  }

  return async function authenticate(authorization) {
    const m = authorization ? BEARER.exec(authorization) : null
    if (!m) {
      throw new CheckpointError('unauthenticated', 'a Bearer token is required', { headers: { 'WWW-Authenticate': authorization ? INVALID_TOKEN['WWW-Authenticate'] : 'Bearer' } })
    }
    const token = m[1]!
    const at = now()
    const known = cache.get(token, at)
    if (known) return callerOf(known, auth.groupsClaim)
    let payload: JWTPayload
    try {
      ;({ payload } = await jwtVerify(token, keys, { ...options, currentDate: new Date(at) }))
    } catch (err) {
      if (err instanceof AuthUnavailableError) throw err
      const code = err instanceof errors.JOSEError ? err.code : 'ERR_UNKNOWN'
      throw new CheckpointError('unauthenticated', `invalid token (${code})`, { headers: INVALID_TOKEN, extra: { reason: code } })
    }
    if (typeof payload.sub !== 'string' || payload.sub === '') {
      throw new CheckpointError('unauthenticated', 'invalid token (no sub)', { headers: INVALID_TOKEN, extra: { reason: 'ERR_JWT_CLAIM_VALIDATION_FAILED' } })
    }
    cache.set(token, payload, at)
    return callerOf(payload, auth.groupsClaim)
  }
}

function callerOf(p: JWTPayload, groupsClaim: string): Caller {
  const scopes = new Set<string>()
  if (typeof p.scope === 'string') for (const s of p.scope.split(' ')) if (s) scopes.add(s)
  if (Array.isArray(p.scp)) for (const s of p.scp) if (typeof s === 'string') scopes.add(s)
  const g = p[groupsClaim]
  const groups = Array.isArray(g) ? g.filter((x): x is string => typeof x === 'string') : []
  const client = typeof p.azp === 'string' ? p.azp : typeof p.client_id === 'string' ? p.client_id : undefined
  const caller: Caller = { sub: p.sub!, groups, scopes }
  if (client !== undefined) caller.client = client
  return caller
}

/** The bearer-token middleware: a caller set before it (a signed webhook) stands. */
export const bearerAuth = (authenticate: Authenticate): MiddlewareHandler<Env> =>
  async function authn(c, next) {
    if (c.get('caller')) return next()
    const caller = await authenticate(c.req.header('authorization'))
    c.set('caller', caller)
    const a = c.get('audit')
    a.sub = caller.sub
    if (caller.client !== undefined) a.client = caller.client
    await next()
  }
