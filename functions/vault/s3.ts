/**
 * The `s3` evidence-vault backend's storage client: the few S3 calls the gateway makes with its own
 * credentials (create, list, complete and abort a multipart upload, read an object's metadata) and
 * the presigned URLs it hands out instead of credentials (UploadPart for the agent, GET for the
 * analyst). Web-standard only (`fetch`, `crypto.subtle` through aws4fetch's SigV4 signer), so the
 * same module runs in a Worker and on Node. Works with any S3-compatible API: AWS S3, R2's S3
 * endpoint, Ceph RGW, MinIO, GCS interoperability.
 *
 * It does one attempt per call: retries with backoff, and resuming from `listParts`, belong to the
 * caller, which knows what the upload is for. Failures are {@link StorageError}s with a stable code.
 */
import { AwsV4Signer } from 'aws4fetch'
import { sha256Hex } from '../../shared/digest.ts'

import { MAX_PARTS, STORAGE_REJECTED, STORAGE_UNAVAILABLE, StorageError, type EvidenceStorage, type ObjectHead, type UploadedPart } from './storage.ts'

export { STORAGE_REJECTED, STORAGE_UNAVAILABLE, StorageError, type EvidenceStorage, type ObjectHead, type UploadedPart }
/** The storage client of the `s3` backend. */
export type S3Client = EvidenceStorage

export interface S3Options {
  /** `https://s3.eu-west-1.amazonaws.com`, `https://<account>.r2.cloudflarestorage.com`, `http://127.0.0.1:7480`: scheme and host, no path. */
  endpoint: string
  bucket: string
  accessKeyId: string
  secretAccessKey: string
  /** SigV4 region: `us-east-1` (default; Ceph RGW and MinIO accept it), `auto` for R2. */
  region?: string
  /** `path` (default): `<endpoint>/<bucket>/<key>`. `virtual`: `<scheme>://<bucket>.<endpoint host>/<key>`. */
  style?: 'path' | 'virtual'
  /** Per-call deadline for the gateway's own calls, in ms. Default 30 000. */
  timeoutMs?: number
  /** Side door for tests and service bindings; the platform's `fetch` by default. */
  fetch?: typeof fetch
}

const MAX_EXPIRES_SEC = 604_800

/** The signed-request machinery of one bucket: calls with the gateway's credentials, presigning, object URLs. */
function s3Transport(options: S3Options) {
  const base = baseUrl(options)
  const { bucket, accessKeyId, secretAccessKey } = options
  if (!accessKeyId || !secretAccessKey) throw new Error('s3: accessKeyId and secretAccessKey are required')
  const region = options.region ?? 'us-east-1'
  const timeoutMs = options.timeoutMs ?? 30_000
  const doFetch = options.fetch ?? ((input, init) => fetch(input, init))
  const cache = new Map<string, ArrayBuffer>()
  const signer = (method: string, url: URL, extra: { headers?: Record<string, string>; signQuery?: boolean } = {}) =>
    new AwsV4Signer({
      method,
      url: url.toString(),
      headers: extra.headers,
      accessKeyId,
      secretAccessKey,
      region,
      service: 's3',
      cache,
      signQuery: extra.signQuery,
      // Sign every header we set (content-type included): RGW refuses an unsigned content-type.
      allHeaders: true,
    })

  const objectUrl = (key: string, query: Record<string, string> = {}) => {
    const url = new URL(base.href + encodeKey(key))
    for (const [k, v] of Object.entries(query)) url.searchParams.set(k, v)
    return url
  }

  /** One signed call with the gateway's credentials; non-2xx answers become StorageErrors. */
  async function call(what: string, method: string, url: URL, opts: { headers?: Record<string, string>; body?: string } = {}): Promise<Response> {
    const headers = { ...opts.headers }
    if (opts.body !== undefined) headers['x-amz-content-sha256'] = await sha256Hex(opts.body)
    const signed = await signer(method, url, { headers }).sign()
    let res: Response
    try {
      res = await doFetch(signed.url.toString(), { method, headers: signed.headers, body: opts.body, signal: AbortSignal.timeout(timeoutMs) })
    } catch (err) {
      throw new StorageError(STORAGE_UNAVAILABLE, `s3 ${what}: ${errorText(err)}`, { cause: err })
    }
    if (res.ok) return res
    throw await failure(what, res)
  }

  /** The body of a successful answer; a cut while reading it is the storage's trouble too. */
  async function text(what: string, res: Response): Promise<string> {
    try {
      return await res.text()
    } catch (err) {
      throw new StorageError(STORAGE_UNAVAILABLE, `s3 ${what}: ${errorText(err)}`, { status: res.status, cause: err })
    }
  }

  const presign = async (method: string, url: URL, expiresSec: number) => {
    if (!Number.isInteger(expiresSec) || expiresSec < 1 || expiresSec > MAX_EXPIRES_SEC) {
      throw new TypeError(`s3: expiresSec must be an integer in 1..${MAX_EXPIRES_SEC}`)
    }
    url.searchParams.set('X-Amz-Expires', String(expiresSec))
    return (await signer(method, url, { signQuery: true }).sign()).url.toString()
  }

  return { bucket, call, text, presign, objectUrl }
}

