/**
 * Generators for the abuse suite (fast-check). Each case carries what the oracle needs to judge
 * it: the exact bytes sent, and what the sender meant or broke on purpose. Values are built
 * around the name limits of shared/names.ts (63, 253, 400) and the fixtures' policy.
 */
import fc from 'fast-check'

const ALNUM = [...'abcdefghijklmnopqrstuvwxyz0123456789']
const ALNUM_DASH = [...ALNUM, '-']

/** Percent-encodings and raw bytes that must never reach the agent as (part of) a name. */
export const NASTY = [
  '', '.', '..', '...', '%2e', '%2E%2e', '%2e%2e', '.%2e', '%00', '%2F', '%2f', '%2f..%2f', '..%2F..%2Fetc%2Fpasswd', '%5C', '%5c..%5c',
  '%25', '%252F', '%252e%252e', '%', '%G0', '%2', '%%', '%20', '+', '%2B', '%3B', ';x=1', '%3F', '%23', ':', '@', '~', '%7E', '!', "'", '(', '*',
  '$', ',', '=', '&', 'A', '_', '-', '%5F', '%D0%B0', '%E2%84%AA', '%C5%BF', '%EF%BD%81', '%E2%80%8B', '%CC%81', '%C0%AF', '%C0%AE%C0%AE', '%FF',
  '%EF%BF%BD', '%F0%9F%92%A5', '%0D%0A', '%0A', '%09', '%0D%0Ax-injected:%201', '%7F', '%60', '%22', '%3C%3E',
  // UTF-8 bytes sent raw (as latin1 characters, which node writes as single bytes)
  Buffer.from('ë', 'utf8').toString('latin1'),
  Buffer.from('\u{1F4A5}', 'utf8').toString('latin1'),
  '\u00ff',
]

const exactAlnum = (n: number) => fc.array(fc.constantFrom(...ALNUM), { minLength: n, maxLength: n }).map((a) => a.join(''))
const smallLabel = fc
  .tuple(fc.constantFrom(...ALNUM), fc.string({ unit: fc.constantFrom(...ALNUM_DASH), maxLength: 10 }), fc.constantFrom(...ALNUM))
  .map(([a, m, z]) => `${a}${m}${z}`)
/** A dotted name of exactly `n` characters whose labels stay within 63 (dots at 63, 127, 191). */
const exactDotted = (n: number) =>
  exactAlnum(n).map((s) => {
    const c = [...s]
    for (const i of [63, 127, 191]) if (i < n - 1) c[i] = '.'
    return c.join('')
  })

export type FieldKind = 'label' | 'subdomain' | 'cluster'

/** Fake-agent and fake-kube pod names with a scripted behaviour: a valid pod must not be one. */
const SCRIPTED = /^(fail-|slow|stream-|big$|flaky-dump$|missing$|unscheduled$)/

export function validValue(kind: FieldKind): fc.Arbitrary<string> {
  if (kind === 'label') return fc.oneof({ weight: 6, arbitrary: smallLabel }, { weight: 1, arbitrary: exactAlnum(63) }, { weight: 1, arbitrary: fc.constantFrom('team-a', 'team', 'ci-x', 'app') })
  if (kind === 'subdomain') {
    return fc
      .oneof(
        { weight: 6, arbitrary: smallLabel },
        { weight: 2, arbitrary: fc.tuple(smallLabel, smallLabel).map(([a, b]) => `${a}.${b}`) },
        { weight: 1, arbitrary: exactDotted(253) },
        { weight: 1, arbitrary: exactAlnum(63) },
      )
      .filter((s) => !SCRIPTED.test(s))
  }
  return fc.oneof(
    { weight: 8, arbitrary: fc.constantFrom('edge', 'prod') },
    { weight: 1, arbitrary: fc.tuple(smallLabel, fc.constantFrom('_', '-', '')).map(([a, b]) => `${a}${b}x`) },
    { weight: 1, arbitrary: exactAlnum(63) },
  )
}

