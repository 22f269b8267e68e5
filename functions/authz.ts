/**
 * Default-deny authorization. The policy is data: rules that match callers (subject, group or
 * client id) to resources (cluster, namespace, pod, container globs) for some actions. A request
 * is allowed when the token carries the action's scope AND some rule covers caller and resource.
 */
import { CheckpointError } from '../shared/errors.ts'
import { archiveReadings } from '../shared/names.ts'

/** `admin` is changing the gateway's configuration (/v1/admin/config): the whole fleet's, never a part. */
export type Action = 'create' | 'read' | 'delete' | 'admin'

/** The OAuth scope each action needs. */
export const SCOPES: Record<Action, string> = {
  create: 'checkpoint:create',
  read: 'checkpoint:read',
  delete: 'checkpoint:delete',
  admin: 'checkpoint:admin',
}
const ACTIONS = Object.keys(SCOPES) as Action[]

export interface Caller {
  sub: string
  groups: string[]
  client?: string
  scopes: ReadonlySet<string>
}

export interface Resource {
  cluster: string
  namespace?: string
  pod?: string
  container?: string
}

export interface PolicyRule {
  id: string
  subjects: string[]
  groups: string[]
  clients: string[]
  actions: Action[]
  clusters: RegExp[]
  namespaces: RegExp[]
  pods: RegExp[]
  containers: RegExp[]
}

export interface Policy {
  rules: PolicyRule[]
  /**
   * The rules that could apply, by action and by what names the caller (subject, group, client),
   * as positions in `rules`: a decision looks only at the caller's few lists, so it does not grow
   * with the fleet's rules. Built by {@link parsePolicy}.
   */
  index: PolicyIndex
}

/** Rule positions by action, then by subject, group or client. */
type PolicyIndex = Record<Action, { subjects: Map<string, number[]>; groups: Map<string, number[]>; clients: Map<string, number[]> }>

/** One resource field's globs, compiled: `*` alone matches all, globs without wildcards compare as strings. */
interface Matcher {
  any: boolean
  exact: Set<string>
  patterns: RegExp[]
}

export interface Decision {
  allow: boolean
  rule?: string
  /** For a deny: what was missing (a scope or a permission), safe to show the caller. */
  missing?: string
}

/** `*` is any run of characters, `?` one character; everything else is literal. */
export function globToRegExp(glob: string): RegExp {
  // Names (RFC 1123) need no escaping: the common case skips the three rewrites.
  if (/^[a-z0-9_-]*$/i.test(glob)) return new RegExp(`^${glob}$`)
  const body = glob.replace(/[.+^${}()|[\]\\]/g, '\\$&').replaceAll('*', '.*').replaceAll('?', '.')
  return new RegExp(`^${body}$`)
}

function list(v: unknown, what: string, required: boolean): string[] {
  if (v === undefined && !required) return []
  if (!Array.isArray(v) || !v.every((s) => typeof s === 'string' && s !== '')) {
    throw new Error(`policy: ${what} must be a list of non-empty strings`)
  }
  return v as string[]
}

function compile(globs: RegExp[]): Matcher {
  const m: Matcher = { any: false, exact: new Set(), patterns: [] }
  for (const re of globs) {
    const text = literalOf(re)
    if (re.source === '^.*$') m.any = true
    else if (text !== null) m.exact.add(text)
    else m.patterns.push(re)
  }
  return m
}

/** The string a `^…$` pattern without wildcards matches (as {@link globToRegExp} writes them), else null. */
function literalOf(re: RegExp): string | null {
  const src = re.source
  if (re.flags !== '' || !src.startsWith('^') || !src.endsWith('$')) return null
  let out = ''
  for (let i = 1; i < src.length - 1; i++) {
    const ch = src[i]!
    if (ch === '\\') out += src[++i] ?? ''
    else if (/[.*+?^${}()|[\]]/.test(ch)) return null
    else out += ch
  }
  return out
}

const matchers = new WeakMap<PolicyRule, Matcher[]>()
function matchersOf(rule: PolicyRule): Matcher[] {
  let m = matchers.get(rule)
  if (!m) matchers.set(rule, (m = [compile(rule.clusters), compile(rule.namespaces), compile(rule.pods), compile(rule.containers)]))
  return m
}
const hits = (m: Matcher, s: string | undefined) => s === undefined || m.any || m.exact.has(s) || m.patterns.some((re) => re.test(s))

function buildIndex(rules: PolicyRule[]): PolicyIndex {
  const empty = () => ({ subjects: new Map<string, number[]>(), groups: new Map<string, number[]>(), clients: new Map<string, number[]>() })
  const index: PolicyIndex = { create: empty(), read: empty(), delete: empty(), admin: empty() }
  const add = (map: Map<string, number[]>, key: string, i: number) => {
    const list = map.get(key)
    if (!list) map.set(key, [i])
    else if (list[list.length - 1] !== i) list.push(i)
  }
  rules.forEach((rule, i) => {
    for (const action of rule.actions) {
      const byCaller = index[action]
      for (const sub of rule.subjects) add(byCaller.subjects, sub, i)
      for (const g of rule.groups) add(byCaller.groups, g, i)
      for (const c of rule.clients) add(byCaller.clients, c, i)
    }
  })
  return index
}

/**
 * Checks a policy document. Rules must name at least one subject, group or client, and the
 * clusters and namespaces they cover (no implicit "everything"); a rule with the `admin` action covers
 * clusters `["*"]` and namespaces `["*"]` exactly.
 *
 * @example
 * parsePolicy({ rules: [{ id: 'sre', groups: ['sre'], actions: ['create', 'read'],
 *   clusters: ['prod-*'], namespaces: ['*'] }] })
 */
