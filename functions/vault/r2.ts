/**
 * The `r2` evidence-vault backend: a Workers R2 bucket binding behind the same storage interface as
 * `s3`, so the agent's code path is the same — it PUTs numbered parts to URLs it is handed. Here
 * those URLs are the gateway's own (`PUT /v1/vault/uploads/{upload}/parts/{n}?cap=…`), each good
 * for one part of one upload until it expires (a capability the gateway signed with its grant
 * key); the part streams into the R2 multipart upload, never buffered whole. Investigators' links
 * are gateway URLs too (`GET /v1/vault/objects/{key}?cap=…`), streaming from the binding.
 *
 * R2's binding cannot list an upload's parts, so the gateway records each part it passed to R2
 * (number, ETag, size) in a small object beside the upload, and the vault checks the agent's report
 * against that record before completing, as it checks S3's own ListParts.
 */
import type { Handler } from 'hono'
import { sha256Hex } from '../../shared/digest.ts'
import { CheckpointError } from '../../shared/errors.ts'
import { checkQuery } from '../../shared/names.ts'
import { parseRange } from '../../shared/range.ts'
import type { Ctx, Env } from '../context.ts'
import type { Capability, GrantKeys } from '../grants.ts'
import { MAX_PARTS, STORAGE_REJECTED, STORAGE_UNAVAILABLE, StorageError, type EvidenceStorage, type ObjectHead, type UploadedPart } from './storage.ts'

/** The slice of the Workers R2 binding used here (workerd's `R2Bucket`). */
export interface R2BucketLike {
  createMultipartUpload(key: string, options?: { customMetadata?: Record<string, string>; httpMetadata?: { contentType?: string } }): Promise<{ uploadId: string }>
  resumeMultipartUpload(key: string, uploadId: string): R2MultipartUploadLike
  put(key: string, value: string | ArrayBuffer | ReadableStream | null, options?: { customMetadata?: Record<string, string>; httpMetadata?: { contentType?: string } }): Promise<{ etag: string } | null>
  get(key: string, options?: { range?: { offset: number; length: number } }): Promise<(R2ObjectLike & { body: ReadableStream }) | null>
  head(key: string): Promise<R2ObjectLike | null>
  list(options: { prefix: string; cursor?: string; include?: Array<'customMetadata'> }): Promise<{ objects: R2ObjectLike[]; truncated: boolean; cursor?: string }>
  delete(keys: string | string[]): Promise<void>
}

interface R2MultipartUploadLike {
  uploadPart(partNumber: number, value: ReadableStream | ArrayBuffer): Promise<{ partNumber: number; etag: string }>
  abort(): Promise<void>
  complete(parts: Array<{ partNumber: number; etag: string }>): Promise<R2ObjectLike>
}

interface R2ObjectLike {
  key: string
  size: number
  etag: string
  httpEtag: string
  uploaded: Date
  customMetadata?: Record<string, string>
  httpMetadata?: { contentType?: string }
}

export interface R2Options {
  bucket: R2BucketLike
  /** The binding's name, reported as the `bucket` of stored evidence. */
  name: string
  /** The gateway's URL as agents and investigators reach it (R2Settings.publicUrl). */
  publicUrl: string
  keys: GrantKeys
  now(): number
}


/** Where the gateway records an upload (`…/upload`) and each part it passed to R2 (`…/<n>`). */
async function recordPrefix(uploadId: string): Promise<string> {
  return `.uploads/${await sha256Hex(uploadId, 16)}/`
}

/** R2's binding throws plain errors; "no such upload/object" is a refusal, anything else unavailability. */
function storageError(what: string, err: unknown): StorageError {
  const message = String((err as Error)?.message ?? err)
  const gone = /does not exist|not found|NoSuch|10007|10024/i.test(message)
  return new StorageError(gone ? STORAGE_REJECTED : STORAGE_UNAVAILABLE, `r2 ${what}: ${message.slice(0, 200)}`, { cause: err })
}

async function attempt<T>(what: string, f: () => Promise<T>): Promise<T> {
  try {
    return await f()
  } catch (err) {
    throw err instanceof StorageError ? err : storageError(what, err)
  }
}

function checkPartNumber(n: number): void {
  if (!Number.isInteger(n) || n < 1 || n > MAX_PARTS) throw new TypeError(`r2: partNumber must be 1..${MAX_PARTS}`)
}

