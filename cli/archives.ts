/**
 * The node's archives through the gateway: `ls` (with the stored evidence), `get` (resumable,
 * verified download) and `rm`.
 */
import { fetchArchive } from './fetch.ts'
import { downloadProgress } from './progress.ts'
import { call, CliError, type Flags, type GatewayOptions, type Io } from './gateway.ts'

export async function fetchInto(g: GatewayOptions, download: string, out: string, sha256: string | undefined, flags: Flags, io: Io): Promise<void> {
  const shown = downloadProgress(io)
  const f = await fetchArchive(g, download, out, sha256, shown.update).finally(shown.end)
  if (flags.json) io.out(JSON.stringify(f))
  else io.out(`${f.path}  ${f.size} bytes  sha256 ${f.sha256} verified${f.resumedFrom ? ` (resumed at ${f.resumedFrom})` : ''}`)
}

/**
 * `ls CLUSTER NODE` — the node's archives you may read; `ls [CLUSTER[/NAMESPACE]] [--node=N]` —
 * stored evidence you may read (filtered), and with `--node` that node's archives too.
 */
export async function ls(g: GatewayOptions, args: string[], flags: Flags, io: Io): Promise<void> {
  const [scope = '', second] = args
  const [cluster, namespace, extra] = scope ? scope.split('/') : []
  if (extra !== undefined || (scope && !cluster)) throw new CliError('usage', 'ls [CLUSTER[/NAMESPACE]] [--node=N] | ls CLUSTER NODE')
  const node = second ?? (typeof flags.node === 'string' ? flags.node : undefined)
  const out: { archives?: unknown[]; evidence?: unknown[]; incomplete?: boolean } = {}
  if (node !== undefined) {
    if (!cluster) throw new CliError('usage', 'ls CLUSTER NODE: a node needs its cluster')
    const res = await call(g, `/v1/clusters/${encodeURIComponent(cluster)}/nodes/${encodeURIComponent(node)}/checkpoints`)
    const body = (await res.json()) as { items: Array<{ name: string; size: number; created: string; namespace: string; download: string }> }
    out.archives = body.items.filter((a) => !namespace || a.namespace === namespace)
  }
  // The old form (`ls CLUSTER NODE`) lists the node only; the scope form always lists stored evidence.
  if (second === undefined) {
    const q = new URLSearchParams()
    if (cluster) q.set('cluster', cluster)
    if (namespace) q.set('namespace', namespace)
    try {
      const body = (await (await call(g, `/v1/evidence${q.size ? `?${q}` : ''}`)).json()) as { items: unknown[]; incomplete?: boolean }
      out.evidence = body.items
      if (body.incomplete) out.incomplete = true
    } catch (err) {
      // A gateway without a vault or database has no evidence to list: say so only when nothing else was asked.
      if (!(err instanceof CliError && err.code === 'not_found' && node !== undefined)) throw err
    }
  }
  if (flags.json) return io.out(JSON.stringify(second !== undefined ? { items: out.archives } : out))
  for (const a of (out.archives ?? []) as Array<{ name: string; size: number; created: string; namespace: string; download: string }>) {
    io.out(`${a.created}  ${String(a.size).padStart(12)}  ${a.namespace}  ${a.name}\n  ${a.download}`)
  }
  for (const e of (out.evidence ?? []) as Array<{ id: string; storedAt: string; sealed?: { size: number } }>) {
    io.out(`${e.storedAt}  ${String(e.sealed?.size ?? '?').padStart(12)}  stored  ${e.id}`)
  }
  if (out.incomplete) io.err('the evidence list is incomplete (the gateway stopped scanning): narrow it with CLUSTER/NAMESPACE')
}

/** `rm CLUSTER NODE NAME [--namespace=NS]`: deletes an archive from its node (the custody log records it). */
export async function rm(g: GatewayOptions, args: string[], flags: Flags, io: Io): Promise<void> {
  const [cluster, node, name] = args
  if (!cluster || !node || !name || args.length > 3) throw new CliError('usage', 'rm CLUSTER NODE NAME [--namespace=NS]')
  const q = typeof flags.namespace === 'string' ? `?namespace=${encodeURIComponent(flags.namespace)}` : ''
  await call(g, `/v1/clusters/${encodeURIComponent(cluster)}/nodes/${encodeURIComponent(node)}/checkpoints/${encodeURIComponent(name)}${q}`, { method: 'DELETE' })
  io.out(flags.json ? JSON.stringify({ deleted: name, cluster, node }) : `deleted ${name} from ${cluster}/${node}`)
}
