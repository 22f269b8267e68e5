/**
 * The abuse suite (issue #12): property-based requests against the Node gateway and its fake
 * agent — broken path segments on every route, ambiguous archive names for every user, odd query
 * strings, headers and bodies, and malformed webhook notifications. Each case is judged by an
 * oracle that does not ask the gateway's own code what is right: names by shared/names.ts, access
 * by an independent policy model (policy-model.ts), webhook shapes by what the generator broke.
 *
 * Prints one JSON line per figure ({"name","value","unit"}); counters named crash, 5xx, frozen,
 * lost, partial, bypass or accepted_invalid are failures and must be 0.
 *
 * RELIABILITY_SEED picks the seed (default below, printed as `abuse_seed`); RELIABILITY_SCALE
 * multiplies the number of cases (default 1: about 10,000).
 */
import assert from 'node:assert/strict'
import { after, before, describe, it } from 'node:test'
import fc from 'fast-check'
import type { JWTPayload } from 'jose'
import { isArchiveName, isClusterId, isDns1123Label, isDns1123Subdomain } from '../../shared/names.ts'
import { archiveBytes } from '../support/gateway/fake-agent.ts'
import { makeWorld, type World } from '../support/gateway/fixtures.ts'
import { hooksConfig, nodeHooksTarget, tempDir } from '../support/gateway/hooks-targets.ts'
import { nodeTarget, type GatewayUnderTest } from '../support/gateway/targets.ts'
import {
  accept as acceptArb, archiveNameWire, bodySpec, hookCase, MAX_HOOK_BODY, padding, queryParams, queryStyle, requestId as requestIdArb, segment, suffix as suffixArb,
  overValue, validValue, writeQuery, type BodySpec, type FieldKind, type HookCase,
} from './arbitraries.ts'
import { PolicyModel, splits, type ModelAction, type ModelCaller } from './policy-model.ts'
import { checkProblem, rawClient, type Answer, type Client, type Exchange } from './raw-http.ts'

const DEFAULT_SEED = 20_261_130
const SEED = Number.parseInt(process.env.RELIABILITY_SEED ?? '', 10) || DEFAULT_SEED
const SCALE = Number(process.env.RELIABILITY_SCALE ?? '') > 0 ? Number(process.env.RELIABILITY_SCALE) : 1
const RUNS = { paths: 4000, archives: 2600, requests: 2000, webhooks: 1600 }
const runs = (n: number) => Math.max(1, Math.round(n * SCALE))

const ALL = 'checkpoint:create checkpoint:read checkpoint:delete'
/** The callers: the fixtures' users, plus near misses (a scope without a rule, a group that almost matches). */
const CALLERS: Array<ModelCaller & { claims: JWTPayload }> = [
  { name: 'sre', sub: 'sam', groups: ['sre'], scopes: ['create', 'read', 'delete'], claims: { sub: 'sam', groups: ['sre'], scope: ALL } },
  { name: 'sre-readonly', sub: 'sam', groups: ['sre'], scopes: ['read'], claims: { sub: 'sam', groups: ['sre'], scope: 'checkpoint:read' } },
  { name: 'alice', sub: 'alice', groups: [], scopes: ['create', 'read'], claims: { sub: 'alice', scp: ['checkpoint:create', 'checkpoint:read'] } },
  { name: 'tess', sub: 'tess', groups: [], scopes: ['read'], claims: { sub: 'tess', scope: 'checkpoint:read' } },
  { name: 'tom', sub: 'tom', groups: [], scopes: ['read', 'delete'], claims: { sub: 'tom', scope: 'checkpoint:read checkpoint:delete' } },
  { name: 'tom-all-scopes', sub: 'tom', groups: [], scopes: ['create', 'read', 'delete'], claims: { sub: 'tom', scope: ALL } },
  { name: 'ci-bot', sub: 'ci-runner', groups: [], client: 'ci-bot', scopes: ['read'], claims: { sub: 'ci-runner', azp: 'ci-bot', scope: 'checkpoint:read' } },
  { name: 'mallory', sub: 'mallory', groups: ['sre-team', 'SRE'], scopes: ['create', 'read', 'delete'], claims: { sub: 'mallory', groups: ['sre-team', 'SRE'], scope: ALL } },
]
const callerNames = CALLERS.map((c) => c.name)
const REGISTERED = new Set(['prod', 'edge'])
/** The gateway's documented request-id rule (shared/agent-api.ts), restated. */
const REQUEST_ID_RULE = /^[A-Za-z0-9._:-]{1,128}$/

