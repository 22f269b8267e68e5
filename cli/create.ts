/**
 * `create`: a checkpoint with live progress from the gateway's event stream (cli/progress.ts), the
 * archive's name and download path on stdout, optionally stored in the vault and downloaded. Ctrl-C
 * stops watching, not the checkpoint: it says so, and where to find the archive.
 */
import { ndjsonLines } from '../shared/events.ts'
import { fetchInto } from './archives.ts'
import { call, CliError, type Flags, type GatewayOptions, type Io } from './gateway.ts'
import { progressRenderer, streamSink } from './progress.ts'

export async function create(g: GatewayOptions, args: string[], flags: Flags, io: Io): Promise<void> {
  const m = /^([^/]+)\/([^/]+)\/([^/]+)\/([^/]+)$/.exec(args[0] ?? '')
  if (!m) throw new CliError('usage', 'create CLUSTER/NAMESPACE/POD/CONTAINER')
  const cluster = m[1]!
  const node = typeof flags.node === 'string' ? `/nodes/${encodeURIComponent(flags.node)}` : ''
  const query = new URLSearchParams()
  if (typeof flags.timeout === 'string') query.set('timeout', flags.timeout)
  if (typeof flags.reason === 'string') query.set('reason', flags.reason)
  if (flags.store) query.set('store', 'vault')
  const q = query.size ? `?${query}` : ''
  const path = `/v1/clusters/${encodeURIComponent(cluster)}${node}/checkpoint/${m.slice(2).map(encodeURIComponent).join('/')}${q}`
  const tty = io.errTty === true && io.errWrite !== undefined && !flags.json
  const shown = progressRenderer(streamSink(tty ? io.errWrite! : (s) => io.err(s.replace(/\n$/, '')), tty), tty)
  // Ctrl-C stops watching. The checkpoint is the gateway's and the agent's by now: it goes on.
  const stop = new AbortController()
  const interrupt = () => stop.abort()
  process.once('SIGINT', interrupt)
  let final: Record<string, unknown> | undefined
  let vaultOutcome: Record<string, unknown> | undefined
  let at: string | undefined
  try {
    const res = await call(g, path, { method: 'POST', headers: { accept: 'application/x-ndjson' }, signal: stop.signal })
    for await (const line of ndjsonLines(res.body!)) {
      if (!line.trim()) continue
      let e: Record<string, unknown>
      try {
        e = JSON.parse(line) as Record<string, unknown>
      } catch {
        break // a line cut short: the stream was cut, the outcome is unknown
      }
      shown.event(e)
      if (e.type === 'accepted') at = String(e.node)
      if (e.type === 'completed' || e.type === 'failed') final = e
      if (e.type === 'stored' || e.type === 'store_failed') vaultOutcome = e
    }
  } catch (err) {
    if (!stop.signal.aborted) throw err
    const where = at ? `on node ${at}` : `in cluster ${cluster}`
    const find = at ? `checkpoint ls ${cluster} ${at}` : `checkpoint ls ${cluster} NODE`
    throw new CliError('interrupted', `stopped watching; the checkpoint goes on ${where} (the gateway and the agent finish it)${flags.store ? ', and so does storing it' : ''}. Find the archive with: ${find}${flags.store ? `; the evidence with: checkpoint ls ${cluster}/${m[2]}` : ''}`)
  } finally {
    process.off('SIGINT', interrupt)
    shown.end()
  }
  if (!final) throw new CliError('stream_cut', 'the event stream ended without a final event: the outcome is unknown (list the node\'s archives)')
  if (final.type === 'failed') {
    const log = Array.isArray(final.runtimeLog) ? final.runtimeLog : []
    throw new CliError(String(final.code), String(final.message), Number(final.status), log.length ? { runtimeLog: log } : {})
  }
  const archive = final.archive as { name: string; size: number; sha256: string }
  if (flags.json) io.out(JSON.stringify(final))
  else io.out(`${archive.name}  ${archive.size} bytes  sha256 ${archive.sha256}\n${String(final.download)}`)
  if (flags.store) {
    if (!vaultOutcome) throw new CliError('stream_cut', 'the stream ended before the vault said whether it stored the archive')
    if (vaultOutcome.type === 'store_failed') throw new CliError(String(vaultOutcome.code), `the checkpoint succeeded, storing it did not: ${String(vaultOutcome.message)}`, Number(vaultOutcome.status))
    io.out(flags.json ? JSON.stringify(vaultOutcome) : `stored ${String(vaultOutcome.key)}  sealed sha256 ${String((vaultOutcome.sealed as { sha256?: string })?.sha256)}`)
  }
  if (typeof flags.output === 'string') await fetchInto(g, String(final.download), flags.output, archive.sha256, flags, io)
}
