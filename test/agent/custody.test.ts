/** Signed statements: DSSE encoding, signing with both key kinds, and every way a bundle must fail. */
import assert from 'node:assert/strict'
import { mkdtemp, rm, stat } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { after, before, describe, it } from 'node:test'
import { hintOf, loadStatementKey, pae, PREDICATE_TYPE, signStatement, statementFor, verifyBundle, type CheckpointPredicate } from '../../agent/custody.ts'

const predicate: CheckpointPredicate = {
  cluster: 'prod-eu', node: 'node-1', namespace: 'shop', pod: 'api-0', container: 'app', containerId: 'c0ffee',
  image: { ref: 'registry.local/api:1.2', digest: 'sha256:' + 'a'.repeat(64) }, runtime: { name: 'containerd', version: 'v2.1.9' },
  requestId: 'req-1', requester: { sub: 'alice', client: 'cli' }, grant: { jti: 'j-1', issuer: 'gw' }, reason: 'incident 42',
  times: { requested: '2026-11-30T10:00:00.000Z', started: '2026-11-30T10:00:00.100Z', completed: '2026-11-30T10:00:01.000Z' }, archive: { size: 4096 },
}
const archive = { name: 'checkpoint-api-0_shop-app-2026-11-30T10:00:00Z.tar', sha256: 'b'.repeat(64) }

describe('signed statements', () => {
  let dir: string
  before(async () => { dir = await mkdtemp(join(tmpdir(), 'custody-')) })
  after(async () => { await rm(dir, { recursive: true, force: true }) })

  it('DSSE pre-authentication encoding as the specification writes it', () => {
    assert.equal(pae('http://example.com/HelloWorld', Buffer.from('hello world')).toString(), 'DSSEv1 29 http://example.com/HelloWorld 11 hello world')
  })

  for (const alg of ['ecdsa-p256', 'ed25519'] as const) {
    it(`${alg}: a key made at first start (0600) and reused; its bundle verifies and carries the statement`, async () => {
      const path = join(dir, `${alg}.pem`)
      const key = await loadStatementKey(path, alg)
      assert.equal((await stat(path)).mode & 0o777, 0o600)
      assert.equal((await loadStatementKey(path, alg)).keyid, key.keyid)
      const bundle = signStatement(statementFor(archive, predicate), key)
      assert.equal(bundle.verificationMaterial.publicKey.hint, hintOf(key.keyid))
      const v = verifyBundle(bundle, key.publicKeyPem, archive.sha256)
      assert.ok(v.ok)
      assert.equal(v.statement.predicateType, PREDICATE_TYPE)
      assert.deepEqual(v.statement.subject, [{ name: archive.name, digest: { sha256: archive.sha256 } }])
      assert.deepEqual(v.statement.predicate, predicate)
    })
  }

  it('fails for a changed statement, another key, another archive, or a broken bundle', async () => {
    const key = await loadStatementKey(join(dir, 'k.pem'), 'ecdsa-p256')
    const other = await loadStatementKey(join(dir, 'other.pem'), 'ecdsa-p256')
    const bundle = signStatement(statementFor(archive, predicate), key)
    const changed = structuredClone(bundle)
    const st = JSON.parse(Buffer.from(changed.dsseEnvelope.payload, 'base64').toString()) as { predicate: CheckpointPredicate }
    st.predicate.requester.sub = 'mallory'
    changed.dsseEnvelope.payload = Buffer.from(JSON.stringify(st)).toString('base64')
    const problem = (r: ReturnType<typeof verifyBundle>) => (r.ok ? 'ok' : r.problem)
    assert.equal(problem(verifyBundle(changed, key.publicKeyPem)), 'signature')
    assert.equal(problem(verifyBundle(bundle, other.publicKeyPem)), 'signature')
    assert.equal(problem(verifyBundle(bundle, key.publicKeyPem, 'c'.repeat(64))), 'digest')
    assert.equal(problem(verifyBundle({ dsseEnvelope: { payload: 1 } }, key.publicKeyPem)), 'malformed')
    assert.equal(problem(verifyBundle(null, key.publicKeyPem)), 'malformed')
    const wrongType = signStatement({ ...statementFor(archive, predicate), predicateType: 'https://example.com/other' }, key)
    assert.equal(problem(verifyBundle(wrongType, key.publicKeyPem)), 'predicate_type')
  })

  it('refuses keys of other kinds', async () => {
    const { generateKeyPairSync } = await import('node:crypto')
    const { writeFile } = await import('node:fs/promises')
    const rsa = generateKeyPairSync('rsa', { modulusLength: 2048 }).privateKey.export({ type: 'pkcs8', format: 'pem' })
    await writeFile(join(dir, 'rsa.pem'), rsa)
    await assert.rejects(loadStatementKey(join(dir, 'rsa.pem')), { code: 'ERR_STATEMENT_KEY_KIND' })
  })
})