/**
 * Builds the client. Checks its options at once: bad configuration throws a plain `Error`.
 *
 * @example
 * const s3 = s3Client({ endpoint: env.S3_ENDPOINT, bucket: env.S3_BUCKET, accessKeyId: env.S3_ACCESS_KEY_ID, secretAccessKey: env.S3_SECRET_ACCESS_KEY })
 * const uploadId = await s3.createMultipartUpload(key, { 'sealed-sha256': digest })
 * const url = await s3.presignUploadPart(key, uploadId, 1, 300)   // handed to the agent
 */
export function s3Client(options: S3Options): S3Client {
  const { bucket, call, text, presign, objectUrl } = s3Transport(options)
  return {
    bucket,

    async createMultipartUpload(key, metadata = {}, contentType = 'application/octet-stream') {
      const headers: Record<string, string> = { 'content-type': contentType }
      for (const [name, value] of Object.entries(metadata)) {
        if (!/^[a-z0-9][a-z0-9-]*$/.test(name)) throw new TypeError(`s3: metadata name ${JSON.stringify(name)}: lowercase letters, digits and dashes only`)
        if (!/^[\x20-\x7e]*$/.test(value)) throw new TypeError(`s3: metadata ${name}: printable ASCII only`)
        headers[`x-amz-meta-${name}`] = value
      }
      const res = await call('CreateMultipartUpload', 'POST', objectUrl(key, { uploads: '' }), { headers })
      const uploadId = firstElement(await text('CreateMultipartUpload', res), 'UploadId')
      if (!uploadId) throw new StorageError(STORAGE_UNAVAILABLE, 's3 CreateMultipartUpload: no UploadId in the answer', { status: res.status })
      return uploadId
    },

    async presignUploadPart(key, uploadId, partNumber, expiresSec) {
      checkUploadId(uploadId)
      checkPartNumber(partNumber)
      return presign('PUT', objectUrl(key, { partNumber: String(partNumber), uploadId }), expiresSec)
    },

    async completeMultipartUpload(key, uploadId, parts) {
      checkUploadId(uploadId)
      if (parts.length === 0) throw new TypeError('s3: a multipart upload needs at least one part')
      const sorted = [...parts].sort((a, b) => a.partNumber - b.partNumber)
      sorted.forEach((p, i) => {
        checkPartNumber(p.partNumber)
        if (typeof p.etag !== 'string' || p.etag === '') throw new TypeError(`s3: part ${p.partNumber} has no ETag`)
        if (i > 0 && sorted[i - 1].partNumber === p.partNumber) throw new TypeError(`s3: part ${p.partNumber} given twice`)
      })
      const body =
        '<CompleteMultipartUpload xmlns="http://s3.amazonaws.com/doc/2006-03-01/">' +
        sorted.map((p) => `<Part><PartNumber>${p.partNumber}</PartNumber><ETag>${escapeXml(p.etag)}</ETag></Part>`).join('') +
        '</CompleteMultipartUpload>'
      const res = await call('CompleteMultipartUpload', 'POST', objectUrl(key, { uploadId }), { headers: { 'content-type': 'application/xml' }, body })
      // S3 may answer 200 and put the error in the body (it sends the status line before it is done).
      const xml = await text('CompleteMultipartUpload', res)
      const error = errorBody(xml)
      if (error) throw storageError('CompleteMultipartUpload', res.status, error.code, error.message)
      return { etag: firstElement(xml, 'ETag') ?? '' }
    },

    async abortMultipartUpload(key, uploadId) {
      checkUploadId(uploadId)
      try {
        const res = await call('AbortMultipartUpload', 'DELETE', objectUrl(key, { uploadId }))
        await res.body?.cancel()
      } catch (err) {
        // Already gone. RGW says NoSuchKey where S3 says NoSuchUpload; NoSuchBucket is not "gone".
        if (err instanceof StorageError && err.status === 404 && (err.s3Code === 'NoSuchUpload' || err.s3Code === 'NoSuchKey')) return
        throw err
      }
    },

    async listParts(key, uploadId) {
      checkUploadId(uploadId)
      const parts: UploadedPart[] = []
      let marker = ''
      for (;;) {
        const query: Record<string, string> = { uploadId }
        if (marker) query['part-number-marker'] = marker
        const xml = await text('ListParts', await call('ListParts', 'GET', objectUrl(key, query)))
        for (const part of elements(xml, 'Part')) {
          parts.push({
            partNumber: Number(firstElement(part, 'PartNumber')),
            etag: firstElement(part, 'ETag') ?? '',
            size: Number(firstElement(part, 'Size') ?? 0),
          })
        }
        const next = firstElement(xml, 'NextPartNumberMarker')
        if (firstElement(xml, 'IsTruncated') !== 'true' || !next || next === marker) break
        marker = next
      }
      return parts.sort((a, b) => a.partNumber - b.partNumber)
    },

    async presignGet(key, expiresSec) {
      return presign('GET', objectUrl(key), expiresSec)
    },

    async putObject(key, body, contentType) {
      const res = await call('PutObject', 'PUT', objectUrl(key), { headers: { 'content-type': contentType }, body })
      await res.body?.cancel()
      return { etag: res.headers.get('etag') ?? '' }
    },
    async headObject(key) {
      let res: Response
      try {
        res = await call('HeadObject', 'HEAD', objectUrl(key))
      } catch (err) {
        if (err instanceof StorageError && err.status === 404) return undefined
        throw err
      }
      await res.body?.cancel()
      const metadata: Record<string, string> = {}
      res.headers.forEach((value, name) => {
        if (name.startsWith('x-amz-meta-')) metadata[name.slice('x-amz-meta-'.length)] = value
      })
      const head: ObjectHead = { size: Number(res.headers.get('content-length') ?? 0), etag: res.headers.get('etag') ?? '', metadata }
      const contentType = res.headers.get('content-type')
      const lastModified = res.headers.get('last-modified')
      if (contentType) head.contentType = contentType
      if (lastModified) head.lastModified = lastModified
      return head
    },
  }
}

