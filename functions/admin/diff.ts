/**
 * What a configuration change changes, for a dry run, the answer to a change and the history:
 * clusters and rules added, removed or changed (by id), other sections changed, and who gains or
 * loses which permission on what. Works on documents that have passed validation.
 *
 * Permissions are compared one caller × action × cluster glob × namespace glob at a time (a rule's
 * pods and containers globs, when it has them, go along whole), over all rules: adding a namespace
 * to a rule gains just that namespace, and a permission another rule still grants is not lost.
 * The pieces are then grouped back into lists for reading.
 */
import type { Action } from '../authz.ts'
import { jsonValue } from '../config.ts'
import type { ConfigSummary, PermissionChange } from './model.ts'
import { canonicalJson as canonical } from '../../shared/digest.ts'

type Raw = Record<string, unknown>

interface RuleShape {
  subjects: string[]
  groups: string[]
  clients: string[]
  actions: Action[]
  clusters: string[]
  namespaces: string[]
  pods?: string[]
  containers?: string[]
}

const obj = (v: unknown): Raw => (v && typeof v === 'object' && !Array.isArray(v) ? (v as Raw) : {})
const strings = (v: unknown): string[] => (Array.isArray(v) ? [...new Set(v.filter((s): s is string => typeof s === 'string'))].sort() : [])

/** Rules by id, as parsePolicy reads them (default ids `rule-<i>`, `checkpoint:` prefixes dropped). */
function rulesOf(doc: Raw): Map<string, RuleShape> {
  const policy = obj(jsonValue(doc.policy, 'policy'))
  const out = new Map<string, RuleShape>()
  const list = Array.isArray(policy.rules) ? policy.rules : []
  list.forEach((x: unknown, i: number) => {
    const r = obj(x)
    const id = typeof r.id === 'string' && r.id !== '' ? r.id : `rule-${i}`
    const shape: RuleShape = {
      subjects: strings(r.subjects),
      groups: strings(r.groups),
      clients: strings(r.clients),
      actions: strings(strings(r.actions).map((a) => (a.startsWith('checkpoint:') ? a.slice('checkpoint:'.length) : a))) as Action[],
      clusters: strings(r.clusters),
      namespaces: strings(r.namespaces),
    }
    if (r.pods !== undefined) shape.pods = strings(r.pods)
    if (r.containers !== undefined) shape.containers = strings(r.containers)
    out.set(id, shape)
  })
  return out
}

function diffKeys<T>(before: Map<string, T>, after: Map<string, T>) {
  const added = [...after.keys()].filter((k) => !before.has(k)).sort()
  const removed = [...before.keys()].filter((k) => !after.has(k)).sort()
  const changed = [...after.keys()].filter((k) => before.has(k) && canonical(before.get(k)) !== canonical(after.get(k))).sort()
  return { added, removed, changed }
}

const SEP = '\u0000'

/** Every caller × action × cluster × namespace piece the rules grant, with the rules granting it. */
function pieces(rules: Map<string, RuleShape>): Map<string, string[]> {
  const out = new Map<string, string[]>()
  for (const [id, r] of rules) {
    const callers = [...r.subjects.map((s) => `subject:${s}`), ...r.groups.map((g) => `group:${g}`), ...r.clients.map((c) => `client:${c}`)]
    const narrow = JSON.stringify([r.pods ?? null, r.containers ?? null])
    for (const caller of callers) {
      for (const action of r.actions) {
        for (const cluster of r.clusters) {
          for (const ns of r.namespaces) {
            const key = [caller, action, narrow, cluster, ns].join(SEP)
            const by = out.get(key)
            if (by) by.push(id)
            else out.set(key, [id])
          }
        }
      }
    }
  }
  return out
}