// ---------------------------------------------------------------------------------------------
// Figures and failures.

const FAILURES = ['crash', '5xx', 'frozen', 'bypass', 'accepted_invalid', 'lost', 'partial'] as const
type Failure = (typeof FAILURES)[number]

class Tally {
  readonly cases: Record<string, number> = {}
  readonly failures: Record<Failure, number> = { crash: 0, '5xx': 0, frozen: 0, bypass: 0, accepted_invalid: 0, lost: 0, partial: 0 }
  /** Answers that differ from the oracle's exact expectation without being a failure above. */
  mismatches = 0
  /** Informational counts (how deep the cases went), printed as figures too. */
  readonly notes: Record<string, number> = {}
  readonly examples: string[] = []
  readonly mismatchExamples: string[] = []

  count(property: string): void {
    this.cases[property] = (this.cases[property] ?? 0) + 1
  }
  fail(kind: Failure, what: string): void {
    this.failures[kind]++
    if (this.examples.length < 12) this.examples.push(`${kind}: ${what}`)
  }
  note(name: string, n = 1): void {
    this.notes[name] = (this.notes[name] ?? 0) + n
  }
  mismatch(what: string): void {
    this.mismatches++
    if (this.mismatchExamples.length < 8) this.mismatchExamples.push(what)
  }
}

const emit = (name: string, value: number, unit: string) => console.log(JSON.stringify({ name, value, unit }))
const short = (s: string) => (s.length > 300 ? `${s.slice(0, 300)}…(${s.length})` : s)
const describeAnswer = (a: Answer) => (a.kind === 'response' ? `${a.status} ${short(a.body.toString('utf8'))}` : a.kind === 'reset' ? `reset (${a.error})` : 'no answer')
/** What Hono hands a handler for one path segment: percent-decoded, left as is when it cannot be. */
function decodeSegment(wire: string): string {
  try {
    return decodeURIComponent(wire)
  } catch {
    return wire
  }
}
const problemCode = (a: Extract<Answer, { kind: 'response' }>) => checkProblem(a).code

/**
 * The judgement every answer gets: a reset or missing answer, a 5xx, or an error answer that is
 * not a problem body with a stable code. Returns the response when there is one.
 */
function judge(t: Tally, a: Answer, what: () => string): Extract<Answer, { kind: 'response' }> | undefined {
  if (a.kind === 'reset') return void t.fail('crash', `${what()} → ${describeAnswer(a)}`)
  if (a.kind === 'frozen') return void t.fail('frozen', `${what()} → no answer`)
  if (a.status >= 500) t.fail('5xx', `${what()} → ${describeAnswer(a)}`)
  else if (a.status >= 400) {
    const p = checkProblem(a)
    if (!p.ok) t.fail('crash', `${what()} → not a problem body with a stable code (${p.why}): ${describeAnswer(a)}`)
  }
  return a
}

// ---------------------------------------------------------------------------------------------

