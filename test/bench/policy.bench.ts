/**
 * Policy decisions at fleet scale: 5,001 rules written the way the README shows them (one per
 * team × action, namespace globs), the indexed `decide` against a plain scan of every rule in the
 * same run (the baseline), allow and deny, and filtering a list of 1,000 archives.
 *
 *   node test/bench/policy.bench.ts      (BENCH_RULES, BENCH_N to resize)
 */
import { decide, parsePolicy, type Action, type Caller, type Decision, type Policy, type Resource } from '../../functions/authz.ts'
import { decideLinear } from '../support/policy-linear.ts'

const TEAMS = Math.ceil(Number(process.env.BENCH_RULES ?? 5001) / 3)
const N = Number(process.env.BENCH_N ?? 20_000)
const ACTIONS: Action[] = ['create', 'read', 'delete']

function emit(name: string, value: number, unit: string, baseline?: number): void {
  const line: Record<string, unknown> = { name, value: Math.round(value * 1000) / 1000, unit }
  if (baseline !== undefined) Object.assign(line, { baseline: Math.round(baseline * 1000) / 1000, ratio: Math.round((value / baseline) * 1000) / 1000 })
  process.stdout.write(JSON.stringify(line) + '\n')
}

const rules = []
for (let t = 0; t < TEAMS; t++) {
  for (const action of ACTIONS) rules.push({ id: `team-${t}-${action}`, groups: [`team-${t}`], actions: [action], clusters: ['prod-*', 'staging'], namespaces: [`team-${t}`, `team-${t}-*`] })
}
const policy: Policy = parsePolicy({ rules })
const caller: Caller = { sub: 'someone', groups: [`team-${TEAMS - 1}`, 'everyone'], scopes: new Set(['checkpoint:create', 'checkpoint:read', 'checkpoint:delete']) }
const allowRes: Resource = { cluster: 'prod-eu', namespace: `team-${TEAMS - 1}-web`, pod: 'web-0', container: 'app' }
const denyRes: Resource = { cluster: 'prod-eu', namespace: 'team-0', pod: 'web-0', container: 'app' }

/** Median µs per call over 5 rounds of `n` calls. */
function perCall(fn: () => Decision, n: number): number {
  const rounds: number[] = []
  for (let r = 0; r < 5; r++) {
    const t0 = performance.now()
    for (let i = 0; i < n; i++) fn()
    rounds.push(((performance.now() - t0) * 1000) / n)
  }
  return rounds.sort((a, b) => a - b)[2]!
}

process.stderr.write(`# policy bench: ${rules.length} rules, ${N} decisions a round\n`)
for (const [label, res, want] of [['allow', allowRes, true], ['deny', denyRes, false]] as const) {
  if (decide(policy, caller, 'read', res).allow !== want || decideLinear(policy, caller, 'read', res).allow !== want) throw new Error(`bench set-up: ${label} is not a ${label}`)
  const fast = perCall(() => decide(policy, caller, 'read', res), N)
  const slow = perCall(() => decideLinear(policy, caller, 'read', res), Math.max(200, N / 100))
  emit(`policy.decide_${label}`, fast, 'µs', slow)
}
const archives = Array.from({ length: 1000 }, (_, i) => ({ cluster: 'prod-eu', namespace: `team-${(i * 7) % TEAMS}`, pod: `p-${i}`, container: 'app' }))
const filter = (d: typeof decide) => () => {
  const t0 = performance.now()
  archives.filter((a) => d(policy, caller, 'read', a).allow)
  return performance.now() - t0
}
const median = (f: () => number, n: number) => Array.from({ length: n }, f).sort((a, b) => a - b)[Math.floor(n / 2)]!
emit('policy.filter_1000_archives', median(filter(decide), 21), 'ms', median(filter(decideLinear as typeof decide), 3))
