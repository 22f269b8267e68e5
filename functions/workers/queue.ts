/**
 * Cloudflare Queues for webhook jobs: the producer behind {@link JobQueue} and the `queue()`
 * handler's body. Delivery is at least once; the runner's claim makes a repeat a no-op.
 */
import type { JobQueue } from '../operations/model.ts'

/** The message body on the wire. */
export interface JobMessage {
  id: string
}

export interface QueueBindingLike {
  send(body: JobMessage, opts?: { delaySeconds?: number }): Promise<void>
}

/**
 * Cloudflare Queues producer. Delays are whole seconds there, so they are rounded up.
 *
 * @example
 * const queue = cloudflareQueue(env.CHECKPOINT_JOBS)
 */
export function cloudflareQueue(binding: QueueBindingLike): JobQueue {
  return {
    send: (id, delayMs = 0) => binding.send({ id }, delayMs > 0 ? { delaySeconds: Math.min(43_200, Math.ceil(delayMs / 1000)) } : {}),
  }
}

export interface QueueMessageLike {
  body: unknown
  ack(): void
  retry(opts?: { delaySeconds?: number }): void
}

/**
 * The Workers `queue()` handler body: runs each message's operation; a message whose run threw
 * (the store was unreachable, say) is retried by the queue.
 */
export async function consumeBatch(messages: readonly QueueMessageLike[], run: (opId: string) => Promise<void>, log: (l: Record<string, unknown>) => void): Promise<void> {
  await Promise.all(
    messages.map(async (m) => {
      const id = (m.body as Partial<JobMessage> | null)?.id
      if (typeof id !== 'string') return m.ack()
      try {
        await run(id)
        m.ack()
      } catch (err) {
        log({ type: 'error', operation: id, error: String((err as Error)?.stack ?? err) })
        m.retry({ delaySeconds: 5 })
      }
    }),
  )
}