/**
 * The storage client of the `r2` backend.
 *
 * @example
 * const storage = r2Storage({ bucket: env.EVIDENCE, name: 'EVIDENCE', publicUrl: 'https://gw.example.com', keys, now: Date.now })
 */
export function r2Storage(o: R2Options): EvidenceStorage {
  const { bucket } = o
  const capabilityUrl = (path: string, cap: string) => `${o.publicUrl}${path}?cap=${cap}`
  return {
    bucket: o.name,

    async createMultipartUpload(key, metadata = {}, contentType = 'application/octet-stream') {
      const { uploadId } = await attempt('createMultipartUpload', () => bucket.createMultipartUpload(key, { customMetadata: metadata, httpMetadata: { contentType } }))
      const prefix = await recordPrefix(uploadId)
      await attempt('put (upload record)', () => bucket.put(`${prefix}upload`, key))
      return uploadId
    },

    async presignUploadPart(key, uploadId, partNumber, expiresSec) {
      checkPartNumber(partNumber)
      const cap = await o.keys.capability({ use: 'vault:part', key, upload: uploadId, part: partNumber }, o.now(), expiresSec)
      return capabilityUrl(`/v1/vault/uploads/${encodeURIComponent(uploadId)}/parts/${partNumber}`, cap)
    },

    async listParts(key, uploadId) {
      const prefix = await recordPrefix(uploadId)
      const record = await attempt('head (upload record)', () => bucket.head(`${prefix}upload`))
      if (!record) throw new StorageError(STORAGE_REJECTED, `r2 listParts: no upload ${uploadId} of ${key} (completed or aborted)`)
      const parts: UploadedPart[] = []
      let cursor: string | undefined
      do {
        const page = await attempt('list (part records)', () => bucket.list({ prefix, include: ['customMetadata'], ...(cursor ? { cursor } : {}) }))
        for (const obj of page.objects) {
          const n = Number(obj.key.slice(prefix.length))
          if (!Number.isInteger(n) || n < 1) continue
          parts.push({ partNumber: n, etag: obj.customMetadata?.etag ?? '', size: Number(obj.customMetadata?.size ?? NaN) })
        }
        cursor = page.truncated ? page.cursor : undefined
      } while (cursor)
      return parts.sort((a, b) => a.partNumber - b.partNumber)
    },

    async completeMultipartUpload(key, uploadId, parts) {
      if (parts.length === 0) throw new TypeError('r2: a multipart upload needs at least one part')
      const sorted = [...parts].sort((a, b) => a.partNumber - b.partNumber).map(({ partNumber, etag }) => ({ partNumber, etag }))
      const done = await attempt('complete', () => bucket.resumeMultipartUpload(key, uploadId).complete(sorted))
      await forget(bucket, uploadId)
      return { etag: done.httpEtag }
    },

    async abortMultipartUpload(key, uploadId) {
      try {
        await bucket.resumeMultipartUpload(key, uploadId).abort()
      } catch (err) {
        const e = storageError('abort', err)
        if (e.code !== STORAGE_REJECTED) throw e
      }
      await forget(bucket, uploadId)
    },

    async putObject(key, body, contentType) {
      const put = await attempt('put', () => bucket.put(key, body, { httpMetadata: { contentType } }))
      return { etag: `"${put?.etag ?? ''}"` }
    },

    async presignGet(key, expiresSec) {
      const cap = await o.keys.capability({ use: 'vault:get', key }, o.now(), expiresSec)
      return capabilityUrl(`/v1/vault/objects/${key.split('/').map(encodeURIComponent).join('/')}`, cap)
    },

    async headObject(key): Promise<ObjectHead | undefined> {
      const h = await attempt('head', () => bucket.head(key))
      if (!h) return undefined
      return {
        size: h.size, etag: h.httpEtag, metadata: { ...h.customMetadata }, lastModified: h.uploaded.toISOString(),
        ...(h.httpMetadata?.contentType ? { contentType: h.httpMetadata.contentType } : {}),
      }
    },
  }
}

/** Deletes an upload's records once it is completed or aborted. */
async function forget(bucket: R2BucketLike, uploadId: string): Promise<void> {
  const prefix = await recordPrefix(uploadId)
  let cursor: string | undefined
  do {
    const page = await attempt('list (records)', () => bucket.list({ prefix, ...(cursor ? { cursor } : {}) }))
    if (page.objects.length) await attempt('delete (records)', () => bucket.delete(page.objects.map((x) => x.key)))
    cursor = page.truncated ? page.cursor : undefined
  } while (cursor)
}

