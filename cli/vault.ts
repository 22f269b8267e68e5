/**
 * Stored evidence through the gateway: `evidence ls`, and `evidence get` — the custody chain
 * checked first, the sealed object fetched and its digest checked, then (with an identity)
 * decrypted, decompressed, and its signed statement verified.
 */
import { call, CliError, type Flags, type GatewayOptions, type Io } from './gateway.ts'
import { decrypt, verify } from './evidence.ts'

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
