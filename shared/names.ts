/**
 * Names and their rules: Kubernetes object names, cluster ids, checkpoint archive names and the
 * `timeout` parameter. Pure functions shared by the agent and the gateway.
 */
import { CheckpointError } from './errors.ts'

const DNS1123_LABEL = /^[a-z0-9]([-a-z0-9]*[a-z0-9])?$/
const DNS1123_SUBDOMAIN = /^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$/
/** Cluster ids: lowercase letters, digits, '-' and '_', 1..63, starting with a letter or digit. */
const CLUSTER_ID = /^[a-z0-9][a-z0-9_-]{0,62}$/

/** A DNS-1123 label (namespace, container): [a-z0-9-], at most 63, alphanumeric at both ends. */
export function isDns1123Label(s: string): boolean {
  return s.length > 0 && s.length <= 63 && DNS1123_LABEL.test(s)
}

/** A DNS-1123 subdomain (pod, node): labels joined by '.', at most 253. */
export function isDns1123Subdomain(s: string): boolean {
  return s.length > 0 && s.length <= 253 && DNS1123_SUBDOMAIN.test(s)
}

export function isClusterId(s: string): boolean {
  return CLUSTER_ID.test(s)
}

export interface Target {
  namespace: string
  pod: string
  container: string
}

type Rule = { test: (s: string) => boolean; rule: string }
const RULES = {
  namespace: { test: isDns1123Label, rule: 'must be a DNS-1123 label: lowercase alphanumerics and "-", at most 63' },
  container: { test: isDns1123Label, rule: 'must be a DNS-1123 label: lowercase alphanumerics and "-", at most 63' },
  pod: { test: isDns1123Subdomain, rule: 'must be a DNS-1123 subdomain: lowercase alphanumerics, "-" and ".", at most 253' },
  node: { test: isDns1123Subdomain, rule: 'must be a DNS-1123 subdomain: lowercase alphanumerics, "-" and ".", at most 253' },
  cluster: { test: isClusterId, rule: 'must match [a-z0-9][a-z0-9_-]{0,62}' },
} satisfies Record<string, Rule>

export type NameField = keyof typeof RULES

/** Throws `invalid_name` naming the field and its rule when `value` breaks it. */
export function checkName(field: NameField, value: string | undefined): string {
  const r = RULES[field]
  if (value === undefined || !r.test(value)) {
    const shown = value === undefined ? 'missing' : JSON.stringify(value.length > 80 ? value.slice(0, 80) + '…' : value)
    throw new CheckpointError('invalid_name', `${field} ${shown}: ${r.rule}`, { field })
  }
  return value
}

/** Validates namespace, pod and container together (in that order). */
export function checkTarget(t: { namespace?: string; pod?: string; container?: string }): Target {
  return {
    namespace: checkName('namespace', t.namespace),
    pod: checkName('pod', t.pod),
    container: checkName('container', t.container),
  }
}

/**
 * Parses `timeout` (whole seconds). Absent → `dflt`; "0" means "use the default" as in the kubelet
 * (where 0 means the runtime's default). Anything but digits, or above `max`, is `invalid_timeout`.
 */
export function parseTimeout(raw: string | null | undefined, dflt: number, max: number): number {
  if (raw === null || raw === undefined) return dflt
  if (!/^\d{1,9}$/.test(raw)) {
    throw new CheckpointError('invalid_timeout', `timeout ${JSON.stringify(raw.slice(0, 40))}: must be whole seconds, 0..${max}`, { field: 'timeout' })
  }
  const n = Number(raw)
  if (n > max) throw new CheckpointError('invalid_timeout', `timeout ${n}: must be at most ${max} seconds`, { field: 'timeout' })
  return n === 0 ? dflt : n
}