/** Just over the limit, or far over it (past the HTTP parser's header limit for the longest). */
export function overValue(kind: FieldKind): fc.Arbitrary<string> {
  const over = kind === 'subdomain' ? exactDotted(254) : exactAlnum(64)
  return fc.oneof({ weight: 4, arbitrary: over }, { weight: 1, arbitrary: fc.integer({ min: 1000, max: 20_000 }).map((n) => 'a'.repeat(n)) })
}

/** Percent-encodes some characters of a value (upper or lower hex): same value, other bytes. */
const encodeSome = (v: string) =>
  fc.array(fc.boolean(), { minLength: v.length, maxLength: v.length }).chain((mask) =>
    fc.boolean().map((lower) =>
      [...v].map((ch, i) => {
        if (!mask[i]) return ch
        const hex = ch.charCodeAt(0).toString(16).toUpperCase().padStart(2, '0')
        return `%${lower ? hex.toLowerCase() : hex}`
      }).join(''),
    ),
  )

/** A path segment as sent: valid, re-encoded, too long, or broken by a nasty insertion. */
export function segment(valid: fc.Arbitrary<string>, over: fc.Arbitrary<string>, mode: 'valid' | 'broken' | 'any'): fc.Arbitrary<string> {
  const ok = fc.oneof({ weight: 5, arbitrary: valid }, { weight: 1, arbitrary: valid.chain(encodeSome) })
  const bad = fc.oneof(
    { weight: 2, arbitrary: over },
    { weight: 4, arbitrary: fc.tuple(valid, fc.nat(), fc.constantFrom(...NASTY)).map(([v, i, n]) => v.slice(0, i % (v.length + 1)) + n + v.slice(i % (v.length + 1))) },
    { weight: 2, arbitrary: fc.constantFrom(...NASTY) },
    { weight: 1, arbitrary: fc.tuple(valid, fc.nat()).map(([v, i]) => v.slice(0, i % v.length) + v.charAt(i % v.length).toUpperCase() + v.slice((i % v.length) + 1)) },
  )
  return mode === 'valid' ? ok : mode === 'broken' ? bad : fc.oneof({ weight: 2, arbitrary: ok }, { weight: 1, arbitrary: bad })
}

const TS = fc.constantFrom('2026-01-01T00:00:00Z', '2026-11-30T12:34:56.789Z', '2001-02-03T04:05:06Z', '9999-99-99T99:99:99Z')

/** An archive name: valid ones, ones at and just over 400 characters, and broken ones. */
export const archiveNameWire: fc.Arbitrary<string> = fc.oneof(
  { weight: 4, arbitrary: fc.tuple(validValue('subdomain'), validValue('label'), validValue('label'), TS).map(([p, n, c, t]) => `checkpoint-${p}_${n}-${c}-${t}.tar`) },
  // 37 fixed characters + pod + '_' … : pod 253 and namespace-container of 110 make exactly 400.
  { weight: 1, arbitrary: fc.tuple(exactDotted(253), exactAlnum(55), exactAlnum(54), fc.boolean()).map(([p, n, c, over]) => `checkpoint-${p}_${n}-${c}${over ? 'x' : ''}-2026-01-01T00:00:00Z.tar`) },
  { weight: 1, arbitrary: fc.tuple(validValue('label'), TS).map(([n, t]) => `checkpoint-web_${n}-app-${t.replaceAll(':', '%3A')}.tar`) },
  {
    weight: 4,
    arbitrary: fc
      .tuple(fc.constantFrom('checkpoint-web_team-a-app-2026-01-01T00:00:00Z.tar', 'checkpoint-db.x_ci-x-y-2026-01-01T00:00:00.5Z.tar'), fc.nat(), fc.constantFrom(...NASTY, '.tar', '.gz', 'Z', '_', '-', 'T'))
      .map(([v, i, n]) => v.slice(0, i % (v.length + 1)) + n + v.slice(i % (v.length + 1))),
  },
  { weight: 1, arbitrary: fc.constantFrom(...NASTY, 'checkpoint-.tar', 'checkpoint-web_team-2026-01-01T00:00:00Z.tar', 'checkpoint-web_-a-app-2026-01-01T00:00:00Z.tar', 'CHECKPOINT-web_team-a-app-2026-01-01T00:00:00Z.tar', 'checkpoint-web_team-a-app-2026-01-01T00:00:00Z.tar.gz', 'checkpoint-web_team-a-app-2026-01-01T00:00:00+01:00.tar') },
)

