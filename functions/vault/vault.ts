/**
 * The evidence vault, gateway side: which investigators an archive is sealed to, where it goes,
 * and the store itself — create a multipart upload, presign one URL per part, hand the agent a
 * plan bound to its grant by digest, relay its progress, check every part it reports against what
 * the storage holds, complete, and record a manifest beside the object. Bytes never pass through
 * the gateway; the node never holds a storage credential; an upload that fails is aborted, so
 * nothing partial is ever listed.
 */
import { CheckpointError, isErrorCode } from '../../shared/errors.ts'
import { ndjsonLines, parseStoreEvent, type SealedEvent, type StoreEvent, type StoredEvent, type StoreFailedEvent } from '../../shared/events.ts'
import { AGENT_PATHS, BUNDLE_MEDIA_TYPE, MAX_PART_MIB, MIN_PART_MIB, type UploadPlanBody } from '../../shared/agent-api.ts'
import type { Target } from '../../shared/names.ts'
import { globToRegExp } from '../authz.ts'
import { agentFailure } from '../problem.ts'
import type { GrantKeys } from '../grants.ts'
import { r2Storage, type R2BucketLike } from './r2.ts'
import { s3Client, type S3Options } from './s3.ts'
import { MAX_PARTS, StorageError, type EvidenceStorage } from './storage.ts'
import { sha256Hex } from '../../shared/digest.ts'

export interface RecipientRule {
  id: string
  clusters: RegExp[]
  namespaces: RegExp[]
  recipients: string[]
}

/** The `r2` backend: a Workers R2 bucket binding, and the gateway's URL as agents and investigators reach it. */
export interface R2Settings {
  binding: string
  /** `https://gateway.example.com` (plus the mount prefix, if any): the part-upload and download URLs start here. */
  publicUrl: string
}

const MiB = 1024 * 1024

export interface VaultConfig {
  backend: 's3' | 'r2'
  /** Set when `backend` is `s3`. */
  s3?: S3Options
  /** Set when `backend` is `r2`. */
  r2?: R2Settings
  /** Bytes per part (5 MiB .. 512 MiB, r2 95 MiB); default 5 MiB (the agent holds up to two while it seals). */
  partSizeBytes: number
  /** Lifetime of each presigned part URL; default 900 s. */
  urlTtlSec: number
  /** `always`: every checkpoint is stored; `request`: when asked (`?store=vault`). */
  store: 'request' | 'always'
  /** Keep the archive on the node after a verified upload (retention still applies). Default true. */
  keepOnNode: boolean
  recipients: RecipientRule[]
}

/** An age X25519 recipient: `age1` and 58 bech32 characters. */
export const AGE_RECIPIENT = /^age1[02-9ac-hj-np-z]{58}$/

/**
 * Parses the `vault` section. S3 credentials are secrets named here (`accessKeyIdSecret`,
 * `secretAccessKeySecret`), resolved by `secret`.
 *
 * @example
 * parseVaultConfig({ backend: 's3', s3: { endpoint: 'https://s3.eu-west-1.amazonaws.com', bucket: 'evidence', region: 'eu-west-1',
 *   accessKeyIdSecret: 'S3_ACCESS_KEY_ID', secretAccessKeySecret: 'S3_SECRET_ACCESS_KEY' },
 *   recipients: [{ id: 'ir', clusters: ['*'], namespaces: ['*'], recipients: ['age1…'] }] }, (n) => env[n])
 */
