/**
 * A fake node agent for gateway tests: HTTPS on 127.0.0.1 with client certificates required,
 * grants verified with jose against the gateway's key set and checked with checkGrantCovers (and,
 * for archives, checkGrantCoversArchive against the target each archive was made for).
 * One server plays every node: the gateway's agent URL template is `https://127.0.0.1:<port>/n/{node}`.
 *
 * Behaviour is chosen by the pod name, so the same requests work from Node and from workerd:
 * - `fail-404` → 404 container_not_found; `fail-500` → 500 runtime_error; `fail-503` → 503
 *   runtime_unavailable with Retry-After; `fail-html` → 502 with an HTML body
 * - `slow-headers` → no headers until the caller hangs up (30 s at most); `stream-fail` → stream ending in `failed`
 *   (checkpoint_failed, 500); `flaky-dump` → the same on its first request per node and
 *   namespace, `completed` after that (CRIU losing a race once); `stream-timeout` → `failed`
 *   (timeout, 504) with the archive stored all the same, as the agent keeps a late archive;
 *   `stream-cut` → stream ending without a final event;
 *   `slow` → 6 heartbeats 100 ms apart before `completed`; `slow-<n>ms` → `completed` after n ms
 *   (the archive is stored even if the peer went away: the agent never aborts on disconnect)
 * - `big` → an 8 MiB archive (streamed, not read whole, by the gateway)
 * - `fail-grant` → 401 invalid_grant; `fail-mismatch` → 403 grant_mismatch (the agent refusing
 *   the gateway's grant, however valid it is)
 *
 * Archives put straight into `archives` (not made through a checkpoint) are listed the way the
 * agent lists archives it did not write: target from the name's first reading, `sha256Known: false`.
 */
import { createHash } from 'node:crypto'
import { createServer, type Server } from 'node:https'
import type { AddressInfo } from 'node:net'
import { createLocalJWKSet, jwtVerify, type JWK } from 'jose'
import { CheckpointError, PROBLEM_CONTENT_TYPE, toProblem } from '../../../shared/errors.ts'
import { encodeEvent, NDJSON, type ArchiveEntry, type CheckpointEvent } from '../../../shared/events.ts'
import { checkGrantCovers, checkGrantCoversArchive, GRANT_TYP, grantAudience, type GrantClaims, type GrantRequirement } from '../../../shared/grant.ts'
import { archiveName, checkName, checkTarget, isArchiveName, archiveReadings, parseTimeout } from '../../../shared/names.ts'
import type { TestPki } from '../certs.ts'

/** The `runtimeLog` of the fake's failed dumps (`stream-fail`, `flaky-dump`). */
export const FAKE_RUNTIME_LOG = ["Error (criu/files-reg.c:1031): Can't dump ghost file /tmp/ghost of 2097152 size, increase limit", 'Error (criu/cr-dump.c:1975): Dumping FAILED.']

export interface FakeAgent {
  url: string
  port: number
  /** Every request the agent saw, with the verified grant claims. */
  seen: Array<{ method: string; path: string; node: string; claims?: Partial<GrantClaims>; range?: string; requestId?: string }>
  /** Checkpoint streams: whether each one was written to its end or cut by the peer. */
  streams: Array<{ pod: string; finished: boolean; aborted: boolean }>
  /** Whole-archive downloads, the same way. */
  downloads: Array<{ name: string; finished: boolean; aborted: boolean }>
  /** Archives per node, by name. */
  archives: Map<string, Map<string, Uint8Array>>
  close(): Promise<void>
}

export function archiveBytes(size: number): Uint8Array {
  const b = new Uint8Array(size)
  for (let i = 0; i < size; i++) b[i] = (i * 31 + 7) & 0xff
  return b
}

const sha256 = (b: Uint8Array) => createHash('sha256').update(b).digest('hex')