/** A `limit` query parameter: whole number 1..max (`dflt` when absent); else 400 invalid_query. */
export function parseLimit(raw: string | null, dflt: number, max: number): number {
  if (raw === null) return dflt
  const n = /^\d{1,6}$/.test(raw) ? Number(raw) : NaN
  if (!(n >= 1 && n <= max)) throw new CheckpointError('invalid_query', `limit: 1..${max}`, { field: 'limit' })
  return n
}

/** Rejects query parameters other than `allowed` (typos must not be silently ignored). */
export function checkQuery(params: Iterable<[string, string]>, allowed: readonly string[]): void {
  const seen = new Set<string>()
  for (const [k] of params) {
    if (!allowed.includes(k)) {
      throw new CheckpointError('invalid_query', `unknown query parameter ${JSON.stringify(k.slice(0, 40))}; allowed: ${allowed.join(', ') || 'none'}`, { field: k.slice(0, 40) })
    }
    if (seen.has(k)) throw new CheckpointError('invalid_query', `query parameter ${k} given twice`, { field: k })
    seen.add(k)
  }
}

/**
 * The kubelet's archive name: `checkpoint-<pod>_<namespace>-<container>-<RFC3339>.tar`. The
 * timestamp is UTC with a 'Z' (no ':'-free variant: the kubelet keeps the colons).
 */
export function archiveName(t: Target, at: Date): string {
  const ts = at.toISOString().replace(/\.\d{3}Z$/, 'Z')
  return `checkpoint-${t.pod}_${t.namespace}-${t.container}-${ts}.tar`
}

const ARCHIVE_NAME = /^checkpoint-([a-z0-9][a-z0-9.-]{0,252})_([a-z0-9][a-z0-9-]{0,62})-(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(?:\.\d+)?Z)\.tar$/

/** What an archive name says: the pod, the time, and every way to split `<namespace>-<container>`. */
export interface ArchiveReadings {
  pod: string
  created: string
  /** Each split of `<namespace>-<container>` into two DNS labels; more than one is ambiguous. */
  readings: { namespace: string; container: string }[]
}

/**
 * Reads an archive name strictly; `null` when it is not one of ours. Namespace and container are
 * both DNS labels joined by '-', so a name like `…_team-a-app-…` has two readings (`team`/`a-app`,
 * `team-a`/`app`): a permission must cover every reading, and only a known namespace picks one
 * ({@link archiveInNamespace}).
 */
export function archiveReadings(name: string): ArchiveReadings | null {
  if (name.length > 400) return null
  const m = ARCHIVE_NAME.exec(name)
  if (!m) return null
  const [, pod, nsAndContainer, created] = m as unknown as [string, string, string, string]
  if (!isDns1123Subdomain(pod)) return null
  const readings: ArchiveReadings['readings'] = []
  for (let i = nsAndContainer.indexOf('-'); i > 0; i = nsAndContainer.indexOf('-', i + 1)) {
    const namespace = nsAndContainer.slice(0, i)
    const container = nsAndContainer.slice(i + 1)
    if (isDns1123Label(namespace) && isDns1123Label(container)) readings.push({ namespace, container })
  }
  return readings.length ? { pod, created, readings } : null
}

/** The target of an archive known to be in `namespace`, or null when it is not. */
export function archiveInNamespace(name: string, namespace: string): Target | null {
  const r = archiveReadings(name)
  const hit = r?.readings.find((x) => x.namespace === namespace)
  return r && hit ? { namespace, pod: r.pod, container: hit.container } : null
}

/** True when `name` is an archive of exactly this target. */
export function archiveMatches(name: string, t: Target): boolean {
  const prefix = `checkpoint-${t.pod}_${t.namespace}-${t.container}-`
  return name.startsWith(prefix) && ARCHIVE_NAME.test(name) && /^\d{4}-/.test(name.slice(prefix.length))
}

/** Is this a well-formed archive name (for the download/delete routes)? */
export function isArchiveName(name: string): boolean {
  return name.length <= 400 && ARCHIVE_NAME.test(name)
}
