/**
 * Server TLS material, file watching and client identities. A certificate change installs a new
 * secure context for new connections; connections already open keep theirs, so in-flight streams
 * are not dropped.
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

/**
 * Polls files (stat follows symlinks, so Kubernetes' atomic `..data` swaps are seen) and calls
 * `onChange` when any of them changed. A failing `onChange` (a half-written rotation) is retried
 * on the next tick, and the old material stays in use. Returns a stop function.
 */
export function watchFiles(files: string[], intervalMs: number, onChange: () => Promise<void>, log: Logger, what: string): () => void {
  const fingerprint = async () =>
    (await Promise.all(files.map(async (f) => {
      const s = await stat(f)
      return `${s.ino}:${s.size}:${s.mtimeMs}`
    }))).join('|')
  let last = ''
  void fingerprint().then((f) => (last = f), () => {})
  let busy = false
  const timer = setInterval(async () => {
    if (busy) return
    busy = true
    try {
      const f = await fingerprint()
      if (f !== last) {
        await onChange()
        last = f
        log.info(`${what} reloaded`, { files })
      }
    } catch (err) {
      log.warn(`${what} reload failed; keeping the current one`, { err })
    } finally {
      busy = false
    }
  }, intervalMs)
  timer.unref()
  return () => clearInterval(timer)
}

/** Installs re-read certificates for new connections when the files change. */
export function watchTls(server: Server, files: TlsFiles, intervalMs: number, log: Logger): () => void {
  return watchFiles([files.cert, files.key, files.ca], intervalMs, async () => server.setSecureContext({ ...(await readTls(files)) }), log, 'tls material')
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

/**
 * The identities of each connection's client certificate, read once: `getPeerCertificate` builds
 * the whole certificate as a JS object (≈ 0.1 ms a request; 0.7 of the 10.9 busy seconds of the
 * gateway bench's agent and load generator). Sound only because the agent's server disables
 * renegotiation on every connection (agent/http/server.ts): a connection's peer certificate
 * never changes.
 */
const peerIdentities = new WeakMap<TLSSocket, string[]>()

/** The first allowed identity the peer presents, or null. */
export function allowedIdentity(socket: TLSSocket, allowed: readonly string[]): string | null {
  if (!socket.authorized) return null
  let ids = peerIdentities.get(socket)
  if (!ids) peerIdentities.set(socket, ids = identitiesOf(socket.getPeerCertificate()))
  return ids.find((id) => allowed.includes(id)) ?? null
}