// ---- URLs ------------------------------------------------------------------------------------

/** `<endpoint>/<bucket>/` or `<scheme>://<bucket>.<host>/`, checked. */
function baseUrl(o: S3Options): URL {
  let endpoint: URL
  try {
    endpoint = new URL(o.endpoint)
  } catch {
    throw new Error(`s3: endpoint ${JSON.stringify(o.endpoint)} is not a URL`)
  }
  if (endpoint.protocol !== 'https:' && endpoint.protocol !== 'http:') throw new Error('s3: endpoint must be http(s)')
  if (endpoint.pathname !== '/' || endpoint.search || endpoint.hash || endpoint.username) {
    throw new Error('s3: endpoint is a scheme and host only (no path, query or credentials)')
  }
  // DNS-compatible names only: they work in both styles and need no escaping.
  if (!/^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$/.test(o.bucket ?? '') || o.bucket.includes('..')) {
    throw new Error(`s3: bucket ${JSON.stringify(o.bucket)} is not a valid bucket name`)
  }
  if (o.style === 'virtual') return new URL(`${endpoint.protocol}//${o.bucket}.${endpoint.host}/`)
  if (o.style !== undefined && o.style !== 'path') throw new Error('s3: style is path or virtual')
  return new URL(`${endpoint.origin}/${o.bucket}/`)
}

/**
 * Percent-encodes each segment the way SigV4's canonical URI does (RFC 3986 unreserved kept), so
 * the URL sent is the URL signed. `.`/`..` and empty segments are refused: URL parsing would
 * rewrite them and break the signature.
 */
