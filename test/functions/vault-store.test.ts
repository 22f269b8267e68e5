/**
 * The gateway's store driver (functions/vault/vault.ts) end to end with real parts: a real agent
 * over mutual TLS (fake CRI for the archive), a real S3 server that checks signatures (radosgw).
 * It creates the upload, presigns, grants the plan by digest, relays progress, checks the parts the
 * storage holds, completes — and on any failure aborts, so nothing partial stays in the bucket.
 */
import assert from 'node:assert/strict'
import { createHash } from 'node:crypto'
import { mkdtemp, readFile, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { after, before, describe, it } from 'node:test'
import { zstdDecompressSync } from 'node:zlib'
import { Agent, fetch as undiciFetch } from 'undici'
import { ageDecrypt, generateIdentity } from '../../agent/seal/age.ts'
import { s3Client, type S3Client } from '../../functions/vault/s3.ts'
import { objectKey, parseVaultConfig, planParts, recipientsFor, storeArchive, type VaultConfig } from '../../functions/vault/vault.ts'
import { MAX_PARTS } from '../../functions/vault/storage.ts'
import { CheckpointError } from '../../shared/errors.ts'
import { startS3Server, type S3Server } from '../runtime/s3-server.ts'
import { everyReading, makeIdentities, mintGrant, startTestAgent, type Identities, type TestAgent } from '../support/agent-harness.ts'
import { startFakeCri, type FakeCri } from '../support/fake-cri.ts'

const T = { namespace: 'shop', pod: 'api-0', container: 'app' }
const MiB = 1024 * 1024

describe('storing an archive in the vault (gateway driver, real agent, real S3)', { timeout: 180_000 }, () => {
  let dir: string
  let ids: Identities
  let cri: FakeCri
  let a: TestAgent
  let s3: S3Server
  let client: S3Client
  let cfg: VaultConfig
  let mtls: Agent
  let archive: { name: string; size: number; sha256: string }
  const investigator = generateIdentity()

  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'vault-'))
    s3 = await startS3Server()
    const secrets: Record<string, string> = { S3_KEY: s3.accessKeyId, S3_SECRET: s3.secretAccessKey }
    cfg = parseVaultConfig({
      backend: 's3', s3: { endpoint: s3.endpoint, bucket: s3.bucket, region: s3.region, accessKeyIdSecret: 'S3_KEY', secretAccessKeySecret: 'S3_SECRET' },
      partSizeMiB: 5, recipients: [{ id: 'ir', clusters: ['prod-*'], namespaces: ['shop', 'pay-*'], recipients: [investigator.recipient] }],
    }, (n) => secrets[n])
    client = s3Client(cfg.s3!)
    ids = await makeIdentities(dir)
    cri = await startFakeCri(join(dir, 'cri.sock'), { archiveBytes: 7 * MiB, randomArchive: true }, [{ id: 'c-api', ...T }])
    a = await startTestAgent({ ids, endpoint: cri.endpoint, dir })
    mtls = new Agent({ connect: { ca: ids.pki.ca.certPem, cert: ids.gateway.certPem, key: ids.gateway.keyPem, servername: 'localhost' } })
    const r = await a.fetch(`/checkpoint/${T.namespace}/${T.pod}/${T.container}`, { method: 'POST', headers: { accept: 'application/x-ndjson', authorization: `Bearer ${await a.mint({ op: 'checkpoint:create', ...T })}` } })
    const done = JSON.parse((await r.body.text()).trim().split('\n').at(-1)!) as { archive: typeof archive }
    archive = done.archive
  })
  after(async () => {
    await mtls?.close()
    await a?.stop()
    await cri?.stop()
    await s3?.stop()
    await rm(dir, { recursive: true, force: true })
  })

  const request = (over: Partial<Parameters<typeof storeArchive>[0]> = {}) => {
    const events: Array<{ type: string; [k: string]: unknown }> = []
    return {
      events,
      run: () => storeArchive({
        storage: client, cfg, cluster: 'prod-eu', target: T, archive, recipients: recipientsFor(cfg, 'prod-eu', T.namespace), requestId: 'req-vault-1',
        grant: async (plan) => ({ authorization: `Bearer ${await mintGrant(ids, { op: 'checkpoint:store', node: a.node, archive: archive.name, namespaces: everyReading(archive.name), plan })}` }),
        agent: (path, init) => undiciFetch(a.agent.url + path, { ...(init as object), dispatcher: mtls }) as unknown as Promise<Response>,
        emit: (e) => void events.push(e as never),
        now: Date.now,
        ...over,
      }),
    }
  }

  it('recipients come from configuration by cluster and namespace; none for a target no rule covers', () => {
    assert.deepEqual(recipientsFor(cfg, 'prod-eu', 'shop'), [investigator.recipient])
    assert.deepEqual(recipientsFor(cfg, 'prod-eu', 'pay-eu'), [investigator.recipient])
    assert.deepEqual(recipientsFor(cfg, 'staging', 'shop'), [])
  })

  it('the plan: the configured part size (default 5 MiB), grown by whole MiB only past 10,000 parts; too large for the backend → payload_too_large', () => {
    const GiB = 1024 * MiB
    const plain = parseVaultConfig({ backend: 's3', s3: { endpoint: s3.endpoint, bucket: s3.bucket, accessKeyIdSecret: 'K', secretAccessKeySecret: 'S' }, recipients: [{ clusters: ['*'], namespaces: ['*'], recipients: [investigator.recipient] }] }, () => 'x')
    assert.equal(plain.partSizeBytes, 5 * MiB)
    assert.deepEqual(planParts(7 * MiB, { backend: 's3', partSizeBytes: 5 * MiB }), { partSize: 5 * MiB, parts: 3 })
    const small = planParts(GiB, { backend: 's3', partSizeBytes: 8 * MiB })
    assert.equal(small.partSize, 8 * MiB)
    assert.ok(small.parts * small.partSize > GiB * 1.001 + 64 * 1024, 'room for zstd\'s and age\'s worst case')
    for (const size of [100 * GiB, 2000 * GiB]) {
      const p = planParts(size, { backend: 's3', partSizeBytes: 8 * MiB })
      assert.ok(p.parts <= MAX_PARTS && p.partSize % MiB === 0 && p.partSize > 8 * MiB, JSON.stringify(p))
      assert.ok((p.parts - 1) * p.partSize >= size * 1.001, 'the parts still hold the worst case')
    }
    assert.throws(() => planParts(1000 * GiB, { backend: 'r2', partSizeBytes: 8 * MiB }), (e: CheckpointError) => e.code === 'payload_too_large')
  })

  it('stored: progress relayed, parts checked against the storage, completed; the object decrypts to the archive', async () => {
    const { events, run } = request()
    const out = await run()
    assert.equal(out.type, 'stored', JSON.stringify(out))
    if (out.type !== 'stored') return
    assert.equal(out.key, objectKey('prod-eu', T, archive.name))
    assert.equal(out.parts, 2)
    assert.ok(events.some((e) => e.type === 'uploading'))
    assert.deepEqual(out.plaintext, { sha256: archive.sha256, size: archive.size })
    const head = await client.headObject(out.key)
    assert.equal(head?.size, out.sealed.size)
    assert.equal(head?.metadata['archive-name'], archive.name)
    // dbstore reads multi-part objects back wrongly (test/runtime/s3-server.ts), so the bytes are
    // checked through a one-part copy of the same seal: the agent's sealing is deterministic in
    // its digests, not its bytes (fresh age keys), so decrypt what was sealed for this check.
    const one = { ...cfg, partSizeBytes: 16 * MiB }
    const single = await request({ cfg: one, archive, target: { ...T, container: 'app' } }).run()
    assert.equal(single.type, 'stored')
    if (single.type !== 'stored') return
    const sealedBytes = Buffer.from(await (await fetch(await client.presignGet(single.key, 60))).arrayBuffer())
    assert.equal(createHash('sha256').update(sealedBytes).digest('hex'), single.sealed.sha256)
    const plain: Buffer[] = []
    for await (const c of ageDecrypt([sealedBytes], [investigator.identity])) plain.push(c)
    assert.ok(zstdDecompressSync(Buffer.concat(plain)).equals(await readFile(join(a.agent.store.dir, archive.name))))
  })

  it('the agent refusing (a recipient it cannot use) → store_failed with its code; the upload is aborted', async () => {
    let uploadId: string | undefined
    const spy: S3Client = { ...client, bucket: client.bucket, createMultipartUpload: async (k, m) => (uploadId = await client.createMultipartUpload(k, m)) }
    const target = { ...T, container: 'refused' }
    const { run } = request({ storage: spy, target, recipients: ['age1' + 'q'.repeat(58)] })
    const out = await run()
    assert.deepEqual([out.type, out.type === 'store_failed' ? out.code : ''], ['store_failed', 'invalid_recipient'])
    await assert.rejects(client.listParts(objectKey('prod-eu', target, archive.name), uploadId!), { code: 'storage_rejected' })
    assert.equal(await client.headObject(objectKey('prod-eu', target, archive.name)), undefined)
  })

  it('storage refusing (wrong credentials) → store_failed storage_rejected, before the agent does any work', async () => {
    const wrong = s3Client({ ...cfg.s3!, secretAccessKey: 'not-the-secret' })
    let agentCalls = 0
    const { run } = request({ storage: wrong, agent: async () => { agentCalls++; throw new Error('not reached') } })
    const out = await run()
    assert.deepEqual([out.type, out.type === 'store_failed' ? out.code : ''], ['store_failed', 'storage_rejected'])
    assert.equal(agentCalls, 0)
  })

  it('the agent unreachable → store_failed, and the upload it had created is aborted', async () => {
    let uploadId: string | undefined
    const spy: S3Client = { ...client, bucket: client.bucket, createMultipartUpload: async (k, m) => (uploadId = await client.createMultipartUpload(k, m)) }
    const { run } = request({ storage: spy, target: { ...T, container: 'unreachable' }, agent: async () => { throw new Error('connect ECONNREFUSED') } })
    const out = await run()
    assert.equal(out.type, 'store_failed')
    assert.ok(uploadId)
    await assert.rejects(client.listParts(objectKey('prod-eu', { ...T, container: 'unreachable' }, archive.name), uploadId!), { code: 'storage_rejected' })
  })
})
