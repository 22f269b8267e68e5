/**
 * Abuse of the agent's own public inputs (what a gateway — or anyone holding its client
 * certificate — can send): generated path segments for the checkpoint route, archive names for
 * download and delete, query strings and odd headers, each with a valid grant for what the request
 * claims to be. Oracle: a name shared/names.ts calls invalid gets a 4xx problem with a stable code
 * and never reaches the runtime; nothing answers 5xx or resets; a grant for one target never
 * serves or deletes another. Prints `{"name","value","unit"}` figures; failure counters must be 0.
 */
import assert from 'node:assert/strict'
import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { after, before, describe, it } from 'node:test'
import fc from 'fast-check'
import { ERROR_STATUS } from '../../shared/errors.ts'
import { archiveReadings, isArchiveName } from '../../shared/names.ts'
import { makeIdentities, startTestAgent, type TestAgent } from '../support/agent-harness.ts'
import { startFakeCri, type FakeCri } from '../support/fake-cri.ts'
import { archiveNameWire, overValue, queryParams, queryStyle, segment, validValue, writeQuery } from './arbitraries.ts'

const SEED = Number(process.env.RELIABILITY_SEED ?? 20261130)
const SCALE = Number(process.env.RELIABILITY_SCALE ?? 1)
const emit = (name: string, value: number, unit: string) => console.log(JSON.stringify({ name, value, unit }))

// The oracle's own reading of Kubernetes names (RFC 1123), independent of shared/names.ts.
const isDns1123Label = (s: string) => s.length >= 1 && s.length <= 63 && /^[a-z0-9]([-a-z0-9]*[a-z0-9])?$/.test(s)
const isDns1123Subdomain = (s: string) => s.length >= 1 && s.length <= 253 && s.split('.').every((l) => /^[a-z0-9]([-a-z0-9]*[a-z0-9])?$/.test(l))

/** The value a path segment stands for, as the agent decodes it (null when it cannot be decoded). */
const decoded = (s: string): string | null => {
  try {
    return decodeURIComponent(s)
  } catch {
    return null
  }
}