export function parseVaultConfig(raw: unknown, secret: (name: string) => string | undefined): VaultConfig {
  const v = (raw ?? {}) as Record<string, any>
  const fail = (what: string) => new Error(`config: vault.${what}`)
  if (v.backend !== 's3' && v.backend !== 'r2') throw fail('backend must be "s3" or "r2"')
  const s3 = (v.s3 ?? {}) as Record<string, unknown>
  const r2 = (v.r2 ?? {}) as Record<string, unknown>
  const need = (k: string) => {
    if (typeof s3[k] !== 'string' || s3[k] === '') throw fail(`s3.${k} is required`)
    return s3[k] as string
  }
  const fromSecret = (k: string) => {
    const name = need(k)
    const value = secret(name)
    if (!value) throw fail(`s3.${k}: secret ${name} is not set`)
    return value
  }
  // S3's smallest part (rclone's default too): the agent holds up to two parts while it seals, and
  // its memory is the budget on a node. planParts grows it for archives over 10,000 parts.
  const partMiB = v.partSizeMiB ?? MIN_PART_MIB
  const maxMiB = maxPartMiB(v.backend)
  if (!Number.isInteger(partMiB) || partMiB < MIN_PART_MIB || partMiB > maxMiB) throw fail(`partSizeMiB must be a whole number ${MIN_PART_MIB}..${maxMiB}`)
  const ttl = v.urlTtlSec ?? 900
  if (!Number.isInteger(ttl) || ttl < 60 || ttl > 604_800) throw fail('urlTtlSec must be 60..604800')
  if (v.store !== undefined && v.store !== 'request' && v.store !== 'always') throw fail('store must be "request" or "always"')
  if (v.keepOnNode !== undefined && typeof v.keepOnNode !== 'boolean') throw fail('keepOnNode must be true or false')
  if (!Array.isArray(v.recipients)) throw fail('recipients must be a list of rules')
  const rules = v.recipients.map((r: Record<string, unknown>, i: number): RecipientRule => {
    const id = typeof r?.id === 'string' && r.id ? r.id : `recipients-${i}`
    const globs = (k: string) => {
      const l = r?.[k]
      if (!Array.isArray(l) || l.length === 0 || !l.every((x) => typeof x === 'string' && x)) throw fail(`${id}.${k} must be a list of globs`)
      return (l as string[]).map(globToRegExp)
    }
    const list = r?.recipients
    if (!Array.isArray(list) || list.length === 0 || !list.every((x) => typeof x === 'string' && AGE_RECIPIENT.test(x))) throw fail(`${id}.recipients must be age X25519 recipients (age1…)`)
    return { id, clusters: globs('clusters'), namespaces: globs('namespaces'), recipients: list as string[] }
  })
  const backend = v.backend === 's3'
    ? {
      backend: 's3' as const,
      s3: {
        endpoint: need('endpoint'), bucket: need('bucket'), accessKeyId: fromSecret('accessKeyIdSecret'), secretAccessKey: fromSecret('secretAccessKeySecret'),
        ...(typeof s3.region === 'string' ? { region: s3.region } : {}), ...(s3.style === 'virtual' ? { style: 'virtual' as const } : {}),
      },
    }
    : { backend: 'r2' as const, r2: parseR2(r2, fail) }
  return {
    ...backend,
    partSizeBytes: partMiB * MiB,
    urlTtlSec: ttl,
    store: v.store ?? 'request',
    keepOnNode: v.keepOnNode ?? true,
    recipients: rules,
  }
}

/** Workers' request-body limit on the Free and Pro plans is 100 MB; a part is one request. */
export const R2_MAX_PART_MIB = 95

function parseR2(r2: Record<string, unknown>, fail: (what: string) => Error): R2Settings {
  if (typeof r2.binding !== 'string' || !/^[A-Za-z_][A-Za-z0-9_]*$/.test(r2.binding)) throw fail('r2.binding must name the R2 bucket binding (wrangler.toml [[r2_buckets]] binding)')
  let url: URL | undefined
  try {
    url = typeof r2.publicUrl === 'string' ? new URL(r2.publicUrl) : undefined
  } catch {}
  if (!url || (url.protocol !== 'https:' && url.protocol !== 'http:') || url.search || url.hash || url.username) throw fail('r2.publicUrl must be the gateway\'s http(s) URL as agents reach it (with its mount prefix, no query)')
  return { binding: r2.binding, publicUrl: url.href.replace(/\/$/, '') }
}

/**
 * The storage client of the configured backend. `bucket` finds an R2 binding by name (Workers
 * only); a missing binding is a configuration error naming it.
 */
export function openStorage(cfg: VaultConfig, o: { bucket?: (binding: string) => R2BucketLike | undefined; keys: GrantKeys; now(): number }): EvidenceStorage {
  if (cfg.backend === 's3') return s3Client(cfg.s3!)
  const { binding, publicUrl } = cfg.r2!
  const bucket = o.bucket?.(binding)
  if (!bucket) throw new Error(`config: vault.r2.binding: no R2 bucket binding ${binding} here (Workers only; on Node use the s3 backend with R2's S3 endpoint)`)
  return r2Storage({ bucket, name: binding, publicUrl, keys: o.keys, now: o.now })
}

