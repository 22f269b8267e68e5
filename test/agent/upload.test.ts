/**
 * The agent's part uploader (agent/seal/upload.ts) against a real HTTP server on loopback that
 * records every PUT and answers as told: parts in order, one PUT at a time while the next part
 * fills, a 5xx retried with the same bytes, a 4xx final, an unreachable store retried then
 * `storage_unavailable`.
 */
import assert from 'node:assert/strict'
import { createHash, randomBytes } from 'node:crypto'
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http'
import type { AddressInfo } from 'node:net'
import { after, before, describe, it } from 'node:test'
import { uploadParts } from '../../agent/seal/upload.ts'

const sha = (b: Buffer) => createHash('sha256').update(b).digest('hex')

describe('uploadParts', () => {
  let base: string
  let server: ReturnType<typeof createServer>
  const seen: Array<{ part: string; sha: string; size: number; at: number }> = []
  let open = 0
  let maxOpen = 0
  let answer: (part: string, attempt: number, res: ServerResponse) => void = (part, _a, res) => res.writeHead(200, { etag: `"e-${part}"` }).end()
  const attempts = new Map<string, number>()
  before(async () => {
    server = createServer((req: IncomingMessage, res) => {
      open++
      maxOpen = Math.max(maxOpen, open)
      const chunks: Buffer[] = []
      req.on('data', (c: Buffer) => chunks.push(c))
      req.on('end', () => {
        const part = new URL(req.url!, 'http://x').searchParams.get('part')!
        const body = Buffer.concat(chunks)
        seen.push({ part, sha: sha(body), size: body.length, at: performance.now() })
        const n = (attempts.get(part) ?? 0) + 1
        attempts.set(part, n)
        res.on('finish', () => open--)
        answer(part, n, res)
      })
    })
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r))
    base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`
  })
  after(() => new Promise<void>((r) => server.close(() => r())))

  const urls = (n: number) => Array.from({ length: n }, (_, i) => `${base}/up?part=${i + 1}`)
  /** Yields `data` in 64 KiB pieces, noting when each piece was taken. */
  function source(data: Buffer, taken: number[] = []) {
    return (async function* () {
      for (let off = 0; off < data.length; off += 65_536) {
        taken.push(performance.now())
        yield data.subarray(off, off + 65_536)
      }
    })()
  }

  it('parts in order with their sizes and ETags; one PUT at a time; the next part fills while one is in flight', async () => {
    seen.length = 0
    attempts.clear()
    maxOpen = 0
    const partSize = 1 << 20
    const data = randomBytes(3 * partSize + 12_345)
    // Part 1's answer waits until the source has been read past part 2: sealing did not stop for it.
    const taken: number[] = []
    const pieces = (2 * partSize) / 65_536
    let overlapped = false
    answer = (part, _a, res) => {
      const reply = () => res.writeHead(200, { etag: `"e-${part}"` }).end()
      if (part !== '1') return reply()
      const since = performance.now()
      const wait = setInterval(() => {
        overlapped = taken.length >= pieces
        if (overlapped || performance.now() - since > 5000) (clearInterval(wait), reply())
      }, 5)
    }
    const parts = await uploadParts(source(data, taken), { partSize, urls: urls(5) })
    assert.deepEqual(parts.map((p) => [p.partNumber, p.etag, p.size]), [[1, '"e-1"', partSize], [2, '"e-2"', partSize], [3, '"e-3"', partSize], [4, '"e-4"', 12_345]])
    assert.deepEqual(seen.map((s) => s.sha), [0, 1, 2, 3].map((i) => sha(data.subarray(i * partSize, (i + 1) * partSize))))
    assert.equal(maxOpen, 1, 'one PUT in flight at a time')
    assert.ok(overlapped, 'part 2 was filled while part 1 was being stored')
  })

  it('a 503 is retried with the same bytes; a 403 ends it at once with storage_rejected', async () => {
    seen.length = 0
    attempts.clear()
    const data = randomBytes(300_000)
    answer = (part, attempt, res) => (part === '2' && attempt === 1 ? res.writeHead(503).end('<Error><Code>SlowDown</Code></Error>') : res.writeHead(200, { etag: `"e-${part}"` }).end())
    const parts = await uploadParts(source(data), { partSize: 200_000, urls: urls(2) }, { backoffMs: 1 })
    assert.deepEqual(parts.map((p) => p.size), [200_000, 100_000])
    const second = seen.filter((s) => s.part === '2')
    assert.equal(second.length, 2)
    assert.equal(second[0]!.sha, second[1]!.sha)
    assert.equal(second[0]!.sha, sha(data.subarray(200_000)))
    answer = (_p, _a, res) => res.writeHead(403).end('<Error><Code>SignatureDoesNotMatch</Code></Error>')
    attempts.clear()
    await assert.rejects(uploadParts(source(data), { partSize: 200_000, urls: urls(2) }, { backoffMs: 1 }), (e: { code: string; extra?: Record<string, unknown> }) =>
      e.code === 'storage_rejected' && e.extra?.storageCode === 'SignatureDoesNotMatch')
    assert.equal(attempts.get('1'), 1, 'a refusal is not retried')
  })

  it('more data than parts planned: storage_rejected; an unreachable store: retried, then storage_unavailable', async () => {
    answer = (part, _a, res) => res.writeHead(200, { etag: `"e-${part}"` }).end()
    await assert.rejects(uploadParts(source(randomBytes(500_000)), { partSize: 200_000, urls: urls(2) }), { code: 'storage_rejected' })
    await assert.rejects(uploadParts(source(randomBytes(1000)), { partSize: 200_000, urls: ['http://127.0.0.1:9/up'] }, { backoffMs: 1, attempts: 3 }), { code: 'storage_unavailable' })
  })
})