export async function startFakeAgent(opts: { pki: TestPki; jwks: { keys: JWK[] }; issuer: string; heartbeatMs?: number; cert?: { cert: string; key: string } }): Promise<FakeAgent> {
  const keySet = createLocalJWKSet(opts.jwks)
  const seen: FakeAgent['seen'] = []
  const streams: FakeAgent['streams'] = []
  const downloads: FakeAgent['downloads'] = []
  const archives = new Map<string, Map<string, Uint8Array>>()
  const jtis = new Set<string>()
  /** The target each archive was made for (its name alone is ambiguous). */
  const targets = new Map<string, { namespace: string; pod: string; container: string }>()
  /** `flaky-dump` targets whose first dump already failed. */
  const flaky = new Set<string>()
  const sockets = new Set<import('node:net').Socket>()

  function problem(res: import('node:http').ServerResponse, err: CheckpointError) {
    res.writeHead(err.status, { 'content-type': PROBLEM_CONTENT_TYPE, ...(err.headers ?? {}) })
    res.end(JSON.stringify(toProblem(err)))
  }

  async function verify(auth: string | undefined, need: GrantRequirement): Promise<Partial<GrantClaims>> {
    const m = /^Bearer (.+)$/.exec(auth ?? '')
    if (!m) throw new CheckpointError('invalid_grant', 'no grant')
    let payload
    try {
      ;({ payload } = await jwtVerify(m[1]!, keySet, { issuer: opts.issuer, audience: grantAudience(need.node), typ: GRANT_TYP, algorithms: ['EdDSA', 'ES256'], requiredClaims: ['exp', 'jti', 'iat'] }))
    } catch (err) {
      throw new CheckpointError('invalid_grant', `grant rejected: ${(err as { code?: string }).code}`)
    }
    if (jtis.has(payload.jti!)) throw new CheckpointError('invalid_grant', 'grant replayed')
    jtis.add(payload.jti!)
    const claims = payload as unknown as Partial<GrantClaims>
    checkGrantCovers(claims, need)
    return claims
  }

  const server: Server = createServer(
    { key: opts.cert?.key ?? opts.pki.serverKey, cert: opts.cert?.cert ?? opts.pki.serverCert, ca: opts.pki.caCert, requestCert: true, rejectUnauthorized: true },
    async (req, res) => {
      const url = new URL(req.url ?? '/', 'https://agent')
      const m = /^\/n\/([^/]+)(\/.*)$/.exec(url.pathname)
      try {
        if (!m) throw new CheckpointError('not_found', 'no such path')
        const node = checkName('node', m[1])
        const path = m[2]!
        const entry: FakeAgent['seen'][number] = { method: req.method ?? '', path, node }
        if (req.headers.range) entry.range = req.headers.range
        if (typeof req.headers['x-request-id'] === 'string') entry.requestId = req.headers['x-request-id']
        seen.push(entry)
        const store = archives.get(node) ?? new Map<string, Uint8Array>()
        archives.set(node, store)
        let cp: RegExpExecArray | null
        if (req.method === 'POST' && (cp = /^\/checkpoint\/([^/]+)\/([^/]+)\/([^/]+)$/.exec(path))) {
          const target = checkTarget({ namespace: cp[1], pod: cp[2], container: cp[3] })
          const timeout = parseTimeout(url.searchParams.get('timeout'), 60, 600)
          entry.claims = await verify(req.headers.authorization, { op: 'checkpoint:create', node, target })
          const pod = target.pod
          if (pod === 'fail-404') throw new CheckpointError('container_not_found', 'no such container')
          if (pod === 'fail-500') throw new CheckpointError('runtime_error', 'runtime said no')
          if (pod === 'fail-grant') throw new CheckpointError('invalid_grant', 'grant signed by an unknown key')
          if (pod === 'fail-mismatch') throw new CheckpointError('grant_mismatch', 'grant for another target', { field: 'pod' })
          if (pod === 'fail-503') throw new CheckpointError('runtime_unavailable', 'runtime down', { headers: { 'Retry-After': '7' } })
          if (pod === 'fail-html') {
            res.writeHead(502, { 'content-type': 'text/html' })
            res.end('<html>bad gateway</html>')
            return
          }
          if (pod === 'slow-headers') {
            // No headers until the gateway gives up and closes the connection (at most 30 s).
            await new Promise<void>((r) => {
              const t = setTimeout(r, 30_000)
              res.once('close', () => (clearTimeout(t), r()))
            })
            if (res.destroyed) return
          }
          if (req.headers.accept !== NDJSON) {
            throw new CheckpointError('invalid_body', 'the fake agent only streams')
          }
          const rec = { pod, finished: false, aborted: false }
          streams.push(rec)
          res.once('close', () => {
            if (!rec.finished) rec.aborted = true
          })
          res.writeHead(200, { 'content-type': NDJSON, 'cache-control': 'no-store' })
          const now = () => new Date().toISOString()
          const send = (e: CheckpointEvent) => res.write(encodeEvent(e))
          const started = Date.now()
          send({ type: 'accepted', requestId: entry.requestId ?? 'x', node, target, timeoutSeconds: timeout, queuePosition: 0, time: now() })
          send({ type: 'resolved', containerId: 'c0ffee', runtime: { name: 'containerd', version: '2.1.9' }, time: now() })
          const long = /^slow-(\d+)ms$/.exec(pod)
          const beats = pod === 'slow' ? 6 : long ? 10 : 2
          for (let i = 0; i < beats; i++) {
            await new Promise((r) => setTimeout(r, pod === 'slow' ? 100 : long ? Number(long[1]) / 10 : (opts.heartbeatMs ?? 10)))
            send({ type: 'heartbeat', elapsedMs: Date.now() - started, phase: 'checkpointing', time: now() })
          }
          if (pod === 'stream-cut') {
            rec.finished = true
            res.end()
            return
          }
          const flakyKey = `${node}/${target.namespace}/${pod}`
          const dumpFails = pod === 'stream-fail' || (pod === 'flaky-dump' && !flaky.has(flakyKey))
          if (pod === 'flaky-dump') flaky.add(flakyKey)
          if (dumpFails) {
            send({ type: 'failed', status: 500, code: 'checkpoint_failed', message: 'criu failed', runtimeLog: FAKE_RUNTIME_LOG, time: now() })
          } else if (pod === 'stream-timeout') {
            const name = archiveName(target, new Date())
            store.set(name, archiveBytes(4096))
            targets.set(name, target)
            send({ type: 'failed', status: 504, code: 'timeout', message: 'still checkpointing after the timeout; the archive will be kept', time: now() })
          } else {
            const at = new Date()
            const name = archiveName(target, at)
            const bytes = archiveBytes(pod === 'big' ? 8 << 20 : 4096)
            store.set(name, bytes)
            targets.set(name, target)
            send({
              type: 'completed',
              items: [`/var/lib/kubelet/checkpoints/${name}`],
              archive: { name, size: bytes.byteLength, sha256: sha256(bytes), created: at.toISOString() },
              runtime: { name: 'containerd', version: '2.1.9' },
              containerId: 'c0ffee',
              durationMs: Date.now() - started,
              time: now(),
            })
          }
          rec.finished = true
          res.end()
          return
        }
        if (req.method === 'GET' && path === '/checkpoints') {
          entry.claims = await verify(req.headers.authorization, { op: 'checkpoint:list', node })
          const items: ArchiveEntry[] = []
          for (const [name, bytes] of store) {
            const p = archiveReadings(name)!
            const t = targets.get(name) ?? { pod: p.pod, ...p.readings[0]! }
            items.push({ name, size: bytes.byteLength, sha256: sha256(bytes), created: p.created, namespace: t.namespace, pod: t.pod, container: t.container, sha256Known: targets.has(name) })
          }
          res.writeHead(200, { 'content-type': 'application/json' })
          res.end(JSON.stringify({ items }))
          return
        }
        const am = /^\/checkpoints\/([^/]+)$/.exec(path)
        if (am && (req.method === 'GET' || req.method === 'DELETE')) {
          const name = decodeURIComponent(am[1]!)
          if (!isArchiveName(name)) throw new CheckpointError('invalid_archive_name', 'bad name', { field: 'name' })
          entry.claims = await verify(req.headers.authorization, { op: req.method === 'GET' ? 'checkpoint:read' : 'checkpoint:delete', node, archive: name })
          const bytes = store.get(name)
          if (!bytes) throw new CheckpointError('archive_not_found', 'no such archive')
          // As the agent: the grant must be authorized in the archive's recorded namespace.
          checkGrantCoversArchive(entry.claims, name, targets.get(name) ?? null)
          if (req.method === 'DELETE') {
            store.delete(name)
            res.writeHead(204)
            res.end()
            return
          }
          const etag = `"${sha256(bytes)}"`
          if (req.headers['if-none-match'] === etag) {
            res.writeHead(304, { etag })
            res.end()
            return
          }
          const range = req.headers.range
          if (range) {
            const r = /^bytes=(\d+)-(\d*)$/.exec(range)
            const start = r ? Number(r[1]) : NaN
            const end = r && r[2] ? Math.min(Number(r[2]), bytes.byteLength - 1) : bytes.byteLength - 1
            if (!r || start >= bytes.byteLength || start > end) {
              res.writeHead(416, { 'content-type': PROBLEM_CONTENT_TYPE, 'content-range': `bytes */${bytes.byteLength}` })
              res.end(JSON.stringify(toProblem(new CheckpointError('invalid_range', 'unsatisfiable range'))))
              return
            }
            res.writeHead(206, { 'content-type': 'application/x-tar', 'content-length': end - start + 1, 'content-range': `bytes ${start}-${end}/${bytes.byteLength}`, 'accept-ranges': 'bytes', etag })
            res.end(bytes.subarray(start, end + 1))
            return
          }
          res.writeHead(200, { 'content-type': 'application/x-tar', 'content-length': bytes.byteLength, 'accept-ranges': 'bytes', etag })
          const download = { name, finished: false, aborted: false }
          downloads.push(download)
          res.once('finish', () => (download.finished = true))
          res.once('close', () => { if (!download.finished) download.aborted = true })
          res.end(bytes)
          return
        }
        throw new CheckpointError('not_found', 'no such path')
      } catch (err) {
        if (res.headersSent) return void res.destroy()
        problem(res, err instanceof CheckpointError ? err : new CheckpointError('internal', String(err)))
      }
    },
  )
  server.on('secureConnection', (s) => {
    sockets.add(s)
    s.once('close', () => sockets.delete(s))
  })
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r))
  const port = (server.address() as AddressInfo).port
  return {
    url: `https://127.0.0.1:${port}`,
    port,
    seen,
    streams,
    downloads,
    archives,
    async close() {
      for (const s of sockets) s.destroy()
      await new Promise<void>((r) => server.close(() => r()))
    },
  }
}
