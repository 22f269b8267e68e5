/**
 * The configuration as versioned data: a version of the document, the store that keeps versions
 * (SQL: store.ts), the source an isolate reads (the variable or the store: source.ts) and the
 * summary of what a change changes (diff.ts). Types only, so the sources, the routes, the live
 * gateway and the runtime entries depend on this file and on nothing of each other's.
 */
import type { Action } from '../authz.ts'

/** One version of the configuration document. */
export interface ConfigVersion {
  /** 1, 2, 3… in the store; 0 for the variable (not versioned). */
  version: number
  /** A strong entity tag, quoted: `"<version>-<16 hex of the document's SHA-256>"`. */
  etag: string
  /** The document as stored: compact JSON text. */
  document: string
  /** The `sub` of whoever stored it; `GATEWAY_CONFIG` for the seed. */
  author: string
  /** Epoch ms. */
  createdAt: number
  /** What it changed from the version before (lists capped for storage: `truncated`). */
  summary: ConfigSummary
}

export type ConfigHead = Pick<ConfigVersion, 'version' | 'etag'>
export type ConfigHistoryEntry = Omit<ConfigVersion, 'document'>

/** Versions in a database (D1 on Workers, node:sqlite on Node). */
export interface ConfigStore {
  /** The newest version's number and tag, or null when there is none: what isolates poll. */
  head(): Promise<ConfigHead | null>
  latest(): Promise<ConfigVersion | null>
  /**
   * Stores `v` if the newest version is still `v.version - 1` (none for version 1): a
   * compare-and-set, so of two writers that read the same version only one wins. False for the other.
   */
  append(v: ConfigVersion): Promise<boolean>
  /** Newest first, without documents. */
  history(limit: number): Promise<ConfigHistoryEntry[]>
}

/** Chosen at deploy time (`GATEWAY_CONFIG_SOURCE`). */
export type SourceKind = 'variable' | 'store' | 'file' | 'bundled'
/** `file` is Node's (GATEWAY_CONFIG_FILE, re-read); `bundled` is Workers' (functions/workers/bundled-config.json). */
export const SOURCE_KINDS: readonly SourceKind[] = ['variable', 'store', 'file', 'bundled']

/** Where the configuration comes from, as the isolate and the admin API see it. */
export interface ConfigSource {
  readonly kind: SourceKind
  /** The newest version's number and tag (a store that is empty seeds itself first). */
  head(): Promise<ConfigHead>
  /** The newest version (seeding an empty store, as `head`). */
  latest(): Promise<ConfigVersion>
  /**
   * Stores `document` as the version after `base`; null when `base` is no longer the newest.
   * The variable is read-only: `conflict`.
   */
  append(change: { base: ConfigHead; document: string; author: string; summary: ConfigSummary }): Promise<ConfigVersion | null>
  /** Newest first; the variable has none. */
  history(limit: number): Promise<ConfigHistoryEntry[]>
}

/**
 * A permission gained or lost: a caller (`subject:`, `group:` or `client:` and the name) may do
 * `action` on the clusters × namespaces globs (and the pods/containers globs when a rule narrows
 * them). Globs are compared as written, never expanded: `prod-*` for `prod-eu` reads as one lost
 * and one gained.
 */
export interface PermissionChange {
  change: 'gained' | 'lost'
  caller: string
  action: Action
  clusters: string[]
  namespaces: string[]
  pods?: string[]
  containers?: string[]
  /** The rules that grant it: in the new document for a gain, in the old one for a loss. */
  rules: string[]
}

/** What a change changes. */
export interface ConfigSummary {
  clusters: { added: string[]; removed: string[]; changed: string[] }
  rules: { added: string[]; removed: string[]; changed: string[] }
  permissions: PermissionChange[]
  /** Other top-level sections that differ (`auth`, `grants`, `limits`, `hooks`). */
  sections: string[]
  /** Set when lists were cut for storage (the history); the answer to a change has them whole. */
  truncated?: boolean
}
