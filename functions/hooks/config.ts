/**
 * The `hooks` section of the gateway configuration: which alerts act, where their target comes
 * from, dedup and storm limits, retries, and the Grafana signature secret. Bad values are a
 * plain `Error` at start, like the rest of the configuration.
 *
 * @example
 * "hooks": {
 *   "select": [{ "checkpoint": "true" }, { "alertname": ["OOMKillImminent", "CryptoMinerSuspected"] }],
 *   "labels": { "cluster": "cluster", "namespace": "namespace", "pod": "pod", "container": "container", "node": "node" },
 *   "defaultCluster": "prod", "cooldownSec": 900, "maxPerNotification": 5,
 *   "grafana": { "secretName": "GRAFANA_WEBHOOK_SECRET", "timestampHeader": "X-Grafana-Alerting-Signature-Timestamp", "subject": "grafana" }
 * }
 */
import type { RetryConfig } from '../operations/model.ts'

export interface LabelNames {
  cluster: string
  namespace: string
  pod: string
  container: string
  node: string
}

export interface GrafanaSignatureConfig {
  secret: string
  header: string
  /** When set, the MAC covers `timestamp + ":" + body` and the timestamp (Unix seconds) must be fresh. */
  timestampHeader?: string
  maxAgeSec: number
  /** The identity a signed request acts as (policy rules name it like any caller). */
  subject: string
  groups: string[]
}

export interface HooksConfig {
  maxBodyBytes: number
  /** An alert acts when any selector matches; a selector matches when every label it names has one of its values. */
  select: Array<Record<string, string[]>>
  labels: LabelNames
  defaultCluster?: string
  /** No second checkpoint of the same container within this many seconds (0 = off). */
  cooldownSec: number
  /** New checkpoints one notification may start; the rest are skipped as a storm. */
  maxPerNotification: number
  /** The checkpoint's `timeout` (how long the job waits for the agent). */
  timeoutSec: number
  retry: RetryConfig
  /** A running job whose record was not touched for this long is taken over (its worker died). */
  leaseSec: number
  /** `vault`: every alert's archive is sealed and stored in the evidence vault after its checkpoint (as is every archive with `vault.store: always`). */
  store: 'none' | 'vault'
  grafana?: GrafanaSignatureConfig
}

type Raw = Record<string, unknown>

function obj(v: unknown, what: string): Raw {
  if (!v || typeof v !== 'object' || Array.isArray(v)) throw new Error(`config: ${what} must be an object`)
  return v as Raw
}
/** A non-empty string, or `dflt` when absent (no default: required). */
function strOr(v: unknown, dflt: string | undefined, what: string): string {
  if (v === undefined && dflt !== undefined) return dflt
  if (typeof v !== 'string' || v === '') throw new Error(`config: ${what} must be a non-empty string`)
  return v
}
function int(v: unknown, dflt: number, what: string, min = 0): number {
  if (v === undefined) return dflt
  if (typeof v !== 'number' || !Number.isInteger(v) || v < min) throw new Error(`config: ${what} must be an integer ≥ ${min}`)
  return v
}

function fail(what: string): never {
  throw new Error(`config: ${what}`)
}

/** Parses `hooks`; `secret` looks up named secrets (the Grafana HMAC key). */
export function parseHooksConfig(raw: unknown, secret: (name: string) => string | undefined): HooksConfig {
  const h = obj(raw, 'hooks')
  const selectRaw = h.select === undefined ? [{ checkpoint: 'true' }] : h.select
  if (!Array.isArray(selectRaw) || selectRaw.length === 0) throw new Error('config: hooks.select must be a non-empty list of label selectors')
  const select = selectRaw.map((s, i) => {
    const out: Record<string, string[]> = {}
    for (const [label, v] of Object.entries(obj(s, `hooks.select[${i}]`))) {
      const list = typeof v === 'string' ? [v] : v
      if (!Array.isArray(list) || list.length === 0 || !list.every((x) => typeof x === 'string')) {
        throw new Error(`config: hooks.select[${i}].${label} must be a string or a non-empty list of strings`)
      }
      out[label] = list as string[]
    }
    return out
  })
  const l = h.labels === undefined ? {} : obj(h.labels, 'hooks.labels')
  const labels: LabelNames = {
    cluster: strOr(l.cluster, 'cluster', 'hooks.labels.cluster'),
    namespace: strOr(l.namespace, 'namespace', 'hooks.labels.namespace'),
    pod: strOr(l.pod, 'pod', 'hooks.labels.pod'),
    container: strOr(l.container, 'container', 'hooks.labels.container'),
    node: strOr(l.node, 'node', 'hooks.labels.node'),
  }
  const r = h.retry === undefined ? {} : obj(h.retry, 'hooks.retry')
  const retry: RetryConfig = {
    maxAttempts: int(r.maxAttempts, 4, 'hooks.retry.maxAttempts', 1),
    baseDelayMs: int(r.baseDelayMs, 5_000, 'hooks.retry.baseDelayMs'),
    maxDelayMs: int(r.maxDelayMs, 300_000, 'hooks.retry.maxDelayMs'),
  }
  const cfg: HooksConfig = {
    maxBodyBytes: int(h.maxBodyBytes, 1 << 20, 'hooks.maxBodyBytes', 1),
    select,
    labels,
    cooldownSec: int(h.cooldownSec, 600, 'hooks.cooldownSec'),
    maxPerNotification: int(h.maxPerNotification, 5, 'hooks.maxPerNotification', 1),
    timeoutSec: int(h.timeoutSec, 120, 'hooks.timeoutSec', 1),
    retry,
    leaseSec: int(h.leaseSec, 900, 'hooks.leaseSec', 1),
    store: h.store === undefined ? 'none' : h.store === 'vault' || h.store === 'none' ? h.store : fail('hooks.store must be "vault" or "none"'),
  }
  if (h.defaultCluster !== undefined) cfg.defaultCluster = strOr(h.defaultCluster, undefined, 'hooks.defaultCluster')
  if (h.grafana !== undefined) {
    const g = obj(h.grafana, 'hooks.grafana')
    const name = strOr(g.secretName, undefined, 'hooks.grafana.secretName')
    const key = secret(name)
    if (!key) throw new Error(`config: secret ${name} (hooks.grafana.secretName) is not set`)
    const groups = g.groups === undefined ? [] : g.groups
    if (!Array.isArray(groups) || !groups.every((x) => typeof x === 'string' && x !== '')) throw new Error('config: hooks.grafana.groups must be a list of strings')
    cfg.grafana = {
      secret: key,
      header: strOr(g.header, 'X-Grafana-Alerting-Signature', 'hooks.grafana.header'),
      maxAgeSec: int(g.maxAgeSec, 300, 'hooks.grafana.maxAgeSec', 1),
      subject: strOr(g.subject, 'grafana-webhook', 'hooks.grafana.subject'),
      groups: groups as string[],
    }
    if (g.timestampHeader !== undefined) cfg.grafana.timestampHeader = strOr(g.timestampHeader, undefined, 'hooks.grafana.timestampHeader')
  }
  return cfg
}
