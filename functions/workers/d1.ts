/**
 * The D1 driver for the operation store (Workers). Only the few D1 calls we use are typed here,
 * so the runtime-neutral build needs no Workers type package.
 */
import type { SqlDriver, SqlValue } from '../operations/store.ts'

export interface D1Like {
  prepare(sql: string): {
    bind(...values: SqlValue[]): {
      run(): Promise<{ meta: { changes?: number } }>
      all<T = Record<string, unknown>>(): Promise<{ results: T[] }>
    }
  }
}

/**
 * @example
 * const store = sqlOperationStore(d1Driver(env.OPERATIONS_DB))
 */
export function d1Driver(db: D1Like): SqlDriver {
  return {
    async run(sql, params) {
      const r = await db.prepare(sql).bind(...params).run()
      return { changes: r.meta.changes ?? 0 }
    },
    async all(sql, params) {
      const r = await db.prepare(sql).bind(...params).all<Record<string, unknown>>()
      return r.results
    },
  }
}
