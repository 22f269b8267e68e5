/**
 * `/v1/admin/config`: the configuration as versioned documents. `GET` reads the newest version
 * with its `ETag`; `PUT` with `If-Match` stores a new one (or, `?dryRun=true`, only says what it
 * would change); `GET …/history` lists the versions with who stored them. Every route needs the
 * `checkpoint:admin` scope and a policy rule with the `admin` action, and is audited like the
 * others (decision and outcome lines).
 *
 * A PUT is a line of guards: read the body (413) → authorize → refuse a read-only source (409) →
 * preconditions (428, 412) → parse and validate exactly as the runtime will run it (400
 * `invalid_config`, naming the field) → summarize → store (412 if another writer came first) →
 * activate here.
 */
import type { Handler } from 'hono'
import { CheckpointError } from '../../shared/errors.ts'
import { checkQuery, parseLimit } from '../../shared/names.ts'
import type { AuditTrail } from '../audit.ts'
import { decide } from '../authz.ts'
import type { GatewayConfig } from '../config.ts'
import { NO_STORE, type AdminDeps, type Ctx, type Env } from '../context.ts'
import { readBody } from '../hooks/body.ts'
import { refuseBody } from '../request.ts'
import { summarize } from './diff.ts'
import type { ConfigVersion } from './model.ts'

export interface AdminRouteDeps {
  /** The active configuration: its policy decides who may administer it. */
  config: GatewayConfig
  admin: AdminDeps
  trail: AuditTrail
}

/**
 * The largest document a PUT takes. A 5,000-rule, 1,000-cluster fleet is ≈ 0.7 MB of JSON; one
 * version is one database row, and D1 caps a row at 2 MB (Cloudflare's limits page; not verified here).
 */
const MAX_DOCUMENT_BYTES = 1_500_000

const HISTORY_DEFAULT = 50
const HISTORY_MAX = 500

function authorizeAdmin(c: Ctx, { config, trail }: AdminRouteDeps): void {
  // Admin rules cover clusters ["*"] (parsePolicy insists), so any cluster name asks the same question.
  trail.authorize(c, 'admin', decide(config.policy, c.get('caller'), 'admin', { cluster: '*' }))
}

const versionHeaders = (v: Pick<ConfigVersion, 'version' | 'etag'>, kind: string) => ({ etag: v.etag, 'x-config-version': String(v.version), 'x-config-source': kind, ...NO_STORE })

/** `GET /v1/admin/config`: the newest document as stored, its tag in `ETag`. */
export function createConfigGetHandler(deps: AdminRouteDeps): Handler<Env> {
  const { source } = deps.admin
  return async function getConfig(c) {
    refuseBody(c)
    checkQuery(new URL(c.req.url).searchParams, [])
    authorizeAdmin(c, deps)
    const v = await source.latest()
    c.get('audit').configVersion = v.version
    return c.body(v.document, 200, { 'content-type': 'application/json', ...versionHeaders(v, source.kind) })
  }
}

