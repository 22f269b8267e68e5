/**
 * Server TLS material and client identities. Files are polled (stat follows the symlinks that
 * Kubernetes secret volumes swap) and a change installs a new secure context for new connections;
 * connections already open keep theirs, so in-flight streams are not dropped.
 */
import { readFile, stat } from 'node:fs/promises'
import type { PeerCertificate, TLSSocket } from 'node:tls'
import type { Server } from 'node:https'
import type { Logger } from './log.ts'

export interface TlsFiles {
  cert: string
  key: string
  ca: string
}

export interface TlsMaterial {
  cert: Buffer
  key: Buffer
  ca: Buffer
}

export async function readTls(files: TlsFiles): Promise<TlsMaterial> {
  const [cert, key, ca] = await Promise.all([readFile(files.cert), readFile(files.key), readFile(files.ca)])
  return { cert, key, ca }
}

/** Polls the files; on change re-reads them and calls `server.setSecureContext`. Returns a stop function. */
export function watchTls(server: Server, files: TlsFiles, intervalMs: number, log: Logger): () => void {
  let last = ''
  const fingerprint = async () =>
    (await Promise.all([files.cert, files.key, files.ca].map(async (f) => {
      const s = await stat(f)
      return `${s.ino}:${s.size}:${s.mtimeMs}`
    }))).join('|')
  void fingerprint().then((f) => (last = f), () => {})
  let busy = false
  const timer = setInterval(async () => {
    if (busy) return
    busy = true
    try {
      const f = await fingerprint()
      if (f !== last) {
        const m = await readTls(files)
        server.setSecureContext({ ...m })
        last = f
        log.info('tls material reloaded', { cert: files.cert, ca: files.ca })
      }
    } catch (err) {
      // A half-written rotation: keep the old context and try again next tick.
      log.warn('tls reload failed; keeping the current certificates', { err })
    } finally {
      busy = false
    }
  }, intervalMs)
  timer.unref()
  return () => clearInterval(timer)
}

/** The identities a client certificate carries, as `uri:…`, `dns:…` and `cn:…`. */
export function identitiesOf(cert: PeerCertificate | undefined): string[] {
  if (!cert || !cert.subject) return []
  const ids: string[] = []
  for (const part of (cert.subjectaltname ?? '').split(/,\s*/)) {
    const m = /^(URI|DNS):(.+)$/.exec(part)
    if (m) ids.push(`${m[1]!.toLowerCase()}:${m[2]}`)
  }
  const cn = cert.subject.CN
  for (const c of Array.isArray(cn) ? cn : cn ? [cn] : []) ids.push(`cn:${c}`)
  return ids
}

/** The first allowed identity the peer presents, or null. */
export function allowedIdentity(socket: TLSSocket, allowed: readonly string[]): string | null {
  if (!socket.authorized) return null
  const ids = identitiesOf(socket.getPeerCertificate())
  return ids.find((id) => allowed.includes(id)) ?? null
}
