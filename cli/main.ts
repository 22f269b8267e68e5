/**
 * `checkpoint` — the investigators' command (`npm run checkpoint -- <command> …`, or
 * `node cli/main.ts` on Node ≥ 22.19). Talks to the gateway with the caller's token; prints
 * progress on stderr and results on stdout (`--json` for machine-readable output).
 *
 *   checkpoint create CLUSTER/NAMESPACE/POD/CONTAINER [--node=N] [--timeout=S] [-o FILE]
 *   checkpoint ls CLUSTER NODE
 *   checkpoint get DOWNLOAD_PATH -o FILE [--sha256=HEX]
 *
 * Exit status (from the stable error codes): 0 done; 1 failed (a checkpoint that failed, a digest
 * that did not match, a cut); 2 usage; 3 not found; 4 not allowed (unauthenticated, forbidden);
 * 5 server side (5xx).
 */
import { parseArgs } from 'node:util'
import { ndjsonLines } from '../shared/events.ts'
import { config } from './config.ts'
import { decrypt, keys, verify } from './evidence.ts'
import { fetchArchive } from './fetch.ts'
import { call, CliError, gatewayOptions, type GatewayOptions } from './gateway.ts'

const USAGE = `usage: checkpoint <command> [options]
  create CLUSTER/NAMESPACE/POD/CONTAINER [--node=N] [--timeout=S] [--reason=TEXT] [--store] [-o FILE]
                                                                             checkpoint with live progress; --store seals it into the vault; -o also downloads it
  ls CLUSTER NODE                                                            the node's archives you may read
  get DOWNLOAD_PATH -o FILE [--sha256=HEX]                                   download (resumable), verified by SHA-256
  evidence ls [--cluster=C] [--namespace=N]                                  stored evidence you may read
  evidence get ID -o FILE [-i IDENTITY [--key AGENT.pub]]                    fetch a sealed object (digest and custody chain verified); -i decrypts; --key verifies its statement
  config get [-o FILE] | config diff FILE | config apply FILE                 the gateway's configuration (admin scope)
  keys age -o FILE | keys grant --out DIR | keys statement -o FILE             make keys (offline)
  decrypt FILE.zst.age -i IDENTITY -o FILE                                    open sealed evidence: age, then zstd (offline)
  verify ARCHIVE --statement BUNDLE --key AGENT.pub                           check a signed statement (offline)
options: --gateway=URL (CHECKPOINT_GATEWAY), --token-file=F (CHECKPOINT_TOKEN_FILE or CHECKPOINT_TOKEN), --json
exit status: 0 done, 1 failed, 2 usage, 3 not found, 4 not allowed, 5 server side
example: checkpoint create prod-eu/payments/api-7d9f/app -o api.tar
`

/** Exit status for a failure, by its stable code and status. */
function exitStatus(code: string, status: number | undefined): number {
  if (code === 'usage') return 2
  if (status === 404 || /not_found$/.test(code)) return 3
  if (status === 401 || status === 403 || code === 'unauthenticated' || code === 'forbidden') return 4
  if ((status ?? 0) >= 500 && code !== 'checkpoint_failed') return 5
  return 1
}

interface Io {
  out(line: string): void
  err(line: string): void
}

type Flags = Record<string, string | boolean | undefined>