/** Every recipient of every rule that covers the cluster and namespace (no rule: none). */
export function recipientsFor(cfg: VaultConfig, cluster: string, namespace: string): string[] {
  const out = new Set<string>()
  for (const r of cfg.recipients) {
    if (r.clusters.some((re) => re.test(cluster)) && r.namespaces.some((re) => re.test(namespace))) for (const x of r.recipients) out.add(x)
  }
  return [...out]
}

/** Where a sealed archive lives in the bucket. */
export function objectKey(cluster: string, t: Target, archiveName: string): string {
  return `${cluster}/${t.namespace}/${t.pod}/${t.container}/${archiveName}.zst.age`
}

/** The largest part a backend takes: r2 parts are each one request to the Worker, and Workers refuse bodies over 100 MB (Free and Pro plans). */
function maxPartMiB(backend: unknown): number {
  return backend === 'r2' ? R2_MAX_PART_MIB : MAX_PART_MIB
}

/**
 * The upload plan's shape for an archive of `size` bytes: the configured part size, grown by whole
 * MiB only when the archive would need more than MAX_PARTS parts of it, and how many parts to
 * presign. The sealed object is at most the archive (zstd's worst case adds under 0.1 % on
 * incompressible data) plus age's 16 bytes per 64 KiB chunk and its header; one part more for
 * safety. Unused URLs simply expire. An archive too large even for the backend's largest part is
 * refused before anything is created (`payload_too_large`).
 */
export function planParts(size: number, cfg: Pick<VaultConfig, 'backend' | 'partSizeBytes'>): { partSize: number; parts: number } {
  const worst = size + Math.ceil(size / 1000) + Math.ceil(size / 65_536) * 16 + 64 * 1024
  const fit = Math.ceil(worst / (MAX_PARTS - 1) / MiB) * MiB
  const partSize = Math.max(cfg.partSizeBytes, fit)
  const maxMiB = maxPartMiB(cfg.backend)
  if (partSize > maxMiB * MiB) throw new CheckpointError('payload_too_large', `the archive (${size} bytes) needs more than ${MAX_PARTS} parts of ${maxMiB} MiB, the largest part this vault takes`)
  return { partSize, parts: Math.max(1, Math.ceil(worst / partSize)) + 1 }
}

/** A short fingerprint of a recipient, for metadata and listings (not a secret: recipients are public). */
async function recipientFingerprint(recipient: string): Promise<string> {
  return sha256Hex(recipient, 8)
}

export interface StoreRequest {
  storage: EvidenceStorage
  cfg: VaultConfig
  cluster: string
  target: Target
  archive: { name: string; size: number; sha256: string }
  recipients: string[]
  requestId: string
  /** The agent's signed statement of the archive: stored beside the sealed object (`<key>.statement.json`). */
  statement?: unknown
  /** Signs the agent's store grant for this plan digest (the gateway's grant keys). */
  grant(planSha256: string): Promise<Record<string, string>>
  /** POSTs to the agent (mutual TLS, headers deadline): the agent client's `forward` bound to the node. */
  agent(path: string, init: RequestInit): Promise<Response>
  /** Receives every progress event (sealing, uploading) and the outcome, NDJSON-ready. */
  emit(e: StoreEvent | StoredEvent | StoreFailedEvent): void
  now(): number
}

/**
 * Stores one archive in the vault; resolves with the `stored` or `store_failed` event it emitted
 * last. Never throws for a storage or agent failure: the checkpoint itself has succeeded, and
 * the archive stays on the node.
 */
