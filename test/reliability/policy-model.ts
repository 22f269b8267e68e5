/**
 * An independent model of the gateway's policy, for the abuse suite's oracle. It reads the same
 * rule data as the gateway (the fixtures' raw policy) but evaluates it with its own code: it
 * imports nothing from functions/, so a mistake in functions/authz.ts cannot hide in here too.
 *
 * Semantics, from the README and the fixtures: default deny; a caller may do an action on a
 * resource when its token carries the action's scope AND some rule names the caller (subject,
 * group or client), lists the action and matches cluster, namespace, pod and container by glob
 * (`*` any run, `?` one character; an absent pods/containers list means any).
 */

export type ModelAction = 'create' | 'read' | 'delete'

export interface ModelCaller {
  /** A short name for reports (sre, alice, …). */
  name: string
  sub: string
  groups: string[]
  client?: string
  scopes: ModelAction[]
}

export interface ModelTarget {
  cluster: string
  namespace: string
  pod: string
  container: string
}

interface RawRule {
  subjects?: string[]
  groups?: string[]
  clients?: string[]
  actions: string[]
  clusters: string[]
  namespaces: string[]
  pods?: string[]
  containers?: string[]
}

/** Glob match by hand (no RegExp): `*` any run of characters, `?` exactly one. */
export function globMatch(glob: string, s: string): boolean {
  let g = 0
  let i = 0
  let star = -1
  let mark = 0
  while (i < s.length) {
    if (g < glob.length && (glob[g] === '?' || glob[g] === s[i])) {
      g++
      i++
    } else if (g < glob.length && glob[g] === '*') {
      star = g++
      mark = i
    } else if (star >= 0) {
      g = star + 1
      i = ++mark
    } else return false
  }
  while (g < glob.length && glob[g] === '*') g++
  return g === glob.length
}

const anyOf = (globs: string[] | undefined, s: string) => (globs === undefined || globs.length === 0 ? true : globs.some((x) => globMatch(x, s)))
const bare = (a: string) => (a.startsWith('checkpoint:') ? a.slice('checkpoint:'.length) : a)

export class PolicyModel {
  readonly rules: RawRule[]

  constructor(raw: unknown) {
    this.rules = (raw as { rules: RawRule[] }).rules
  }

  /** May `caller` do `action` on every field `t` names (a list names only the cluster)? */
  allows(caller: ModelCaller, action: ModelAction, t: Partial<ModelTarget> & { cluster: string }): boolean {
    if (!caller.scopes.includes(action)) return false
    return this.rules.some(
      (r) =>
        r.actions.map(bare).includes(action) &&
        ((r.subjects ?? []).includes(caller.sub) || (r.groups ?? []).some((g) => caller.groups.includes(g)) || (caller.client !== undefined && (r.clients ?? []).includes(caller.client))) &&
        anyOf(r.clusters, t.cluster) &&
        (t.namespace === undefined || anyOf(r.namespaces, t.namespace)) &&
        (t.pod === undefined || anyOf(r.pods, t.pod)) &&
        (t.container === undefined || anyOf(r.containers, t.container)),
    )
  }
}

/** The splits of `<namespace>-<container>` into two DNS labels, computed without shared/names.ts. */
export function splits(nsAndContainer: string): Array<{ namespace: string; container: string }> {
  const label = (s: string) => s.length >= 1 && s.length <= 63 && /^[a-z0-9]$|^[a-z0-9][a-z0-9-]*[a-z0-9]$/.test(s)
  const out: Array<{ namespace: string; container: string }> = []
  for (let i = 1; i < nsAndContainer.length - 1; i++) {
    if (nsAndContainer[i] !== '-') continue
    const namespace = nsAndContainer.slice(0, i)
    const container = nsAndContainer.slice(i + 1)
    if (label(namespace) && label(container)) out.push({ namespace, container })
  }
  return out
}
