/**
 * Uploads a sealed stream as numbered parts to URLs the gateway presigned: the node holds no
 * storage credential, only URLs each good for one PUT of one part of one object for a few minutes.
 * Parts are a fixed size (the last smaller); two part buffers at most. A part that fails
 * for the network or a 5xx/429 is sent again with backoff (the same bytes: the buffer is kept until
 * the PUT succeeds); a 4xx (expired or tampered URL, an upload that is gone) ends the upload at once.
 */
import { request as httpRequest } from 'node:http'
import { request as httpsRequest } from 'node:https'
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

/**
 * One PUT of `body` over node:http(s): the buffer is written as it is. (fetch copies a request body
 * it is given as bytes, as its spec says — a part-sized copy per part, garbage that grew the agent's
 * RSS by ≈ 230 MiB over a 2 GiB store.) Only Content-Length is sent: presigned URLs sign the host
 * alone, and some servers refuse an unsigned Content-Type.
 */
function putOnce(url: string, body: Buffer, signal: AbortSignal): Promise<{ status: number; etag: string | null; text: string }> {
  return new Promise((resolve, reject) => {
    const u = new URL(url)
    const send = u.protocol === 'https:' ? httpsRequest : httpRequest
    const req = send(u, { method: 'PUT', headers: { 'content-length': String(body.length) }, signal }, (res) => {
      const chunks: Buffer[] = []
      let kept = 0
      res.on('data', (c: Buffer) => {
        // An error body is read for its <Code>; nothing else an answer says is needed.
        if (kept < 4096) (chunks.push(c), (kept += c.length))
      })
      res.on('end', () => resolve({ status: res.statusCode ?? 0, etag: (res.headers.etag as string | undefined) ?? null, text: Buffer.concat(chunks).toString('utf8') }))
      res.on('error', reject)
    })
    req.on('error', reject)
    req.end(body)
  })
}

async function putPart(url: string, body: Buffer, partNumber: number, o: UploadOptions): Promise<string> {
  const attempts = o.attempts ?? 4
  let last: CheckpointError | undefined
  for (let attempt = 1; attempt <= attempts; attempt++) {
    if (attempt > 1) await sleep((o.backoffMs ?? 500) * 2 ** (attempt - 2), undefined, { signal: o.signal })
    let res: { status: number; etag: string | null; text: string }
    try {
      const signal = AbortSignal.any([AbortSignal.timeout(o.timeoutMs ?? 120_000), ...(o.signal ? [o.signal] : [])])
      res = await putOnce(url, body, signal)
    } catch (err) {
      if (o.signal?.aborted) throw err
      last = new CheckpointError('storage_unavailable', `part ${partNumber}: storage unreachable (${(err as Error).message})`, { cause: err })
      continue
    }
    if (res.status >= 200 && res.status < 300) {
      if (!res.etag) throw new CheckpointError('storage_rejected', `part ${partNumber}: storage answered without an ETag`)
      return res.etag
    }
    const text = res.text.slice(0, 300)
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
 *
 * Sealing and uploading overlap: while one part is PUT, the next fills the other of two part
 * buffers; at most one PUT is in flight, so parts are stored in order and a buffer is refilled only
 * after its PUT succeeded (a retry sends the same bytes). The second buffer is made only when a
 * second part comes.
 */
export async function uploadParts(sealed: AsyncIterable<Uint8Array>, plan: UploadPlan, o: UploadOptions = {}): Promise<UploadedPart[]> {
  if (!Number.isInteger(plan.partSize) || plan.partSize < 1) throw new TypeError('uploadParts: partSize must be a positive integer')
  const parts: UploadedPart[] = []
  const buffers: Buffer[] = [Buffer.allocUnsafe(plan.partSize)]
  let current = 0
  let fill = 0
  let sent = 0
  let planned = 0
  let inFlight: Promise<void> | undefined
  const flush = async () => {
    const partNumber = ++planned
    const url = plan.urls[partNumber - 1]
    if (!url) throw new CheckpointError('storage_rejected', `the sealed archive needs more than the ${plan.urls.length} parts planned`)
    const body = buffers[current]!.subarray(0, fill)
    const size = fill
    // The other buffer is free once the PUT before this one is done.
    if (inFlight) await inFlight
    inFlight = putPart(url, body, partNumber, o).then((etag) => {
      const part = { partNumber, etag, size }
      parts.push(part)
      sent += size
      o.onPart?.(part, sent)
    })
    inFlight.catch(() => {}) // awaited by the next flush or at the end; not unhandled meanwhile
    current ^= 1
    buffers[current] ??= Buffer.allocUnsafe(plan.partSize)
    fill = 0
  }
  for await (const chunk of sealed) {
    let off = 0
    while (off < chunk.length) {
      const n = Math.min(chunk.length - off, plan.partSize - fill)
      buffers[current]!.set(chunk.subarray(off, off + n), fill)
      fill += n
      off += n
      if (fill === plan.partSize) await flush()
    }
  }
  if (fill > 0 || planned === 0) await flush()
  await inFlight
  return parts
}