async function create(g: GatewayOptions, args: string[], flags: Flags, io: Io): Promise<void> {
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
  const res = await call(g, path, { method: 'POST', headers: { accept: 'application/x-ndjson' } })
  let final: Record<string, unknown> | undefined
  let vaultOutcome: Record<string, unknown> | undefined
  for await (const line of ndjsonLines(res.body!)) {
    if (!line.trim()) continue
    let e: Record<string, unknown>
    try {
      e = JSON.parse(line) as Record<string, unknown>
    } catch {
      break // a line cut short: the stream was cut, the outcome is unknown
    }
    progress(e, io)
    if (e.type === 'completed' || e.type === 'failed') final = e
    if (e.type === 'stored' || e.type === 'store_failed') vaultOutcome = e
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

function progress(e: Record<string, unknown>, io: Io): void {
  switch (e.type) {
    case 'accepted': return io.err(`accepted on ${String(e.node)}${Number(e.queuePosition) > 0 ? `, queued at ${String(e.queuePosition)}` : ''}`)
    case 'resolved': return io.err(`container ${String(e.containerId).slice(0, 12)} on ${(e.runtime as { name?: string })?.name ?? 'the runtime'}`)
    case 'heartbeat': return io.err(`${String(e.phase)} … ${(Number(e.elapsedMs) / 1000).toFixed(0)} s`)
    case 'completed': return io.err(`completed in ${(Number(e.durationMs) / 1000).toFixed(1)} s`)
    case 'failed': return io.err(`failed: ${String(e.code)}`)
    case 'sealing': return io.err(`sealing … ${Math.round((Number(e.read) / Math.max(1, Number(e.total))) * 100)} %`)
    case 'uploading': return io.err(`uploaded part ${String(e.part)} (${(Number(e.sentBytes) / 1048576).toFixed(1)} MiB)`)
    case 'stored': return io.err(`stored: ${String(e.key)}`)
    case 'store_failed': return io.err(`not stored: ${String(e.code)}: ${String(e.message)}`)
  }
}

async function fetchInto(g: GatewayOptions, download: string, out: string, sha256: string | undefined, flags: Flags, io: Io): Promise<void> {
  const f = await fetchArchive(g, download, out, sha256)
  if (flags.json) io.out(JSON.stringify(f))
  else io.out(`${f.path}  ${f.size} bytes  sha256 ${f.sha256} verified${f.resumedFrom ? ` (resumed at ${f.resumedFrom})` : ''}`)
}

/** `evidence ls [--cluster C] [--namespace N]`, `evidence get ID -o FILE [-i IDENTITY]`. */
async function evidence(g: GatewayOptions, args: string[], flags: Flags, io: Io): Promise<void> {
  const [sub, id] = args
  if (sub === 'ls') {
    const q = new URLSearchParams()
    for (const k of ['cluster', 'namespace'] as const) if (typeof flags[k] === 'string') q.set(k, flags[k] as string)
    const res = await call(g, `/v1/evidence${q.size ? `?${q}` : ''}`)
    const body = (await res.json()) as { items: Array<{ id: string; storedAt: string; sealed: { size: number } }> }
    if (flags.json) return io.out(JSON.stringify(body))
    for (const e of body.items) io.out(`${e.storedAt}  ${String(e.sealed?.size ?? '?').padStart(12)}  ${e.id}`)
    return
  }
  if (sub !== 'get' || !id || typeof flags.output !== 'string') throw new CliError('usage', 'evidence ls | evidence get ID -o FILE [-i IDENTITY]')
  const issued = (await (await call(g, `/v1/evidence/${id}`)).json()) as { url: string; sealed: { sha256: string; size: number }; statementUrl?: string; custody: string }
  // The custody chain first: evidence whose log was tampered with is reported, not handed over quietly.
  const chain = (await (await call(g, issued.custody)).json()) as { verified: boolean; entries: Array<{ event: string; actor: { sub: string }; at: string }>; broken?: { seq: number; problem: string } }
  if (!chain.verified) throw new CliError('custody_broken', `the custody log of ${id} does not verify (entry ${chain.broken?.seq}: ${chain.broken?.problem})`)
  io.err(`custody: ${chain.entries.map((e) => `${e.event} by ${e.actor.sub}`).join(', ')} — chain verified`)
  const sealedFile = typeof flags.identity === 'string' ? `${flags.output}.zst.age` : flags.output
  const res = await fetch(issued.url).catch((err: Error) => { throw new CliError('storage_unavailable', `the storage did not answer: ${err.message}`) })
  if (!res.ok || !res.body) throw new CliError('storage_rejected', `the storage answered ${res.status}`)
  const { createWriteStream } = await import('node:fs')
  const { rename, rm } = await import('node:fs/promises')
  const { Readable } = await import('node:stream')
  const { pipeline } = await import('node:stream/promises')
  const { createHash } = await import('node:crypto')
  const h = createHash('sha256')
  await pipeline(Readable.fromWeb(res.body as import('node:stream/web').ReadableStream), async function* (src: AsyncIterable<Buffer>) { for await (const c of src) { h.update(c); yield c } }, createWriteStream(`${sealedFile}.part`, { mode: 0o600 }))
  const got = h.digest('hex')
  if (got !== issued.sealed.sha256) {
    await rm(`${sealedFile}.part`, { force: true })
    throw new CliError('digest_mismatch', `the sealed object's SHA-256 is ${got}, the gateway recorded ${issued.sealed.sha256}: removed`)
  }
  await rename(`${sealedFile}.part`, sealedFile)
  io.out(`${sealedFile}  sealed sha256 ${got} verified`)
  if (typeof flags.identity === 'string') {
    await decrypt([sealedFile], flags, io)
    await rm(sealedFile, { force: true })
    if (typeof flags.key === 'string' && issued.statementUrl) {
      const bundlePath = `${flags.output}.statement.json`
      const res = await fetch(issued.statementUrl)
      if (!res.ok) throw new CliError('storage_rejected', `the statement could not be read (${res.status})`)
      await (await import('node:fs/promises')).writeFile(bundlePath, await res.text())
      await verify([flags.output], { ...flags, statement: bundlePath }, io)
    } else if (issued.statementUrl) io.err(`a signed statement is stored with it: give --key AGENT.pub to verify it`)
  }
}

async function ls(g: GatewayOptions, args: string[], flags: Flags, io: Io): Promise<void> {
  const [cluster, node] = args
  if (!cluster || !node) throw new CliError('usage', 'ls CLUSTER NODE')
  const res = await call(g, `/v1/clusters/${encodeURIComponent(cluster)}/nodes/${encodeURIComponent(node)}/checkpoints`)
  const body = (await res.json()) as { items: Array<{ name: string; size: number; created: string; namespace: string; download: string }> }
  if (flags.json) return io.out(JSON.stringify(body))
  for (const a of body.items) io.out(`${a.created}  ${String(a.size).padStart(12)}  ${a.namespace}  ${a.name}\n  ${a.download}`)
}

export async function main(argv: string[], env: NodeJS.ProcessEnv, io: Io): Promise<number> {
  let parsed
  try {
    parsed = parseArgs({
      args: argv,
      allowPositionals: true,
      strict: true,
      options: {
        gateway: { type: 'string' }, 'token-file': { type: 'string' }, json: { type: 'boolean' }, node: { type: 'string' },
        timeout: { type: 'string' }, output: { type: 'string', short: 'o' }, sha256: { type: 'string' }, help: { type: 'boolean', short: 'h' },
        identity: { type: 'string', short: 'i' }, statement: { type: 'string' }, key: { type: 'string' }, out: { type: 'string' },
        store: { type: 'boolean' }, reason: { type: 'string' }, cluster: { type: 'string' }, namespace: { type: 'string' },
      },
    })
  } catch (err) {
    io.err(`checkpoint: ${(err as Error).message}\n${USAGE}`)
    return 2
  }
  const { values: flags, positionals: [command, ...args] } = parsed
  if (flags.help || !command) {
    io.out(USAGE)
    return command || flags.help ? 0 : 2
  }
  try {
    if (command === 'keys') return (await keys(args, flags, io), 0)
    if (command === 'decrypt') return (await decrypt(args, flags, io), 0)
    if (command === 'verify') return (await verify(args, flags, io), 0)
    const g = await gatewayOptions(flags, env)
    if (command === 'create') await create(g, args, flags, io)
    else if (command === 'ls') await ls(g, args, flags, io)
    else if (command === 'evidence') await evidence(g, args, flags, io)
    else if (command === 'config') await config(g, args, flags, io)
    else if (command === 'get') {
      if (!args[0] || typeof flags.output !== 'string') throw new CliError('usage', 'get DOWNLOAD_PATH -o FILE')
      await fetchInto(g, args[0], flags.output, flags.sha256, flags, io)
    } else throw new CliError('usage', `unknown command ${command}`)
    return 0
  } catch (caught) {
    // A file that exists already, a path that does not: said plainly, not as a stack trace.
    const fsCode = (caught as NodeJS.ErrnoException).code
    const err = caught instanceof CliError ? caught : typeof fsCode === 'string' && /^E[A-Z]+$/.test(fsCode) ? new CliError(fsCode === 'EEXIST' ? 'exists' : 'file_error', (caught as Error).message) : undefined
    if (!err) throw caught
    if (err.code === 'usage') {
      io.err(`checkpoint: ${err.message}\n${USAGE}`)
      return 2
    }
    io.err(flags.json ? JSON.stringify({ code: err.code, status: err.status, message: err.message, ...err.details }) : `checkpoint: ${err.code}: ${err.message}`)
    const log = err.details.runtimeLog
    if (!flags.json && Array.isArray(log)) for (const l of log) io.err(`  ${String(l)}`)
    return exitStatus(err.code, err.status)
  }
}

if (import.meta.main) {
  const code = await main(process.argv.slice(2), process.env, { out: (l) => process.stdout.write(l + '\n'), err: (l) => process.stderr.write(l + '\n') })
  process.exitCode = code
}
