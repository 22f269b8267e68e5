/**
 * functions/node/download-relay.ts: a download relayed to the client through reused buffers, over real
 * loopback HTTP and HTTPS servers. Exact bytes whatever the chunking (fast-check), bounded reading
 * when the client stops reading, a client hang-up destroying the source, and a failing source
 * cutting the response so it never looks complete.
 */
import assert from 'node:assert/strict'
import { createHash } from 'node:crypto'
import { get as httpGet, createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http'
import { get as httpsGet, createServer as createHttpsServer } from 'node:https'
import type { AddressInfo } from 'node:net'
import { Readable } from 'node:stream'
import { after, before, describe, it } from 'node:test'
import fc from 'fast-check'
import { relayDownload as relay, type RelayOptions } from '../../functions/node/download-relay.ts'
import { makeTestPki, type TestPki } from '../support/certs.ts'

type Source = (req: IncomingMessage) => { body: Readable; length?: number; opts?: RelayOptions }

/** A server whose every answer is `source()` relayed; `done` collects each relay's settling. */
async function serve(source: Source, pki?: TestPki): Promise<{ url: string; server: Server; settled: Array<Promise<void>>; close(): Promise<void> }> {
  const settled: Array<Promise<void>> = []
  const onRequest = (req: IncomingMessage, res: ServerResponse) => {
    const { body, length, opts } = source(req)
    res.writeHead(200, length === undefined ? {} : { 'content-length': String(length) })
    settled.push(relay(body, res, opts))
  }
  const server = pki ? createHttpsServer({ key: pki.serverKey, cert: pki.serverCert }, onRequest) : createServer(onRequest)
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r))
  const url = `${pki ? 'https' : 'http'}://127.0.0.1:${(server.address() as AddressInfo).port}/`
  return {
    url, server, settled,
    close: () => new Promise<void>((r) => (server.closeAllConnections(), server.close(() => r()))),
  }
}

/** GETs `url`; resolves with the body, rejects when the response is cut. */
function fetchAll(url: string, ca?: string): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    const req = (ca ? httpsGet : httpGet)(url, ca ? { ca } : {}, (res) => {
      const parts: Buffer[] = []
      res.on('data', (c: Buffer) => parts.push(c))
      res.on('end', () => resolve(Buffer.concat(parts)))
      res.on('error', reject)
      res.on('aborted', () => reject(new Error('aborted')))
    })
    req.on('error', reject)
  })
}

const sha = (b: Uint8Array) => createHash('sha256').update(b).digest('hex')
/** Bytes that never repeat within 2 MiB, cut into chunks of `sizes`: order and content are checked. */
const PATTERN = createHash('shake256', { outputLength: 2 << 20 }).update('relay').digest()
function chunks(sizes: number[]): Buffer[] {
  let off = 0
  return sizes.map((s) => Buffer.from(PATTERN.subarray(off, (off += s))))
}
/** A source that yields `parts`, some of them after a timer (so reads pause and resume). */
function source(parts: Buffer[], slowEvery = 0): Readable {
  return Readable.from((async function* () {
    for (const [i, p] of parts.entries()) {
      if (slowEvery && i % slowEvery === 0) await new Promise((r) => setTimeout(r, 1))
      yield p
    }
  })())
}

let pki: TestPki
before(async () => {
  pki = await makeTestPki()
})

