/**
 * Relays the agent's NDJSON event stream to the caller line by line as it arrives. The agent's
 * stream is always read to its end, even after the caller went away: a checkpoint in progress is
 * never cut short by a dropped client. The final event gets the gateway's additions; a stream
 * that ends without one (or with a line that does not parse) gets a `failed` event of our own.
 */
import { encodeEvent, ndjsonLines, parseEvent, type CheckpointEvent, type FailedEvent, type FinalEvent } from '../shared/events.ts'

export interface Relay {
  /** What the caller reads (NDJSON). */
  readable: ReadableStream<Uint8Array>
  /** The final event as sent to the caller. */
  final: Promise<FinalEvent>
  /** Settles once the agent's stream has been read to its end. Never rejects. */
  done: Promise<void>
  /** With `holdOpen`: more NDJSON lines after the final event (the vault's), then the end. */
  write(line: string): void
  end(): void
}

/**
 * @example
 * const relay = relayEvents(agentRes.body, (e) => ({ ...e, cluster, node }), () => Date.now())
 * ctx.waitUntil(relay.done)
 * return new Response(relay.readable, { headers: { 'content-type': NDJSON } })
 */
export function relayEvents(body: ReadableStream<Uint8Array>, decorate: (e: FinalEvent) => FinalEvent, now: () => number, holdOpen = false): Relay {
  const encoder = new TextEncoder()
  let controller!: ReadableStreamDefaultController<Uint8Array>
  let detached = false
  const readable = new ReadableStream<Uint8Array>({
    start(c) {
      controller = c
    },
    cancel() {
      // The caller left; keep draining the agent so the checkpoint finishes and is audited.
      detached = true
    },
  })
  const send = (bytes: Uint8Array) => {
    if (detached) return
    try {
      controller.enqueue(bytes)
    } catch {
      detached = true
    }
  }
  let resolveFinal!: (e: FinalEvent) => void
  const final = new Promise<FinalEvent>((r) => (resolveFinal = r))

  const cut = (message: string): FailedEvent =>
    decorate({ type: 'failed', status: 502, code: 'bad_gateway', message, time: new Date(now()).toISOString() }) as FailedEvent

  async function pump(): Promise<void> {
    let finalEvent: FinalEvent | undefined
    const onLine = (line: string) => {
      if (finalEvent || !line.trim()) return
      let e: CheckpointEvent
      try {
        e = parseEvent(line)
      } catch {
        finalEvent = cut('agent sent a malformed event')
        send(encoder.encode(encodeEvent(finalEvent)))
        return
      }
      if (e.type === 'completed' || e.type === 'failed') {
        finalEvent = decorate(e)
        send(encoder.encode(encodeEvent(finalEvent)))
      } else {
        send(encoder.encode(line.trimEnd() + '\n'))
      }
    }
    try {
      for await (const line of ndjsonLines(body)) onLine(line)
    } catch {
      // connection lost mid-stream: reported below as a cut stream
    }
    if (!finalEvent) {
      finalEvent = cut('the agent stream ended without a final event')
      send(encoder.encode(encodeEvent(finalEvent)))
    }
    resolveFinal(finalEvent)
    if (!holdOpen) end()
  }
  const end = () => {
    if (detached) return
    detached = true
    try {
      controller.close()
    } catch {
      // already cancelled
    }
  }
  const done = pump().catch(() => {})
  return { readable, final, done, write: (line) => send(encoder.encode(line)), end }
}