describe('abuse of the agent\'s inputs', { timeout: 300_000 }, () => {
  let dir: string
  let cri: FakeCri
  let a: TestAgent
  const failures = { crash: 0, '5xx': 0, accepted_invalid: 0, bypass: 0 }
  const examples: string[] = []
  let cases = 0
  const fail = (kind: keyof typeof failures, what: string) => {
    failures[kind]++
    if (examples.length < 10) examples.push(`${kind}: ${what.slice(0, 200)}`)
  }

  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'agent-abuse-'))
    const ids = await makeIdentities(dir)
    cri = await startFakeCri(join(dir, 'cri.sock'), {}, [{ id: 'c-app', namespace: 'team-a', pod: 'web', container: 'app' }])
    a = await startTestAgent({ ids, endpoint: cri.endpoint, dir, args: ['--max-queue=100'] })
  })
  after(async () => {
    emit('agent_abuse_cases', cases, 'cases')
    for (const [k, v] of Object.entries(failures)) emit(`agent_abuse_${k}`, v, 'count')
    await a?.stop()
    await cri?.stop()
    await rm(dir, { recursive: true, force: true })
  })

  /** One request; a refusal by the client library (a path it will not send) is not a case. */
  async function send(method: string, path: string, grant: string, headers: Record<string, string> = {}): Promise<{ status: number; code?: string } | 'unsent' | 'crash'> {
    let res
    try {
      res = await a.fetch(path, { method, headers: { authorization: `Bearer ${grant}`, accept: 'application/json', ...headers } })
    } catch (err) {
      const code = (err as { code?: string }).code ?? ''
      return code.startsWith('UND_ERR_INVALID') || code === 'ERR_INVALID_ARG_VALUE' || code === 'ERR_INVALID_CHAR' ? 'unsent' : 'crash'
    }
    const text = await res.body.text()
    // A HEAD answer carries no body, a problem included: its status is the answer.
    if (res.statusCode < 400 || method === 'HEAD') return { status: res.statusCode }
    try {
      const code = (JSON.parse(text) as { code?: string }).code
      return { status: res.statusCode, ...(typeof code === 'string' && code in ERROR_STATUS ? { code } : {}) }
    } catch {
      return 'crash'
    }
  }

  it('checkpoint paths: invalid names never reach the runtime, nothing 5xx, a grant opens only its target', async () => {
    const label = () => segment(validValue('label'), overValue('label'), 'any')
    const sub = () => segment(validValue('subdomain'), overValue('subdomain'), 'any')
    await fc.assert(
      fc.asyncProperty(label(), sub(), label(), queryParams, queryStyle, async (ns, pod, ctr, params, style) => {
        const [dn, dp, dc] = [decoded(ns), decoded(pod), decoded(ctr)]
        const valid = dn !== null && dp !== null && dc !== null && isDns1123Label(dn) && isDns1123Subdomain(dp) && isDns1123Label(dc)
        // A grant for what the path claims, or for the one real container when the path is unreadable.
        const target = valid ? { namespace: dn!, pod: dp!, container: dc! } : { namespace: 'team-a', pod: 'web', container: 'app' }
        const grant = await a.mint({ op: 'checkpoint:create', ...target })
        const calls = cri.checkpointCalls.length
        const r = await send('POST', `/checkpoint/${ns}/${pod}/${ctr}${writeQuery(params.filter((p) => p.key !== 'timeout' || /^\d{1,3}$/.test(p.value)), style)}`, grant)
        if (r === 'unsent') return
        cases++
        const what = `POST ${ns}/${pod}/${ctr}`
        if (r === 'crash') return fail('crash', what)
        if (r.status >= 500) fail('5xx', `${what} → ${r.status} ${r.code}`)
        if (!valid && cri.checkpointCalls.length !== calls) fail('accepted_invalid', what)
        // Refused at validation (400), by the router (404 not_found) or the HTTP parser (431), never looked up in the runtime.
        if (!valid && r.status !== 400 && r.status !== 431 && !(r.status === 404 && r.code === 'not_found')) fail('accepted_invalid', `${what} → ${r.status} ${r.code}`)
        if (r.status >= 400 && !r.code) fail('crash', `${what} → ${r.status} without a stable code`)
      }),
      { seed: SEED, numRuns: Math.round(1200 * SCALE) },
    )
  })

  it('archive names: download and delete never escape the directory, never 5xx, never serve another archive', async () => {
    await fc.assert(
      fc.asyncProperty(archiveNameWire, fc.boolean(), fc.constantFrom('GET', 'DELETE', 'HEAD'), async (wire, grantFits, method) => {
        const name = decoded(wire) ?? wire
        const readings = archiveReadings(name)?.readings.map((r) => r.namespace) ?? ['team-a']
        // A grant for this name, or for another archive (which must not open this one).
        const granted = grantFits ? name : 'checkpoint-web_team-a-app-2026-01-01T00:00:00Z.tar'
        const op = method === 'DELETE' ? 'checkpoint:delete' as const : 'checkpoint:read' as const
        const grant = await a.mint({ op, archive: granted, namespaces: readings })
        const r = await send(method, `/checkpoints/${wire}`, grant)
        if (r === 'unsent') return
        cases++
        const what = `${method} /checkpoints/${wire.slice(0, 80)}`
        if (r === 'crash') return fail('crash', what)
        if (r.status >= 500) fail('5xx', `${what} → ${r.status} ${r.code}`)
        if (r.status < 400 && (!isArchiveName(name) || granted !== name)) fail('bypass', `${what} → ${r.status}`)
      }),
      { seed: SEED + 1, numRuns: Math.round(800 * SCALE) },
    )
  })

  it('odd headers: request ids, accept values, oversized values → never 5xx', async () => {
    const grant = async () => a.mint({ op: 'checkpoint:list' })
    await fc.assert(
      fc.asyncProperty(fc.constantFrom('x-request-id', 'accept', 'x-forwarded-for', 'content-type', 'range'), fc.oneof(fc.string({ maxLength: 300 }), fc.integer({ min: 1, max: 15_000 }).map((n) => 'x'.repeat(n))), async (h, v) => {
        const r = await send('GET', '/checkpoints', await grant(), { [h]: v })
        if (r === 'unsent') return
        cases++
        if (r === 'crash') return fail('crash', `${h}: ${v.slice(0, 40)}`)
        if (r.status >= 500) fail('5xx', `${h}: ${v.slice(0, 40)} → ${r.status}`)
      }),
      { seed: SEED + 2, numRuns: Math.round(300 * SCALE) },
    )
    assert.ok(cases >= 2000 * Math.min(1, SCALE), `only ${cases} cases`)
    assert.deepEqual(failures, { crash: 0, '5xx': 0, accepted_invalid: 0, bypass: 0 }, examples.join('\n'))
  })
})
