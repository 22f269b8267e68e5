/**
 * Uploads a sealed stream as numbered parts to URLs the gateway presigned: the node holds no
 * storage credential, only URLs each good for one PUT of one part of one object for a few minutes.
 * Parts are a fixed size (the last smaller); one part buffer is held at a time. A part that fails
 * for the network or a 5xx/429 is sent again with backoff (the same bytes: the buffer is kept until
 * the PUT succeeds); a 4xx (expired or tampered URL, an upload that is gone) ends the upload at once.
 */
import { setTimeout as sleep } from 'node:timers/promises'
import { CheckpointError } from '../../shared/errors.ts'

export interface UploadPlan {
  /** Bytes per part, except the last. */
  partSize: number
  /** `urls[i]` is the presigned PUT of part i + 1. */
  urls: readonly string[]
}

export interface UploadedPart {
  partNumber: number
  etag: string
  size: number
}

export interface UploadOptions {
  /** Attempts per part (default 4). */
  attempts?: number
  /** First backoff in ms, doubled each retry (default 500). */
  backoffMs?: number
  onPart?: (p: UploadedPart, sentBytes: number) => void
  signal?: AbortSignal
  /** Per-PUT deadline (default 120 s). */
  timeoutMs?: number
}

async function putPart(url: string, body: Buffer, partNumber: number, o: UploadOptions): Promise<string> {
  const attempts = o.attempts ?? 4
  let last: CheckpointError | undefined
  for (let attempt = 1; attempt <= attempts; attempt++) {
    if (attempt > 1) await sleep((o.backoffMs ?? 500) * 2 ** (attempt - 2), undefined, { signal: o.signal })
    let res: Response
    try {
      const signal = AbortSignal.any([AbortSignal.timeout(o.timeoutMs ?? 120_000), ...(o.signal ? [o.signal] : [])])
      // No headers beyond the length: presigned URLs sign only the host, and some servers refuse
      // an unsigned Content-Type.
      res = await fetch(url, { method: 'PUT', body, signal, duplex: 'half' } as RequestInit)
    } catch (err) {
      if (o.signal?.aborted) throw err
      last = new CheckpointError('storage_unavailable', `part ${partNumber}: storage unreachable (${(err as Error).message})`, { cause: err })
      continue
    }
    const text = res.ok ? '' : (await res.text().catch(() => '')).slice(0, 300)
    if (res.ok) {
      const etag = res.headers.get('etag')
      if (!etag) throw new CheckpointError('storage_rejected', `part ${partNumber}: storage answered without an ETag`)
      return etag
    }
    const code = /<Code>([^<]+)<\/Code>/.exec(text)?.[1] ?? `HTTP ${res.status}`
    if (res.status >= 500 || res.status === 429) {
      last = new CheckpointError('storage_unavailable', `part ${partNumber}: storage answered ${res.status} (${code})`)
      continue
    }
    throw new CheckpointError('storage_rejected', `part ${partNumber}: storage refused the upload (${res.status} ${code})`, { extra: { storageStatus: res.status, storageCode: code } })
  }
  throw last!
}

/**
 * Consumes `sealed` into parts of `plan.partSize` and PUTs each to its URL in order. Resolves with
 * the parts (number, ETag, size) once the last is stored; rejects with `storage_rejected`
 * (a refusal, or more data than the plan has parts for) or `storage_unavailable` (retries spent).
 */
export async function uploadParts(sealed: AsyncIterable<Uint8Array>, plan: UploadPlan, o: UploadOptions = {}): Promise<UploadedPart[]> {
  if (!Number.isInteger(plan.partSize) || plan.partSize < 1) throw new TypeError('uploadParts: partSize must be a positive integer')
  const parts: UploadedPart[] = []
  const buf = Buffer.allocUnsafe(plan.partSize)
  let fill = 0
  let sent = 0
  const flush = async () => {
    const partNumber = parts.length + 1
    const url = plan.urls[partNumber - 1]
    if (!url) throw new CheckpointError('storage_rejected', `the sealed archive needs more than the ${plan.urls.length} parts planned`)
    // The part buffer is refilled only after its PUT succeeded, so it can be sent as it is.
    const body = buf.subarray(0, fill)
    const etag = await putPart(url, body, partNumber, o)
    const part = { partNumber, etag, size: fill }
    parts.push(part)
    sent += fill
    fill = 0
    o.onPart?.(part, sent)
  }
  for await (const chunk of sealed) {
    let off = 0
    while (off < chunk.length) {
      const n = Math.min(chunk.length - off, plan.partSize - fill)
      buf.set(chunk.subarray(off, off + n), fill)
      fill += n
      off += n
      if (fill === plan.partSize) await flush()
    }
  }
  if (fill > 0 || parts.length === 0) await flush()
  return parts
}
