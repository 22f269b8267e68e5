/**
 * Bearer JWT authentication with jose. Issuers, audience and algorithms come from config; keys
 * from a remote JWKS (one `createRemoteJWKSet` per URL per isolate) or a static set. Any token
 * problem is 401 `unauthenticated`; a key set we cannot fetch is 503 `auth_unavailable`.
 */
import { createLocalJWKSet, createRemoteJWKSet, errors, jwtVerify, type JWTPayload, type JWTVerifyGetKey } from 'jose'
import { CheckpointError } from '../shared/errors.ts'
import type { Caller } from './authz.ts'
import type { AuthConfig } from './config.ts'
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

/**
 * Builds the authenticator once (per app, i.e. per isolate).
 *
 * @example
 * const authenticate = createAuthenticator(config.auth)
 * const caller = await authenticate(req.headers.get('authorization') ?? undefined)
 */
export function createAuthenticator(auth: AuthConfig, now: () => number): Authenticate {
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
    const m = authorization ? /^Bearer ([A-Za-z0-9._~+/-]+=*)$/i.exec(authorization) : null
    if (!m) {
      throw new CheckpointError('unauthenticated', 'a Bearer token is required', { headers: { 'WWW-Authenticate': authorization ? INVALID_TOKEN['WWW-Authenticate'] : 'Bearer' } })
    }
    let payload: JWTPayload
    try {
      ;({ payload } = await jwtVerify(m[1]!, keys, { ...options, currentDate: new Date(now()) }))
    } catch (err) {
      if (err instanceof AuthUnavailableError) throw err
      const code = err instanceof errors.JOSEError ? err.code : 'ERR_UNKNOWN'
      throw new CheckpointError('unauthenticated', `invalid token (${code})`, { headers: INVALID_TOKEN, extra: { reason: code } })
    }
    if (typeof payload.sub !== 'string' || payload.sub === '') {
      throw new CheckpointError('unauthenticated', 'invalid token (no sub)', { headers: INVALID_TOKEN, extra: { reason: 'ERR_JWT_CLAIM_VALIDATION_FAILED' } })
    }
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
