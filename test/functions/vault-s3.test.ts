/**
 * The vault's `s3` backend client (functions/vault/s3.ts) against a real S3 server that checks
 * SigV4: Debian sid's radosgw on its dbstore backend (test/runtime/s3-server.ts). Parts go to the
 * presigned URLs with plain `fetch` and no credential, as the agent sends them.
 *
 * One dbstore limit shapes a test: an object completed from two or more parts reads back wrong
 * (its last part repeated), so the two-part upload is checked by the server's multipart ETag
 * (MD5 of the parts' MD5s, computed here from the bytes we sent) and size, and the presigned GET's
 * bytes on a one-part upload.
 */
import assert from 'node:assert/strict'
import { createHash, randomBytes } from 'node:crypto'
import { after, before, describe, it } from 'node:test'
import { AwsClient } from 'aws4fetch'
import { STORAGE_REJECTED, STORAGE_UNAVAILABLE, StorageError, s3Client, type S3Client } from '../../functions/vault/s3.ts'
import { startS3Server, type S3Server } from '../runtime/s3-server.ts'
import { freePort } from '../support/net.ts'
import { sleep } from '../support/wait.ts'

const MiB = 1 << 20

const md5 = (b: Uint8Array) => createHash('md5').update(b).digest()
/** The ETag S3 gives an object completed from `parts`: `"<md5 of the parts' md5s>-<count>"`. */
const multipartEtag = (parts: Uint8Array[]) => `"${createHash('md5').update(Buffer.concat(parts.map(md5))).digest('hex')}-${parts.length}"`

/** What the agent does with a presigned part URL: a bare PUT of the bytes. */
const putPart = (url: string, body: Uint8Array) => fetch(url, { method: 'PUT', body })

/** The S3 error code of a refused answer. */
async function s3ErrorCode(res: Response): Promise<string | undefined> {
  return /<Code>([^<]*)<\/Code>/.exec(await res.text())?.[1]
}

async function rejection(p: Promise<unknown>): Promise<StorageError> {
  try {
    await p
  } catch (err) {
    assert.ok(err instanceof StorageError, `expected a StorageError, got ${err}`)
    return err
  }
  assert.fail('expected a rejection')
}