describe('abuse', { timeout: 900_000 }, () => {
  let world: World
  let gw: GatewayUnderTest
  let hooksGw: GatewayUnderTest
  let client: Client
  let hooksClient: Client
  let model: PolicyModel
  const tokens = new Map<string, string>()
  const tmp = tempDir()
  const tally = new Tally()
  const started = performance.now()

  const auth = (caller: string) => ({ authorization: `Bearer ${tokens.get(caller)!}` })
  const callerOf = (name: string) => CALLERS.find((c) => c.name === name)!
  const agentSeen = () => world.agent.seen.length

  before(async () => {
    world = await makeWorld()
    gw = await nodeTarget(world, world.rawConfig())
    hooksGw = await nodeHooksTarget({ dbFile: `${tmp.dir}/operations.sqlite` })(world, hooksConfig(world))
    client = rawClient(gw.url)
    hooksClient = rawClient(hooksGw.url)
    model = new PolicyModel(world.rawConfig().policy)
    const exp = Math.floor(Date.now() / 1000) + 3600
    for (const c of CALLERS) tokens.set(c.name, await world.token(c.claims, { exp }))
    tokens.set('alertmanager', await world.token({ sub: 'system:serviceaccount:monitoring:alertmanager', azp: 'alertmanager', scope: 'checkpoint:create' }, { exp }))
  })
  after(async () => {
    client?.close()
    hooksClient?.close()
    await hooksGw?.close()
    await gw?.close()
    await world?.close()
    tmp.remove()
  })

  /** May `caller` act on an archive name with no known target: every reading must be allowed. */
  function allowsEveryReading(caller: ModelCaller, action: ModelAction, cluster: string, pod: string, nsAndContainer: string): boolean {
    const r = splits(nsAndContainer)
    return r.length > 0 && r.every((x) => model.allows(caller, action, { cluster, pod, ...x }))
  }

  /** The pod and `<namespace>-<container>` of an archive name, read by hand. */
  function nameParts(name: string): { pod: string; nsAndContainer: string } | null {
    const m = /^checkpoint-([^_]+)_(.+)-(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(?:\.\d+)?Z)\.tar$/.exec(name)
    return m ? { pod: m[1]!, nsAndContainer: m[2]! } : null
  }

  // -------------------------------------------------------------------------------------------
  it('path segments on every route', async () => {
    type Route = 'create-node' | 'create-auto' | 'list' | 'read' | 'delete'
    const FIELDS: Record<Route, Array<[string, FieldKind | 'name']>> = {
      'create-node': [['cluster', 'cluster'], ['node', 'subdomain'], ['namespace', 'label'], ['pod', 'subdomain'], ['container', 'label']],
      'create-auto': [['cluster', 'cluster'], ['namespace', 'label'], ['pod', 'subdomain'], ['container', 'label']],
      list: [['cluster', 'cluster'], ['node', 'subdomain']],
      read: [['cluster', 'cluster'], ['node', 'subdomain'], ['name', 'name']],
      delete: [['cluster', 'cluster'], ['node', 'subdomain'], ['name', 'name']],
    }
    const arb = fc
      .record({
        route: fc.constantFrom<Route>('create-node', 'create-auto', 'list', 'read', 'delete'),
        caller: fc.oneof({ weight: 4, arbitrary: fc.constant('sre') }, { weight: 2, arbitrary: fc.constantFrom(...callerNames) }),
        plan: fc.constantFrom('valid', 'one', 'one', 'any'),
        which: fc.nat(),
        suffix: suffixArb,
      })
      .chain((c) => {
        const fields = FIELDS[c.route]
        const segs = fields.map(([, kind], i) => {
          const mode = c.plan === 'valid' ? 'valid' : c.plan === 'one' ? (i === c.which % fields.length ? 'broken' : 'valid') : 'any'
          return kind === 'name' ? archiveNameWire : segment(validValue(kind), overValue(kind), mode)
        })
        return fc.tuple(...segs).map((wires) => ({ ...c, wires: Object.fromEntries(fields.map(([f], i) => [f, wires[i]!])) as Record<string, string> }))
      })

    await fc.assert(
      fc.asyncProperty(arb, async (c) => {
        tally.count('paths')
        const w = c.wires
        const path = {
          'create-node': () => `/v1/clusters/${w.cluster}/nodes/${w.node}/checkpoint/${w.namespace}/${w.pod}/${w.container}`,
          'create-auto': () => `/v1/clusters/${w.cluster}/checkpoint/${w.namespace}/${w.pod}/${w.container}`,
          list: () => `/v1/clusters/${w.cluster}/nodes/${w.node}/checkpoints`,
          read: () => `/v1/clusters/${w.cluster}/nodes/${w.node}/checkpoints/${w.name}`,
          delete: () => `/v1/clusters/${w.cluster}/nodes/${w.node}/checkpoints/${w.name}`,
        }[c.route]() + c.suffix
        const method = c.route.startsWith('create') ? 'POST' : c.route === 'delete' ? 'DELETE' : 'GET'
        const v = Object.fromEntries(Object.entries(w).map(([k, x]) => [k, decodeSegment(x)])) as Record<string, string>
        const rules: Record<string, (s: string) => boolean> = { cluster: isClusterId, node: isDns1123Subdomain, pod: isDns1123Subdomain, namespace: isDns1123Label, container: isDns1123Label, name: isArchiveName }
        const valid = c.suffix === '' && Object.entries(v).every(([k, x]) => rules[k]!(x))
        const what = () => `${c.caller} ${method} ${short(path)}`

        const seenBefore = agentSeen()
        const a = judge(tally, await client.send({ method, path, headers: auth(c.caller) }), what)
        const seen = world.agent.seen.slice(seenBefore)
        if (seen.length) tally.note('forwarded_to_agent')
        if (!a) return
        if (!valid) {
          if (a.status < 400) tally.fail('accepted_invalid', `${what()} → ${a.status}`)
          if (seen.length) tally.fail('accepted_invalid', `${what()} reached the agent: ${seen.map((s) => `${s.method} ${s.node}${s.path}`).join(', ')}`)
          return
        }
        // Valid names: the gateway may forward exactly what was asked, to a caller the model allows.
        const caller = callerOf(c.caller)
        let allowed: boolean
        let expected: { node: string; method: string; path: string } | undefined
        if (c.route === 'create-node' || c.route === 'create-auto') {
          allowed = model.allows(caller, 'create', { cluster: v.cluster!, namespace: v.namespace!, pod: v.pod!, container: v.container! })
          // Without a node the fake Kubernetes API places every pod on node-b, with containers app and sidecar.
          const node = c.route === 'create-node' ? v.node : v.cluster === 'prod' && ['app', 'sidecar'].includes(v.container!) ? 'node-b' : undefined
          if (node) expected = { node, method: 'POST', path: `/checkpoint/${v.namespace}/${v.pod}/${v.container}` }
        } else if (c.route === 'list') {
          allowed = model.allows(caller, 'read', { cluster: v.cluster! })
          expected = { node: v.node!, method: 'GET', path: '/checkpoints' }
        } else {
          const p = nameParts(v.name!)
          allowed = p !== null && allowsEveryReading(caller, c.route, v.cluster!, p.pod, p.nsAndContainer)
          expected = { node: v.node!, method, path: `/checkpoints/${v.name}` }
        }
        if (!allowed && a.status < 300) tally.fail('bypass', `${what()} → ${a.status} though the model denies`)
        for (const s of seen) {
          const same = expected && s.node === expected.node && s.method === expected.method && decodeSegment(s.path) === expected.path
          if (!allowed || !REGISTERED.has(v.cluster!) || !same) tally.fail('bypass', `${what()} forwarded ${s.method} ${s.node}${s.path} (expected ${allowed ? JSON.stringify(expected) : 'nothing: denied'})`)
        }
        if (allowed && REGISTERED.has(v.cluster!) && expected && a.status >= 400 && !(c.route === 'read' || c.route === 'delete')) {
          tally.mismatch(`${what()} → ${describeAnswer(a)} though valid and allowed`)
        }
      }),
      { seed: SEED, numRuns: runs(RUNS.paths) },
    )
  })

  // -------------------------------------------------------------------------------------------
  it('archive names with every reading, ?namespace= choices and every user', async () => {
    /** `<namespace>-<container>` strings with one, two or three readings, around the policy's namespaces. */
    const TEMPLATES = ['team-a-app', 'team-ops', 'team-a-b-c', 'ci-x-y', 'ci-team-app', 'team-ci-x', 'ops-app', 'a-team-a', 'team-a-team']
    const PODS = ['web', 'db.team-a']
    /** node/name → the target the archive was made for (null: put straight into the agent's store). */
    const truth = new Map<string, { namespace: string; pod: string; container: string } | null>()
    /** node/pod/template → the name of its recorded archive, while it exists. */
    const recordedName = new Map<string, string>()

    async function ensureRecorded(node: string, pod: string, t: { namespace: string; container: string }): Promise<string> {
      const key = `${node}/${pod}/${t.namespace}-${t.container}`
      const known = recordedName.get(key)
      if (known) return known
      const r = await client.send({ method: 'POST', path: `/v1/clusters/edge/nodes/${node}/checkpoint/${t.namespace}/${pod}/${t.container}`, headers: auth('sre') })
      assert.ok(r.kind === 'response' && r.status === 200, `set-up checkpoint: ${describeAnswer(r)}`)
      const name = (JSON.parse(r.body.toString('utf8')) as { archive: { name: string } }).archive.name
      recordedName.set(key, name)
      truth.set(`${node}/${name}`, { namespace: t.namespace, pod, container: t.container })
      return name
    }
    function ensureUnrecorded(node: string, name: string): void {
      let store = world.agent.archives.get(node)
      if (!store) world.agent.archives.set(node, (store = new Map()))
      if (!store.has(name)) store.set(name, archiveBytes(4096))
      truth.set(`${node}/${name}`, null)
    }
    /** The security question: may this caller act on this archive as it really is? */
    function truthAllows(caller: ModelCaller, action: ModelAction, cluster: string, node: string, name: string): boolean {
      const p = nameParts(name)
      if (!p) return false
      const t = truth.get(`${node}/${name}`)
      return t ? model.allows(caller, action, { cluster, ...t }) : allowsEveryReading(caller, action, cluster, p.pod, p.nsAndContainer)
    }

    const nsChoice = fc.oneof(
      { weight: 3, arbitrary: fc.constant({ t: 'none' as const }) },
      { weight: 6, arbitrary: fc.nat().map((i) => ({ t: 'reading' as const, i })) },
      { weight: 2, arbitrary: fc.constantFrom('team-b', 'Team', '', 'team%00', '..', 'team-a-app', 'a-app', 'team%2Da', 'ci-*', '*').map((v) => ({ t: 'value' as const, v })) },
      { weight: 1, arbitrary: fc.constantFrom({ t: 'dup' as const }, { t: 'unknown' as const }) },
    )
    const arb = fc.record({
      caller: fc.constantFrom(...callerNames),
      action: fc.constantFrom('read', 'read', 'delete', 'delete', 'list'),
      cluster: fc.constantFrom('edge', 'edge', 'prod', 'nope'),
      template: fc.constantFrom(...TEMPLATES),
      pod: fc.constantFrom(...PODS),
      kind: fc.constantFrom('recorded', 'recorded', 'recorded', 'unrecorded', 'unrecorded', 'missing'),
      reading: fc.nat(),
      ns: nsChoice,
    })

    await fc.assert(
      fc.asyncProperty(arb, async (c) => {
        tally.count('archives')
        const caller = callerOf(c.caller)
        const readings = splits(c.template)
        const r = c.reading % readings.length
        const node = c.kind === 'recorded' ? `vault-${r}` : 'vault-u'
        let name: string
        let pod = c.pod
        if (c.kind === 'recorded') {
          pod = `${c.pod}-r${r}` // one pod per node: equal names on two nodes would share the fake's record
          name = await ensureRecorded(node, pod, readings[r]!)
        } else if (c.kind === 'unrecorded') {
          name = `checkpoint-${pod}_${c.template}-2001-01-01T00:00:00Z.tar`
          ensureUnrecorded(node, name)
        } else name = `checkpoint-${pod}_${c.template}-2000-01-01T00:00:00Z.tar`

        if (c.action === 'list') {
          const path = `/v1/clusters/${c.cluster}/nodes/${node}/checkpoints`
          const what = () => `${c.caller} GET ${path}`
          const a = judge(tally, await client.send({ method: 'GET', path, headers: auth(c.caller) }), what)
          if (!a) return
          const allowed = model.allows(caller, 'read', { cluster: c.cluster })
          const expected = !allowed ? 403 : REGISTERED.has(c.cluster) ? 200 : 404
          if (a.status === 200 && !allowed) tally.fail('bypass', `${what()} → 200 though the model denies listing`)
          if (a.status !== expected) tally.mismatch(`${what()} → ${describeAnswer(a)}, expected ${expected}`)
          if (a.status !== 200) return
          const items = (JSON.parse(a.body.toString('utf8')) as { items: Array<{ name: string }> }).items
          tally.note('archive_listed_items', items.length)
          for (const it of items) if (!truthAllows(caller, 'read', c.cluster, node, it.name)) tally.fail('bypass', `${what()} listed ${it.name} (recorded ${JSON.stringify(truth.get(`${node}/${it.name}`))})`)
          return
        }

        const action = c.action as 'read' | 'delete'
        let query = ''
        let ns: string | undefined
        let queryCode: string | undefined
        if (c.ns.t === 'reading') ns = readings[c.ns.i % readings.length]!.namespace
        else if (c.ns.t === 'value') ns = c.ns.v
        else if (c.ns.t === 'dup') {
          query = `?namespace=${readings[0]!.namespace}&namespace=${readings[0]!.namespace}`
          queryCode = 'invalid_query'
        } else if (c.ns.t === 'unknown') {
          query = `?ns=${readings[0]!.namespace}`
          queryCode = 'invalid_query'
        }
        if (ns !== undefined) query = `?namespace=${ns}`
        const path = `/v1/clusters/${c.cluster}/nodes/${node}/checkpoints/${encodeURIComponent(name)}${query}`
        const method = action === 'read' ? 'GET' : 'DELETE'
        const what = () => `${c.caller} ${method} ${path} [${c.kind}${c.kind === 'recorded' ? ` as ${JSON.stringify(readings[r])}` : ''}]`

        // The oracle's exact expectation, step by step as the README describes the route.
        const nsValue = ns === undefined ? undefined : decodeURIComponent(ns)
        const expect = ((): { status: number; code?: string } => {
          if (queryCode) return { status: 400, code: queryCode }
          let granted: string[]
          let allowed: boolean
          if (nsValue !== undefined) {
            if (!isDns1123Label(nsValue)) return { status: 400, code: 'invalid_name' }
            const hit = readings.find((x) => x.namespace === nsValue)
            if (!hit) return { status: 400, code: 'invalid_archive_name' }
            allowed = model.allows(caller, action, { cluster: c.cluster, namespace: hit.namespace, pod, container: hit.container })
            granted = [nsValue]
          } else {
            allowed = allowsEveryReading(caller, action, c.cluster, pod, c.template)
            granted = readings.map((x) => x.namespace)
          }
          if (!allowed) return { status: 403, code: 'forbidden' }
          if (!REGISTERED.has(c.cluster)) return { status: 404, code: 'not_found' }
          if (c.kind === 'missing') return { status: 404, code: 'archive_not_found' }
          const t = truth.get(`${node}/${name}`)
          const covered = t ? granted.includes(t.namespace) : readings.every((x) => granted.includes(x.namespace))
          if (!covered) return { status: 404, code: 'archive_not_found' }
          return { status: action === 'read' ? 200 : 204 }
        })()

        const seenBefore = agentSeen()
        const a = judge(tally, await client.send({ method, path, headers: auth(c.caller) }), what)
        if (world.agent.seen.length > seenBefore) tally.note('forwarded_to_agent')
        if (!a) return
        const mayAccess = c.kind !== 'missing' && truthAllows(caller, action, c.cluster, node, name)
        if (a.status < 300) tally.note('archive_access_granted')
        if (a.status < 300 && !mayAccess) tally.fail('bypass', `${what()} → ${a.status} though the model denies`)
        if (a.status !== expect.status || (expect.code && problemCode(a) !== expect.code)) tally.mismatch(`${what()} → ${describeAnswer(a)}, expected ${expect.status} ${expect.code ?? ''}`)
        if (a.status === 200 && a.body.byteLength !== 4096) tally.fail('partial', `${what()} → ${a.body.byteLength} of 4096 bytes`)
        if (a.status === 204) {
          // Gone from the agent: the next case that needs it makes (or puts) it again.
          if (c.kind === 'recorded') recordedName.delete(`${node}/${pod}/${c.template}`)
          truth.delete(`${node}/${name}`)
        }
      }),
      { seed: SEED + 1, numRuns: runs(RUNS.archives) },
    )
  })

  // -------------------------------------------------------------------------------------------
  it('query strings, headers and bodies', async () => {
    const NODE = 'node-q'
    const ARCHIVE = 'checkpoint-web_team-a-app-2001-02-03T04:05:06Z.tar'
    const READINGS = ['team', 'team-a']
    type Route = 'create' | 'list' | 'read' | 'delete'
    const ALLOWED: Record<Route, string[]> = { create: ['timeout'], list: [], read: ['namespace'], delete: ['namespace'] }
    const arb = fc.record({
      route: fc.constantFrom<Route>('create', 'list', 'list', 'list', 'read', 'read', 'read', 'delete', 'delete'),
      query: queryParams,
      style: queryStyle,
      requestId: requestIdArb,
      accept: acceptArb,
      pad: padding,
      body: bodySpec,
    })
    const wantsStream = (accept: string | undefined) => accept !== undefined && accept.split(',').some((p) => p.split(';')[0]!.trim().toLowerCase() === 'application/x-ndjson')

    await fc.assert(
      fc.asyncProperty(arb, async (c) => {
        tally.count('requests')
        const store = world.agent.archives.get(NODE) ?? new Map<string, Uint8Array>()
        world.agent.archives.set(NODE, store)
        if (!store.has(ARCHIVE)) store.set(ARCHIVE, archiveBytes(4096))

        const base = {
          create: `/v1/clusters/edge/nodes/${NODE}/checkpoint/shop/web/app`,
          list: `/v1/clusters/edge/nodes/${NODE}/checkpoints`,
          read: `/v1/clusters/edge/nodes/${NODE}/checkpoints/${ARCHIVE}`,
          delete: `/v1/clusters/edge/nodes/${NODE}/checkpoints/${ARCHIVE}`,
        }[c.route]
        const query = writeQuery(c.query, c.style)
        const path = base + query
        const method = c.route === 'create' ? 'POST' : c.route === 'delete' ? 'DELETE' : 'GET'
        const headers: Record<string, string> = { ...auth('sre') }
        if (c.requestId !== undefined) headers['x-request-id'] = c.requestId
        if (c.accept !== undefined) headers.accept = c.accept
        if (c.pad) headers['x-pad'] = 'p'.repeat(c.pad)
        const x: Exchange = { method, path, headers }
        if (c.body.kind === 'empty-length') x.headers!['content-length'] = '0'
        else if (c.body.kind !== 'none') Object.assign(x, { body: (c.body as Extract<BodySpec, { body: string }>).body, chunked: c.body.kind === 'chunked' })
        const what = () => `${method} ${short(path)} [request id ${short(JSON.stringify(c.requestId) ?? '-')}, accept ${short(JSON.stringify(c.accept) ?? '-')}, pad ${c.pad}, body ${c.body.kind}]`

        // Node's parser takes 16 KiB of request line and headers; near the line either answer is fine.
        const headerBytes = path.length + 20 + Object.entries(headers).reduce((n, [k, v]) => n + k.length + v.length + 4, 0) + 100
        const expect = ((): { status: number; code?: string } | 'either' => {
          if (headerBytes > 16_384 + 1024) return { status: 431, code: 'headers_too_large' }
          const rest = ((): { status: number; code?: string } => {
            const hasBody = c.body.kind === 'chunked' || (c.body.kind === 'length' && c.body.body !== '') // content-length: 0 is no body
            if (hasBody) return { status: 400, code: 'invalid_body' }
            const params = [...new URLSearchParams(query.replace(/^\?/, '').replace(/#.*$/, ''))]
            const keys = params.map(([k]) => k)
            if (keys.some((k) => !ALLOWED[c.route].includes(k)) || new Set(keys).size !== keys.length) return { status: 400, code: 'invalid_query' }
            const get = (k: string) => params.find(([key]) => key === k)?.[1]
            if (c.route === 'create') {
              const t = get('timeout')
              if (t !== undefined && !(/^[0-9]{1,9}$/.test(t) && Number(t) <= 600)) return { status: 400, code: 'invalid_timeout' }
              return { status: 200 }
            }
            if (c.route === 'list') return { status: 200 }
            const ns = get('namespace')
            if (ns !== undefined) {
              if (!isDns1123Label(ns)) return { status: 400, code: 'invalid_name' }
              if (!READINGS.includes(ns)) return { status: 400, code: 'invalid_archive_name' }
              return { status: 404, code: 'archive_not_found' } // the grant covers one reading; this archive has no record
            }
            return { status: c.route === 'read' ? 200 : 204 }
          })()
          return headerBytes > 16_384 - 1024 ? 'either' : rest
        })()

        const seenBefore = agentSeen()
        const a = judge(tally, await client.send(x), what)
        const reached = world.agent.seen.length > seenBefore
        if (reached) tally.note('forwarded_to_agent')
        if (!a) return
        if (expect !== 'either') {
          if (expect.status >= 400 && a.status < 400) tally.fail('accepted_invalid', `${what()} → ${a.status}, expected ${expect.status} ${expect.code}`)
          if (expect.status >= 400 && expect.code !== 'archive_not_found' && reached) tally.fail('accepted_invalid', `${what()} reached the agent`)
          if (a.status !== expect.status || (expect.code && problemCode(a) !== expect.code)) tally.mismatch(`${what()} → ${describeAnswer(a)}, expected ${expect.status} ${expect.code ?? ''}`)
        }
        const code = a.status >= 400 ? problemCode(a) : undefined
        if (code !== 'headers_too_large' && code !== 'malformed_request') {
          // Answers past the parser carry a request id: the caller's when well-formed, a fresh one otherwise.
          const given = c.requestId?.replace(/^[ \t]+|[ \t]+$/g, '')
          const got = String(a.headers['x-request-id'] ?? '')
          const ok = given !== undefined && REQUEST_ID_RULE.test(given) ? got === given : REQUEST_ID_RULE.test(got) && got !== c.requestId
          if (!ok) tally.fail('accepted_invalid', `${what()} → request id ${JSON.stringify(short(got))}`)
        }
        if (c.route === 'create' && a.status === 200) {
          const type = String(a.headers['content-type'] ?? '')
          if (wantsStream(c.accept) !== type.startsWith('application/x-ndjson')) tally.mismatch(`${what()} → content-type ${type}`)
        }
        if (a.status === 200 && c.route === 'read' && a.body.byteLength !== 4096) tally.fail('partial', `${what()} → ${a.body.byteLength} of 4096 bytes`)
      }),
      { seed: SEED + 2, numRuns: runs(RUNS.requests) },
    )
  })

  // -------------------------------------------------------------------------------------------
  it('webhook payloads', async () => {
    await fc.assert(
      fc.asyncProperty(hookCase, async (c: HookCase) => {
        tally.count('webhooks')
        const path = `/v1/hooks/${c.source}`
        const size = Buffer.byteLength(c.body)
        const what = () => `POST ${path} ${c.shape} ${size} bytes${c.chunked ? ' chunked' : ''}: ${short(Buffer.isBuffer(c.body) ? `<bytes ${c.body.toString('hex').slice(0, 40)}>` : c.body)}`
        const a = judge(tally, await hooksClient.send({ method: 'POST', path, headers: { ...auth('alertmanager'), 'content-type': 'application/json' }, body: c.body, chunked: c.chunked }), what)
        if (!a) return
        if (c.shape === 'oversized') {
          if (a.status < 400) tally.fail('accepted_invalid', `${what()} → ${a.status}, expected 413 (limit ${MAX_HOOK_BODY})`)
          else if (a.status !== 413 || problemCode(a) !== 'payload_too_large') tally.mismatch(`${what()} → ${describeAnswer(a)}, expected 413`)
          return
        }
        if (c.shape === 'invalid') {
          if (a.status < 400) tally.fail('accepted_invalid', `${what()} → ${a.status}, expected 400 invalid_body`)
          else if (a.status !== 400 || problemCode(a) !== 'invalid_body') tally.mismatch(`${what()} → ${describeAnswer(a)}, expected 400 invalid_body`)
          return
        }
        // A notification of the right shape is never refused: Alertmanager does not retry a 4xx.
        if (a.status !== 200 && a.status !== 202) return void tally.fail('lost', `${what()} → ${describeAnswer(a)}`)
        const answer = JSON.parse(a.body.toString('utf8')) as { alerts: Array<{ index: number; outcome: string; reason?: string }> }
        if (answer.alerts.length !== c.alerts.length) return void tally.fail('lost', `${what()} → ${answer.alerts.length} summaries for ${c.alerts.length} alerts`)
        tally.note('webhook_alerts_judged', c.alerts.length)
        for (const [i, sent] of c.alerts.entries()) {
          const s = answer.alerts[i]!
          const invalid = s.outcome === 'skipped' && s.reason === 'invalid_alert'
          if (sent.broken && !invalid) tally.fail('accepted_invalid', `${what()} alert ${i} ${short(JSON.stringify(sent.value) ?? '')} → ${s.outcome} ${s.reason ?? ''}`)
          if (!sent.broken && invalid) tally.fail('lost', `${what()} alert ${i} ${short(JSON.stringify(sent.value) ?? '')} skipped as invalid_alert`)
        }
      }),
      { seed: SEED + 3, numRuns: runs(RUNS.webhooks) },
    )
  })

  // -------------------------------------------------------------------------------------------
  it('figures: no crash, 5xx, bypass or accepted invalid input', () => {
    const total = Object.values(tally.cases).reduce((a, b) => a + b, 0)
    emit('abuse_seed', SEED, 'seed')
    for (const [k, n] of Object.entries(tally.cases)) emit(`abuse_cases_${k}`, n, 'cases')
    emit('abuse_cases_total', total, 'cases')
    for (const [k, n] of Object.entries(tally.notes)) emit(`abuse_${k}`, n, k.endsWith('items') || k.endsWith('alerts_judged') ? 'count' : 'cases')
    for (const k of FAILURES) emit(`abuse_${k}`, tally.failures[k], 'count')
    emit('abuse_oracle_mismatches', tally.mismatches, 'count')
    emit('abuse_duration', Math.round((performance.now() - started) / 100) / 10, 's')
    // Secrets: every line the gateways wrote over the whole run holds no token, grant or key material.
    const lines = [...gw.logs, ...hooksGw.logs].map((l) => JSON.stringify(l))
    const leaked = lines.filter((l) => /eyJ[A-Za-z0-9_-]{10,}\.eyJ/.test(l) || /PRIVATE KEY|"d":"|Bearer /.test(l) || [...tokens.values()].some((t) => l.includes(t.split('.')[2]!)))
    emit('abuse_log_lines_scanned', lines.length, 'lines')
    emit('abuse_secret_leak', leaked.length, 'lines')
    assert.ok(lines.length > 1000, `only ${lines.length} log lines`)
    assert.deepEqual(leaked.slice(0, 3), [], 'log lines with a token, grant or key')
    for (const e of tally.examples) console.error(`abuse failure: ${e}`)
    for (const e of tally.mismatchExamples) console.error(`abuse mismatch: ${e}`)
    assert.deepEqual(tally.failures, { crash: 0, '5xx': 0, frozen: 0, bypass: 0, accepted_invalid: 0, lost: 0, partial: 0 }, `failures (seed ${SEED}):\n${tally.examples.join('\n')}`)
    // A filtered run (--test-name-pattern) runs fewer properties; the full suite must reach 10,000.
    if (Object.keys(tally.cases).length === 4) assert.ok(total >= 10_000 * Math.min(1, SCALE), `only ${total} cases`)
  })
})

