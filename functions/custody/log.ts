/**
 * The custody log: every event in an archive's life — created, stored (or not), downloaded (by
 * whom), deleted, an access refused — appended as an entry carrying the hash of the previous entry
 * of the same archive, so a changed or removed entry breaks the chain for every entry after it.
 * One SQL table on both runtimes (D1 on Workers, node:sqlite on Node), through the same driver as
 * the operation store. Entries are only ever inserted.
 */
import { lazySchema, type SqlDriver } from '../operations/store.ts'
import { canonicalJson, sha256Hex } from '../../shared/digest.ts'

export type CustodyEvent = 'created' | 'stored' | 'store_failed' | 'downloaded' | 'deleted' | 'refused' | 'url_issued'

export interface CustodyEntry {
  seq: number
  at: string
  event: CustodyEvent
  actor: { sub: string; client?: string }
  requestId: string
  details: Record<string, unknown>
  /** The hash of the previous entry of this archive ('' for the first). */
  prev: string
  /** SHA-256 (hex) of this entry's content and `prev`. */
  hash: string
}

export interface CustodyLog {
  append(subject: string, e: Pick<CustodyEntry, 'event' | 'actor' | 'requestId' | 'details'>): Promise<CustodyEntry>
  read(subject: string): Promise<CustodyEntry[]>
  /** Archives stored in the vault (their `stored` entries), newest first; `key` picks one object; `offset` pages. */
  stored(filter: { cluster?: string; key?: string; limit: number; offset?: number }): Promise<Array<{ subject: string; at: string; details: Record<string, unknown> }>>
}

/** The subject of an archive's log: where it was made and its name. */
export const custodySubject = (cluster: string, node: string, archive: string) => `${cluster}/${node}/${archive}`

const SCHEMA = [
  `CREATE TABLE IF NOT EXISTS custody_log (
    subject TEXT NOT NULL,
    seq INTEGER NOT NULL,
    at TEXT NOT NULL,
    event TEXT NOT NULL,
    actor TEXT NOT NULL,
    request_id TEXT NOT NULL,
    details TEXT NOT NULL,
    prev TEXT NOT NULL,
    hash TEXT NOT NULL,
    PRIMARY KEY (subject, seq)
  )`,
]

/** The hash an entry must carry, from its content and its predecessor's hash. */
function entryHash(subject: string, e: Omit<CustodyEntry, 'hash'>): Promise<string> {
  return sha256Hex(`${e.prev}\n${canonicalJson({ subject, seq: e.seq, at: e.at, event: e.event, actor: e.actor, requestId: e.requestId, details: e.details })}`)
}

/** Checks a log read back: consecutive numbers from 1, each `prev` the hash before, each hash its content's. */
export async function verifyChain(subject: string, entries: readonly CustodyEntry[]): Promise<{ ok: true } | { ok: false; seq: number; problem: 'gap' | 'link' | 'hash' }> {
  let prev = ''
  for (const [i, e] of entries.entries()) {
    if (e.seq !== i + 1) return { ok: false, seq: i + 1, problem: 'gap' }
    if (e.prev !== prev) return { ok: false, seq: e.seq, problem: 'link' }
    if (e.hash !== (await entryHash(subject, e))) return { ok: false, seq: e.seq, problem: 'hash' }
    prev = e.hash
  }
  return { ok: true }
}

/**
 * @example
 * const custody = sqlCustodyLog(db, () => Date.now())
 * await custody.append(custodySubject('prod', 'node-1', name), { event: 'downloaded', actor: { sub }, requestId, details: { range } })
 */
export function sqlCustodyLog(db: SqlDriver, now: () => number): CustodyLog {
  const init = lazySchema(db, SCHEMA)
  const read = async (subject: string): Promise<CustodyEntry[]> => {
    await init()
    const rows = await db.all('SELECT seq, at, event, actor, request_id, details, prev, hash FROM custody_log WHERE subject = ? ORDER BY seq', [subject])
    return rows.map((r) => ({
      seq: Number(r.seq), at: String(r.at), event: r.event as CustodyEvent, actor: JSON.parse(String(r.actor)) as CustodyEntry['actor'],
      requestId: String(r.request_id), details: JSON.parse(String(r.details)) as Record<string, unknown>, prev: String(r.prev), hash: String(r.hash),
    }))
  }
  return {
    read,
    async stored({ cluster, key, limit, offset = 0 }) {
      await init()
      const where = ["event = 'stored'"]
      const params: (string | number)[] = []
      // Not LIKE: `_` in a cluster id would be a wildcard there.
      if (cluster !== undefined) (where.push('substr(subject, 1, ?) = ?'), params.push(cluster.length + 1, `${cluster}/`))
      if (key !== undefined) (where.push("json_extract(details, '$.key') = ?"), params.push(key))
      const rows = await db.all(`SELECT subject, at, details FROM custody_log WHERE ${where.join(' AND ')} ORDER BY at DESC, subject, seq LIMIT ? OFFSET ?`, [...params, limit, offset])
      return rows.map((r) => ({ subject: String(r.subject), at: String(r.at), details: JSON.parse(String(r.details)) as Record<string, unknown> }))
    },
    async append(subject, e) {
      await init()
      // Two appends racing for the same number: the primary key lets one in, the other reads again.
      for (let attempt = 0; attempt < 8; attempt++) {
        const last = (await db.all('SELECT seq, hash FROM custody_log WHERE subject = ? ORDER BY seq DESC LIMIT 1', [subject]))[0]
        const entry: Omit<CustodyEntry, 'hash'> = { seq: last ? Number(last.seq) + 1 : 1, at: new Date(now()).toISOString(), ...e, prev: last ? String(last.hash) : '' }
        const hash = await entryHash(subject, entry)
        const r = await db.run('INSERT OR IGNORE INTO custody_log (subject, seq, at, event, actor, request_id, details, prev, hash) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)',
          [subject, entry.seq, entry.at, entry.event, JSON.stringify(entry.actor), entry.requestId, JSON.stringify(entry.details), entry.prev, hash])
        if (r.changes === 1) return { ...entry, hash }
      }
      throw new Error(`custody log: could not append to ${subject}`)
    },
  }
}

/**
 * Appends one entry in the background of a request (its `waitUntil`): the answer never waits for
 * the log, and a log that cannot be written is an error line, never a failed request.
 */
export function noteCustody(c: { executionCtx: { waitUntil(p: Promise<unknown>): void }; get(k: 'caller'): { sub: string; client?: string } | undefined; get(k: 'audit'): { requestId: string } },
  custody: CustodyLog | undefined, log: (line: Record<string, unknown>) => void, subject: string, event: CustodyEvent, details: Record<string, unknown> = {}): void {
  if (!custody) return
  const caller = c.get('caller')
  const actor = { sub: caller?.sub ?? '', ...(caller?.client ? { client: caller.client } : {}) }
  c.executionCtx.waitUntil(custody.append(subject, { event, actor, requestId: c.get('audit').requestId, details }).catch((err) => log({ type: 'error', error: `custody log: ${String((err as Error)?.message ?? err)}`, subject })))
}
