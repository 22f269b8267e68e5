/**
 * Stored evidence for investigators: `GET /v1/evidence?cluster=&namespace=&pod=&limit=` lists the
 * archives stored in the vault that the caller may read (from the custody log's `stored` entries);
 * `GET /v1/evidence/{key}` answers with a short-lived presigned download URL for one sealed object
 * plus its digests — and every URL issued is a custody entry naming to whom.
 */
import type { Handler } from 'hono'
import { CheckpointError } from '../../shared/errors.ts'
import { checkName, checkQuery, parseLimit } from '../../shared/names.ts'
import type { AuditTrail } from '../audit.ts'
import { decide } from '../authz.ts'
import type { GatewayConfig } from '../config.ts'
import { NO_STORE, type Env } from '../context.ts'
import { noteCustody, type CustodyLog } from '../custody/log.ts'
import type { EvidenceStorage } from './storage.ts'

export interface EvidenceRouteDeps {
  config: GatewayConfig
  trail: AuditTrail
  custody: CustodyLog
  storage: EvidenceStorage
  /** Prefix of the links the gateway writes (Deps.basePath). */
  basePath: string
}

/** `<cluster>/<namespace>/<pod>/<container>/<archive>.zst.age` → its parts (see objectKey). */
function targetOfKey(key: string): { cluster: string; namespace: string; pod: string; container: string; archive: string } | null {
  const m = /^([^/]+)\/([^/]+)\/([^/]+)\/([^/]+)\/([^/]+)\.zst\.age$/.exec(key)
  return m ? { cluster: m[1]!, namespace: m[2]!, pod: m[3]!, container: m[4]!, archive: m[5]! } : null
}

const URL_TTL_SEC = 300
/** Custody rows read per page, and at most per listing. */
const PAGE = 1000
const MAX_SCAN = 100_000

function view(e: { subject: string; at: string; details: Record<string, unknown> }) {
  const key = String(e.details.key)
  const t = targetOfKey(key)!
  return { id: key, ...t, node: e.subject.split('/')[1], storedAt: e.at, bucket: e.details.bucket, sealed: e.details.sealed, plaintext: e.details.plaintext, recipients: e.details.recipients }
}

export function createEvidenceListHandler({ config, trail, custody }: EvidenceRouteDeps): Handler<Env> {
  return async function listEvidence(c) {
    const q = new URL(c.req.url).searchParams
    checkQuery(q, ['cluster', 'namespace', 'pod', 'limit'])
    const cluster = q.get('cluster') === null ? undefined : checkName('cluster', q.get('cluster')!)
    const namespace = q.get('namespace') === null ? undefined : checkName('namespace', q.get('namespace')!)
    const pod = q.get('pod') === null ? undefined : checkName('pod', q.get('pod')!)
    const limit = parseLimit(q.get('limit'), 100, 500)
    const caller = c.get('caller')
    if (!caller.scopes.has('checkpoint:read')) trail.authorize(c, 'read', { allow: false, missing: 'scope checkpoint:read' })
    // Page through the log until `limit` readable items are found or it ends: a caller who may read
    // little must not get a short list only because others' evidence is newer. A scan that hits
    // its bound says so (`incomplete`) rather than passing for the whole list.
    const items: ReturnType<typeof view>[] = []
    let offset = 0
    let ended = false
    while (items.length < limit && offset < MAX_SCAN) {
      const page = await custody.stored({ ...(cluster ? { cluster } : {}), limit: PAGE, offset })
      offset += page.length
      ended = page.length < PAGE
      items.push(...page
        .filter((e) => targetOfKey(String(e.details.key)) !== null)
        .map(view)
        .filter((e) => (!namespace || e.namespace === namespace) && (!pod || e.pod === pod))
        .filter((e) => decide(config.policy, caller, 'read', e).allow))
      if (ended) break
    }
    const incomplete = items.length < limit && !ended
    return c.json({ items: items.slice(0, limit), ...(incomplete ? { incomplete } : {}) }, 200, NO_STORE)
  }
}

export function createEvidenceUrlHandler({ config, trail, custody, storage, basePath }: EvidenceRouteDeps): Handler<Env> {
  return async function evidenceUrl(c) {
    checkQuery(new URL(c.req.url).searchParams, [])
    const key = c.req.param('id') ?? ''
    const t = targetOfKey(key)
    if (!t) throw new CheckpointError('invalid_archive_name', 'not an evidence id: <cluster>/<namespace>/<pod>/<container>/<archive>.zst.age', { field: 'id' })
    Object.assign(c.get('audit'), { cluster: t.cluster, namespace: t.namespace, pod: t.pod, container: t.container, archive: t.archive })
    trail.authorize(c, 'read', decide(config.policy, c.get('caller'), 'read', t))
    const found = (await custody.stored({ key, limit: 1 }))[0]
    if (!found) throw new CheckpointError('archive_not_found', `no stored evidence ${key}`)
    const url = await storage.presignGet(key, URL_TTL_SEC)
    const statementKey = typeof found.details.statementKey === 'string' ? found.details.statementKey : undefined
    const statementUrl = statementKey ? await storage.presignGet(statementKey, URL_TTL_SEC) : undefined
    noteCustody(c, custody, trail.log, found.subject, 'url_issued', { key, expiresSec: URL_TTL_SEC })
    return c.json({ ...view(found), url, ...(statementUrl ? { statementUrl } : {}), custody: `${basePath}/v1/custody/${found.subject.split('/').map(encodeURIComponent).join('/')}?namespace=${t.namespace}`, expiresAt: new Date(Date.now() + URL_TTL_SEC * 1000).toISOString() }, 200, NO_STORE)
  }
}
