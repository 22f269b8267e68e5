/**
 * The indexed policy decides exactly as a plain scan of every rule in order would: a property over
 * generated rule sets, callers and resources (fast-check, fixed seed).
 */
import assert from 'node:assert/strict'
import { describe, it } from 'node:test'
import fc from 'fast-check'
import { decide, parsePolicy, type Action, type Caller, type Resource } from '../../functions/authz.ts'
import { decideLinear as linear } from '../support/policy-linear.ts'

const name = fc.constantFrom('a', 'b', 'team', 'team-a', 'team-b', 'prod', 'prod-eu', 'x.y', 'a+b')
const glob = fc.oneof({ arbitrary: name, weight: 1 }, { arbitrary: fc.constantFrom('*', 'team-*', 'prod-?', '?', '*-a', 'x.*', 'a+*'), weight: 2 })
const who = fc.constantFrom('alice', 'bob', 'ops', 'sre')
const actions = fc.subarray(['create', 'read', 'delete'] as const, { minLength: 1 })
const rule = fc.record({
  subjects: fc.array(who, { maxLength: 2 }),
  groups: fc.array(who, { maxLength: 2 }),
  clients: fc.array(who, { maxLength: 1 }),
  actions,
  clusters: fc.array(glob, { minLength: 1, maxLength: 2 }),
  namespaces: fc.array(glob, { minLength: 1, maxLength: 2 }),
  pods: fc.option(fc.array(glob, { minLength: 1, maxLength: 2 }), { nil: undefined }),
  containers: fc.option(fc.array(glob, { minLength: 1, maxLength: 2 }), { nil: undefined }),
}).filter((r) => r.subjects.length + r.groups.length + r.clients.length > 0)
const caller = fc.record({
  sub: who,
  groups: fc.array(who, { maxLength: 3 }),
  client: fc.option(who, { nil: undefined }),
  // Mostly every scope, so the rules decide more often than the scope check does.
  scopes: fc.oneof({ arbitrary: fc.constant(['checkpoint:create', 'checkpoint:read', 'checkpoint:delete']), weight: 4 }, { arbitrary: fc.subarray(['checkpoint:create', 'checkpoint:read', 'checkpoint:delete']), weight: 1 }).map((s) => new Set(s)),
})
const resource = fc.record({ cluster: name, namespace: fc.option(name, { nil: undefined }), pod: fc.option(name, { nil: undefined }), container: fc.option(name, { nil: undefined }) })

describe('indexed policy', () => {
  it('agrees with a linear scan on every generated policy, caller and resource', () => {
    const seed = Number(process.env.POLICY_SEED ?? 20261130)
    let allowed = 0
    let total = 0
    fc.assert(
      fc.property(fc.array(rule, { minLength: 1, maxLength: 25 }), fc.array(fc.tuple(caller, fc.constantFrom<Action>('create', 'read', 'delete'), resource), { minLength: 1, maxLength: 20 }), (rules, asks) => {
        const policy = parsePolicy({ rules: rules.map((r, i) => ({ id: `r${i}`, ...r })) })
        for (const [c, action, res] of asks) {
          const got = decide(policy, c as Caller, action, res as Resource)
          const want = linear(policy, c as Caller, action, res as Resource)
          assert.deepEqual([got.allow, got.rule], [want.allow, want.rule])
          total++
          if (got.allow) allowed++
        }
      }),
      { seed, numRuns: 600 },
    )
    // Both outcomes were exercised, often.
    assert.ok(allowed > total / 20 && allowed < total - total / 20, `${allowed} of ${total} allowed`)
  })
})