function encodeKey(key: string): string {
  if (typeof key !== 'string' || key.length === 0 || new TextEncoder().encode(key).length > 1024) {
    throw new TypeError('s3: an object key is 1 to 1024 bytes')
  }
  const segments = key.split('/')
  if (segments.some((s) => s === '' || s === '.' || s === '..')) throw new TypeError(`s3: key ${JSON.stringify(key)} has an empty, . or .. segment`)
  return segments.map((s) => encodeURIComponent(s).replace(/[!'()*]/g, (c) => `%${c.charCodeAt(0).toString(16).toUpperCase()}`)).join('/')
}

function checkPartNumber(n: number): void {
  if (!Number.isInteger(n) || n < 1 || n > MAX_PARTS) throw new TypeError(`s3: part number must be an integer in 1..${MAX_PARTS}`)
}

function checkUploadId(id: string): void {
  if (typeof id !== 'string' || id.length === 0) throw new TypeError('s3: upload id is required')
}

// ---- answers ---------------------------------------------------------------------------------

async function failure(what: string, res: Response): Promise<StorageError> {
  const e = errorBody(await res.text().catch(() => ''))
  return storageError(what, res.status, e?.code, e?.message)
}

const SERVER_TROUBLE = new Set(['InternalError', 'ServiceUnavailable', 'SlowDown'])

/**
 * 5xx and 429 (slow down) are the server's trouble; any other refusal is ours to fix. An error in
 * a 200 (CompleteMultipartUpload) is judged by its code.
 */
function storageError(what: string, status: number, s3Code?: string, message?: string): StorageError {
  const unavailable = status >= 500 || status === 429 || (status < 300 && (s3Code === undefined || SERVER_TROUBLE.has(s3Code)))
  const code = unavailable ? STORAGE_UNAVAILABLE : STORAGE_REJECTED
  const detail = [s3Code, message].filter(Boolean).join(': ')
  return new StorageError(code, `s3 ${what}: ${status}${detail ? ` ${detail}` : ''}`, { status, ...(s3Code ? { s3Code } : {}) })
}

/** The `<Error>` of an answer body, if it is one. */
function errorBody(xml: string): { code?: string; message?: string } | undefined {
  const error = firstElement(xml, 'Error')
  if (error === undefined) return undefined
  const code = firstElement(error, 'Code')
  const message = firstElement(error, 'Message')
  return { ...(code ? { code } : {}), ...(message ? { message } : {}) }
}

/**
 * The text of every `<name>…</name>` element in `xml`, entities decoded (not a general XML
 * parser: S3 answers are flat, unprefixed and do not nest an element in one of its own name).
 */
function elements(xml: string, name: string): string[] {
  const out: string[] = []
  const re = new RegExp(`<${name}(?:\\s[^>]*)?>([\\s\\S]*?)</${name}>`, 'g')
  for (const m of xml.matchAll(re)) out.push(decodeXml(m[1]))
  return out
}

function firstElement(xml: string, name: string): string | undefined {
  return elements(xml, name)[0]
}

const ENTITIES: Record<string, string> = { quot: '"', amp: '&', lt: '<', gt: '>', apos: "'" }

function decodeXml(s: string): string {
  return s.replace(/&(#x[0-9a-f]+|#[0-9]+|quot|amp|lt|gt|apos);/gi, (whole, e: string) => {
    if (e[0] !== '#') return ENTITIES[e.toLowerCase()] ?? whole
    const cp = e[1] === 'x' || e[1] === 'X' ? parseInt(e.slice(2), 16) : parseInt(e.slice(1), 10)
    return cp <= 0x10ffff ? String.fromCodePoint(cp) : whole
  })
}

function escapeXml(s: string): string {
  return s.replace(/[&<>"']/g, (c) => `&${{ '&': 'amp', '<': 'lt', '>': 'gt', '"': 'quot', "'": 'apos' }[c]};`)
}

function errorText(err: unknown): string {
  if (err instanceof Error) return err.name === 'TimeoutError' ? 'no answer in time' : `${err.message}${err.cause instanceof Error ? ` (${err.cause.message})` : ''}`
  return String(err)
}
