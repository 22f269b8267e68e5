/**
 * Configuration versions in SQL, in the database the gateway already has for webhook operations
 * (D1 on Workers through `OPERATIONS_DB`, node:sqlite on Node through `OPERATIONS_DB`) and over
 * the same driver. A version is a row; the newest row is the active configuration; rows are
 * never updated or deleted, so the table is the history.
 */
import { lazySchema, type SqlDriver } from '../operations/store.ts'
import type { ConfigStore, ConfigSummary, ConfigVersion } from './model.ts'

const CONFIG_SCHEMA = [
  `CREATE TABLE IF NOT EXISTS config_versions (version INTEGER PRIMARY KEY, etag TEXT NOT NULL,
    document TEXT NOT NULL, author TEXT NOT NULL, created_at INTEGER NOT NULL, summary TEXT NOT NULL)`,
]

const META = 'version, etag, author, created_at, summary'

function fromRow(r: Record<string, unknown>): ConfigVersion {
  return {
    version: Number(r.version),
    etag: String(r.etag),
    document: typeof r.document === 'string' ? r.document : '',
    author: String(r.author),
    createdAt: Number(r.created_at),
    summary: JSON.parse(String(r.summary)) as ConfigSummary,
  }
}

/**
 * @example
 * const versions = sqlConfigStore(d1Driver(env.OPERATIONS_DB))
 * const head = await versions.head() // { version: 3, etag: '"3-…"' } or null
 */
export function sqlConfigStore(db: SqlDriver): ConfigStore {
  const schema = lazySchema(db, CONFIG_SCHEMA)
  const rows = async (sql: string, params: Array<string | number>) => {
    await schema()
    return db.all(sql, params)
  }

  return {
    async head() {
      const [r] = await rows('SELECT version, etag FROM config_versions ORDER BY version DESC LIMIT 1', [])
      return r ? { version: Number(r.version), etag: String(r.etag) } : null
    },
    async latest() {
      const [r] = await rows(`SELECT ${META}, document FROM config_versions ORDER BY version DESC LIMIT 1`, [])
      return r ? fromRow(r) : null
    },
    async append(v) {
      await schema()
      // One statement: the row goes in only while the newest version is the one before it, and
      // the primary key stops a second writer that read the same newest version.
      const { changes } = await db.run(
        `INSERT INTO config_versions (${META}, document) SELECT ?, ?, ?, ?, ?, ?
         WHERE COALESCE((SELECT MAX(version) FROM config_versions), 0) = ?
         ON CONFLICT (version) DO NOTHING`,
        [v.version, v.etag, v.author, v.createdAt, JSON.stringify(v.summary), v.document, v.version - 1],
      )
      return changes === 1
    },
    async history(limit) {
      return (await rows(`SELECT ${META} FROM config_versions ORDER BY version DESC LIMIT ?`, [limit])).map((r) => {
        const { document: _, ...entry } = fromRow(r)
        return entry
      })
    },
  }
}