describe('vault s3 backend against radosgw (SigV4 checked)', { timeout: 180_000 }, () => {
  let server: S3Server
  let s3: S3Client
  let admin: AwsClient
  let n = 0
  const newKey = (name = 'checkpoint-app-2026-11-30T12:00:00Z.tar') => `edge/team-a/web-${++n}/app/${name}.zst.age`

  /** Object keys under `prefix`, listed with the gateway's credentials (ListObjectsV2). */
  async function listKeys(prefix: string): Promise<string[]> {
    const res = await admin.fetch(`${server.endpoint}/${server.bucket}?list-type=2&prefix=${encodeURIComponent(prefix)}`)
    assert.equal(res.status, 200)
    return [...(await res.text()).matchAll(/<Key>([^<]*)<\/Key>/g)].map((m) => m[1])
  }

  before(async () => {
    server = await startS3Server({ log: (l) => console.log(l) })
    console.log(`radosgw: fetch ${server.timings.fetchMs} ms, start ${server.timings.startMs} ms`)
    const { endpoint, bucket, accessKeyId, secretAccessKey, region } = server
    s3 = s3Client({ endpoint, bucket, accessKeyId, secretAccessKey, region })
    admin = new AwsClient({ accessKeyId, secretAccessKey, region, service: 's3', retries: 0 })
  }, { timeout: 300_000 })

  after(async () => {
    await server?.stop()
  })

  it('multipart upload: 5 MiB + tail PUT to presigned URLs, completed; HEAD shows size, ETag and metadata', async () => {
    const key = newKey()
    const metadata = {
      'plaintext-sha256': 'a'.repeat(64),
      'plaintext-size': '7340032',
      'sealed-sha256': 'b'.repeat(64),
      'sealed-size': String(5 * MiB + 1234),
      recipients: 'age1qyqszqgpqyqszqgpqyqszqgpqyqszqgpqyqszqgpqyqszqgpqyqs3290gq',
      'request-id': 'req-42',
    }
    const uploadId = await s3.createMultipartUpload(key, metadata)
    const parts = [randomBytes(5 * MiB), randomBytes(1234)]
    const done: { partNumber: number; etag: string }[] = []
    for (const [i, body] of parts.entries()) {
      const res = await putPart(await s3.presignUploadPart(key, uploadId, i + 1, 300), body)
      assert.equal(res.status, 200, await res.text())
      assert.equal(res.headers.get('etag'), `"${md5(body).toString('hex')}"`)
      done.push({ partNumber: i + 1, etag: res.headers.get('etag')! })
    }
    assert.deepEqual(
      (await s3.listParts(key, uploadId)).map((p) => [p.partNumber, p.size, p.etag]),
      done.map((p, i) => [p.partNumber, parts[i].length, p.etag]),
    )
    // Given out of order: the client sorts.
    const { etag } = await s3.completeMultipartUpload(key, uploadId, [...done].reverse())
    assert.equal(etag, multipartEtag(parts))

    const head = await s3.headObject(key)
    assert.ok(head)
    assert.equal(head.size, 5 * MiB + 1234)
    assert.equal(head.etag, multipartEtag(parts))
    assert.deepEqual(head.metadata, metadata)

    // A range only: dbstore reads a many-part object back wrong, and slowly (see the file's head).
    const got = await fetch(await s3.presignGet(key, 60), { headers: { range: 'bytes=0-15' } })
    assert.equal(got.status, 206)
    assert.equal(got.headers.get('etag'), multipartEtag(parts))
    assert.equal(got.headers.get('content-range'), `bytes 0-15/${5 * MiB + 1234}`)
    await got.body?.cancel()
    assert.deepEqual(await listKeys(key), [key])
  })

  it('presigned GET returns the bytes that were uploaded (one-part upload, a key with spaces and parentheses)', async () => {
    const key = newKey('evidence (copy 1) ~it.tar')
    const uploadId = await s3.createMultipartUpload(key)
    const body = randomBytes(6 * MiB + 17)
    const res = await putPart(await s3.presignUploadPart(key, uploadId, 1, 60), body)
    assert.equal(res.status, 200)
    await s3.completeMultipartUpload(key, uploadId, [{ partNumber: 1, etag: res.headers.get('etag')! }])
    const got = await fetch(await s3.presignGet(key, 60))
    assert.equal(got.status, 200)
    assert.ok(Buffer.from(await got.arrayBuffer()).equals(body), 'same bytes')
  })

  it('a tampered presigned URL is refused: 403 SignatureDoesNotMatch, and nothing is written', async () => {
    const key = newKey()
    const uploadId = await s3.createMultipartUpload(key)
    const url = new URL(await s3.presignUploadPart(key, uploadId, 1, 300))
    const body = randomBytes(1024)
    const tampered: [string, URL][] = []
    const partNumber = new URL(url)
    partNumber.searchParams.set('partNumber', '2')
    tampered.push(['part number', partNumber])
    const otherKey = new URL(url)
    otherKey.pathname = otherKey.pathname.replace(/\.zst\.age$/, '.other')
    tampered.push(['key', otherKey])
    const signature = new URL(url)
    const sig = signature.searchParams.get('X-Amz-Signature')!
    signature.searchParams.set('X-Amz-Signature', `${sig.slice(0, -1)}${sig.endsWith('0') ? '1' : '0'}`)
    tampered.push(['signature', signature])
    const longer = new URL(url)
    longer.searchParams.set('X-Amz-Expires', '604800')
    tampered.push(['expiry', longer])
    for (const [what, u] of tampered) {
      const res = await putPart(u.toString(), body)
      assert.equal(res.status, 403, what)
      assert.equal(await s3ErrorCode(res), 'SignatureDoesNotMatch', what)
    }
    // Another method on the PUT URL.
    const get = await fetch(url)
    assert.equal(get.status, 403)
    assert.equal(await s3ErrorCode(get), 'SignatureDoesNotMatch')
    assert.deepEqual(await s3.listParts(key, uploadId), [])
    // The untampered URL works.
    assert.equal((await putPart(url.toString(), body)).status, 200)
    assert.deepEqual((await s3.listParts(key, uploadId)).map((p) => p.partNumber), [1])
    await s3.abortMultipartUpload(key, uploadId)
  })

  it('an expired presigned URL is refused: 403 AccessDenied ("expired"), for UploadPart and GET', async () => {
    const key = newKey()
    const uploadId = await s3.createMultipartUpload(key)
    const partUrl = await s3.presignUploadPart(key, uploadId, 1, 1)
    const res0 = await putPart(await s3.presignUploadPart(key, uploadId, 1, 60), randomBytes(100))
    await s3.completeMultipartUpload(key, uploadId, [{ partNumber: 1, etag: res0.headers.get('etag')! }])
    const getUrl = await s3.presignGet(key, 1)
    await sleep(2_100)
    for (const res of [await putPart(partUrl, randomBytes(100)), await fetch(getUrl)]) {
      assert.equal(res.status, 403)
      const text = await res.text()
      assert.match(text, /<Code>AccessDenied<\/Code>/)
      assert.match(text, /expired/)
    }
  })

  it('abort: the upload is gone (listParts → storage_rejected, its part URLs refused) and nothing is listed', async () => {
    const key = newKey()
    const uploadId = await s3.createMultipartUpload(key)
    const url2 = await s3.presignUploadPart(key, uploadId, 2, 300)
    assert.equal((await putPart(await s3.presignUploadPart(key, uploadId, 1, 300), randomBytes(5 * MiB))).status, 200)
    await s3.abortMultipartUpload(key, uploadId)

    const err = await rejection(s3.listParts(key, uploadId))
    assert.equal(err.code, STORAGE_REJECTED)
    assert.equal(err.status, 404)
    // AWS says NoSuchUpload; RGW's dbstore says NoSuchKey.
    assert.match(String(err.s3Code), /^(NoSuchUpload|NoSuchKey)$/)
    const late = await putPart(url2, randomBytes(10))
    assert.equal(late.status, 404)
    assert.match(String(await s3ErrorCode(late)), /^(NoSuchUpload|NoSuchKey)$/)
    assert.equal(await s3.headObject(key), undefined)
    assert.deepEqual(await listKeys(key), [])
    // Completing it now is refused too; aborting again is fine (an abort retried after a lost answer).
    assert.equal((await rejection(s3.completeMultipartUpload(key, uploadId, [{ partNumber: 1, etag: '"x"' }]))).code, STORAGE_REJECTED)
    await s3.abortMultipartUpload(key, uploadId)
  })

  it('resume: part 1 uploaded, state lost, listParts → [1], part 2 uploaded, completed', async () => {
    const key = newKey()
    const parts = [randomBytes(5 * MiB), randomBytes(4321)]
    const uploadId = await s3.createMultipartUpload(key, { 'request-id': 'resume' })
    assert.equal((await putPart(await s3.presignUploadPart(key, uploadId, 1, 300), parts[0])).status, 200)
    // The gateway restarts: all it kept is the key and the upload id.
    const held = await s3.listParts(key, uploadId)
    assert.deepEqual(held.map((p) => [p.partNumber, p.size]), [[1, 5 * MiB]])
    assert.equal(held[0].etag, `"${md5(parts[0]).toString('hex')}"`)
    const res = await putPart(await s3.presignUploadPart(key, uploadId, 2, 300), parts[1])
    assert.equal(res.status, 200)
    const { etag } = await s3.completeMultipartUpload(key, uploadId, [...held, { partNumber: 2, etag: res.headers.get('etag')! }])
    assert.equal(etag, multipartEtag(parts))
    assert.equal((await s3.headObject(key))?.size, 5 * MiB + 4321)
  })

  it('a part URL is bound to its upload: moved to another upload id it is refused, and that upload gets nothing', async () => {
    const key = newKey()
    const a = await s3.createMultipartUpload(key)
    const b = await s3.createMultipartUpload(key)
    assert.notEqual(a, b)
    const url = new URL(await s3.presignUploadPart(key, a, 1, 300))
    url.searchParams.set('uploadId', b)
    const res = await putPart(url.toString(), randomBytes(1000))
    assert.equal(res.status, 403)
    assert.equal(await s3ErrorCode(res), 'SignatureDoesNotMatch')
    assert.deepEqual(await s3.listParts(key, b), [])
    assert.deepEqual(await s3.listParts(key, a), [])
    await s3.abortMultipartUpload(key, a)
    await s3.abortMultipartUpload(key, b)
  })

  it('wrong credentials → storage_rejected (403); a closed port → storage_unavailable', async () => {
    const { endpoint, bucket, accessKeyId, region } = server
    const wrongSecret = s3Client({ endpoint, bucket, accessKeyId, secretAccessKey: 'not-the-secret', region })
    const e1 = await rejection(wrongSecret.createMultipartUpload(newKey()))
    assert.equal(e1.code, STORAGE_REJECTED)
    assert.equal(e1.status, 403)
    assert.equal(e1.s3Code, 'SignatureDoesNotMatch')
    const unknownKey = s3Client({ endpoint, bucket, accessKeyId: 'AKIDNOBODY', secretAccessKey: 'x', region })
    const e2 = await rejection(unknownKey.headObject('x'))
    assert.equal(e2.code, STORAGE_REJECTED)
    assert.equal(e2.status, 403)
    const noSuchBucket = s3Client({ endpoint, bucket: 'no-such-bucket', accessKeyId, secretAccessKey: server.secretAccessKey, region })
    const e3 = await rejection(noSuchBucket.createMultipartUpload('x'))
    assert.equal(e3.code, STORAGE_REJECTED)
    assert.equal(e3.s3Code, 'NoSuchBucket')

    const closed = s3Client({ endpoint: `http://127.0.0.1:${await freePort()}`, bucket, accessKeyId, secretAccessKey: 'x' })
    assert.equal((await rejection(closed.createMultipartUpload('x'))).code, STORAGE_UNAVAILABLE)
  })
})

