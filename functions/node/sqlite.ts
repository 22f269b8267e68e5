/**
 * The node:sqlite driver for the operation store (Node). A file survives restarts: operations
 * accepted before a crash are found again at start (see `queue.ts`). WAL mode so the
 * status API reads while a job writes.
 */
import { DatabaseSync } from 'node:sqlite'
import type { SqlDriver } from '../operations/store.ts'

export interface SqliteDriver extends SqlDriver {
  close(): void
}

/**
 * @example
 * const db = sqliteDriver('/var/lib/checkpoint-gateway/operations.sqlite')
 * const store = sqlOperationStore(db)
 */
export function sqliteDriver(path: string): SqliteDriver {
  const db = new DatabaseSync(path)
  db.exec('PRAGMA journal_mode = WAL; PRAGMA synchronous = NORMAL; PRAGMA busy_timeout = 5000')
  const cache = new Map<string, ReturnType<DatabaseSync['prepare']>>()
  const stmt = (sql: string) => {
    let s = cache.get(sql)
    if (!s) {
      s = db.prepare(sql)
      cache.set(sql, s)
    }
    return s
  }
  return {
    async run(sql, params) {
      const r = stmt(sql).run(...params)
      return { changes: Number(r.changes) }
    },
    async all(sql, params) {
      return stmt(sql).all(...params) as Array<Record<string, unknown>>
    },
    close() {
      if (db.isOpen) db.close()
    },
  }
}
