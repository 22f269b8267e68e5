/**
 * The agents' statement keys, collected by the gateway per cluster and node: when a checkpoint
 * completes with a statement signed by a key the gateway has not seen for that node, it asks the
 * node's agent for its public keys (`GET /statement-keys`, over the same mutual TLS as every agent
 * call) and records each one whose key id is the SHA-256 of its SubjectPublicKeyInfo. Investigators
 * then verify statements against keys the gateway saw from the authenticated agent
 * (`GET /v1/clusters/{cluster}/statement-keys`), not keys someone mailed them. Rows are only added.
 */
import type { Handler } from 'hono'
import { AGENT_PATHS } from '../../shared/agent-api.ts'
import { checkName, checkQuery } from '../../shared/names.ts'
import type { AgentClient } from '../agent-client.ts'
import type { AuditTrail } from '../audit.ts'
import { decide } from '../authz.ts'
import type { ClusterConfig, GatewayConfig } from '../config.ts'
import { NO_STORE, type Env } from '../context.ts'
import { lazySchema, type SqlDriver } from '../operations/store.ts'
import { clusterOf } from '../request.ts'

export interface StatementKey {
  node: string
  /** SHA-256 (hex) of the key's SubjectPublicKeyInfo: the DSSE key id; the bundle's hint is its base64. */
  keyid: string
  alg: string
  /** PEM (SPKI). */
  publicKey: string
  firstSeen: string
}

export interface StatementKeyStore {
  has(cluster: string, node: string, keyid: string): Promise<boolean>
  add(cluster: string, node: string, keys: Array<Pick<StatementKey, 'keyid' | 'alg' | 'publicKey'>>): Promise<void>
  list(cluster: string, node?: string): Promise<StatementKey[]>
}

const SCHEMA = `CREATE TABLE IF NOT EXISTS statement_keys (
  cluster TEXT NOT NULL, node TEXT NOT NULL, keyid TEXT NOT NULL, alg TEXT NOT NULL, public_key TEXT NOT NULL, first_seen TEXT NOT NULL,
  PRIMARY KEY (cluster, node, keyid)
)`

export function sqlStatementKeys(db: SqlDriver, now: () => number): StatementKeyStore {
  const init = lazySchema(db, [SCHEMA])
  return {
    async has(cluster, node, keyid) {
      await init()
      return (await db.all('SELECT 1 AS x FROM statement_keys WHERE cluster = ? AND node = ? AND keyid = ?', [cluster, node, keyid])).length > 0
    },
    async add(cluster, node, keys) {
      await init()
      const at = new Date(now()).toISOString()
      for (const k of keys) await db.run('INSERT OR IGNORE INTO statement_keys (cluster, node, keyid, alg, public_key, first_seen) VALUES (?, ?, ?, ?, ?, ?)', [cluster, node, k.keyid, k.alg, k.publicKey, at])
    },
    async list(cluster, node) {
      await init()
      const rows = node === undefined
        ? await db.all('SELECT node, keyid, alg, public_key, first_seen FROM statement_keys WHERE cluster = ? ORDER BY node, first_seen', [cluster])
        : await db.all('SELECT node, keyid, alg, public_key, first_seen FROM statement_keys WHERE cluster = ? AND node = ? ORDER BY first_seen', [cluster, node])
      return rows.map((r) => ({ node: String(r.node), keyid: String(r.keyid), alg: String(r.alg), publicKey: String(r.public_key), firstSeen: String(r.first_seen) }))
    },
  }
}

const hex = (b: ArrayBuffer) => [...new Uint8Array(b)].map((x) => x.toString(16).padStart(2, '0')).join('')

/** The public-key hint of a signed statement (a Sigstore bundle), if it has one. */
export function statementHint(statement: unknown): string | undefined {
  return (statement as { verificationMaterial?: { publicKey?: { hint?: string } } } | undefined)?.verificationMaterial?.publicKey?.hint
}

/** The key id a bundle's public-key hint names (base64 of the SPKI SHA-256), or undefined. */
export function keyidOfHint(hint: unknown): string | undefined {
  if (typeof hint !== 'string' || !/^[A-Za-z0-9+/]{43}=$/.test(hint)) return undefined
  return [...atob(hint)].map((ch) => ch.charCodeAt(0).toString(16).padStart(2, '0')).join('')
}

/** SHA-256 (hex) of a PEM public key's DER: what its key id must be. */
async function spkiDigest(pem: string): Promise<string | undefined> {
  const m = /-----BEGIN PUBLIC KEY-----([A-Za-z0-9+/=\s]+)-----END PUBLIC KEY-----/.exec(pem)
  if (!m) return undefined
  const der = Uint8Array.from(atob(m[1]!.replace(/\s+/g, '')), (ch) => ch.charCodeAt(0))
  return hex(await crypto.subtle.digest('SHA-256', der))
}

/**
 * Records the node's statement keys when `hint` (from a completed event's statement) names one not
 * yet recorded. Never throws: a key that cannot be collected leaves the statement unverifiable
 * through the gateway, not the checkpoint failed.
 */
export async function collectStatementKeys(store: StatementKeyStore, agent: AgentClient, cl: ClusterConfig, node: string, hint: unknown, log: (line: Record<string, unknown>) => void): Promise<void> {
  const keyid = keyidOfHint(hint)
  if (!keyid) return
  try {
    if (await store.has(cl.id, node, keyid)) return
    const res = await agent.forward(cl, node, AGENT_PATHS.statementKeys(), { method: 'GET', headers: {} })
    if (res.status !== 200) {
      await res.body?.cancel()
      throw new Error(`the agent answered ${res.status}`)
    }
    const body = (await res.json()) as { keys?: Array<{ keyid?: unknown; alg?: unknown; publicKey?: unknown }> }
    const keys: Array<Pick<StatementKey, 'keyid' | 'alg' | 'publicKey'>> = []
    for (const k of body.keys ?? []) {
      if (typeof k.keyid !== 'string' || typeof k.alg !== 'string' || typeof k.publicKey !== 'string') continue
      // A key id that is not its key's digest is not recorded: a statement naming it could not be checked against it.
      if ((await spkiDigest(k.publicKey)) !== k.keyid) continue
      keys.push({ keyid: k.keyid, alg: k.alg, publicKey: k.publicKey })
    }
    await store.add(cl.id, node, keys)
    if (!keys.some((k) => k.keyid === keyid)) log({ type: 'error', error: `statement keys: node ${node} of ${cl.id} does not publish the key ${keyid.slice(0, 16)}… its statement names` })
  } catch (err) {
    log({ type: 'error', error: `statement keys: node ${node} of ${cl.id}: ${String((err as Error)?.message ?? err)}` })
  }
}

/** `GET /v1/clusters/{cluster}/statement-keys[?node=]`: the keys collected, for whoever may read the cluster's archives. */
export function createStatementKeysHandler({ config, trail, keys }: { config: GatewayConfig; trail: AuditTrail; keys: StatementKeyStore }): Handler<Env> {
  return async function statementKeys(c) {
    const q = new URL(c.req.url).searchParams
    checkQuery(q, ['node'])
    const cluster = checkName('cluster', c.req.param('cluster'))
    const node = q.get('node') === null ? undefined : checkName('node', q.get('node')!)
    Object.assign(c.get('audit'), { cluster, ...(node ? { node } : {}) })
    trail.authorize(c, 'read', decide(config.policy, c.get('caller'), 'read', { cluster }))
    clusterOf(config, cluster)
    return c.json({ cluster, keys: await keys.list(cluster, node) }, 200, NO_STORE)
  }
}