describe('vault s3 client without a server', () => {
  const base = { endpoint: 'https://s3.example.test', bucket: 'evidence', accessKeyId: 'AKID', secretAccessKey: 'secret', region: 'auto' }
  /** A client whose fetch answers `status` with `body`, recording the requests. */
  const answering = (status: number, body = '', seen: Request[] = []) =>
    s3Client({ ...base, fetch: async (input, init) => (seen.push(new Request(input, init)), new Response(status === 204 ? null : body, { status })) })

  it('5xx and 429 → storage_unavailable; 4xx → storage_rejected with the S3 code', async () => {
    const slow = '<?xml version="1.0"?><Error><Code>SlowDown</Code><Message>Reduce your request rate.</Message></Error>'
    for (const [status, code] of [[500, STORAGE_UNAVAILABLE], [503, STORAGE_UNAVAILABLE], [429, STORAGE_UNAVAILABLE], [400, STORAGE_REJECTED], [403, STORAGE_REJECTED]] as const) {
      const err = await rejection(answering(status, slow).createMultipartUpload('a/b'))
      assert.equal(err.code, code, String(status))
      assert.equal(err.status, status)
      assert.equal(err.s3Code, 'SlowDown')
    }
  })

  it('an <Error> inside a 200 CompleteMultipartUpload answer is an error, judged by its code', async () => {
    const inner = (code: string) => `<?xml version="1.0"?>\n\n<Error><Code>${code}</Code><Message>m</Message></Error>`
    const parts = [{ partNumber: 1, etag: '"e"' }]
    assert.equal((await rejection(answering(200, inner('InternalError')).completeMultipartUpload('a', 'u', parts))).code, STORAGE_UNAVAILABLE)
    const bad = await rejection(answering(200, inner('InvalidPart')).completeMultipartUpload('a', 'u', parts))
    assert.equal(bad.code, STORAGE_REJECTED)
    assert.equal(bad.s3Code, 'InvalidPart')
  })

  it('parses answers minimally: entities in ETags, every ListParts page', async () => {
    const seen: Request[] = []
    const page = (parts: number[], next?: number) =>
      `<ListPartsResult>${next ? `<IsTruncated>true</IsTruncated><NextPartNumberMarker>${next}</NextPartNumberMarker>` : '<IsTruncated>false</IsTruncated>'}` +
      parts.map((p) => `<Part><PartNumber>${p}</PartNumber><ETag>&quot;e${p}&quot;</ETag><Size>${p * 10}</Size></Part>`).join('') +
      '</ListPartsResult>'
    const pages = [page([1, 2], 2), page([3])]
    const client = s3Client({ ...base, fetch: async (input, init) => (seen.push(new Request(input, init)), new Response(pages.shift())) })
    assert.deepEqual(await client.listParts('a', 'u'), [1, 2, 3].map((p) => ({ partNumber: p, etag: `"e${p}"`, size: p * 10 })))
    assert.equal(new URL(seen[1].url).searchParams.get('part-number-marker'), '2')
  })

  it('CompleteMultipartUpload sends the parts sorted, ETags escaped, and signs its body', async () => {
    const seen: Request[] = []
    await answering(200, '<CompleteMultipartUploadResult><ETag>&#34;x-2&#34;</ETag></CompleteMultipartUploadResult>', seen).completeMultipartUpload('a', 'u', [
      { partNumber: 2, etag: '"b"' },
      { partNumber: 1, etag: '"a"' },
    ])
    const body = await seen[0].text()
    assert.match(body, /<Part><PartNumber>1<\/PartNumber><ETag>&quot;a&quot;<\/ETag><\/Part><Part><PartNumber>2</)
    assert.equal(seen[0].headers.get('x-amz-content-sha256'), createHash('sha256').update(body).digest('hex'))
    assert.match(seen[0].headers.get('authorization') ?? '', /SignedHeaders=content-type;host;x-amz-content-sha256;x-amz-date/)
  })

  it('path style by default, virtual-host style on request; keys encoded as SigV4 canonicalizes them', async () => {
    const path = new URL(await s3Client(base).presignUploadPart("c/ns/p/ctr/a b(1)!.tar", 'u/1', 3, 60))
    assert.equal(path.origin + path.pathname, 'https://s3.example.test/evidence/c/ns/p/ctr/a%20b%281%29%21.tar')
    assert.equal(path.searchParams.get('partNumber'), '3')
    assert.equal(path.searchParams.get('uploadId'), 'u/1')
    assert.equal(path.searchParams.get('X-Amz-Expires'), '60')
    assert.match(path.searchParams.get('X-Amz-Credential')!, /^AKID\/\d{8}\/auto\/s3\/aws4_request$/)
    assert.equal(path.searchParams.get('X-Amz-SignedHeaders'), 'host')
    const virtual = new URL(await s3Client({ ...base, style: 'virtual' }).presignGet('c/x', 60))
    assert.equal(virtual.origin + virtual.pathname, 'https://evidence.s3.example.test/c/x')
  })

  it('refuses bad configuration (Error) and bad arguments (TypeError)', async () => {
    assert.throws(() => s3Client({ ...base, endpoint: 'https://s3.example.test/prefix' }), /scheme and host only/)
    assert.throws(() => s3Client({ ...base, endpoint: 'ftp://x' }), /http\(s\)/)
    assert.throws(() => s3Client({ ...base, bucket: 'Evidence_1' }), /bucket/)
    assert.throws(() => s3Client({ ...base, secretAccessKey: '' }), /required/)
    const c = s3Client(base)
    await assert.rejects(c.presignUploadPart('a', 'u', 0, 60), TypeError)
    await assert.rejects(c.presignUploadPart('a', 'u', 10_001, 60), TypeError)
    await assert.rejects(c.presignUploadPart('a', 'u', 1, 0), TypeError)
    await assert.rejects(c.presignGet('a', 604_801), TypeError)
    await assert.rejects(c.presignGet('a/../b', 60), TypeError)
    await assert.rejects(c.presignGet('/a', 60), TypeError)
    await assert.rejects(c.createMultipartUpload('a', { Upper: 'x' }), TypeError)
    await assert.rejects(c.createMultipartUpload('a', { ok: 'naïve' }), TypeError)
    await assert.rejects(c.completeMultipartUpload('a', 'u', []), TypeError)
    await assert.rejects(c.completeMultipartUpload('a', 'u', [{ partNumber: 1, etag: '"a"' }, { partNumber: 1, etag: '"b"' }]), TypeError)
  })
})