/** Route suffixes: almost always none; otherwise something that must not route to a handler. */
export const suffix = fc.oneof({ weight: 12, arbitrary: fc.constant('') }, { weight: 1, arbitrary: fc.constantFrom('/', '//', '/..', '/.', '/%2e%2e', '%2F', '/x') })

// ---------------------------------------------------------------------------------------------
// Query strings, headers and bodies.

export interface QueryParam {
  key: string
  value: string
}

const TIMEOUTS = ['0', '1', '30', '600', '601', '-1', '1e3', '0x10', '%205', '5%20', '%D9%A3', '999999999', '9999999999', '1.5', '%00', '%2B5', '', '00000000600', '000000600', 'NaN', 'Infinity', '5%0A']
const KEYS = ['timeout', 'namespace', 'Timeout', 'TIMEOUT', 'timeout[]', 'time%6Fut', 'ns', 'x', '', '%00', 'timeout%00', 'namespace%20', 'names%70ace', '__proto__', 'constructor']
const NAMESPACES = ['team', 'team-a', 'team-b', 'Team', '', 'team%00', '..', 'team-a-app', 'a-app', '%74eam']

export const queryParams: fc.Arbitrary<QueryParam[]> = fc.oneof(
  { weight: 3, arbitrary: fc.constant<QueryParam[]>([]) },
  { weight: 2, arbitrary: fc.constantFrom(...TIMEOUTS).map((value) => [{ key: 'timeout', value }]) },
  { weight: 2, arbitrary: fc.constantFrom(...NAMESPACES).map((value) => [{ key: 'namespace', value }]) },
  { weight: 3, arbitrary: fc.array(fc.record({ key: fc.constantFrom(...KEYS), value: fc.constantFrom(...TIMEOUTS, ...NAMESPACES) }), { minLength: 1, maxLength: 4 }) },
)

/** How the query string is written: `?k=v&…`, with `;`, a bare `?`, a trailing `&`, a fragment. */
export const queryStyle = fc.constantFrom('plain', 'plain', 'plain', 'bare-question', 'trailing-amp', 'key-only', 'fragment')

export function writeQuery(params: QueryParam[], style: string): string {
  const body = params.map((p) => (style === 'key-only' && p.value === '' ? p.key : `${p.key}=${p.value}`)).join('&')
  if (style === 'bare-question') return params.length ? `?${body}` : '?'
  if (style === 'trailing-amp') return `?${body}&`
  if (style === 'fragment') return `?${body}#frag`
  return params.length ? `?${body}` : ''
}

export const requestId = fc.oneof(
  { weight: 2, arbitrary: fc.constant(undefined) },
  { weight: 2, arbitrary: fc.string({ unit: fc.constantFrom(...'AZaz09._:-'), minLength: 1, maxLength: 128 }) },
  { weight: 1, arbitrary: fc.constantFrom('a'.repeat(128), 'a'.repeat(129), 'x'.repeat(5000), '', ' ', 'a b', '"quoted"', '<script>', 'id;drop', 'ü-latin1', '%0D%0Aset-cookie:%20x', '../../etc', 'a,b', '\t') },
)

export const accept = fc.constantFrom(
  undefined, 'application/x-ndjson', 'APPLICATION/X-NDJSON', 'application/x-ndjson; q=0.1', 'application/json, application/x-ndjson', '*/*', 'text/html',
  'application/x-ndjson;;;', ',,,', ';', 'application/problem+json', 'x'.repeat(4000), 'application/x-ndjson, '.repeat(200),
)

/** Extra header bytes: none, some, or beyond the 16 KiB the Node server accepts (→ 431). */
export const padding = fc.oneof({ weight: 6, arbitrary: fc.constant(0) }, { weight: 2, arbitrary: fc.integer({ min: 1, max: 12_000 }) }, { weight: 1, arbitrary: fc.integer({ min: 17_000, max: 40_000 }) })