for (const tls of [false, true]) {
  describe(`relay over ${tls ? 'HTTPS' : 'HTTP'}`, { timeout: 60_000 }, () => {
    it('delivers exactly the source\'s bytes, in order, whatever the chunk and buffer sizes', async () => {
      let next: { parts: Buffer[]; opts: RelayOptions; slowEvery: number } | undefined
      const s = await serve(() => ({ body: source(next!.parts, next!.slowEvery), length: next!.parts.reduce((a, p) => a + p.length, 0), opts: next!.opts }), tls ? pki : undefined)
      try {
        // Tiny buffers (a write per few bytes) with short sources, large ones with long sources.
        const buffers = fc.oneof(
          fc.record({ slots: fc.integer({ min: 1, max: 4 }), slotBytes: fc.integer({ min: 1, max: 64 }) }).map((opts) => ({ opts, max: 3000 })),
          fc.record({ slots: fc.integer({ min: 1, max: 4 }), slotBytes: fc.integer({ min: 1000, max: 300_000 }) }).map((opts) => ({ opts, max: 70_000 })),
        )
        await fc.assert(fc.asyncProperty(
          buffers.chain(({ opts, max }) => fc.tuple(fc.constant(opts), fc.array(fc.integer({ min: 0, max }), { maxLength: 24 }))),
          fc.integer({ min: 0, max: 3 }),
          fc.option(fc.integer({ min: 1, max: 200_000 }), { nil: undefined }),
          async ([opts, sizes], slowEvery, hint) => {
            // The length hint caps the buffers' size; right or wrong, the bytes must not change.
            next = { parts: chunks(sizes), opts: hint === undefined ? opts : { ...opts, length: hint }, slowEvery }
            const got = await fetchAll(s.url, tls ? pki.caCert : undefined)
            assert.equal(got.length, sizes.reduce((a, b) => a + b, 0))
            assert.equal(sha(got), sha(Buffer.concat(next.parts)))
          },
        ), { numRuns: tls ? 40 : 80 })
        await Promise.all(s.settled)
      } finally {
        await s.close()
      }
    })
  })
}

describe('relay: backpressure and failures', { timeout: 30_000 }, () => {
  it('a client that stops reading stops the relay reading its source (bounded, not buffered)', async () => {
    let pulled = 0
    const block = Buffer.alloc(16 * 1024, 1)
    const endless = new Readable({ read() { pulled += block.length; this.push(block) } })
    const s = await serve(() => ({ body: endless }))
    try {
      const res = await new Promise<IncomingMessage>((resolve, reject) => httpGet(s.url, resolve).on('error', reject))
      res.pause() // reads nothing more
      await new Promise((r) => setTimeout(r, 400))
      const first = pulled
      await new Promise((r) => setTimeout(r, 400))
      // Socket buffers on both ends plus the relay's 2 × 256 KiB and the source's high-water mark:
      // a few MiB at most, and no growth while the client waits.
      assert.ok(first < 32 << 20, `pulled ${first} bytes for a client that reads nothing`)
      assert.equal(pulled, first)
      res.destroy()
    } finally {
      await s.close()
    }
  })

  it('a client that hangs up destroys the source, and the relay settles', async () => {
    const block = Buffer.alloc(64 * 1024, 2)
    const endless = new Readable({ read() { this.push(block) } })
    const s = await serve(() => ({ body: endless }))
    try {
      await new Promise<void>((resolve, reject) => {
        const req = httpGet(s.url, (res) => {
          res.once('data', () => {
            req.destroy()
            resolve()
          })
        })
        req.on('error', () => {})
        setTimeout(() => reject(new Error('no data')), 5000).unref()
      })
      await Promise.race([s.settled[0], new Promise((_, reject) => setTimeout(() => reject(new Error('relay did not settle')), 5000).unref())])
      assert.equal(endless.destroyed, true)
    } finally {
      await s.close()
    }
  })

  for (const length of [undefined, 3 * 65536]) {
    it(`a source that fails midway cuts the response (${length === undefined ? 'chunked' : 'content-length'}): the client never sees it complete`, async () => {
      const block = Buffer.alloc(65536, 3)
      let n = 0
      const failing = new Readable({
        read() {
          if (n++ < 2) this.push(block)
          else this.destroy(Object.assign(new Error('agent went away'), { code: 'ECONNRESET' }))
        },
      })
      const s = await serve(() => ({ body: failing, ...(length === undefined ? {} : { length }) }))
      try {
        await assert.rejects(fetchAll(s.url))
        await s.settled[0]
      } finally {
        await s.close()
      }
    })
  }
})
