/**
 * Default-deny authorization. The policy is data: rules that match callers (subject, group or
 * client id) to resources (cluster, namespace, pod, container globs) for some actions. A request
 * is allowed when the token carries the action's scope AND some rule covers caller and resource.
 */
import { CheckpointError } from '../shared/errors.ts'
import { archiveReadings } from '../shared/names.ts'

export type Action = 'create' | 'read' | 'delete'

/** The OAuth scope each action needs. */
export const SCOPES: Record<Action, string> = {
  create: 'checkpoint:create',
  read: 'checkpoint:read',
  delete: 'checkpoint:delete',
}

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
}

export interface Decision {
  allow: boolean
  rule?: string
  /** For a deny: what was missing (a scope or a permission), safe to show the caller. */
  missing?: string
}

/** `*` is any run of characters, `?` one character; everything else is literal. */
export function globToRegExp(glob: string): RegExp {
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

/**
 * Checks a policy document. Rules must name at least one subject, group or client, and the
 * clusters and namespaces they cover (no implicit "everything").
 *
 * @example
 * parsePolicy({ rules: [{ id: 'sre', groups: ['sre'], actions: ['create', 'read'],
 *   clusters: ['prod-*'], namespaces: ['*'] }] })
 */
export function parsePolicy(raw: unknown): Policy {
  const r = raw as { rules?: unknown }
  if (!r || typeof r !== 'object' || !Array.isArray(r.rules)) throw new Error('policy: must be an object with a "rules" list')
  const ids = new Set<string>()
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
      if (short !== 'create' && short !== 'read' && short !== 'delete') throw new Error(`policy: ${id}.actions: unknown action ${a}`)
      return short as Action
    })
    const globs = (v: unknown, what: string, required: boolean) => {
      const l = list(v, `${id}.${what}`, required)
      return (l.length ? l : ['*']).map(globToRegExp)
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
  return { rules }
}

const any = (res: RegExp[], s: string | undefined) => s === undefined || res.some((re) => re.test(s))

function callerMatches(rule: PolicyRule, c: Caller): boolean {
  return (
    rule.subjects.includes(c.sub) ||
    rule.groups.some((g) => c.groups.includes(g)) ||
    (c.client !== undefined && rule.clients.includes(c.client))
  )
}

/**
 * Decides one action on one resource. Fields of `res` left undefined are not checked (a node
 * listing names only the cluster); callers filter what they return by the same function.
 */
export function decide(policy: Policy, caller: Caller, action: Action, res: Resource): Decision {
  const scope = SCOPES[action]
  if (!caller.scopes.has(scope)) return { allow: false, missing: `scope ${scope}` }
  for (const rule of policy.rules) {
    if (!rule.actions.includes(action) || !callerMatches(rule, caller)) continue
    if (any(rule.clusters, res.cluster) && any(rule.namespaces, res.namespace) && any(rule.pods, res.pod) && any(rule.containers, res.container)) {
      return { allow: true, rule: rule.id }
    }
  }
  return { allow: false, missing: `permission ${scope} on ${describe(res)}` }
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
