/**
 * `npm run grant-keys`: the pair it writes signs grants the agent's verifier accepts, and never
 * overwrites. Node's own Ed25519 signer (functions/node/jws.ts) makes the very JWS jose makes.
 */
import assert from 'node:assert/strict'
import { execFile } from 'node:child_process'
import { mkdtemp, readFile, rm, stat } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { after, before, describe, it } from 'node:test'
import { fileURLToPath } from 'node:url'
import { promisify } from 'node:util'
import { createGrantVerifier } from '../../agent/grants.ts'
import fc from 'fast-check'
import { createLocalJWKSet, exportJWK, generateKeyPair, importJWK, jwtVerify, type CryptoKey, type JWK } from 'jose'
import { loadGrantKeys, signCompact } from '../../functions/grants.ts'
import { loadNodeGrantKeys, nodeJwsSigner } from '../../functions/node/jws.ts'

const script = fileURLToPath(new URL('../../functions/node/grant-keys.ts', import.meta.url))
const run = (args: string[]) => promisify(execFile)(process.execPath, [script, ...args])

describe('npm run grant-keys', () => {
  let dir: string
  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'grant-keys-'))
  })
  after(async () => {
    await rm(dir, { recursive: true, force: true })
  })
  it('writes a 0600 private key the gateway loads and a public set the agent verifies with', async () => {
    await run([`--out=${dir}`, '--kid=k1'])
    const keyFile = join(dir, 'grant-signing-key.json')
    const jwksFile = join(dir, 'grant-jwks.json')
    assert.equal((await stat(keyFile)).mode & 0o777, 0o600)
    const jwks = JSON.parse(await readFile(jwksFile, 'utf8')) as { keys: Array<Record<string, unknown>> }
    assert.deepEqual(jwks.keys.map((k) => [k.kid, k.alg, 'd' in k]), [['k1', 'EdDSA', false]])
    const keys = await loadGrantKeys(await readFile(keyFile, 'utf8'))
    const now = Date.now()
    const grant = await keys.sign({ op: 'checkpoint:list', node: 'n1' }, now, 60, 'gw')
    const verifier = await createGrantVerifier({ node: 'n1', issuer: 'gw', maxLifetimeSeconds: 3600, jwksFile })
    const claims = await verifier.verify(`Bearer ${grant}`, { op: 'checkpoint:list' })
    assert.equal(claims.op, 'checkpoint:list')
    await verifier.close()
  })
  it('refuses to overwrite a key that exists', async () => {
    await assert.rejects(run([`--out=${dir}`]), (e: { code?: number; stderr?: string }) => e.code === 1 && /EEXIST/.test(e.stderr ?? ''))
  })
})

describe("Node's own grant signer", () => {
  const keyPair = async (alg: 'EdDSA' | 'ES256', kid = 'k1') => {
    const { privateKey } = await generateKeyPair(alg, { extractable: true })
    return { ...(await exportJWK(privateKey)), kid, alg } as JWK
  }

  it('signs Ed25519 byte for byte as jose does, for any header and payload', async () => {
    const jwk = await keyPair('EdDSA')
    const key = await importJWK(jwk, 'EdDSA')
    const own = nodeJwsSigner(jwk)
    assert.ok(own)
    const viaJose = signCompact(key as CryptoKey)
    const viaNode = signCompact(key as CryptoKey, own)
    await fc.assert(fc.asyncProperty(
      fc.record({ alg: fc.constant('EdDSA'), kid: fc.string(), typ: fc.string() }),
      fc.dictionary(fc.string(), fc.jsonValue()),
      async (header, payload) => assert.equal(await viaNode(header, payload), await viaJose(header, payload)),
    ), { numRuns: 200 })
  })

  it('grants it signs pass the agent\'s verifier; ES256 keys stay with jose; another key fails', async () => {
    const ed = await keyPair('EdDSA', 'ed')
    const es = await keyPair('ES256', 'es')
    assert.equal(nodeJwsSigner(es), undefined)
    const dir = await mkdtemp(join(tmpdir(), 'grant-node-'))
    try {
      const jwksFile = join(dir, 'jwks.json')
      const { writeFile } = await import('node:fs/promises')
      const keys = await loadNodeGrantKeys([ed])
      await writeFile(jwksFile, JSON.stringify(keys.jwks()))
      const verifier = await createGrantVerifier({ node: 'n1', issuer: 'gw', maxLifetimeSeconds: 3600, jwksFile })
      const grant = await keys.sign({ op: 'checkpoint:create', node: 'n1', cluster: 'c', namespace: 'ns', pod: 'p', container: 'app' }, Date.now(), 60, 'gw')
      const claims = await verifier.verify(`Bearer ${grant}`, { op: 'checkpoint:create', target: { namespace: 'ns', pod: 'p', container: 'app' } })
      assert.deepEqual([claims.op, claims.namespace, typeof claims.jti], ['checkpoint:create', 'ns', 'string'])
      await verifier.close()
      // Capabilities too, checked by the gateway itself.
      const cap = await keys.capability({ use: 'vault:get', key: 'a/b' }, Date.now(), 60)
      const c = await keys.verifyCapability(cap, 'vault:get', Date.now())
      assert.deepEqual([c.use, c.key], ['vault:get', 'a/b'])
      // Signed by a key the set does not hold: refused.
      const other = await loadNodeGrantKeys([await keyPair('EdDSA', 'ed')])
      await assert.rejects(verifier.verify(`Bearer ${await other.sign({ op: 'checkpoint:list', node: 'n1' }, Date.now(), 60, 'gw')}`, { op: 'checkpoint:list' }), (e: { code?: string }) => e.code === 'invalid_grant')
      // ES256 through jose, same loader.
      const esKeys = await loadNodeGrantKeys([es])
      const esGrant = await esKeys.sign({ op: 'checkpoint:list', node: 'n1' }, Date.now(), 60, 'gw')
      assert.equal((await jwtVerify(esGrant, createLocalJWKSet(esKeys.jwks()))).protectedHeader.alg, 'ES256')
    } finally {
      await rm(dir, { recursive: true, force: true })
    }
  })
})
