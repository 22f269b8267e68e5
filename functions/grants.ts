/**
 * Grant keys: the gateway signs one short-lived grant per forwarded request (shared/grant.ts)
 * with the first private key; every key is published at /.well-known/jwks.json so agents can
 * verify while keys rotate (publish the next key first, switch, keep the old one until its last
 * grant has expired).
 */
import { CompactSign, base64url, createLocalJWKSet, errors as joseErrors, importJWK, jwtVerify, type CryptoKey, type JWK } from 'jose'
import { CheckpointError } from '../shared/errors.ts'
import { GRANT_TYP, grantAudience, type GrantClaims } from '../shared/grant.ts'
import { jsonValue } from './config.ts'

export interface GrantKeys {
  /** Signs a grant valid for `ttlSec` from `nowMs`. */
  sign(claims: GrantClaims, nowMs: number, ttlSec: number, issuer: string): Promise<string>
  /** The public key set (no private members). */
  jwks(): { keys: JWK[] }
  /**
   * Signs a capability the gateway will check itself: a URL's bearer may do `claims.use` on the
   * one thing the claims name (a part of one upload, one object) until it expires. Typed apart
   * from grants, so no agent takes one for a grant and no grant passes for one.
   */
  capability(claims: Capability, nowMs: number, ttlSec: number): Promise<string>
  /** The claims of a capability this gateway signed for `use`; `invalid_grant` (401) if it is not one, forged or expired. */
  verifyCapability(token: string, use: Capability['use'], nowMs: number): Promise<Capability>
}

/** What a capability URL lets its holder do (functions/vault/r2.ts). */
export interface Capability {
  use: 'vault:part' | 'vault:get'
  /** The object key. */
  key: string
  /** The multipart upload and the part (`vault:part`). */
  upload?: string
  part?: number
}

export const CAPABILITY_TYP = 'vault-cap+jwt'
const CAPABILITY_AUD = 'checkpoint-gateway:vault'

const SIGNING_ALGS = new Set(['EdDSA', 'Ed25519', 'ES256'])

/** Signs a JWS signing input (`b64url(header).b64url(payload)`), giving the raw signature. */
export type JwsSigner = (signingInput: Uint8Array) => Uint8Array
/**
 * A runtime's own signer for a private JWK, or undefined to leave that key to jose (WebCrypto).
 * On Node, WebCrypto runs each signature as a job on the thread pool; functions/node/jws.ts signs
 * Ed25519 in place, byte for byte the same JWS (Ed25519 signatures are deterministic; tested).
 */
export type JwsSignerFor = (jwk: JWK) => JwsSigner | undefined
const encoder = new TextEncoder()
const PRIVATE_MEMBERS = ['d', 'p', 'q', 'dp', 'dq', 'qi', 'oth', 'k']

/** The public half of a JWK, marked for signatures. */
export function publicJwk(jwk: JWK): JWK {
  const pub: Record<string, unknown> = { ...jwk }
  for (const m of PRIVATE_MEMBERS) delete pub[m]
  delete pub.key_ops
  pub.use = 'sig'
  return pub as JWK
}

/**
 * Loads grant keys from a secret: a JWK or a list of JWKs, each with `kid` and `alg` (EdDSA or
 * ES256). The first key with a private part signs; keys without one are only published.
 *
 * @example
 * const keys = await loadGrantKeys(env.GRANT_SIGNING_KEYS)
 */
export async function loadGrantKeys(secret: unknown, opts: { signerFor?: JwsSignerFor } = {}): Promise<GrantKeys> {
  if (secret === undefined || secret === '') throw new Error('config: GRANT_SIGNING_KEYS is not set')
  const v = jsonValue(secret, 'GRANT_SIGNING_KEYS')
  const list = (Array.isArray(v) ? v : [v]) as JWK[]
  const published: JWK[] = []
  let signer: { key: CryptoKey | Uint8Array; kid: string; alg: string; own?: JwsSigner } | undefined
  const kids = new Set<string>()
  for (const jwk of list) {
    if (!jwk || typeof jwk !== 'object' || typeof jwk.kid !== 'string' || !jwk.kid) throw new Error('config: every grant key needs a kid')
    if (typeof jwk.alg !== 'string' || !SIGNING_ALGS.has(jwk.alg)) throw new Error(`config: grant key ${jwk.kid}: alg must be EdDSA or ES256`)
    if (kids.has(jwk.kid)) throw new Error(`config: grant key ${jwk.kid} given twice`)
    kids.add(jwk.kid)
    if (jwk.k !== undefined) throw new Error(`config: grant key ${jwk.kid}: symmetric keys are not allowed`)
    if (jwk.d !== undefined && !signer) {
      const own = opts.signerFor?.(jwk)
      signer = { key: await importJWK(jwk, jwk.alg), kid: jwk.kid, alg: jwk.alg, ...(own ? { own } : {}) }
    }
    published.push(publicJwk(jwk))
  }
  if (!signer) throw new Error('config: GRANT_SIGNING_KEYS holds no private key')
  const s = signer
  const jwks = { keys: published }
  const localKeys = createLocalJWKSet(jwks)
  const sign = signCompact(s.key, s.own)
  return {
    async sign(claims, nowMs, ttlSec, issuer) {
      const iat = Math.floor(nowMs / 1000)
      const payload = { ...claims, iss: issuer, aud: grantAudience(claims.node), iat, nbf: iat - 5, exp: iat + Math.ceil(ttlSec), jti: crypto.randomUUID() }
      return sign({ alg: s.alg, kid: s.kid, typ: GRANT_TYP }, payload)
    },
    jwks: () => jwks,
    async capability(claims, nowMs, ttlSec) {
      const iat = Math.floor(nowMs / 1000)
      return sign({ alg: s.alg, kid: s.kid, typ: CAPABILITY_TYP }, { ...claims, aud: CAPABILITY_AUD, iat, exp: iat + Math.ceil(ttlSec) })
    },
    async verifyCapability(token, use, nowMs) {
      let payload: Record<string, unknown>
      try {
        ({ payload } = await jwtVerify(token, localKeys, { typ: CAPABILITY_TYP, audience: CAPABILITY_AUD, algorithms: [...SIGNING_ALGS], currentDate: new Date(nowMs), requiredClaims: ['exp'] }))
      } catch (err) {
        const why = err instanceof joseErrors.JWTExpired ? 'expired' : 'not a capability this gateway signed'
        throw new CheckpointError('invalid_grant', `capability ${why}`, { field: 'cap' })
      }
      if (payload.use !== use || typeof payload.key !== 'string') throw new CheckpointError('grant_mismatch', `capability is not for ${use}`, { field: 'cap' })
      return payload as unknown as Capability
    },
  }
}

/**
 * A compact JWS of a JSON payload (what jose's SignJWT makes, without its claim setters): signed
 * by the runtime's own signer when there is one, else by jose.
 */
export function signCompact(key: CryptoKey | Uint8Array, own?: JwsSigner): (header: { alg: string; kid: string; typ: string }, payload: object) => Promise<string> {
  if (!own) return (header, payload) => new CompactSign(encoder.encode(JSON.stringify(payload))).setProtectedHeader(header).sign(key)
  return async (header, payload) => {
    const input = `${base64url.encode(JSON.stringify(header))}.${base64url.encode(JSON.stringify(payload))}`
    return `${input}.${base64url.encode(own(encoder.encode(input)))}`
  }
}
