/**
 * Sealing: a finished checkpoint archive, read once, becomes zstd (level 3) then age to the
 * investigators' X25519 recipients, streamed into whatever sink the caller gives (a file, the
 * uploader's parts). The plaintext and sealed digests and sizes are counted on the way, so nothing
 * is read twice and the node never holds a decryption key.
 *
 * Memory is bounded whatever the archive size: the sink pulls, backpressure runs end to end, and
 * the live data is two reused 512 KiB read buffers, zstd's window and 512 KiB output, one 64 KiB
 * age chunk. Spent output buffers are freed by a scavenge every few MiB sealed (./gc.ts) rather than
 * left to pile up until V8's next full GC (test/bench/seal.bench.ts, `seal_rss_growth`).
 */
import { createHash } from 'node:crypto'
import { open, type FileHandle } from 'node:fs/promises'
import type { Transform, Writable } from 'node:stream'
import { pipeline } from 'node:stream/promises'
import { constants, createZstdCompress } from 'node:zlib'
import { ageEncrypt, parseRecipient, type Recipient } from './age.ts'
import { collectYoung } from './gc.ts'

export interface Digest {
  /** Lower-case hex SHA-256. */
  sha256: string
  /** Bytes. */
  size: number
}

export interface SealResult {
  /** The archive as read from disk. */
  plaintext: Digest
  /** The age file as written to the sink. */
  sealed: Digest
}

/** Bytes read from the archive and bytes handed to the sink so far. */
export interface SealProgress {
  read: number
  /** The archive's size when sealing started (for a percentage). */
  total: number
  sealed: number
}

export interface SealOptions {
  /** Called at most every `progressBytes` read (default 8 MiB) and once at the end. */
  onProgress?: (p: SealProgress) => void
  progressBytes?: number
  /** zstd level, default 3 (what an operator's `zstd -3` does). */
  level?: number
  /** Stops the pipeline (read, compression, sink); `seal` then rejects with an AbortError. */
  signal?: AbortSignal
}

/** Where sealed bytes go: a Writable, or an async function that consumes them (an uploader). */
export type SealSink = Writable | ((sealed: AsyncIterable<Buffer>, opts: { signal: AbortSignal }) => Promise<unknown>)

// Pieces of 512 KiB: fewer trips between JS and zstd's thread than 256 KiB (≈ 10 % less CPU here).
// A spent zstd output buffer must die before it survives two scavenges, or V8 promotes it and only a
// full GC frees it: scavenging every 512 KiB grew RSS by 90 MiB. So the scavenge runs every 4 output
// buffers' worth of sealed bytes (figures in test/README.md, "Where the time goes").
const READ_BUFFER = 512 * 1024
const ZSTD_CHUNK = 512 * 1024
const SCAVENGE_EVERY = 4 * ZSTD_CHUNK

/**
 * Seals `filePath` into `sink`: zstd, then age to `recipients` (checked first: AgeError
 * `bad_recipient` before the file is opened). Resolves, once the sink has taken the last byte,
 * with the plaintext and sealed SHA-256 and size. Any failure (read, compression, sink, abort)
 * rejects and stops every stage; the sink's partial output is the caller's to discard.
 *
 * @example
 * const r = await seal('/var/lib/ckpt/a.tar', ['age1…'], createWriteStream('a.tar.zst.age'))
 * r.sealed.sha256 // what the upload is verified against
 */
export async function seal(
  filePath: string,
  recipients: readonly (string | Recipient)[],
  sink: SealSink,
  opts: SealOptions = {},
): Promise<SealResult> {
  const rs = recipients.map((r) => (typeof r === 'string' ? parseRecipient(r) : r))
  if (rs.length === 0) throw new TypeError('seal: at least one recipient is needed')
  const every = opts.progressBytes ?? 8 * 1024 * 1024
  const fh = await open(filePath, 'r')
  try {
    const total = (await fh.stat()).size
    const plain = createHash('sha256')
    const sealed = createHash('sha256')
    let read = 0
    let written = 0
    let reported = 0
    const report = (force: boolean) => {
      if (!opts.onProgress || (!force && read - reported < every)) return
      reported = read
      opts.onProgress({ read, total, sealed: written })
    }

    const zstd = createZstdCompress({ chunkSize: ZSTD_CHUNK, params: { [constants.ZSTD_c_compressionLevel]: opts.level ?? 3 } })
    const feeding = feed(fh, zstd, (chunk) => {
      plain.update(chunk)
      read += chunk.length
      report(false)
    })
    let sinceScavenge = 0
    async function* countSealed(source: AsyncIterable<Buffer>) {
      for await (const piece of source) {
        sealed.update(piece)
        written += piece.length
        sinceScavenge += piece.length
        if (sinceScavenge >= SCAVENGE_EVERY) {
          sinceScavenge = 0
          collectYoung()
        }
        yield piece
      }
    }
    const stages = [zstd, (source: AsyncIterable<Buffer>) => ageEncrypt(source, rs), countSealed, sink] as const
    // pipeline's typings do not cover this mix of a stream, generators and a sink of either kind.
    const draining = (pipeline as (...args: unknown[]) => Promise<void>)(...stages, ...(opts.signal ? [{ signal: opts.signal }] : []))
    // feed() never rejects: its failures destroy zstd, so the pipeline reports them. Both are
    // awaited so that the file is closed only once nothing reads it.
    const [, drained] = await Promise.allSettled([feeding, draining])
    if (drained.status === 'rejected') throw drained.reason
    report(true)
    return {
      plaintext: { sha256: plain.digest('hex'), size: read },
      sealed: { sha256: sealed.digest('hex'), size: written },
    }
  } finally {
    await fh.close()
  }
}

/**
 * Writes the file into zstd through two reused buffers: one is read into while zstd compresses
 * the other, and a buffer is refilled only after zstd's write callback says it consumed it.
 * (createReadStream allocates a new buffer per read; that garbage alone grew RSS by ≈ 60 MiB.)
 * Ends zstd at end of file; on a read error destroys it with that error; stops quietly when the
 * pipeline destroyed zstd first (a sink error, an abort), which the pipeline then reports.
 */
async function feed(fh: FileHandle, zstd: Transform, onChunk: (chunk: Buffer) => void): Promise<void> {
  const buffers = [Buffer.allocUnsafe(READ_BUFFER), Buffer.allocUnsafe(READ_BUFFER)]
  let turn = 0
  const readNext = () => {
    const buf = buffers[turn++ & 1]
    const p = fh.read(buf, 0, buf.length, null).then(({ bytesRead }) => buf.subarray(0, bytesRead))
    p.catch(() => {}) // awaited below; this only keeps a failure from counting as unhandled meanwhile
    return p
  }
  try {
    let pending = readNext()
    for (;;) {
      const chunk = await pending
      if (zstd.destroyed) return
      if (chunk.length === 0) break
      onChunk(chunk)
      const consumed = new Promise<Error | null | undefined>((resolve) => zstd.write(chunk, resolve))
      pending = readNext()
      if (await consumed) return
    }
    zstd.end()
  } catch (err) {
    zstd.destroy(err instanceof Error ? err : new Error(String(err)))
  }
}
