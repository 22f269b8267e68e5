/**
 * Reads a webhook body once, at most `max` bytes (413 `payload_too_large` beyond), and keeps it
 * for the request: the signature check and the handler both need the same raw bytes.
 */
import { CheckpointError } from '../../shared/errors.ts'

const bodies = new WeakMap<Request, Promise<Uint8Array>>()

export function readBody(req: Request, max: number): Promise<Uint8Array> {
  let p = bodies.get(req)
  if (!p) {
    p = read(req, max)
    bodies.set(req, p)
  }
  return p
}

/**
 * Reads and drops what the sender is still writing (up to 8× the limit), so it gets the 413
 * rather than a reset connection (workerd resets when a response beats an unread body).
 */
async function discard(reader: ReadableStreamDefaultReader<Uint8Array>, max: number): Promise<void> {
  let n = 0
  try {
    while (n <= 8 * max) {
      const { done, value } = await reader.read()
      if (done) return
      n += value.byteLength
    }
    await reader.cancel()
  } catch {
    // the sender went away
  }
}

async function read(req: Request, max: number): Promise<Uint8Array> {
  const tooLarge = () => new CheckpointError('payload_too_large', `the body exceeds ${max} bytes`, { extra: { limit: max } })
  if (!req.body) return new Uint8Array()
  const reader = req.body.getReader()
  const declared = Number(req.headers.get('content-length') ?? NaN)
  if (declared > max) {
    await discard(reader, max)
    throw tooLarge()
  }
  const chunks: Uint8Array[] = []
  let n = 0
  for (;;) {
    const { done, value } = await reader.read()
    if (done) break
    n += value.byteLength
    if (n > max) {
      await discard(reader, max)
      throw tooLarge()
    }
    chunks.push(value)
  }
  const out = new Uint8Array(n)
  let off = 0
  for (const c of chunks) {
    out.set(c, off)
    off += c.byteLength
  }
  return out
}
