/**
 * The operation store in SQL. The handlers and the job runner see only {@link OperationStore}
 * (model.ts); the SQL lives here once and runs on two drivers — D1 on Workers (workers/d1.ts) and
 * node:sqlite on Node (node/sqlite.ts) — because both speak SQLite.
 *
 * Why D1 rather than KV on Workers: the status API filters by cluster, namespace, alert and
 * state, dedup needs an atomic "insert unless this alert instance or a recent checkpoint of the
 * target exists", and a job claim needs compare-and-set on the state. KV has none of these
 * (eventually consistent, no conditional writes, no secondary queries); D1 has all three.
 */
import type { HookSource, OperationRecord, OperationState, OperationStore } from './model.ts'

/** The two calls the SQL store needs from a driver. Parameters are positional `?`. */
export interface SqlDriver {
  run(sql: string, params: SqlValue[]): Promise<{ changes: number }>
  all(sql: string, params: SqlValue[]): Promise<Array<Record<string, unknown>>>
}

export type SqlValue = string | number | null

/**
 * A table's schema, created on first use: `ensure()` runs `statements` (then `after`, for
 * migrations) once; concurrent callers share the run, and a failed one is tried again next time.
 */
export function lazySchema(db: SqlDriver, statements: readonly string[], after: () => Promise<void> = async () => {}): () => Promise<void> {
  let ready: Promise<void> | undefined
  return () => (ready ??= (async () => {
    for (const s of statements) await db.run(s, [])
    await after()
  })().catch((err) => {
    ready = undefined
    throw err
  }))
}

export const SCHEMA = [
  `CREATE TABLE IF NOT EXISTS operations (
    id TEXT PRIMARY KEY,
    dedup_key TEXT UNIQUE,
    target_key TEXT NOT NULL,
    state TEXT NOT NULL,
    source TEXT NOT NULL,
    alert TEXT NOT NULL,
    fingerprint TEXT NOT NULL,
    starts_at TEXT NOT NULL,
    cluster TEXT NOT NULL,
    namespace TEXT NOT NULL,
    pod TEXT NOT NULL,
    container TEXT NOT NULL,
    node TEXT,
    sub TEXT NOT NULL,
    attempts INTEGER NOT NULL,
    created_at INTEGER NOT NULL,
    updated_at INTEGER NOT NULL,
    not_before INTEGER,
    detail TEXT,
    dispatched_at INTEGER
  )`,
  'CREATE INDEX IF NOT EXISTS operations_target ON operations (target_key, created_at)',
  'CREATE INDEX IF NOT EXISTS operations_scope ON operations (cluster, namespace, created_at)',
  'CREATE INDEX IF NOT EXISTS operations_state ON operations (state, not_before)',
]

/**
 * Columns added after the first release: tables created before them get an ALTER. Each is probed
 * first (a SELECT of the column), so the migration is idempotent and cheap, and a second isolate
 * racing the same ALTER ("duplicate column") is fine as long as the probe then succeeds.
 */
const ADDED_COLUMNS: ReadonlyArray<{ column: string; type: string }> = [{ column: 'dispatched_at', type: 'INTEGER' }]

const COLUMNS = 'id, dedup_key, target_key, state, source, alert, fingerprint, starts_at, cluster, namespace, pod, container, node, sub, attempts, created_at, updated_at, not_before, detail, dispatched_at'
/** One `?` per column of {@link COLUMNS}. */
const MARKS = COLUMNS.split(',').map(() => '?').join(', ')

function targetKey(o: { cluster: string; namespace: string; pod: string; container: string }): string {
  return `${o.cluster}/${o.namespace}/${o.pod}/${o.container}`
}

function values(op: OperationRecord): SqlValue[] {
  return [
    op.id,
    op.dedupKey ?? null,
    targetKey(op),
    op.state,
    op.source,
    op.alert,
    op.fingerprint,
    op.startsAt,
    op.cluster,
    op.namespace,
    op.pod,
    op.container,
    op.node ?? null,
    op.sub,
    op.attempts,
    op.createdAt,
    op.updatedAt,
    op.notBefore ?? null,
    detail(op),
    op.dispatchedAt ?? null,
  ]
}

function detail(op: Partial<OperationRecord>): string | null {
  const d: Record<string, unknown> = {}
  if (op.reason !== undefined) d.reason = op.reason
  if (op.result !== undefined) d.result = op.result
  if (op.error !== undefined) d.error = op.error
  return Object.keys(d).length ? JSON.stringify(d) : null
}

function fromRow(r: Record<string, unknown>): OperationRecord {
  const op: OperationRecord = {
    id: String(r.id),
    state: r.state as OperationState,
    source: r.source as HookSource,
    alert: String(r.alert),
    fingerprint: String(r.fingerprint),
    startsAt: String(r.starts_at),
    cluster: String(r.cluster),
    namespace: String(r.namespace),
    pod: String(r.pod),
    container: String(r.container),
    sub: String(r.sub),
    attempts: Number(r.attempts),
    createdAt: Number(r.created_at),
    updatedAt: Number(r.updated_at),
  }
  if (r.dedup_key != null) op.dedupKey = String(r.dedup_key)
  if (r.node != null) op.node = String(r.node)
  if (r.not_before != null) op.notBefore = Number(r.not_before)
  if (r.dispatched_at != null) op.dispatchedAt = Number(r.dispatched_at)
  if (typeof r.detail === 'string') {
    const d = JSON.parse(r.detail) as Pick<OperationRecord, 'reason' | 'result' | 'error'>
    if (d.reason !== undefined) op.reason = d.reason
    if (d.result !== undefined) op.result = d.result
    if (d.error !== undefined) op.error = d.error
  }
  return op
}