export type BodySpec = { kind: 'none' } | { kind: 'empty-length' } | { kind: 'length' | 'chunked'; body: string }
export const bodySpec: fc.Arbitrary<BodySpec> = fc.oneof(
  { weight: 6, arbitrary: fc.constant({ kind: 'none' as const }) },
  { weight: 1, arbitrary: fc.constant({ kind: 'empty-length' as const }) },
  { weight: 2, arbitrary: fc.record({ kind: fc.constantFrom('length' as const, 'chunked' as const), body: fc.oneof(fc.constantFrom('x', '{}', '{"timeout":1}', '\u0000'), fc.string({ maxLength: 2000 })) }) },
)

// ---------------------------------------------------------------------------------------------
// Webhook payloads.

/** An alert as sent, and whether the sender broke it on purpose (it must come back `invalid_alert`). */
export interface AlertCase {
  value: unknown
  broken: boolean
}

const labelPools = fc.record(
  {
    alertname: fc.constantFrom('ContainerCompromised', 'ShellSpawned', 'HighLatency'),
    checkpoint: fc.constantFrom('true', 'false', 'TRUE'),
    namespace: fc.constantFrom('shop-abuse', 'pay', 'team-a', 'Bad_NS', ''),
    pod: fc.constantFrom('web', 'api', 'UPPER', 'a'.repeat(254)),
    container: fc.constantFrom('app', '-bad'),
    node: fc.constantFrom('node-h', 'Bad_Node', ''),
    cluster: fc.constantFrom('prod', 'edge', 'nope', 'BAD!'),
  },
  { requiredKeys: ['alertname'] },
)
const extraLabels = fc.dictionary(fc.string({ maxLength: 12 }), fc.string({ maxLength: 40 }), { maxKeys: 4 })
const STARTS_OK = fc.constantFrom('2026-11-25T10:00:00.000Z', '2026-11-25T10:00:00Z')
const STARTS_BAD: fc.Arbitrary<unknown> = fc.constantFrom('not a time', '', 42, null, {}, [], true)
const fingerprintOk = fc.oneof(fc.constant(undefined), fc.constant(''), fc.stringMatching(/^[0-9a-f]{16}$/), fc.string({ maxLength: 128 }))

/** Deeply nested junk (arrays or objects), `depth` levels. */
export function nested(depth: number, asObject: boolean): string {
  return asObject ? '{"a":'.repeat(depth) + '1' + '}'.repeat(depth) : '['.repeat(depth) + ']'.repeat(depth)
}

const deepValue: fc.Arbitrary<unknown> = fc.oneof(
  fc.anything({ maxDepth: 4, maxKeys: 4 }),
  fc.integer({ min: 50, max: 2000 }).map((d) => JSON.parse(nested(d, false)) as unknown),
  fc.integer({ min: 50, max: 2000 }).map((d) => JSON.parse(nested(d, true)) as unknown),
)

/** A usable alert (its own status may be absent when the notification's stands in). */
function goodAlert(groupStatusUsable: boolean): fc.Arbitrary<Record<string, unknown>> {
  return fc
    .record({
      status: groupStatusUsable ? fc.constantFrom<string | undefined>('firing', 'resolved', undefined) : fc.constantFrom('firing', 'resolved'),
      labels: fc.oneof({ weight: 8, arbitrary: fc.tuple(labelPools, extraLabels).map(([a, b]) => ({ ...b, ...a })) }, { weight: 1, arbitrary: fc.constantFrom(null, undefined, {}) }),
      annotations: fc.oneof(fc.constant(undefined), fc.dictionary(fc.string({ maxLength: 10 }), fc.string({ maxLength: 200 }), { maxKeys: 3 })),
      startsAt: STARTS_OK,
      endsAt: fc.oneof(fc.constant(undefined), fc.anything({ maxDepth: 1 })),
      fingerprint: fingerprintOk,
      junk: fc.oneof(fc.constant(undefined), deepValue),
    })
    .map((a) => {
      const out: Record<string, unknown> = {}
      for (const [k, v] of Object.entries(a)) if (v !== undefined) out[k] = v
      return out
    })
}

