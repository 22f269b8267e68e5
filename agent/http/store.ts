/**
 * POST /checkpoints/{name}/store: seals an archive (zstd, then age to the plan's recipients) and
 * PUTs it part by part to the presigned URLs of the plan, streaming progress as NDJSON. The grant
 * (op `checkpoint:store`) names the archive, the namespaces it was authorized in, and the SHA-256
 * of the exact plan body, so the gateway's plan cannot be swapped in transit. One store runs at a
 * time: sealing is the heaviest thing the agent does, and a checkpoint must never wait behind it
 * for CPU for long.
 */
import { createHash } from 'node:crypto'
import { asCheckpointError, CheckpointError } from '../../shared/errors.ts'
import { encodeEvent, NDJSON, type StoreEvent } from '../../shared/events.ts'
import { MAX_PART_MIB, MAX_PLAN_BYTES, MIN_PART_MIB, type UploadPlanBody } from '../../shared/agent-api.ts'
import { checkGrantCoversArchive } from '../../shared/grant.ts'
import { checkQuery } from '../../shared/names.ts'
import { AgeError, parseRecipient, type Recipient } from '../seal/age.ts'
import { seal } from '../seal/seal.ts'
import { uploadParts } from '../seal/upload.ts'
import type { AgentDeps, Ctx } from './context.ts'
import { recordedTarget } from './archives.ts'

const MiB = 1024 * 1024

/** Agents whose store is running (one at a time per agent; tests run several agents in a process). */
const storing = new WeakSet<AgentDeps>()

async function readPlan(ctx: Ctx): Promise<{ raw: Buffer; plan: UploadPlanBody }> {
  const chunks: Buffer[] = []
  let n = 0
  // Not destroyed when refused half-read: the server answers, then closes (agent/http/server.ts).
  for await (const c of ctx.req.iterator({ destroyOnReturn: false }) as AsyncIterable<Buffer>) {
    n += c.length
    if (n > MAX_PLAN_BYTES) throw new CheckpointError('payload_too_large', `the upload plan is larger than ${MAX_PLAN_BYTES} bytes`)
    chunks.push(c)
  }
  const raw = Buffer.concat(chunks)
  let plan: Partial<UploadPlanBody>
  try {
    plan = JSON.parse(raw.toString('utf8')) as Partial<UploadPlanBody>
  } catch {
    throw new CheckpointError('invalid_body', 'the upload plan is not JSON', { field: 'body' })
  }
  const bad = (field: string, why: string) => new CheckpointError('invalid_body', `${field}: ${why}`, { field })
  if (!Array.isArray(plan.recipients) || plan.recipients.length === 0 || plan.recipients.length > 64 || !plan.recipients.every((r) => typeof r === 'string')) throw bad('recipients', '1..64 age recipients')
  if (!Number.isInteger(plan.partSize) || plan.partSize! < MIN_PART_MIB * MiB || plan.partSize! > MAX_PART_MIB * MiB) throw bad('partSize', `${MIN_PART_MIB} MiB..${MAX_PART_MIB} MiB`)
  if (!Array.isArray(plan.urls) || plan.urls.length === 0 || plan.urls.length > 10_000 || !plan.urls.every((u) => typeof u === 'string' && /^https?:\/\//.test(u))) throw bad('urls', '1..10000 http(s) URLs')
  return { raw, plan: plan as UploadPlanBody }
}

export async function store(ctx: Ctx, d: AgentDeps): Promise<void> {
  const { req, res, log } = ctx
  const name = ctx.params[0]!
  checkQuery(ctx.query, [])
  const grant = await d.grants.verify(req.headers.authorization, { op: 'checkpoint:store', archive: name })
  const { raw, plan } = await readPlan(ctx)
  if (grant.plan !== createHash('sha256').update(raw).digest('hex')) {
    throw new CheckpointError('grant_mismatch', 'grant does not cover this request: plan differs', { field: 'plan' })
  }
  const archive = await d.store.get(name)
  checkGrantCoversArchive(grant, name, recordedTarget(archive))
  const recipients: Recipient[] = plan.recipients.map((r, i) => {
    try {
      return parseRecipient(r)
    } catch (err) {
      if (err instanceof AgeError) throw new CheckpointError('invalid_recipient', `recipients[${i}]: not an age X25519 recipient (age1…)`, { field: `recipients[${i}]` })
      throw err
    }
  })
  if (storing.has(d)) throw new CheckpointError('too_many_requests', 'an archive is being sealed on this node', { headers: { 'retry-after': '30' } })
  storing.add(d)
  const now = () => new Date().toISOString()
  const send = (e: StoreEvent) => {
    if (!res.writableEnded && !res.destroyed) res.write(encodeEvent(e))
  }
  const stop = new AbortController()
  // The caller going away stops the work: nothing would complete the upload.
  res.once('close', () => { if (!res.writableFinished) stop.abort(new Error('the caller went away')) })
  try {
    res.writeHead(200, { 'content-type': NDJSON, 'cache-control': 'no-store', 'x-accel-buffering': 'no' })
    let parts: Awaited<ReturnType<typeof uploadParts>> = []
    const sealed = await seal(archive.path, recipients, async (bytes, { signal }) => {
      parts = await uploadParts(bytes, plan, {
        signal,
        onPart: (p, sentBytes) => send({ type: 'uploading', part: p.partNumber, sentBytes, time: now() }),
      })
    }, { signal: stop.signal, onProgress: (p) => send({ type: 'sealing', read: p.read, total: p.total, sealed: p.sealed, time: now() }) })
    const statement = await d.attestSealed?.(name, { name: `${name}.zst.age`, ...sealed.sealed }).catch((err) => {
      log.error('sealed statement not signed', { archive: name, err })
      return undefined
    })
    send({ type: 'sealed', plaintext: sealed.plaintext, sealed: sealed.sealed, parts, ...(statement !== undefined ? { statement } : {}), time: now() })
    log.info('archive sealed and uploaded', { sub: grant.sub, archive: name, parts: parts.length, sealedSize: sealed.sealed.size, sealedSha256: sealed.sealed.sha256 })
  } catch (err) {
    const e = asCheckpointError(err)
    log.warn('archive not stored', { archive: name, code: e.code, err: e })
    send({ type: 'failed', status: e.status, code: e.code, message: e.message, ...(e.field ? { field: e.field } : {}), time: now() })
  } finally {
    storing.delete(d)
    res.end()
  }
}