export interface R2RouteDeps {
  bucket: R2BucketLike
  keys: GrantKeys
  now(): number
  /** The configured part size: a larger body is refused. */
  maxPartBytes: number
}

const asRequestError = (err: unknown): unknown =>
  err instanceof StorageError
    ? err.code === STORAGE_REJECTED
      ? new CheckpointError('conflict', 'the upload is gone (completed or aborted)')
      : new CheckpointError('storage_unavailable', 'evidence storage is unavailable', { headers: { 'retry-after': '5' } })
    : err

/** The request's capability (`?cap=`, the only query parameter), checked for `use`; the audit line names the use. */
async function capabilityOf(c: Ctx, d: Pick<R2RouteDeps, 'keys' | 'now'>, use: Capability['use']) {
  const q = new URL(c.req.url).searchParams
  checkQuery(q, ['cap'])
  const audit = c.get('audit')
  audit.op = use
  return { cap: await d.keys.verifyCapability(q.get('cap') ?? '', use, d.now()), audit }
}

/**
 * `PUT /v1/vault/uploads/{upload}/parts/{n}?cap=…`: one part from an agent into the R2 upload.
 * The capability is the only credential (agents hold no caller token); it names the object, the
 * upload and the part, so it cannot be spent on another.
 */
export function createPartUploadHandler(d: R2RouteDeps): Handler<Env> {
  return async function uploadPart(c) {
    const { cap, audit } = await capabilityOf(c, d, 'vault:part')
    const part = Number(c.req.param('part'))
    if (cap.upload !== c.req.param('upload') || cap.part !== part) throw new CheckpointError('grant_mismatch', 'capability is for another upload or part', { field: 'cap' })
    audit.stored = cap.key
    const length = c.req.header('content-length')
    if (length === undefined || !/^\d{1,12}$/.test(length)) throw new CheckpointError('invalid_body', 'a part needs a Content-Length', { field: 'content-length' })
    const size = Number(length)
    if (size > d.maxPartBytes) throw new CheckpointError('payload_too_large', `a part is at most ${d.maxPartBytes} bytes`, { field: 'content-length' })
    try {
      const body = size === 0 || !c.req.raw.body ? new ArrayBuffer(0) : c.req.raw.body
      const { etag } = await attempt('uploadPart', () => d.bucket.resumeMultipartUpload(cap.key, cap.upload!).uploadPart(part, body))
      const prefix = await recordPrefix(cap.upload!)
      await attempt('put (part record)', () => d.bucket.put(`${prefix}${String(part).padStart(5, '0')}`, null, { customMetadata: { etag, size: String(size) } }))
      return c.body(null, 200, { etag, 'cache-control': 'no-store' })
    } catch (err) {
      throw asRequestError(err)
    }
  }
}

/**
 * `GET /v1/vault/objects/{key}?cap=…`: a sealed object (or its statement) streamed from the
 * binding, with single `Range` requests and the object's ETag (for `If-Range` on resume).
 */
export function createObjectHandler(d: Omit<R2RouteDeps, 'maxPartBytes'>): Handler<Env> {
  return async function getObject(c) {
    const { cap, audit } = await capabilityOf(c, d, 'vault:get')
    const key = c.req.param('key') ?? ''
    if (cap.key !== key) throw new CheckpointError('grant_mismatch', 'capability is for another object', { field: 'cap' })
    audit.stored = key
    try {
      const head = await attempt('head', () => d.bucket.head(key))
      if (!head) throw new CheckpointError('archive_not_found', `no stored object ${key}`)
      const ifRange = c.req.header('if-range')
      const range = ifRange && ifRange !== head.httpEtag ? null : parseRange(c.req.header('range'), head.size)
      const obj = await attempt('get', () => d.bucket.get(key, range ? { range: { offset: range.start, length: range.end - range.start + 1 } } : {}))
      if (!obj) throw new CheckpointError('archive_not_found', `no stored object ${key}`)
      const headers: Record<string, string> = {
        'content-type': obj.httpMetadata?.contentType ?? 'application/octet-stream',
        etag: obj.httpEtag,
        'accept-ranges': 'bytes',
        'cache-control': 'no-store',
        'content-length': String(range ? range.end - range.start + 1 : obj.size),
      }
      if (range) headers['content-range'] = `bytes ${range.start}-${range.end}/${obj.size}`
      return c.body(obj.body, range ? 206 : 200, headers)
    } catch (err) {
      throw asRequestError(err)
    }
  }
}
