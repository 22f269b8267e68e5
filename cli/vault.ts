/**
 * Stored evidence through the gateway: `evidence ls`, and `evidence get` — the custody chain
 * checked first, the sealed object fetched and its digest checked, then (with an identity)
 * decrypted, decompressed, and its signed statement verified.
 */
import { rm, writeFile } from 'node:fs/promises'
import { decrypt, verify } from './evidence.ts'
import { downloadVerified } from './fetch.ts'
import { downloadProgress } from './progress.ts'
import { call, CliError, type Flags, type GatewayOptions, type Io } from './gateway.ts'

/** `evidence ls [--cluster C] [--namespace N]`, `evidence get ID -o FILE [-i IDENTITY]`. */
export async function evidence(g: GatewayOptions, args: string[], flags: Flags, io: Io): Promise<void> {
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
  const issued = (await (await call(g, `/v1/evidence/${id}`)).json()) as { url: string; cluster: string; node: string; sealed: { sha256: string; size: number }; statementUrl?: string; custody: string }
  // The custody chain first: evidence whose log was tampered with is reported, not handed over quietly.
  const chain = (await (await call(g, issued.custody)).json()) as { verified: boolean; entries: Array<{ event: string; actor: { sub: string }; at: string }>; broken?: { seq: number; problem: string } }
  if (!chain.verified) throw new CliError('custody_broken', `the custody log of ${id} does not verify (entry ${chain.broken?.seq}: ${chain.broken?.problem})`)
  io.err(`custody: ${chain.entries.map((e) => `${e.event} by ${e.actor.sub}`).join(', ')} — chain verified`)
  const sealedFile = typeof flags.identity === 'string' ? `${flags.output}.zst.age` : flags.output
  // Resumable like an archive download; the digest is the one the gateway recorded when it was stored.
  const shown = downloadProgress(io)
  const got = await downloadVerified(async (headers) => {
    const res = await fetch(issued.url, { headers }).catch((err: Error) => { throw new CliError('storage_unavailable', `the storage did not answer: ${err.message}`) })
    if (res.status !== 200 && res.status !== 206) throw new CliError('storage_rejected', `the storage answered ${res.status}`)
    return res
  }, sealedFile, () => issued.sealed.sha256, shown.update).finally(shown.end)
  io.out(`${sealedFile}  sealed sha256 ${got.sha256} verified${got.resumedFrom ? ` (resumed at ${got.resumedFrom})` : ''}`)
  if (typeof flags.identity !== 'string') return
  await decrypt([sealedFile], flags, io)
  await rm(sealedFile, { force: true })
  if (!issued.statementUrl) return io.err('no signed statement is stored with it')
  const res = await fetch(issued.statementUrl)
  if (!res.ok) throw new CliError('storage_rejected', `the statement could not be read (${res.status})`)
  const bundlePath = `${flags.output}.statement.json`
  const bundle = await res.text()
  await writeFile(bundlePath, bundle)
  const key = typeof flags.key === 'string' ? flags.key : await collectedKey(g, issued, bundle, `${flags.output}.statement-key.pem`, io)
  await verify([flags.output], { ...flags, statement: bundlePath, key }, io)
}

/**
 * The agent key a statement names, as the gateway collected it from that node's agent: written
 * to `path` for `verify`. `statement_key_unknown` when the gateway has none (an older gateway, or
 * a key it could not collect): the archive is decrypted, its statement is not verified.
 */
async function collectedKey(g: GatewayOptions, issued: { cluster: string; node: string }, bundle: string, path: string, io: Io): Promise<string> {
  const hint = (JSON.parse(bundle) as { verificationMaterial?: { publicKey?: { hint?: string } } }).verificationMaterial?.publicKey?.hint ?? ''
  const keyid = Buffer.from(hint, 'base64').toString('hex')
  const unknown = (why: string) => new CliError('statement_key_unknown', `the statement names key ${keyid.slice(0, 16)}… of node ${issued.node}; ${why}: give --key AGENT.pub to verify it`)
  let keys: Array<{ node: string; keyid: string; publicKey: string; firstSeen: string }>
  try {
    keys = ((await (await call(g, `/v1/clusters/${encodeURIComponent(issued.cluster)}/statement-keys?node=${encodeURIComponent(issued.node)}`)).json()) as { keys: typeof keys }).keys
  } catch (err) {
    if (err instanceof CliError && err.code === 'not_found') throw unknown('this gateway does not collect statement keys')
    throw err
  }
  const key = keys.find((k) => k.keyid === keyid)
  if (!key) throw unknown('the gateway has not collected it')
  await writeFile(path, key.publicKey)
  io.err(`statement key ${keyid.slice(0, 16)}… of node ${issued.node}, collected by the gateway from its agent on ${key.firstSeen}`)
  return path
}
