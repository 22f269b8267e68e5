/**
 * The archives on this node: GET /checkpoints (list), GET and HEAD /checkpoints/{name} (download,
 * with single ranges and validators), DELETE /checkpoints/{name}. A grant covers an archive only
 * in the namespace the agent recorded when it wrote it (for one it did not write, in every
 * namespace its name can be read as): the name never chooses its namespace (shared/grant.ts).
 * Also an archive's signed statement and the keys statements are signed with (custody.ts).
 */
import { BUNDLE_MEDIA_TYPE } from '../../shared/agent-api.ts'
import { CheckpointError } from '../../shared/errors.ts'
import type { ArchiveEntry } from '../../shared/events.ts'
import { checkGrantCoversArchive } from '../../shared/grant.ts'
import { checkQuery, type Target } from '../../shared/names.ts'
import { parseRange } from '../../shared/range.ts'
import { sendFileRange } from '../files.ts'
import type { VerifiedGrant } from '../grants.ts'
import { refuseBody, sendJson, type AgentDeps, type Ctx } from './context.ts'

export async function listArchives(ctx: Ctx, d: AgentDeps): Promise<void> {
  checkQuery(ctx.query, [])
  await d.grants.verify(ctx.req.headers.authorization, { op: 'checkpoint:list' })
  const items = (await d.store.list()).map(({ path: _p, mtimeMs: _m, ...entry }) => entry)
  sendJson(ctx.res, 200, JSON.stringify({ items }))
}

export async function removeArchive(ctx: Ctx, d: AgentDeps): Promise<void> {
  const name = ctx.params[0]!
  checkQuery(ctx.query, [])
  refuseBody(ctx.req)
  const grant: VerifiedGrant = await d.grants.verify(ctx.req.headers.authorization, { op: 'checkpoint:delete', archive: name })
  checkGrantCoversArchive(grant, name, recordedTarget(await d.store.get(name)))
  await d.store.remove(name)
  ctx.log.info('archive deleted', { client: ctx.client, sub: grant.sub, archive: name })
  ctx.res.writeHead(204).end()
}

export async function download(ctx: Ctx, d: AgentDeps): Promise<void> {
  const { req, res } = ctx
  const name = ctx.params[0]!
  checkQuery(ctx.query, [])
  const grant = await d.grants.verify(req.headers.authorization, { op: 'checkpoint:read', archive: name })
  const a = await d.store.get(name)
  checkGrantCoversArchive(grant, name, recordedTarget(a))
  const etag = a.sha256Known ? `"${a.sha256}"` : `W/"${a.size.toString(16)}-${Math.floor(a.mtimeMs).toString(16)}"`
  const ifRange = req.headers['if-range']
  const range = ifRange && ifRange !== etag ? null : parseRange(req.headers.range, a.size)
  const headers: Record<string, string | number> = {
    'content-type': 'application/x-tar',
    'accept-ranges': 'bytes',
    etag,
    'last-modified': new Date(a.mtimeMs).toUTCString(),
    'cache-control': 'no-store',
    'content-disposition': `attachment; filename="${a.name}"`,
  }
  if (a.sha256Known) headers['x-checkpoint-sha256'] = a.sha256
  if (req.headers['if-none-match'] === etag) return void res.writeHead(304, headers).end()
  const start = range?.start ?? 0
  const end = range?.end ?? a.size - 1
  headers['content-length'] = a.size === 0 ? 0 : end - start + 1
  if (range) headers['content-range'] = `bytes ${start}-${end}/${a.size}`
  res.writeHead(range ? 206 : 200, headers)
  ctx.log.info('archive download', { client: ctx.client, sub: grant.sub, archive: name, start, end })
  if (req.method === 'HEAD' || a.size === 0) return void res.end()
  await sendFileRange(a.path, start, end, res).catch((err) => {
    ctx.log.warn('download cut', { archive: name, err })
    res.destroy()
  })
}

/** GET /checkpoints/{name}/statement: the archive's signed statement (a Sigstore bundle), read grant. */
export async function statement(ctx: Ctx, d: AgentDeps): Promise<void> {
  const name = ctx.params[0]!
  checkQuery(ctx.query, [])
  const grant = await d.grants.verify(ctx.req.headers.authorization, { op: 'checkpoint:read', archive: name })
  checkGrantCoversArchive(grant, name, recordedTarget(await d.store.get(name)))
  const bundle = await d.store.readStatement(name)
  if (bundle === null) throw new CheckpointError('not_found', `archive ${name} has no signed statement`)
  sendJson(ctx.res, 200, JSON.stringify(bundle), { 'content-type': BUNDLE_MEDIA_TYPE })
}

/** GET /statement-keys: the public keys this agent signs statements with (no grant: they are public). */
export async function statementKeys(ctx: Ctx, d: AgentDeps): Promise<void> {
  checkQuery(ctx.query, [])
  const keys = (d.statementKeys?.() ?? []).map((k) => ({ keyid: k.keyid, alg: k.alg, publicKey: k.publicKeyPem }))
  sendJson(ctx.res, 200, JSON.stringify({ node: d.node, keys }))
}

/** The target the agent recorded when it wrote the archive; null for one it did not write. */
export function recordedTarget(a: ArchiveEntry): Target | null {
  return a.sha256Known ? { namespace: a.namespace, pod: a.pod, container: a.container } : null
}