export async function storeArchive(r: StoreRequest): Promise<StoredEvent | StoreFailedEvent> {
  const time = () => new Date(r.now()).toISOString()
  const key = objectKey(r.cluster, r.target, r.archive.name)
  const fingerprints = await Promise.all(r.recipients.map(recipientFingerprint))
  let uploadId: string | undefined
  const failed = async (err: unknown): Promise<StoreFailedEvent> => {
    const e = err instanceof CheckpointError ? err : err instanceof StorageError ? new CheckpointError(err.code, err.message) : new CheckpointError('internal', String((err as Error)?.message ?? err))
    if (uploadId) await r.storage.abortMultipartUpload(key, uploadId).catch(() => {})
    const ev: StoreFailedEvent = { type: 'store_failed', code: e.code, status: e.status, message: e.message, time: time() }
    r.emit(ev)
    return ev
  }
  try {
    const { partSize, parts } = planParts(r.archive.size, r.cfg)
    uploadId = await r.storage.createMultipartUpload(key, { 'archive-name': r.archive.name, 'request-id': r.requestId })
    const urls = await Promise.all(Array.from({ length: parts }, (_, i) => r.storage.presignUploadPart(key, uploadId!, i + 1, r.cfg.urlTtlSec)))
    const body = JSON.stringify({ recipients: r.recipients, partSize, urls } satisfies UploadPlanBody)
    const headers = await r.grant(await sha256Hex(body))
    const res = await r.agent(AGENT_PATHS.store(r.archive.name), { method: 'POST', headers: { ...headers, 'content-type': 'application/json', accept: 'application/x-ndjson' }, body })
    const sealed = await relayStore(res, r.emit)
    // The storage's own list must hold exactly the parts the agent reports, before anything is completed.
    const held = await r.storage.listParts(key, uploadId)
    const same = held.length === sealed.parts.length && held.every((p, i) => p.partNumber === sealed.parts[i]!.partNumber && p.etag === sealed.parts[i]!.etag && p.size === sealed.parts[i]!.size)
    if (!same || sealed.parts.reduce((s, p) => s + p.size, 0) !== sealed.sealed.size) throw new CheckpointError('storage_rejected', 'the parts the storage holds are not the parts the agent sealed')
    if (sealed.plaintext.sha256 !== r.archive.sha256 && r.archive.sha256 !== '') throw new CheckpointError('checkpoint_failed', 'the archive the agent sealed is not the one it reported')
    await r.storage.completeMultipartUpload(key, uploadId, sealed.parts)
    uploadId = undefined
    // The statement travels with the evidence: whoever can read the object can check where it came from.
    // The agent's statement signed again with the sealed object as a subject, else the one it made at completion.
    const statement = sealed.statement ?? r.statement
    const statementKey = statement !== undefined ? `${key}.statement.json` : undefined
    if (statementKey) await r.storage.putObject(statementKey, JSON.stringify(statement), BUNDLE_MEDIA_TYPE)
    const ev: StoredEvent = { type: 'stored', bucket: r.storage.bucket, key, plaintext: sealed.plaintext, sealed: sealed.sealed, recipients: fingerprints, parts: sealed.parts.length, ...(statementKey ? { statementKey } : {}), time: time() }
    r.emit(ev)
    return ev
  } catch (err) {
    return failed(err)
  }
}

/** Passes the agent's progress on and returns its `sealed` event; a failure or a cut throws. */
async function relayStore(res: Response, emit: (e: StoreEvent) => void): Promise<SealedEvent> {
  if (res.status !== 200 || !res.body) {
    // Only a refusal of the investigators' keys or a busy node says something to the caller;
    // anything else the agent answers is the gateway's problem.
    const { err } = await agentFailure(res)
    throw new CheckpointError(err.code === 'invalid_recipient' || err.code === 'too_many_requests' ? err.code : 'bad_gateway', err.message)
  }
  try {
    for await (const line of ndjsonLines(res.body)) {
      if (!line.trim()) continue
      let e: StoreEvent
      try {
        e = parseStoreEvent(line)
      } catch {
        throw new CheckpointError('bad_gateway', 'the agent\'s store stream carried a line that is not a store event')
      }
      if (e.type === 'sealed') return e
      if (e.type === 'failed') throw new CheckpointError(isErrorCode(e.code) ? e.code : 'bad_gateway', e.message)
      emit(e)
    }
  } catch (err) {
    // A cut connection (the agent died or restarted) is the agent's stream ending early, not ours failing.
    if (err instanceof CheckpointError) throw err
    throw new CheckpointError('bad_gateway', `the agent's store stream was cut (${String((err as Error)?.message ?? err).slice(0, 120)})`, { cause: err })
  }
  throw new CheckpointError('bad_gateway', 'the agent\'s store stream ended without an outcome')
}