/** Pieces of one change, grouped: per caller, action and narrowing, clusters that share their namespaces. */
function grouped(change: PermissionChange['change'], keys: string[], rulesOfKey: Map<string, string[]>): PermissionChange[] {
  const groups = new Map<string, Map<string, { namespaces: Set<string>; rules: Set<string> }>>()
  for (const key of keys) {
    const [caller, action, narrow, cluster, ns] = key.split(SEP) as [string, string, string, string, string]
    const head = [caller, action, narrow].join(SEP)
    let byCluster = groups.get(head)
    if (!byCluster) groups.set(head, (byCluster = new Map()))
    let c = byCluster.get(cluster)
    if (!c) byCluster.set(cluster, (c = { namespaces: new Set(), rules: new Set() }))
    c.namespaces.add(ns)
    for (const id of rulesOfKey.get(key) ?? []) c.rules.add(id)
  }
  const out: PermissionChange[] = []
  for (const [head, byCluster] of groups) {
    const [caller, action, narrow] = head.split(SEP) as [string, Action, string]
    const [pods, containers] = JSON.parse(narrow) as [string[] | null, string[] | null]
    const bySet = new Map<string, { clusters: string[]; namespaces: string[]; rules: Set<string> }>()
    for (const [cluster, { namespaces, rules }] of byCluster) {
      const nsList = [...namespaces].sort()
      const k = nsList.join(SEP)
      const e = bySet.get(k)
      if (e) {
        e.clusters.push(cluster)
        for (const id of rules) e.rules.add(id)
      } else bySet.set(k, { clusters: [cluster], namespaces: nsList, rules: new Set(rules) })
    }
    for (const e of bySet.values()) {
      out.push({
        change,
        caller,
        action,
        clusters: e.clusters.sort(),
        namespaces: e.namespaces,
        ...(pods ? { pods } : {}),
        ...(containers ? { containers } : {}),
        rules: [...e.rules].sort(),
      })
    }
  }
  return out
}

/**
 * The summary of going from `before` (null: nothing, for the first version) to `after`.
 *
 * @example
 * summarize(current, next).permissions
 * // [{ change: 'gained', caller: 'group:team-b', action: 'read', clusters: ['prod-*'], namespaces: ['team-b'], rules: ['team-b-read'] }]
 */
export function summarize(before: unknown, after: unknown): ConfigSummary {
  const a = obj(before)
  const b = obj(after)
  const clusters = (d: Raw) => new Map(Object.entries(obj(d.clusters)))
  const rulesBefore = rulesOf(a)
  const rulesAfter = rulesOf(b)
  const had = pieces(rulesBefore)
  const has = pieces(rulesAfter)
  const gained = [...has.keys()].filter((k) => !had.has(k))
  const lost = [...had.keys()].filter((k) => !has.has(k))
  const order = (x: PermissionChange, y: PermissionChange) =>
    x.change.localeCompare(y.change) || x.caller.localeCompare(y.caller) || x.action.localeCompare(y.action) || x.clusters.join().localeCompare(y.clusters.join())
  const sections = [...new Set([...Object.keys(a), ...Object.keys(b)])]
    .filter((k) => k !== 'clusters' && k !== 'policy' && canonical(a[k]) !== canonical(b[k]))
    .sort()
  return {
    clusters: diffKeys(clusters(a), clusters(b)),
    rules: diffKeys(rulesBefore, rulesAfter),
    permissions: [...grouped('gained', gained, has), ...grouped('lost', lost, had)].sort(order),
    sections,
  }
}

/** The summary with every list cut to `max` items (`truncated` says so): what the history keeps. */
export function capSummary(s: ConfigSummary, max = 1000): ConfigSummary {
  let truncated = s.truncated ?? false
  const cut = <T>(l: T[]): T[] => {
    if (l.length <= max) return l
    truncated = true
    return l.slice(0, max)
  }
  const out: ConfigSummary = {
    clusters: { added: cut(s.clusters.added), removed: cut(s.clusters.removed), changed: cut(s.clusters.changed) },
    rules: { added: cut(s.rules.added), removed: cut(s.rules.removed), changed: cut(s.rules.changed) },
    permissions: cut(s.permissions),
    sections: s.sections,
  }
  if (truncated) out.truncated = true
  return out
}
