/**
 * The agent's grant verifier on its own, with a clock the test moves: used jtis are remembered
 * while their grant could still be accepted, forgotten after, and the bound on remembered jtis
 * refuses with 429 only while that many grants are really live.
 */
import assert from 'node:assert/strict'
import { randomUUID } from 'node:crypto'
import { mkdtemp, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { after, before, describe, it } from 'node:test'
import { exportJWK, generateKeyPair, SignJWT, type CryptoKey } from 'jose'
import { createGrantVerifier, type GrantVerifier } from '../../agent/grants.ts'
import { CheckpointError } from '../../shared/errors.ts'
import { GRANT_TYP, grantAudience } from '../../shared/grant.ts'

const NODE = 'node-a'
const NEED = { op: 'checkpoint:list' as const }
const T0 = 1_800_000_000_000

let dir: string
let jwksFile: string
let key: CryptoKey

before(async () => {
  dir = await mkdtemp(join(tmpdir(), 'agent-grants-'))
  const pair = await generateKeyPair('EdDSA', { extractable: true })
  key = pair.privateKey
  jwksFile = join(dir, 'jwks.json')
  await writeFile(jwksFile, JSON.stringify({ keys: [{ ...(await exportJWK(pair.publicKey)), kid: 'k1', alg: 'EdDSA', use: 'sig' }] }))
})
after(() => rm(dir, { recursive: true, force: true }))

/** A list grant issued at `atMs`, valid for `ttlSec`. */
const mint = (atMs: number, ttlSec: number, jti = randomUUID()) => {
  const iat = Math.floor(atMs / 1000)
  return new SignJWT({ op: 'checkpoint:list', node: NODE, sub: 'user:test' })
    .setProtectedHeader({ alg: 'EdDSA', kid: 'k1', typ: GRANT_TYP })
    .setAudience(grantAudience(NODE)).setIssuedAt(iat).setExpirationTime(iat + ttlSec).setJti(jti)
    .sign(key)
}

async function refusal(p: Promise<unknown>): Promise<{ code: string; reason?: unknown }> {
  const err = await p.then(() => assert.fail('accepted'), (e: unknown) => e)
  assert.ok(err instanceof CheckpointError, String(err))
  return { code: err.code, reason: (err.extra as { reason?: unknown } | undefined)?.reason }
}

describe('grant verifier: used jtis', () => {
  let clock = T0
  let v: GrantVerifier
  before(async () => { v = await createGrantVerifier({ node: NODE, maxLifetimeSeconds: 120, jwksFile, now: () => clock, maxRemembered: 2 }) })
  after(() => v.close())

  it('refuses a replay, bounds the live jtis, and forgets a jti once its grant has expired (sooner than the once-a-second sweep)', async () => {
    const first = await mint(clock, 1)
    await v.verify(`Bearer ${first}`, NEED)
    assert.deepEqual(await refusal(v.verify(`Bearer ${first}`, NEED)), { code: 'invalid_grant', reason: 'replay' })

    // 5.5 s later: the first grant is still live (exp + 5 s tolerance), the second fills the bound.
    clock = T0 + 5_500
    await v.verify(`Bearer ${await mint(clock, 60)}`, NEED)
    assert.equal((await refusal(v.verify(`Bearer ${await mint(clock, 60)}`, NEED))).code, 'too_many_requests')

    // 0.9 s after the last sweep the first grant is past exp + tolerance: a full bound is swept
    // at once rather than refusing until the next sweep is due.
    clock = T0 + 6_400
    await v.verify(`Bearer ${await mint(clock, 60)}`, NEED)
    // …and the bound holds again with two live grants.
    assert.equal((await refusal(v.verify(`Bearer ${await mint(clock, 60)}`, NEED))).code, 'too_many_requests')
  })
})
