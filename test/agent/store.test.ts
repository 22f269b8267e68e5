/**
 * The agent seals an archive and uploads it part by part to presigned URLs of a real S3 server that
 * checks signatures (radosgw, test/runtime/s3-server.ts), playing the gateway's part here by hand:
 * create the multipart upload, presign the parts, sign a store grant bound to the plan, complete
 * the upload from the parts the agent reports. The object decrypts (age) and decompresses (zstd)
 * to the archive's bytes.
 */
import assert from 'node:assert/strict'
import { createHash } from 'node:crypto'
import { mkdtemp, readFile, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { after, before, describe, it } from 'node:test'
import { zstdDecompressSync } from 'node:zlib'
import { ageDecrypt, generateIdentity } from '../../agent/seal/age.ts'
import { s3Client, type S3Client } from '../../functions/vault/s3.ts'
import { MAX_PLAN_BYTES } from '../../shared/agent-api.ts'
import { parseStoreEvent, type StoreEvent } from '../../shared/events.ts'
import { startS3Server, type S3Server } from '../runtime/s3-server.ts'
import { everyReading, makeIdentities, startTestAgent, type TestAgent } from '../support/agent-harness.ts'
import { startFakeCri, type FakeCri } from '../support/fake-cri.ts'

const T = { namespace: 'prod', pod: 'web-0', container: 'app' }
const MiB = 1024 * 1024

describe('sealing and uploading an archive to presigned parts (real S3 server)', { timeout: 180_000 }, () => {
  let dir: string
  let cri: FakeCri
  let a: TestAgent
  let s3: S3Server
  let client: S3Client
  let name: string
  const investigator = generateIdentity()

  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'store-'))
    s3 = await startS3Server()
    client = s3Client({ endpoint: s3.endpoint, bucket: s3.bucket, accessKeyId: s3.accessKeyId, secretAccessKey: s3.secretAccessKey, region: s3.region })
    const ids = await makeIdentities(dir)
    cri = await startFakeCri(join(dir, 'cri.sock'), { archiveBytes: 12 * MiB, randomArchive: true }, [{ id: 'c-app', ...T }])
    a = await startTestAgent({ ids, endpoint: cri.endpoint, dir })
    const r = await a.fetch(`/checkpoint/${T.namespace}/${T.pod}/${T.container}`, { method: 'POST', headers: { accept: 'application/json', authorization: `Bearer ${await a.mint({ op: 'checkpoint:create', ...T })}` } })
    name = (JSON.parse(await r.body.text()) as { items: string[] }).items[0]!.split('/').at(-1)!
  })
  after(async () => {
    await a?.stop()
    await cri?.stop()
    await s3?.stop()
    await rm(dir, { recursive: true, force: true })
  })

  /** Sends a plan for `key` with `parts` presigned URLs; returns the events and the upload id. */
  async function store(key: string, o: { parts: number; partSize: number; recipients?: string[]; tamper?: (urls: string[]) => string[]; namespaces?: string[]; planOverride?: string }) {
    const uploadId = await client.createMultipartUpload(key, { 'archive-name': name })
    let urls = await Promise.all(Array.from({ length: o.parts }, (_, i) => client.presignUploadPart(key, uploadId, i + 1, 300)))
    if (o.tamper) urls = o.tamper(urls)
    const body = JSON.stringify({ recipients: o.recipients ?? [investigator.recipient], partSize: o.partSize, urls })
    const plan = o.planOverride ?? createHash('sha256').update(body).digest('hex')
    const grant = await a.mint({ op: 'checkpoint:store', archive: name, namespaces: o.namespaces ?? everyReading(name), plan })
    const r = await a.fetch(`/checkpoints/${name}/store`, { method: 'POST', headers: { authorization: `Bearer ${grant}`, 'content-type': 'application/json' }, body })
    const text = await r.body.text()
    const events: StoreEvent[] = r.statusCode === 200 ? text.trim().split('\n').map(parseStoreEvent) : []
    return { status: r.statusCode, problem: r.statusCode === 200 ? undefined : (JSON.parse(text) as { code: string; field?: string }), events, uploadId }
  }

  it('one part: sealed, stored, and it decrypts and decompresses to the archive', async () => {
    const key = `prod/${name}.zst.age`
    const { status, events, uploadId } = await store(key, { parts: 2, partSize: 16 * MiB })
    assert.equal(status, 200)
    const final = events.at(-1)!
    assert.equal(final.type, 'sealed', JSON.stringify(final))
    if (final.type !== 'sealed') return
    assert.ok(events.some((e) => e.type === 'sealing'))
    const archive = await readFile(join(a.agent.store.dir, name))
    assert.deepEqual(final.plaintext, { sha256: createHash('sha256').update(archive).digest('hex'), size: archive.length })
    assert.equal(final.parts.length, 1)
    await client.completeMultipartUpload(key, uploadId, final.parts)
    const object = Buffer.from(await (await fetch(await client.presignGet(key, 60))).arrayBuffer())
    assert.deepEqual({ sha256: createHash('sha256').update(object).digest('hex'), size: object.length }, final.sealed)
    const plain: Buffer[] = []
    for await (const c of ageDecrypt([object], [investigator.identity])) plain.push(c)
    assert.ok(zstdDecompressSync(Buffer.concat(plain)).equals(archive))
  })

  it('several parts (5 MiB): each part PUT to its own URL, ETags and sizes reported for the completion', async () => {
    const key = `prod/${name}.multi.zst.age`
    // 12 MiB of random bytes do not compress: three parts of 5 MiB, the last smaller.
    const { events, uploadId } = await store(key, { parts: 4, partSize: 5 * MiB })
    const final = events.at(-1)!
    assert.equal(final.type, 'sealed', JSON.stringify(final))
    if (final.type !== 'sealed') return
    assert.deepEqual(final.parts.map((p) => p.size), [5 * MiB, 5 * MiB, final.sealed.size - 10 * MiB])
    const held = await client.listParts(key, uploadId)
    assert.deepEqual(held.map((p) => [p.partNumber, p.etag, p.size]), final.parts.map((p) => [p.partNumber, p.etag, p.size]))
    assert.equal(final.parts.reduce((n, p) => n + p.size, 0), final.sealed.size)
    await client.abortMultipartUpload(key, uploadId)
  })

  it('refused before any work: a plan that is not the granted one, a bad recipient, a part size under 5 MiB, another namespace', async () => {
    const key = `prod/${name}.refused.zst.age`
    const swapped = await store(key, { parts: 1, partSize: 16 * MiB, planOverride: 'f'.repeat(64) })
    assert.deepEqual([swapped.status, swapped.problem?.code, swapped.problem?.field], [403, 'grant_mismatch', 'plan'])
    const badRecipient = await store(key, { parts: 1, partSize: 16 * MiB, recipients: ['age1notarecipient'] })
    assert.deepEqual([badRecipient.status, badRecipient.problem?.code, badRecipient.problem?.field], [400, 'invalid_recipient', 'recipients[0]'])
    const small = await store(key, { parts: 1, partSize: MiB })
    assert.deepEqual([small.status, small.problem?.code, small.problem?.field], [400, 'invalid_body', 'partSize'])
    const other = await store(key, { parts: 1, partSize: 16 * MiB, namespaces: ['dev'] })
    assert.deepEqual([other.status, other.problem?.code], [403, 'grant_mismatch'])
  })

  it('a tampered URL is refused by the storage: the stream ends failed with storage_rejected, no sealed event', async () => {
    const key = `prod/${name}.tampered.zst.age`
    const { status, events, uploadId } = await store(key, { parts: 1, partSize: 16 * MiB, tamper: (urls) => urls.map((u) => u.replace(/X-Amz-Signature=([0-9a-f])/, (_m, c: string) => `X-Amz-Signature=${c === '0' ? '1' : '0'}`)) })
    assert.equal(status, 200)
    const final = events.at(-1)!
    assert.deepEqual([final.type, final.type === 'failed' ? final.code : ''], ['failed', 'storage_rejected'])
    assert.ok(!events.some((e) => e.type === 'sealed'))
    assert.deepEqual(await client.listParts(key, uploadId), [])
    await client.abortMultipartUpload(key, uploadId)
  })

  it('a plan of 10,000 part URLs (S3\'s limit, long ones) is read whole; one over MAX_PLAN_BYTES is 413 payload_too_large', async () => {
    const key = `prod/${name}.long-plan.zst.age`
    // Two real URLs, then URLs as long as a long bucket, key and upload id make them (never used: one part is enough).
    const pad = (n: number, len: number) => (urls: string[]) => [...urls, ...Array.from({ length: n }, (_, i) => `https://unused.invalid/${i}?${'x'.repeat(len)}`)]
    const full = await store(key, { parts: 2, partSize: 16 * MiB, tamper: pad(9_998, 1100) })
    const final = full.events.at(-1)
    assert.equal(final?.type, 'sealed', JSON.stringify(final))
    await client.abortMultipartUpload(key, full.uploadId)
    const over = await store(key, { parts: 2, partSize: 16 * MiB, tamper: pad(9_998, Math.ceil(MAX_PLAN_BYTES / 9_998)) })
    assert.deepEqual([over.status, over.problem?.code], [413, 'payload_too_large'])
    await client.abortMultipartUpload(key, over.uploadId)
  })

  it('too few parts planned: failed with storage_rejected, never sealed', async () => {
    const key = `prod/${name}.short.zst.age`
    const { events, uploadId } = await store(key, { parts: 1, partSize: 5 * MiB })
    const final = events.at(-1)!
    assert.deepEqual([final.type, final.type === 'failed' ? final.code : ''], ['failed', 'storage_rejected'])
    assert.ok(!events.some((e) => e.type === 'sealed'))
    await client.abortMultipartUpload(key, uploadId)
  })
})