/** `PUT /v1/admin/config[?dryRun=true]` with `If-Match` and the whole document as the body. */
export function createConfigPutHandler(deps: AdminRouteDeps): Handler<Env> {
  const { source, validate, activate } = deps.admin
  const { trail } = deps
  return async function putConfig(c) {
    // Read first: workerd resets a connection whose answer (a 403, a 400) beats the unread body.
    const bytes = await readBody(c.req.raw, MAX_DOCUMENT_BYTES)
    const q = new URL(c.req.url).searchParams
    checkQuery(q, ['dryRun'])
    const dryRun = flag(q.get('dryRun'))
    const audit = c.get('audit')
    if (dryRun) audit.dryRun = true
    authorizeAdmin(c, deps)
    const ifMatch = c.req.header('if-match')
    if (!dryRun && source.kind !== 'store') {
      throw new CheckpointError('conflict', `the configuration source is ${source.kind}, which is read-only: set GATEWAY_CONFIG_SOURCE=store to change it through this API (a dry run still works)`, { extra: { source: source.kind } })
    }
    if (!dryRun && ifMatch === undefined) {
      throw new CheckpointError('precondition_required', 'If-Match is required: send the ETag of the version this document replaces (GET /v1/admin/config)')
    }
    const base = await source.latest()
    if (ifMatch !== undefined && !matches(ifMatch, base.etag)) {
      throw new CheckpointError('precondition_failed', `If-Match does not name the newest version (${base.version}): read it again and redo the change on top of it`, { extra: { etag: base.etag, version: base.version } })
    }
    const raw = parseDocument(bytes)
    checkDocument(raw, validate)
    const summary = summarize(JSON.parse(base.document), raw)
    if (dryRun) return c.json({ dryRun: true, base: { version: base.version, etag: base.etag }, summary }, 200, NO_STORE)

    const document = JSON.stringify(raw)
    if (document === base.document) {
      audit.configVersion = base.version
      return c.json({ version: base.version, etag: base.etag, unchanged: true, summary }, 200, versionHeaders(base, source.kind))
    }
    const next = await source.append({ base, document, author: c.get('caller').sub, summary })
    if (!next) throw new CheckpointError('precondition_failed', 'another change was stored first: read the configuration again and redo the change on top of it')
    audit.configVersion = next.version
    trail.log({ type: 'config_changed', requestId: audit.requestId, sub: next.author, version: next.version, etag: next.etag, previous: base.version })
    await activate()
    return c.json({ version: next.version, etag: next.etag, summary }, 200, versionHeaders(next, source.kind))
  }
}

/** `GET /v1/admin/config/history[?limit=]`: versions newest first, each with author, time and summary. */
export function createConfigHistoryHandler(deps: AdminRouteDeps): Handler<Env> {
  const { source } = deps.admin
  return async function configHistory(c) {
    refuseBody(c)
    const q = new URL(c.req.url).searchParams
    checkQuery(q, ['limit'])
    const limit = parseLimit(q.get('limit'), HISTORY_DEFAULT, HISTORY_MAX)
    authorizeAdmin(c, deps)
    const items = await source.history(limit)
    return c.json({ source: source.kind, items: items.map((e) => ({ ...e, createdAt: new Date(e.createdAt).toISOString() })) }, 200, NO_STORE)
  }
}

function flag(v: string | null): boolean {
  if (v === null || v === 'false') return false
  if (v === 'true') return true
  throw new CheckpointError('invalid_query', 'dryRun: true or false', { field: 'dryRun' })
}

/** RFC 9110 If-Match: `*`, or a list of entity tags compared strongly (a weak tag never matches). */
function matches(header: string, etag: string): boolean {
  const h = header.trim()
  if (h === '*') return true
  return h.split(',').some((t) => t.trim() === etag)
}

function parseDocument(bytes: Uint8Array): unknown {
  let text: string
  try {
    text = new TextDecoder('utf-8', { fatal: true }).decode(bytes)
  } catch {
    throw new CheckpointError('invalid_config', 'config: the document is not UTF-8')
  }
  try {
    return JSON.parse(text)
  } catch {
    throw new CheckpointError('invalid_config', 'config: the document is not valid JSON')
  }
}

/** Validation as the runtime runs it, and one rule of the API's own: someone must still be able to change it. */
function checkDocument(raw: unknown, validate: AdminDeps['validate']): void {
  let config: GatewayConfig
  try {
    config = validate(raw)
  } catch (err) {
    if (err instanceof CheckpointError) throw err
    throw new CheckpointError('invalid_config', err instanceof Error ? err.message : String(err))
  }
  if (!config.policy.rules.some((r) => r.actions.includes('admin'))) {
    throw new CheckpointError('invalid_config', 'config: policy.rules: no rule grants the admin action, so nobody could change the configuration through this API again')
  }
}
