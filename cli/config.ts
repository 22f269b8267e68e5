/**
 * `checkpoint config get|diff|apply`: the gateway's configuration as a file, changed with the
 * optimistic concurrency the admin API asks for. `get -o FILE` writes the document and its ETag
 * beside it (`FILE.etag`); `diff FILE` shows what the file would change (a dry run, nothing
 * stored); `apply FILE` stores it only if the gateway still has the version `get` read.
 */
import { readFile, writeFile } from 'node:fs/promises'
import { call, CliError, type GatewayOptions } from './gateway.ts'

type Flags = Record<string, string | boolean | undefined>
interface Io { out(line: string): void; err(line: string): void }

interface PermissionChange { change: string; caller: string; action: string; clusters: string[]; namespaces: string[] }
interface Summary { clusters?: Record<string, string[]>; rules?: Record<string, string[]>; sections?: string[]; permissions?: PermissionChange[] }

function printSummary(s: Summary, io: Io): void {
  for (const [what, lists] of [['cluster', s.clusters], ['rule', s.rules]] as const) {
    for (const [kind, ids] of Object.entries(lists ?? {})) for (const id of ids) io.out(`${kind} ${what} ${id}`)
  }
  for (const section of s.sections ?? []) io.out(`changed section ${section}`)
  for (const p of s.permissions ?? []) io.out(`${p.change === 'gained' ? '+' : '-'} ${p.caller} ${p.action} on ${p.clusters.join(',')} / ${p.namespaces.join(',')}`)
}

export async function config(g: GatewayOptions, args: string[], flags: Flags, io: Io): Promise<void> {
  const [sub, file] = args
  if (sub === 'get') {
    const res = await call(g, '/v1/admin/config')
    const text = JSON.stringify(await res.json(), null, 2) + '\n'
    const etag = res.headers.get('etag') ?? ''
    if (typeof flags.output === 'string') {
      await writeFile(flags.output, text)
      await writeFile(`${flags.output}.etag`, etag + '\n')
      io.out(`${flags.output}  version ${res.headers.get('x-config-version') ?? '?'} (${res.headers.get('x-config-source') ?? '?'})  etag ${etag}`)
    } else io.out(text.trimEnd())
    return
  }
  if ((sub !== 'diff' && sub !== 'apply') || !file) throw new CliError('usage', 'config get [-o FILE] | config diff FILE | config apply FILE')
  const body = await readFile(file, 'utf8')
  const etag = (await readFile(`${file}.etag`, 'utf8').catch(() => '')).trim()
  if (sub === 'apply' && !etag) throw new CliError('usage', `apply needs ${file}.etag, written by "config get -o ${file}": the version your change is based on`)
  const headers: Record<string, string> = { 'content-type': 'application/json', ...(etag ? { 'if-match': etag } : {}) }
  const res = await call(g, `/v1/admin/config${sub === 'diff' ? '?dryRun=true' : ''}`, { method: 'PUT', headers, body })
  const out = (await res.json()) as { version?: number; etag?: string; unchanged?: boolean; summary: Summary }
  if (flags.json) return io.out(JSON.stringify(out))
  printSummary(out.summary, io)
  if (sub === 'apply') {
    if (out.etag) await writeFile(`${file}.etag`, out.etag + '\n')
    io.out(out.unchanged ? 'unchanged: the gateway already has this document' : `applied as version ${out.version} (etag ${out.etag})`)
  }
}
