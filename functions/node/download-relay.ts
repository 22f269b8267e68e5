/**
 * Relays an agent's streamed answer (a download) to the client through a few reused buffers.
 *
 * Piped as they come, undici's chunks (one per 16 KiB TLS record from the agent) became one socket
 * write each: half the gateway's CPU went to those writes, and over an HTTPS front, where a write
 * completes a turn later and holds its chunk meanwhile, the gateway ran at half of nginx's speed
 * with hundreds of full GCs (half as many with this relay; the rest went with the old-generation
 * size in ./start.ts NODE_FLAGS — test/README.md, "Where the time goes"). Here every chunk is copied
 * into one of `slots` buffers of `slotBytes` — made when first needed, no larger than the body's
 * Content-Length, then reused (the chunk itself dies young) — and a
 * buffer is written when full or when the turn's reads are done (`setImmediate`): writes of up to
 * 256 KiB, nothing held past the turn it arrived in. A buffer goes back to the pool when its write
 * completes.
 *
 * Backpressure: at most `slots` buffers are in flight; reading stops until one comes back. A client
 * that goes away destroys `body` (which aborts the agent's answer); a failing `body` destroys the
 * response, so a cut download never looks complete.
 *
 * @example
 * outgoing.writeHead(200, headers)
 * await relayDownload(agentBody, outgoing)
 */
import type { ServerResponse } from 'node:http'
import type { Readable } from 'node:stream'

export interface RelayOptions {
  /** Buffers in flight at most (default 2: one written while the next fills). */
  slots?: number
  /** Size of each buffer (default 256 KiB). */
  slotBytes?: number
  /** The body's length when known (Content-Length): no buffer is made larger than it. */
  length?: number
}

export function relayDownload(body: Readable, outgoing: ServerResponse, o: RelayOptions = {}): Promise<void> {
  const slotBytes = Math.max(1, Math.min(o.slotBytes ?? 256 * 1024, o.length ?? Infinity))
  // Made when first needed: a small download makes one buffer of its own size.
  const free: Buffer[] = []
  let unmade = o.slots ?? 2
  let current: Buffer | undefined
  let used = 0
  /** The rest of a chunk that found no free buffer; reading is paused meanwhile. */
  let pending: Buffer | undefined
  let flushQueued = false
  let ended = false
  let done = false
  return new Promise<void>((resolve) => {
    const finish = (err?: Error) => {
      if (done) return
      done = true
      if (err) {
        body.destroy()
        outgoing.destroy(err)
      }
      resolve()
    }
    const send = () => {
      const b = current!
      const n = used
      current = undefined
      used = 0
      outgoing.write(b.subarray(0, n), (err) => {
        if (err) return finish(err)
        free.push(b)
        if (done || !pending) return
        const rest = pending
        pending = undefined
        take(rest)
        if (!pending) body.resume()
        if (ended && !pending) end()
      })
    }
    /** Copies `chunk` into the pool; what does not fit waits in `pending`. */
    const take = (chunk: Buffer) => {
      let off = 0
      while (off < chunk.length) {
        if (!current) {
          const b = free.pop() ?? (unmade > 0 ? (unmade--, Buffer.allocUnsafeSlow(slotBytes)) : undefined)
          if (!b) {
            pending = chunk.subarray(off)
            body.pause()
            return
          }
          current = b
        }
        const n = chunk.copy(current, used, off)
        used += n
        off += n
        if (used === slotBytes) send()
      }
      // What this turn's reads of the agent's socket delivered goes out together once they are done.
      if (!flushQueued) {
        flushQueued = true
        setImmediate(() => {
          flushQueued = false
          if (current && used > 0 && !done) send()
        })
      }
    }
    const end = () => {
      if (current && used > 0) send()
      outgoing.end(() => finish())
    }
    body.on('data', (chunk: Buffer) => take(chunk))
    body.once('end', () => {
      ended = true
      if (!pending) end()
    })
    body.once('error', (err) => finish(err))
    outgoing.once('close', () => {
      if (!outgoing.writableFinished) finish(new Error('client went away'))
    })
  })
}