/** Adds a column unless the table has it (see {@link ADDED_COLUMNS}). */
async function addColumn(db: SqlDriver, column: string, type: string): Promise<void> {
  const probe = () => db.all(`SELECT ${column} FROM operations LIMIT 0`, [])
  try {
    await probe()
    return
  } catch {
    // no such column: add it below
  }
  try {
    await db.run(`ALTER TABLE operations ADD COLUMN ${column} ${type}`, [])
  } catch (err) {
    await probe().catch(() => Promise.reject(err)) // someone else added it meanwhile, or a real failure
  }
}

/**
 * The operation store over any SQLite driver. The schema is created on first use (CREATE … IF
 * NOT EXISTS, then the guarded ALTERs of {@link ADDED_COLUMNS}: a few round trips per isolate or process).
 *
 * @example
 * const store = sqlOperationStore(d1Driver(env.OPERATIONS_DB))
 */
export function sqlOperationStore(db: SqlDriver): OperationStore {
  const schema = lazySchema(db, SCHEMA, async () => {
    for (const { column, type } of ADDED_COLUMNS) await addColumn(db, column, type)
  })
  const one = async (sql: string, params: SqlValue[]) => {
    await schema()
    const rows = await db.all(sql, params)
    return rows[0] ? fromRow(rows[0]) : null
  }

  return {
    async createIfAbsent(op, cooldownSince) {
      await schema()
      // One statement, so two webhooks racing for one alert or one target cannot both win.
      const { changes } = await db.run(
        `INSERT INTO operations (${COLUMNS}) SELECT ${MARKS}
         WHERE NOT EXISTS (SELECT 1 FROM operations WHERE target_key = ? AND created_at > ? AND state != 'skipped')
         ON CONFLICT (dedup_key) DO NOTHING`,
        [...values(op), targetKey(op), cooldownSince],
      )
      if (changes === 1) return { outcome: 'created', op }
      const existing = op.dedupKey ? await one(`SELECT * FROM operations WHERE dedup_key = ?`, [op.dedupKey]) : null
      return existing ? { outcome: 'duplicate', op: existing } : { outcome: 'cooldown' }
    },
    async insert(op) {
      await schema()
      await db.run(`INSERT INTO operations (${COLUMNS}) VALUES (${MARKS})`, values(op))
    },
    get: (id) => one('SELECT * FROM operations WHERE id = ?', [id]),
    findByDedupKey: (key) => one('SELECT * FROM operations WHERE dedup_key = ?', [key]),
    async list(f) {
      await schema()
      const where: string[] = []
      const params: SqlValue[] = []
      for (const [col, v] of [['cluster', f.cluster], ['namespace', f.namespace], ['alert', f.alert], ['state', f.state]] as const) {
        if (v !== undefined) {
          where.push(`${col} = ?`)
          params.push(v)
        }
      }
      const rows = await db.all(`SELECT * FROM operations ${where.length ? 'WHERE ' + where.join(' AND ') : ''} ORDER BY created_at DESC, id LIMIT ?`, [...params, f.limit])
      return rows.map(fromRow)
    },
    async claim(id, now, staleBefore) {
      // The claimed row comes back from the UPDATE itself (RETURNING: D1 and node:sqlite both have it).
      return one(
        `UPDATE operations SET state = 'running', attempts = attempts + 1, updated_at = ?, not_before = NULL
         WHERE id = ? AND ((state = 'queued' AND (not_before IS NULL OR not_before <= ?)) OR (state = 'running' AND updated_at < ?))
         RETURNING *`,
        // A timer may fire a little before the clock says so: 100 ms of slack.
        [now, id, now + 100, staleBefore],
      )
    },
    async update(id, patch) {
      await schema()
      // `node` and `dispatched_at` stay as they are unless the patch names them (one statement, no read).
      const keepDispatched = patch.dispatchedAt === undefined ? 1 : 0
      await db.run(
        `UPDATE operations SET state = ?, updated_at = ?, node = COALESCE(?, node), not_before = ?, detail = ?,
         dispatched_at = CASE WHEN ? = 1 THEN dispatched_at ELSE ? END WHERE id = ?`,
        [
          patch.state,
          patch.updatedAt,
          patch.node ?? null,
          patch.notBefore ?? null,
          detail({ reason: patch.reason, result: patch.result, error: patch.error }),
          keepDispatched,
          patch.dispatchedAt ?? null,
          id,
        ],
      )
    },
    async markDispatched(id, at, node) {
      await schema()
      await db.run(`UPDATE operations SET dispatched_at = ?, updated_at = ?, node = ? WHERE id = ? AND state = 'running'`, [at, at, node, id])
    },
    async due(now, limit, staleBefore = 0) {
      await schema()
      const rows = await db.all(
        `SELECT id FROM operations WHERE (state = 'queued' AND (not_before IS NULL OR not_before <= ?)) OR (state = 'running' AND updated_at < ?) ORDER BY created_at LIMIT ?`,
        [now, staleBefore, limit],
      )
      return rows.map((r) => String(r.id))
    },
    async requeueRunning(now) {
      await schema()
      const { changes } = await db.run(`UPDATE operations SET state = 'queued', updated_at = ?, not_before = NULL WHERE state = 'running'`, [now])
      return changes
    },
  }
}
