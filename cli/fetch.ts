/**
 * Downloads an archive to a file, resumably and verified: bytes go to `<out>.part`; an existing
 * part resumes with `Range` + `If-Range` (the archive's ETag); the whole file's SHA-256 must match
 * the gateway's `x-checkpoint-sha256` (or the strong ETag, or `--sha256`) before it is renamed to
 * `<out>`. A mismatch or a cut leaves no `<out>`: nothing partial is presented as complete.
 */
import { createHash } from 'node:crypto'
import { createReadStream, createWriteStream } from 'node:fs'
import { readFile, rename, rm, stat, writeFile } from 'node:fs/promises'
import { Readable } from 'node:stream'
import { pipeline } from 'node:stream/promises'
import { call, CliError, type GatewayOptions } from './gateway.ts'

export interface Fetched {
  path: string
  size: number
  sha256: string
  resumedFrom: number
}

async function sha256Of(path: string): Promise<string> {
  const h = createHash('sha256')
  await pipeline(createReadStream(path), h)
  return h.digest('hex')
}

/**
 * Downloads what `open` answers to `out`, resumably and verified (see the file comment). `open` is
 * called with the resume headers (none on a fresh start); `expected` names the digest the whole
 * file must have, from the answer when the caller has none of its own.
 */
export async function downloadVerified(open: (headers: Record<string, string>) => Promise<Response>, out: string, expected: (res: Response) => string | undefined, progress?: (done: number, total: number | undefined) => void): Promise<Fetched> {
  const part = `${out}.part`
  const meta = `${out}.part.etag`
  const have = await stat(part).then((s) => s.size, () => 0)
  const etag = have > 0 ? await readFile(meta, 'utf8').catch(() => '') : ''
  const res = await open(have > 0 && etag ? { range: `bytes=${have}-`, 'if-range': etag } : {})
  const resumed = res.status === 206
  const start = resumed ? have : 0
  const want = expected(res)
  if (!want) throw new CliError('no_digest', 'no SHA-256 is known for this download: give --sha256 to verify it')
  const tag = res.headers.get('etag')
  if (tag) await writeFile(meta, tag)
  if (!res.body) throw new CliError('bad_gateway', 'an answer without a body')
  try {
    const length = Number(res.headers.get('content-length') ?? NaN)
    const total = Number.isFinite(length) ? start + length : undefined
    let done = start
    await pipeline(Readable.fromWeb(res.body as import('node:stream/web').ReadableStream), async function* (src: AsyncIterable<Buffer>) {
      for await (const c of src) {
        done += c.length
        progress?.(done, total)
        yield c
      }
    }, createWriteStream(part, { flags: resumed ? 'a' : 'w', mode: 0o600 }))
  } catch (err) {
    const got = await stat(part).then((s) => s.size, () => 0)
    throw new CliError('download_cut', `the download was cut after ${got} bytes (${(err as Error).message}); run the same command again to resume`)
  }
  const sha256 = await sha256Of(part)
  if (sha256 !== want) {
    await rm(part, { force: true })
    await rm(meta, { force: true })
    throw new CliError('digest_mismatch', `the downloaded file's SHA-256 is ${sha256}, expected ${want}: removed`)
  }
  await rename(part, out)
  await rm(meta, { force: true })
  return { path: out, size: (await stat(out)).size, sha256, resumedFrom: start }
}

/** An archive through the gateway: its digest from `expected`, else `x-checkpoint-sha256` or the strong ETag. */
export function fetchArchive(g: GatewayOptions, downloadPath: string, out: string, expected?: string, progress?: (done: number, total: number | undefined) => void): Promise<Fetched> {
  return downloadVerified((headers) => call(g, downloadPath, { headers }), out, (res) =>
    expected ?? res.headers.get('x-checkpoint-sha256') ?? /^"([0-9a-f]{64})"$/.exec(res.headers.get('etag') ?? '')?.[1], progress)
}