/** One thing wrong with an otherwise usable alert, or not an alert at all. */
function brokenAlert(groupStatusUsable: boolean): fc.Arbitrary<unknown> {
  const base = goodAlert(groupStatusUsable)
  const edits: Array<fc.Arbitrary<(a: Record<string, unknown>) => unknown>> = [
    fc.constantFrom<unknown>('FIRING', 'pending', 42, null, true, {}, []).map((s) => (a) => ({ ...a, status: s })),
    STARTS_BAD.map((s) => (a) => ({ ...a, startsAt: s })),
    fc.constant((a: Record<string, unknown>) => {
      const { startsAt: _, ...rest } = a
      return rest
    }),
    fc.constantFrom<unknown>(42, 'x'.repeat(129), {}, [], true).map((f) => (a) => ({ ...a, fingerprint: f })),
    fc.constantFrom<unknown>('labels', 1, ['a'], { a: 1 }, { a: null }, { a: { b: 'c' } }, { a: ['x'] }).map((l) => (a) => ({ ...a, labels: l })),
    fc.constantFrom<unknown>('x', 2, [], { a: false }, { a: {} }).map((l) => (a) => ({ ...a, annotations: l })),
    deepValue.filter((v) => !(v && typeof v === 'object' && !Array.isArray(v))).map((v) => () => v),
    fc.integer({ min: 100, max: 3000 }).map((d) => () => JSON.parse(nested(d, false)) as unknown),
  ]
  if (!groupStatusUsable) {
    edits.push(
      fc.constant((a: Record<string, unknown>) => {
        const { status: _, ...rest } = a
        return rest
      }),
    )
  }
  return fc.tuple(base, fc.oneof(...edits)).map(([a, edit]) => edit(a))
}

export interface HookCase {
  source: 'alertmanager' | 'grafana'
  /** The body as sent (a string, or bytes for invalid UTF-8). */
  body: string | Buffer
  chunked: boolean
  /** What the sender made: a usable notification, a refusable one (400), or an oversized one (413). */
  shape: 'valid' | 'invalid' | 'oversized'
  /** For `valid`: each alert as sent and whether it was broken on purpose. */
  alerts: AlertCase[]
}

export const MAX_HOOK_BODY = 65_536
const VERSION = { alertmanager: '4', grafana: '1' } as const

/** Pads a JSON object with a junk member to exactly `size` bytes (ASCII). */
function padTo(obj: Record<string, unknown>, size: number): string {
  const base = JSON.stringify({ ...obj, zzPad: '' })
  return base.length >= size ? base : JSON.stringify({ ...obj, zzPad: 'p'.repeat(size - base.length) })
}

const groupStatus = fc.constantFrom<unknown>('firing', 'resolved', 'weird', '', undefined)

