/**
 * `ops`: alert-triggered checkpoint operations. `ops [CLUSTER[/NAMESPACE]] [--state=S] [--alert=A]`
 * lists them (newest first); `ops ID` shows one; `--watch` follows: with an ID until the operation
 * ends (exit 0 succeeded, 1 failed), without one printing each new or changed operation until Ctrl-C.
 */
import { setTimeout as sleep } from 'node:timers/promises'
import { call, CliError, type Flags, type GatewayOptions, type Io } from './gateway.ts'

interface OperationView {
  id: string
  state: string
  alert?: { name?: string }
  cluster: string
  namespace: string
  pod: string
  container: string
  node?: string
  attempts: number
  updatedAt: string
  archive?: { name: string; sha256: string }
  download?: string
  stored?: { key: string }
  storeFailed?: { code: string }
  error?: { code: string; message?: string }
}

const DONE = new Set(['succeeded', 'failed', 'skipped'])

function line(op: OperationView): string {
  const what = `${op.cluster}/${op.namespace}/${op.pod}/${op.container}`
  const outcome = op.state === 'succeeded'
    ? `${op.archive?.name ?? ''}${op.stored ? `  stored ${op.stored.key}` : ''}${op.storeFailed ? `  not stored: ${op.storeFailed.code}` : ''}`
    : op.error ? `${op.error.code}${op.error.message ? `: ${op.error.message}` : ''}` : ''
  return `${op.updatedAt}  ${op.state.padEnd(9)}  ${op.id}  ${op.alert?.name || '-'}  ${what}${op.node ? ` on ${op.node}` : ''}  (attempts ${op.attempts})${outcome ? `  ${outcome}` : ''}`
}

export async function ops(g: GatewayOptions, args: string[], flags: Flags, io: Io): Promise<void> {
  const [arg, extra] = args
  if (extra !== undefined) throw new CliError('usage', 'ops [CLUSTER[/NAMESPACE] | ID] [--state=S] [--alert=A] [--watch]')
  const every = Number(typeof flags.interval === 'string' ? flags.interval : 2)
  if (!(every >= 0.1 && every <= 3600)) throw new CliError('usage', '--interval: seconds, 0.1..3600')
  const show = (op: OperationView) => io.out(flags.json ? JSON.stringify(op) : line(op))
  if (arg && /^[0-9a-f-]{36}$/.test(arg)) {
    const get = async () => (await (await call(g, `/v1/operations/${arg}`)).json()) as OperationView
    let op = await get()
    show(op)
    if (!flags.watch) return
    let seen = `${op.state}/${op.attempts}`
    while (!DONE.has(op.state)) {
      await sleep(every * 1000)
      op = await get()
      if (`${op.state}/${op.attempts}` !== seen) show(op)
      seen = `${op.state}/${op.attempts}`
    }
    if (op.state !== 'succeeded') throw new CliError(op.error?.code ?? 'operation_failed', `operation ${op.id} ${op.state}${op.error?.message ? `: ${op.error.message}` : ''}`)
    return
  }
  const [cluster, namespace, more] = arg ? arg.split('/') : []
  if (more !== undefined || (arg && !cluster)) throw new CliError('usage', 'ops [CLUSTER[/NAMESPACE] | ID]')
  const q = new URLSearchParams()
  if (cluster) q.set('cluster', cluster)
  if (namespace) q.set('namespace', namespace)
  for (const k of ['state', 'alert'] as const) if (typeof flags[k] === 'string') q.set(k, flags[k] as string)
  const list = async () => ((await (await call(g, `/v1/operations${q.size ? `?${q}` : ''}`)).json()) as { items: OperationView[] }).items
  const items = await list()
  if (!flags.watch) {
    if (flags.json) return io.out(JSON.stringify({ items }))
    for (const op of items) show(op)
    return
  }
  // Watching: oldest first, then each new or changed operation as it is seen, until Ctrl-C.
  const seen = new Map<string, string>()
  const report = (batch: OperationView[]) => {
    for (const op of [...batch].reverse()) {
      const key = `${op.state}/${op.attempts}`
      if (seen.get(op.id) === key) continue
      seen.set(op.id, key)
      show(op)
    }
  }
  report(items)
  const stop = new AbortController()
  const interrupt = () => stop.abort()
  process.once('SIGINT', interrupt)
  try {
    for (;;) {
      await sleep(every * 1000, undefined, { signal: stop.signal })
      report(await list())
    }
  } catch (err) {
    if (!stop.signal.aborted) throw err
  } finally {
    process.off('SIGINT', interrupt)
  }
}
