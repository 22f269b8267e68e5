/**
 * The configuration sources a deployment chooses between (`GATEWAY_CONFIG_SOURCE`):
 *
 * - `variable` (the default): the `GATEWAY_CONFIG` document, read-only; version 0.
 * - `bundled` (Workers): a document built into the Worker (functions/workers/bundled-config.json,
 *   reviewed in a repository and shipped with `wrangler deploy`), read-only; version 0.
 * - `file` (Node): `GATEWAY_CONFIG_FILE`, read again at every refresh, so an edit (or a config
 *   management tool replacing the file) is picked up without a restart; read-only here; version 0,
 *   a new ETag per content.
 * - `store`: versioned documents in the gateway's database (store.ts). When the store is empty the
 *   first isolate to look seeds it from `GATEWAY_CONFIG` (version 1, author `GATEWAY_CONFIG`);
 *   after that the variable is not read.
 *
 * Runtime-neutral: the entries hand in the store (over D1 or node:sqlite) and the validation.
 */
import { CheckpointError } from '../../shared/errors.ts'
import type { Clock } from '../context.ts'
import { capSummary, summarize } from './diff.ts'
import { SOURCE_KINDS, type ConfigSource, type ConfigStore, type ConfigVersion, type SourceKind } from './model.ts'
import { sha256Hex } from '../../shared/digest.ts'

/** How often an isolate asks the source for a newer version, unless `GATEWAY_CONFIG_REFRESH_MS` says otherwise. */
export const DEFAULT_REFRESH_MS = 30_000
const MAX_REFRESH_MS = 300_000
/** The author of the version a store is seeded with. */
const SEED_AUTHOR = 'GATEWAY_CONFIG'

/**
 * The deployment's choice, from its environment (Workers vars, Node env): `GATEWAY_CONFIG_SOURCE`
 * (`variable` | `store`) and `GATEWAY_CONFIG_REFRESH_MS` (0..300000, default 30000). A bad value
 * is a plain `Error`, like the rest of the configuration.
 *
 * @example
 * const { kind, refreshMs } = configSourceSettings((name) => process.env[name])
 */
export function configSourceSettings(env: (name: string) => string | undefined): { kind: SourceKind; refreshMs: number } {
  const kind = env('GATEWAY_CONFIG_SOURCE') || 'variable'
  if (!(SOURCE_KINDS as readonly string[]).includes(kind)) throw new Error(`GATEWAY_CONFIG_SOURCE must be one of ${SOURCE_KINDS.join(', ')} (got ${JSON.stringify(kind)})`)
  const r = env('GATEWAY_CONFIG_REFRESH_MS')
  const refreshMs = r === undefined || r === '' ? DEFAULT_REFRESH_MS : Number(r)
  if (!Number.isInteger(refreshMs) || refreshMs < 0 || refreshMs > MAX_REFRESH_MS) throw new Error(`GATEWAY_CONFIG_REFRESH_MS must be whole milliseconds 0..${MAX_REFRESH_MS}`)
  return { kind: kind as SourceKind, refreshMs }
}

/** `"<version>-<16 hex of the SHA-256 of the document>"`: a new tag for every version, even one that repeats an older text. */
export async function etagOf(version: number, document: string): Promise<string> {
  return `"${version}-${await sha256Hex(document, 8)}"`
}

const EMPTY_SUMMARY = summarize({}, {})

/** How a read-only source is changed instead, for its `conflict` answer. */
const CHANGED_BY: Record<string, string> = {
  variable: 'the GATEWAY_CONFIG variable (GATEWAY_CONFIG_SOURCE=variable): change it with a deploy',
  bundled: 'the document bundled into the Worker (GATEWAY_CONFIG_SOURCE=bundled): change functions/workers/bundled-config.json and deploy',
  file: 'the file GATEWAY_CONFIG_FILE (GATEWAY_CONFIG_SOURCE=file): edit the file; it is read again within GATEWAY_CONFIG_REFRESH_MS',
}