const validNotification = fc
  .tuple(fc.constantFrom('alertmanager' as const, 'grafana' as const), groupStatus)
  .chain(([source, status]) => {
    const usable = status === 'firing' || status === 'resolved'
    const alert = fc.oneof({ weight: 2, arbitrary: goodAlert(usable).map((value): AlertCase => ({ value, broken: false })) }, { weight: 1, arbitrary: brokenAlert(usable).map((value): AlertCase => ({ value, broken: true })) })
    const alerts = fc.oneof({ weight: 40, arbitrary: fc.array(alert, { maxLength: 6 }) }, { weight: 1, arbitrary: fc.integer({ min: 500, max: 2000 }).map((n) => Array.from({ length: n }, (_, i): AlertCase => ({ value: i, broken: true }))) })
    return fc.record({
      source: fc.constant(source),
      status: fc.constant(status),
      alerts,
      truncatedAlerts: fc.constantFrom<unknown>(undefined, null, 0, 3),
      extra: fc.dictionary(fc.constantFrom('receiver', 'groupKey', 'groupLabels', 'commonLabels', 'externalURL', 'orgId', 'title', 'junk', 'state', 'message'), fc.anything({ maxDepth: 3, maxKeys: 3 }), { maxKeys: 4 }),
      chunked: fc.boolean(),
      boundary: fc.oneof({ weight: 9, arbitrary: fc.constant(false) }, { weight: 1, arbitrary: fc.constant(true) }),
    })
  })
  .map((n): HookCase => {
    const obj: Record<string, unknown> = { ...n.extra, version: VERSION[n.source], alerts: n.alerts.map((a) => a.value) }
    if (n.status !== undefined) obj.status = n.status
    if (n.truncatedAlerts !== undefined) obj.truncatedAlerts = n.truncatedAlerts
    const text = JSON.stringify(obj)
    // At the limit exactly it is still a notification; one byte more is the oversized case below.
    const body = n.boundary && text.length < MAX_HOOK_BODY ? padTo(obj, MAX_HOOK_BODY) : text
    return { source: n.source, body, chunked: n.chunked, shape: body.length > MAX_HOOK_BODY ? 'oversized' : 'valid', alerts: n.alerts }
  })

const badTop: fc.Arbitrary<{ source: 'alertmanager' | 'grafana'; body: string | Buffer }> = fc.constantFrom('alertmanager' as const, 'grafana' as const).chain((source) => {
  const v = VERSION[source]
  const ok = { version: v, alerts: [] as unknown[] }
  const bodies: Array<fc.Arbitrary<string | Buffer>> = [
    fc.constantFrom<unknown>(undefined, v === '4' ? '1' : '4', 4, Number(v), `${v} `, null, [v]).map((version) => JSON.stringify({ ...ok, version })),
    fc.constantFrom<unknown>(undefined, {}, 'alerts', null, 5, { 0: {} }).map((alerts) => JSON.stringify({ version: v, alerts })),
    fc.constantFrom<unknown>(1, true, [], {}, null).map((status) => JSON.stringify({ ...ok, status })),
    fc.constantFrom<unknown>(-1, 1.5, '3', true, [], {}).map((t) => JSON.stringify({ ...ok, truncatedAlerts: t })),
    fc.constantFrom('[]', '"x"', '42', 'null', 'true', '', ' ', '{', '{"version":"4",', 'not json', '\u0000', '{"version":"4","alerts":[]}{}'),
    fc.integer({ min: 1000, max: 30_000 }).map((d) => nested(d, false)),
    fc.integer({ min: 1000, max: 10_000 }).map((d) => nested(d, true)),
    fc.constant(Buffer.from([0x7b, 0x22, 0xff, 0xfe, 0x22, 0x7d])),
    fc.constant(Buffer.concat([Buffer.from(`{"version":"${v}","alerts":[],"x":"`), Buffer.from([0xc0, 0xaf]), Buffer.from('"}')])),
  ]
  return fc.record({ source: fc.constant(source), body: fc.oneof(...bodies) })
})

const oversized: fc.Arbitrary<HookCase> = fc
  .record({ source: fc.constantFrom('alertmanager' as const, 'grafana' as const), size: fc.oneof(fc.constant(MAX_HOOK_BODY + 1), fc.integer({ min: MAX_HOOK_BODY + 2, max: 300_000 })), chunked: fc.boolean(), huge: fc.boolean() })
  .map(({ source, size, chunked, huge }) => {
    const body = huge
      ? JSON.stringify({ version: VERSION[source], alerts: Array.from({ length: Math.ceil(size / 2) }, () => 0) })
      : padTo({ version: VERSION[source], status: 'firing', alerts: [] }, size)
    return { source, body, chunked, shape: 'oversized', alerts: [] }
  })

export const hookCase: fc.Arbitrary<HookCase> = fc.oneof(
  { weight: 6, arbitrary: validNotification },
  { weight: 3, arbitrary: fc.tuple(badTop, fc.boolean()).map(([b, chunked]): HookCase => ({ ...b, chunked, shape: 'invalid', alerts: [] })) },
  { weight: 1, arbitrary: oversized },
)
