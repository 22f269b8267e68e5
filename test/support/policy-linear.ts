/**
 * The policy as a plain scan of every rule in document order (the first rule that covers caller
 * and resource wins): the reference the indexed `decide` is tested and benchmarked against.
 */
import { SCOPES, type Action, type Caller, type Decision, type Policy, type Resource } from '../../functions/authz.ts'

export function decideLinear(policy: Policy, caller: Caller, action: Action, res: Resource): Decision {
  if (!caller.scopes.has(SCOPES[action])) return { allow: false }
  const fits = (globs: RegExp[], v: string | undefined) => v === undefined || globs.some((re) => re.test(v))
  for (const r of policy.rules) {
    const named = r.subjects.includes(caller.sub) || r.groups.some((g) => caller.groups.includes(g)) || (caller.client !== undefined && r.clients.includes(caller.client))
    if (r.actions.includes(action) && named && fits(r.clusters, res.cluster) && fits(r.namespaces, res.namespace) && fits(r.pods, res.pod) && fits(r.containers, res.container)) return { allow: true, rule: r.id }
  }
  return { allow: false }
}
