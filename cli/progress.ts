/**
 * How `create` shows a checkpoint's events. On a terminal: one status line rewritten in place —
 * the phase, elapsed seconds and queue position, then a bar while the archive is sealed and
 * uploaded — with a permanent line for each milestone (accepted, the container, completed,
 * stored). Anywhere else (a pipe, a file, CI logs): one plain line per event, as before. Written
 * by hand: a bar is a dozen lines, and the libraries made for it bring width tables and colour
 * handling a status line does not need.
 */

export interface ProgressSink {
  /** A permanent line. */
  line(text: string): void
  /** Replaces the status line (a terminal only). */
  status?(text: string): void
}

const MiB = 1024 * 1024
const mib = (n: number) => `${(n / MiB).toFixed(1)} MiB`

/** `[#########...........]` for a fraction 0..1, `width` cells. */
export function bar(fraction: number, width = 24): string {
  const f = Math.min(1, Math.max(0, Number.isFinite(fraction) ? fraction : 0))
  const full = Math.round(f * width)
  return `[${'#'.repeat(full)}${'.'.repeat(width - full)}]`
}

/** The text of one event: `line` for a milestone, `status` for transient progress; undefined to show nothing. */
export function describe(e: Record<string, unknown>): { line?: string; status?: string } {
  switch (e.type) {
    case 'accepted': return { line: `accepted on ${String(e.node)}${Number(e.queuePosition) > 0 ? `, queued at ${String(e.queuePosition)}` : ''}` }
    case 'resolved': return { line: `container ${String(e.containerId).slice(0, 12)} on ${(e.runtime as { name?: string })?.name ?? 'the runtime'}` }
    case 'heartbeat': return { status: `${String(e.phase)} … ${(Number(e.elapsedMs) / 1000).toFixed(0)} s` }
    case 'completed': return { line: `completed in ${(Number(e.durationMs) / 1000).toFixed(1)} s` }
    case 'failed': return { line: `failed: ${String(e.code)}` }
    case 'sealing': {
      const f = Number(e.read) / Math.max(1, Number(e.total))
      return { status: `sealing ${bar(f)} ${Math.round(f * 100)} %  ${mib(Number(e.read))} of ${mib(Number(e.total))}, ${mib(Number(e.sealed))} sealed` }
    }
    case 'uploading': return { status: `uploaded part ${String(e.part)} (${mib(Number(e.sentBytes))})` }
    case 'stored': return { line: `stored: ${String(e.key)}` }
    case 'store_failed': return { line: `not stored: ${String(e.code)}: ${String(e.message)}` }
    default: return {}
  }
}

/**
 * A renderer for `create`. `tty` rewrites one status line (`\r`, erase line) and keeps the
 * upload's part count beside the sealing bar; otherwise every event is its own line (sealing in
 * 10 % steps, so a log is not flooded).
 */
export function progressRenderer(sink: ProgressSink, tty: boolean): { event(e: Record<string, unknown>): void; end(): void } {
  let lastPercent = -1
  let uploaded = ''
  let sealing = ''
  return {
    event(e) {
      const d = describe(e)
      if (!tty) {
        if (e.type === 'sealing') {
          const p = Math.floor((Number(e.read) / Math.max(1, Number(e.total))) * 10) * 10
          if (p === lastPercent) return
          lastPercent = p
          return sink.line(`sealing … ${p} %`)
        }
        const text = d.line ?? d.status
        if (text !== undefined) sink.line(text)
        return
      }
      if (e.type === 'sealing') sealing = d.status!
      if (e.type === 'uploading') uploaded = d.status!
      if (d.line !== undefined) return sink.line(d.line)
      if (d.status !== undefined) sink.status?.(e.type === 'sealing' || e.type === 'uploading' ? [sealing, uploaded].filter(Boolean).join('  ·  ') : d.status)
    },
    end() {
      sink.status?.('')
    },
  }
}

/** A sink on a stream: on a terminal the status line is redrawn in place and cleared before a permanent line. */
export function streamSink(write: (s: string) => void, tty: boolean): ProgressSink {
  let showing = false
  const clear = () => {
    if (showing) write('\r\x1b[2K')
    showing = false
  }
  return {
    line(text) {
      clear()
      write(`${text}\n`)
    },
    ...(tty
      ? {
        status(text: string) {
          clear()
          if (text) {
            write(text)
            showing = true
          }
        },
      }
      : {}),
  }
}

/**
 * A download's progress for a terminal: `downloading [####....] 45 %  115.2 of 256.0 MiB`, redrawn
 * at most every 100 ms and cleared at the end; nothing when stderr is not a terminal.
 */
export function downloadProgress(io: { errTty?: boolean; errWrite?(s: string): void }, what = 'downloading'): { update(done: number, total: number | undefined): void; end(): void } {
  if (!io.errTty || !io.errWrite) return { update() {}, end() {} }
  const sink = streamSink(io.errWrite, true)
  let last = 0
  return {
    update(done, total) {
      const now = Date.now()
      if (now - last < 100 && done !== total) return
      last = now
      sink.status!(total ? `${what} ${bar(done / total)} ${Math.floor((done / total) * 100)} %  ${mib(done)} of ${mib(total)}` : `${what} ${mib(done)}`)
    },
    end: () => sink.status!(''),
  }
}
