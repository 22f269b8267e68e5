/**
 * Verifies the gateway's grants: signature (jose, asymmetric algorithms only), audience = this
 * node's agent, issuer when configured, a bounded lifetime, and a `jti` that is used once.
 */
import { readFile } from 'node:fs/promises'
import { createLocalJWKSet, createRemoteJWKSet, errors as joseErrors, jwtVerify, type JSONWebKeySet, type JWTPayload } from 'jose'
import { CheckpointError } from '../shared/errors.ts'
import { checkGrantCovers, GRANT_TYP, grantAudience, type GrantClaims, type GrantRequirement } from '../shared/grant.ts'

const ALGORITHMS = ['EdDSA', 'ES256', 'ES384', 'PS256', 'RS256']
const CLOCK_TOLERANCE_S = 5

export interface GrantVerifierOptions {
  node: string
  /** When set, grants must name this cluster (the same node name may exist in several clusters). */
  cluster?: string
  issuer?: string
  maxLifetimeSeconds: number
  jwksFile?: string
  jwksUrl?: string
  /** Injected for tests. */
  now?: () => number
  /** Upper bound of remembered jtis; beyond it new grants are refused until old ones expire. */
  maxRemembered?: number
}

export type VerifiedGrant = GrantClaims & JWTPayload

export interface GrantVerifier {
  /** Verifies `authorization` and that it covers `need`; consumes its jti. */
  verify(authorization: string | undefined, need: Omit<GrantRequirement, 'node'>): Promise<VerifiedGrant>
  /** Re-reads a JWKS file (keys rotate by kid). */
  reload(): Promise<void>
}

export async function createGrantVerifier(o: GrantVerifierOptions): Promise<GrantVerifier> {
  const now = o.now ?? Date.now
  // Used jtis live in memory only: grants issued before this process started are refused, so a
  // restart cannot make an old grant usable again.
  const startedAt = Math.floor(now() / 1000)
  const maxRemembered = o.maxRemembered ?? 100_000
  let keys: ReturnType<typeof createLocalJWKSet> | ReturnType<typeof createRemoteJWKSet>
  const load = async () => {
    if (o.jwksFile) keys = createLocalJWKSet(JSON.parse(await readFile(o.jwksFile, 'utf8')) as JSONWebKeySet)
    else if (o.jwksUrl) keys = createRemoteJWKSet(new URL(o.jwksUrl), { cooldownDuration: 30_000, cacheMaxAge: 600_000 })
    else throw new TypeError('grant keys: give jwksFile or jwksUrl')
  }
  await load()
  /** jti → exp (ms). */
  const seen = new Map<string, number>()
  const sweep = () => {
    const t = now()
    for (const [jti, exp] of seen) if (exp + CLOCK_TOLERANCE_S * 1000 < t) seen.delete(jti)
  }

  return {
    reload: load,
    async verify(authorization, need) {
      const m = /^Bearer ([A-Za-z0-9_.-]+)$/.exec(authorization ?? '')
      if (!m) throw new CheckpointError('invalid_grant', 'a grant is required: Authorization: Bearer <grant>', { field: 'authorization' })
      let payload: JWTPayload
      try {
        ;({ payload } = await jwtVerify(m[1]!, keys, {
          algorithms: ALGORITHMS,
          audience: grantAudience(o.node),
          typ: GRANT_TYP,
          clockTolerance: CLOCK_TOLERANCE_S,
          requiredClaims: ['exp', 'iat', 'jti'],
          currentDate: new Date(now()),
          ...(o.issuer ? { issuer: o.issuer } : {}),
        }))
      } catch (err) {
        const code = (err as { code?: string }).code ?? ''
        // jose's own verdicts on the token are the caller's fault; a key set that cannot be
        // fetched or read (timeout, network, bad JWKS document) is ours: 503, never 401.
        const keysDown = err instanceof joseErrors.JWKSTimeout || err instanceof joseErrors.JWKSInvalid || !code.startsWith('ERR_J')
        if (keysDown) throw new CheckpointError('auth_unavailable', 'grant keys could not be fetched or read', { cause: err, headers: { 'retry-after': '5' } })
        throw new CheckpointError('invalid_grant', `grant refused (${code})`, { field: 'authorization', cause: err, extra: { reason: code } })
      }
      if (payload.iat! < startedAt - CLOCK_TOLERANCE_S) {
        throw new CheckpointError('invalid_grant', 'grant issued before this agent started', { field: 'authorization', extra: { reason: 'issued_before_start' } })
      }
      if (payload.exp! - payload.iat! > o.maxLifetimeSeconds) {
        throw new CheckpointError('invalid_grant', `grant lifetime exceeds ${o.maxLifetimeSeconds}s`, { field: 'authorization' })
      }
      checkGrantCovers(payload as Partial<GrantClaims>, { ...need, node: o.node })
      if (o.cluster !== undefined && (payload as Partial<GrantClaims>).cluster !== o.cluster) {
        throw new CheckpointError('grant_mismatch', 'grant does not cover this request: cluster differs', { field: 'cluster' })
      }
      sweep()
      if (seen.has(payload.jti!)) throw new CheckpointError('invalid_grant', 'grant already used (jti replay)', { field: 'authorization', extra: { reason: 'replay' } })
      if (seen.size >= maxRemembered) throw new CheckpointError('too_many_requests', 'too many live grants', { headers: { 'retry-after': '5' } })
      seen.set(payload.jti!, payload.exp! * 1000)
      return payload as VerifiedGrant
    },
  }
}
