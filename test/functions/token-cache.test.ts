/**
 * The verified-token cache (functions/authn.ts): a hit must answer exactly what jose would, and
 * nothing jose would refuse may come out of it.
 */
import assert from 'node:assert/strict'
import { describe, it } from 'node:test'
import { exportJWK, generateKeyPair, SignJWT, type JWTPayload } from 'jose'
import { createAuthenticator, TokenCache, TOKEN_CACHE_TTL_MS } from '../../functions/authn.ts'
import type { AuthConfig } from '../../functions/config.ts'
import { CheckpointError } from '../../shared/errors.ts'

const T0 = 1_800_000_000_000 // ms, a whole second

describe('TokenCache', () => {
  const p = (o: JWTPayload): JWTPayload => ({ sub: 's', ...o })

  it('answers a remembered token until the TTL, then forgets it', () => {
    const c = new TokenCache(0, 10, 1000)
    c.set('a', p({ exp: T0 / 1000 + 3600 }), T0)
    assert.equal(c.get('a', T0 + 999)?.sub, 's')
    assert.equal(c.get('a', T0 + 1000), undefined)
    assert.equal(c.size, 0)
  })

  it('never past exp plus the clock tolerance (as jose: expired once exp <= now - tolerance)', () => {
    const exp = T0 / 1000 + 10
    const c = new TokenCache(5, 10, TOKEN_CACHE_TTL_MS)
    c.set('a', p({ exp }), T0)
    assert.ok(c.get('a', (exp + 4) * 1000 + 999))
    assert.equal(c.get('a', (exp + 5) * 1000), undefined)
    // Already expired when verified (verified within the tolerance, at its edge): not stored.
    c.set('b', p({ exp }), (exp + 5) * 1000)
    assert.equal(c.size, 0)
  })

  it('repeats the nbf check (a clock that went back)', () => {
    const c = new TokenCache(5, 10, TOKEN_CACHE_TTL_MS)
    c.set('a', p({ nbf: T0 / 1000, exp: T0 / 1000 + 3600 }), T0)
    assert.ok(c.get('a', T0 - 5000))
    assert.equal(c.get('a', T0 - 6000), undefined)
  })

  it('holds at most max entries, oldest out first; long tokens are not kept', () => {
    const c = new TokenCache(0, 3, TOKEN_CACHE_TTL_MS)
    for (const t of ['a', 'b', 'c', 'd']) c.set(t, p({ exp: T0 / 1000 + 3600 }), T0)
    assert.equal(c.size, 3)
    assert.equal(c.get('a', T0), undefined)
    assert.ok(c.get('b', T0) && c.get('d', T0))
    c.set('x'.repeat(5000), p({ exp: T0 / 1000 + 3600 }), T0)
    assert.equal(c.size, 3)
  })
})

describe('authenticator with the token cache', async () => {
  const idp = await generateKeyPair('ES256', { extractable: true })
  const other = await generateKeyPair('ES256', { extractable: true })
  const jwk = { ...(await exportJWK(idp.publicKey)), kid: 'k', alg: 'ES256' }
  const auth: AuthConfig = { issuers: ['iss'], audience: ['aud'], jwks: { keys: [jwk] }, algorithms: ['ES256'], clockToleranceSec: 5, groupsClaim: 'groups' }
  const token = (claims: JWTPayload, key = idp.privateKey) =>
    new SignJWT({ groups: ['sre'], scope: 'checkpoint:read', ...claims }).setProtectedHeader({ alg: 'ES256', kid: 'k' }).setIssuer('iss').setAudience('aud').setSubject('sam').sign(key)
  const reason = async (p: Promise<unknown>) => {
    const err = await p.then(() => assert.fail('accepted'), (e: unknown) => e)
    assert.ok(err instanceof CheckpointError && err.code === 'unauthenticated')
    return (err.extra as { reason?: string } | undefined)?.reason
  }

  it('keeps a verified token and answers the same caller from it', async () => {
    let now = T0
    const cache = new TokenCache(auth.clockToleranceSec)
    const authenticate = createAuthenticator(auth, () => now, cache)
    const t = await token({ iat: T0 / 1000, exp: T0 / 1000 + 30 })
    const first = await authenticate(`Bearer ${t}`)
    assert.equal(cache.size, 1)
    now += 1000
    assert.deepEqual(await authenticate(`Bearer ${t}`), first)
    assert.deepEqual(first, { sub: 'sam', groups: ['sre'], scopes: new Set(['checkpoint:read']) })
    // Past exp + tolerance: jose's own answer, and the entry is gone.
    now = (T0 / 1000 + 35) * 1000
    assert.equal(await reason(authenticate(`Bearer ${t}`)), 'ERR_JWT_EXPIRED')
    assert.equal(cache.size, 0)
  })

  it('never keeps a failure', async () => {
    const cache = new TokenCache(auth.clockToleranceSec)
    const authenticate = createAuthenticator(auth, () => T0, cache)
    const forged = await token({ exp: T0 / 1000 + 30 }, other.privateKey)
    for (let i = 0; i < 2; i++) assert.equal(await reason(authenticate(`Bearer ${forged}`)), 'ERR_JWS_SIGNATURE_VERIFICATION_FAILED')
    const early = await token({ nbf: T0 / 1000 + 60, exp: T0 / 1000 + 3600 })
    assert.equal(await reason(authenticate(`Bearer ${early}`)), 'ERR_JWT_CLAIM_VALIDATION_FAILED')
    assert.equal(cache.size, 0)
  })
})