/** A read-only source: `read` gives the document's text (each head() asks again: a file may change). */
function readOnlySource(kind: 'variable' | 'bundled' | 'file', author: string, read: () => Promise<string>): ConfigSource {
  let cached: { text: string; version: ConfigVersion } | undefined
  const latest = async (): Promise<ConfigVersion> => {
    const text = await read()
    if (cached?.text !== text) cached = { text, version: { version: 0, etag: await etagOf(0, text), document: text, author, createdAt: 0, summary: EMPTY_SUMMARY } }
    return cached.version
  }
  return {
    kind,
    head: async () => {
      const v = await latest()
      return { version: v.version, etag: v.etag }
    },
    latest,
    async append() {
      throw new CheckpointError('conflict', `the configuration comes from ${CHANGED_BY[kind]}, or move to GATEWAY_CONFIG_SOURCE=store`, { extra: { source: kind } })
    },
    history: async () => [],
  }
}

/**
 * `GATEWAY_CONFIG` as the only version there is (0). Changes answer `conflict`: they take a deploy.
 *
 * @example
 * const source = variableSource(JSON.parse(env.GATEWAY_CONFIG))
 */
export function variableSource(document: unknown): ConfigSource {
  const text = JSON.stringify(document ?? null)
  return readOnlySource('variable', SEED_AUTHOR, async () => text)
}

/** The document built into the Worker (`bundled`). */
export function bundledSource(document: unknown): ConfigSource {
  if (document === null || document === undefined) throw new Error('config: GATEWAY_CONFIG_SOURCE=bundled, but functions/workers/bundled-config.json holds no document: write yours there before wrangler deploy')
  const text = JSON.stringify(document)
  return readOnlySource('bundled', 'bundled-config.json', async () => text)
}

/**
 * A file read again at each refresh (`file`, Node). A file that does not parse or validate never
 * becomes active (live.ts keeps the version it has and logs why).
 *
 * @example
 * const source = fileSource(() => readFile(process.env.GATEWAY_CONFIG_FILE!, 'utf8'))
 */
export function fileSource(read: () => Promise<string>): ConfigSource {
  return readOnlySource('file', 'GATEWAY_CONFIG_FILE', read)
}

/**
 * Versions in `store`; an empty store is seeded from `seed` (the `GATEWAY_CONFIG` document), which
 * must pass `validate` like any change. Two isolates seeding at once store it once.
 *
 * @example
 * const source = storeSource({ store: sqlConfigStore(d1Driver(env.OPERATIONS_DB)), seed, validate, clock })
 */
export function storeSource(o: { store: ConfigStore; seed: unknown; validate: (raw: unknown) => unknown; clock: Clock }): ConfigSource {
  const { store } = o
  const seed = async (): Promise<void> => {
    if (o.seed === undefined) throw new Error('config: the configuration store is empty and GATEWAY_CONFIG (its seed) is not set')
    o.validate(o.seed)
    const document = JSON.stringify(o.seed)
    // False when another isolate seeded first: its version 1 stands.
    await store.append({ version: 1, etag: await etagOf(1, document), document, author: SEED_AUTHOR, createdAt: o.clock.now(), summary: capSummary(summarize(null, o.seed)) })
  }
  const must = <T>(v: T | null): T => {
    if (v === null) throw new Error('config: the configuration store is empty after seeding it')
    return v
  }
  return {
    kind: 'store',
    async head() {
      const h = await store.head()
      if (h) return h
      await seed()
      return must(await store.head())
    },
    async latest() {
      const v = await store.latest()
      if (v) return v
      await seed()
      return must(await store.latest())
    },
    async append({ base, document, author, summary }) {
      const version = base.version + 1
      const v: ConfigVersion = { version, etag: await etagOf(version, document), document, author, createdAt: o.clock.now(), summary: capSummary(summary) }
      return (await store.append(v)) ? v : null
    },
    history: (limit) => store.history(limit),
  }
}
