/**
 * What the evidence vault needs of object storage, whichever backend holds the bytes: `s3`
 * (any S3-compatible API, functions/vault/s3.ts) or `r2` (the Workers R2 binding,
 * functions/vault/r2.ts). The vault drives a multipart upload whose parts the agent PUTs to URLs
 * it is handed (presigned, or the gateway's own capability URLs), checks the parts storage holds,
 * then completes or aborts. Failures are {@link StorageError}s with a stable code.
 */

/** Storage could not be reached or answered 5xx / 429: try again later, the request may be fine. */
export const STORAGE_UNAVAILABLE = 'storage_unavailable'
/** Storage answered 4xx: bad signature, access denied, no such upload or bucket. Retrying will not help. */
export const STORAGE_REJECTED = 'storage_rejected'
/** Parts S3 and R2 take in one multipart upload. */
export const MAX_PARTS = 10_000
export type StorageErrorCode = typeof STORAGE_UNAVAILABLE | typeof STORAGE_REJECTED

/**
 * A failed storage call. Match on `code`; `status` is the HTTP status the server gave (absent when
 * none came), `s3Code` the `<Code>` of its error body (`SignatureDoesNotMatch`, `NoSuchUpload`…).
 */
export class StorageError extends Error {
  readonly code: StorageErrorCode
  readonly status?: number
  readonly s3Code?: string

  constructor(code: StorageErrorCode, message: string, opts: { status?: number; s3Code?: string; cause?: unknown } = {}) {
    super(message, opts.cause === undefined ? undefined : { cause: opts.cause })
    this.name = 'StorageError'
    this.code = code
    const { status, s3Code } = opts
    if (status !== undefined) this.status = status
    if (s3Code !== undefined) this.s3Code = s3Code
  }
}

export interface UploadedPart {
  partNumber: number
  /** As the server sent it, quotes included (`"9b2c…"`). */
  etag: string
  size: number
}

export interface ObjectHead {
  size: number
  etag: string
  contentType?: string
  lastModified?: string
  /** `x-amz-meta-*` headers, names lowercased without the prefix. */
  metadata: Record<string, string>
}

export interface EvidenceStorage {
  readonly bucket: string
  /** Starts a multipart upload of `key` with `x-amz-meta-*` metadata; resolves to its upload id. */
  createMultipartUpload(key: string, metadata?: Record<string, string>, contentType?: string): Promise<string>
  /**
   * A URL good for one thing: `PUT` of part `partNumber` (1–10 000) of this upload of this object,
   * for `expiresSec` seconds (1–604 800). The agent PUTs the part's bytes to it with no credential
   * and no extra header, and reads the part's `ETag` from the answer.
   */
  presignUploadPart(key: string, uploadId: string, partNumber: number, expiresSec: number): Promise<string>
  /** Completes the upload from the given parts (sorted here). Resolves to the object's ETag. */
  completeMultipartUpload(key: string, uploadId: string, parts: { partNumber: number; etag: string }[]): Promise<{ etag: string }>
  /** Aborts the upload; an upload that is already gone (404 NoSuchUpload, or RGW's NoSuchKey) counts as aborted. */
  abortMultipartUpload(key: string, uploadId: string): Promise<void>
  /** The parts the server holds for the upload, in order (all pages). Rejects with `storage_rejected` once the upload is gone. */
  listParts(key: string, uploadId: string): Promise<UploadedPart[]>
  /** Stores a small object (a manifest, a signed statement) in one signed PUT. */
  putObject(key: string, body: string, contentType: string): Promise<{ etag: string }>
  /** A URL that lets its holder `GET` the object for `expiresSec` seconds. */
  presignGet(key: string, expiresSec: number): Promise<string>
  /** The object's size, ETag and metadata; `undefined` when there is no such object. */
  headObject(key: string): Promise<ObjectHead | undefined>
}