export function parsePolicy(raw: unknown): Policy {
  const r = raw as { rules?: unknown }
  if (!r || typeof r !== 'object' || !Array.isArray(r.rules)) throw new Error('policy: must be an object with a "rules" list')
  const ids = new Set<string>()
  // One RegExp per distinct glob: a fleet's rules repeat theirs (a team's namespaces in each of its
  // actions, `*`, `prod-*`), and compiling them is most of the cost of loading a large policy.
  const compiled = new Map<string, RegExp>()
  const regExpOf = (glob: string) => {
    let re = compiled.get(glob)
    if (!re) compiled.set(glob, (re = globToRegExp(glob)))
    return re
  }
  const rules = r.rules.map((x: unknown, i: number): PolicyRule => {
    const o = (x ?? {}) as Record<string, unknown>
    const id = typeof o.id === 'string' && o.id !== '' ? o.id : `rule-${i}`
    if (ids.has(id)) throw new Error(`policy: duplicate rule id ${id}`)
    ids.add(id)
    const subjects = list(o.subjects, `${id}.subjects`, false)
    const groups = list(o.groups, `${id}.groups`, false)
    const clients = list(o.clients, `${id}.clients`, false)
    if (subjects.length + groups.length + clients.length === 0) throw new Error(`policy: ${id} names no subject, group or client`)
    const actions = list(o.actions, `${id}.actions`, true).map((a) => {
      const short = a.startsWith('checkpoint:') ? a.slice('checkpoint:'.length) : a
      if (!(ACTIONS as string[]).includes(short)) throw new Error(`policy: ${id}.actions: unknown action ${a}`)
      return short as Action
    })
    // The configuration is one document for the whole fleet: a rule cannot grant changing part of it.
    if (actions.includes('admin')) {
      const everything = (v: unknown) => Array.isArray(v) && v.length === 1 && v[0] === '*'
      if (!everything(o.clusters) || !everything(o.namespaces) || o.pods !== undefined || o.containers !== undefined) {
        throw new Error(`policy: ${id}.actions: admin needs clusters ["*"] and namespaces ["*"] (and no pods or containers): it changes the whole configuration`)
      }
    }
    const globs = (v: unknown, what: string, required: boolean) => {
      const l = list(v, `${id}.${what}`, required)
      return (l.length ? l : ['*']).map(regExpOf)
    }
    return {
      id,
      subjects,
      groups,
      clients,
      actions,
      clusters: globs(o.clusters, 'clusters', true),
      namespaces: globs(o.namespaces, 'namespaces', true),
      pods: globs(o.pods, 'pods', false),
      containers: globs(o.containers, 'containers', false),
    }
  })
  return { rules, index: buildIndex(rules) }
}

/**
 * Decides one action on one resource. Fields of `res` left undefined are not checked (a node
 * listing names only the cluster); callers filter what they return by the same function.
 */
export function decide(policy: Policy, caller: Caller, action: Action, res: Resource): Decision {
  const scope = SCOPES[action]
  if (!caller.scopes.has(scope)) return { allow: false, missing: `scope ${scope}` }
  // The first rule in document order that matches wins, as in a plain scan of every rule.
  let first = Infinity
  const byCaller = policy.index[action]
  const look = (list: number[] | undefined) => {
    if (!list) return
    for (const i of list) {
      if (i >= first) break
      const [cl, ns, pod, ctr] = matchersOf(policy.rules[i]!)
      if (hits(cl!, res.cluster) && hits(ns!, res.namespace) && hits(pod!, res.pod) && hits(ctr!, res.container)) {
        first = i
        break
      }
    }
  }
  look(byCaller.subjects.get(caller.sub))
  for (const g of caller.groups) look(byCaller.groups.get(g))
  if (caller.client !== undefined) look(byCaller.clients.get(caller.client))
  if (first !== Infinity) return { allow: true, rule: policy.rules[first]!.id }
  return { allow: false, missing: action === 'admin' ? `permission ${scope}` : `permission ${scope} on ${describe(res)}` }
}

function describe(res: Resource): string {
  let s = `cluster ${res.cluster}`
  if (res.namespace !== undefined) s += ` namespace ${res.namespace}`
  if (res.pod !== undefined) s += ` pod ${res.pod}`
  if (res.container !== undefined) s += ` container ${res.container}`
  return s
}

/** Throws `forbidden` for a deny; the message names only what the caller asked for. */
export function requireAllowed(d: Decision): string {
  if (!d.allow) throw new CheckpointError('forbidden', `missing ${d.missing}`, { extra: { missing: d.missing } })
  return d.rule!
}

/**
 * Decides an action on an archive by name. The name joins namespace and container with '-',
 * which is ambiguous, so every reading of it must be allowed: a rule for namespace "team" never
 * opens archives of namespace "team-a".
 */
export function decideArchive(policy: Policy, caller: Caller, action: Action, cluster: string, archive: string): Decision {
  const r = archiveReadings(archive)
  if (!r) return { allow: false, missing: `permission ${SCOPES[action]} on cluster ${cluster} archive ${archive}` }
  let rule: string | undefined
  for (const s of r.readings) {
    const d = decide(policy, caller, action, { cluster, pod: r.pod, ...s })
    if (!d.allow) return d
    rule ??= d.rule
  }
  return { allow: true, rule: rule! }
}
