import assert from 'node:assert/strict'
import { describe, it } from 'node:test'
import { CheckpointError, ERROR_STATUS, isErrorCode, toProblem } from '../../shared/errors.ts'
import { decodeEvents, encodeEvent, parseEvent, type CheckpointEvent } from '../../shared/events.ts'
import { checkGrantCovers, checkGrantCoversArchive, grantAudience } from '../../shared/grant.ts'
import { archiveMatches, archiveName, checkName, checkQuery, checkTarget, isArchiveName, isDns1123Label, isDns1123Subdomain, archiveReadings, archiveInNamespace, parseTimeout } from '../../shared/names.ts'

const code = (fn: () => unknown) => {
  try {
    fn()
  } catch (e) {
    return [(e as CheckpointError).code, (e as CheckpointError).field]
  }
  return null
}

describe('names', () => {
  it('DNS-1123 labels and subdomains', () => {
    for (const ok of ['a', 'a-b', '0x', 'x'.repeat(63)]) assert.ok(isDns1123Label(ok), ok)
    for (const bad of ['', 'A', '-a', 'a-', 'a.b', 'x'.repeat(64), 'a_b', '..']) assert.ok(!isDns1123Label(bad), bad)
    for (const ok of ['a.b', 'web-0', 'a.b-c.d', `${'x'.repeat(63)}.${'y'.repeat(63)}`]) assert.ok(isDns1123Subdomain(ok), ok)
    for (const bad of ['', '.a', 'a.', 'a..b', 'A.b', 'x'.repeat(254), '..']) assert.ok(!isDns1123Subdomain(bad), bad)
  })

  it('checkName and checkTarget name the failing field', () => {
    assert.deepEqual(code(() => checkName('pod', 'Bad')), ['invalid_name', 'pod'])
    assert.deepEqual(code(() => checkName('cluster', '-x')), ['invalid_name', 'cluster'])
    assert.deepEqual(code(() => checkTarget({ namespace: 'ok', pod: 'ok', container: undefined })), ['invalid_name', 'container'])
    assert.deepEqual(checkTarget({ namespace: 'a', pod: 'b.c', container: 'd' }), { namespace: 'a', pod: 'b.c', container: 'd' })
  })

  it('parseTimeout: absent or 0 → default, digits up to max, else invalid_timeout', () => {
    assert.equal(parseTimeout(null, 30, 60), 30)
    assert.equal(parseTimeout('0', 30, 60), 30)
    assert.equal(parseTimeout('60', 30, 60), 60)
    for (const bad of ['61', '-1', '1.5', '1e3', ' 5', '', 'abc', '9'.repeat(12)]) {
      assert.deepEqual(code(() => parseTimeout(bad, 30, 60)), ['invalid_timeout', 'timeout'], bad)
    }
  })

  it('checkQuery refuses unknown and repeated parameters', () => {
    checkQuery(new URLSearchParams('timeout=5'), ['timeout'])
    assert.deepEqual(code(() => checkQuery(new URLSearchParams('x=1'), ['timeout'])), ['invalid_query', 'x'])
    assert.deepEqual(code(() => checkQuery(new URLSearchParams('timeout=1&timeout=2'), ['timeout'])), ['invalid_query', 'timeout'])
  })

  it('archive names follow the kubelet and parse back', () => {
    const t = { namespace: 'prod', pod: 'web-0', container: 'app' }
    const n = archiveName(t, new Date('2026-11-25T10:11:12.345Z'))
    assert.equal(n, 'checkpoint-web-0_prod-app-2026-11-25T10:11:12Z.tar')
    assert.ok(isArchiveName(n))
    assert.deepEqual(archiveReadings(n), { pod: 'web-0', created: '2026-11-25T10:11:12Z', readings: [{ namespace: 'prod', container: 'app' }] })
    assert.deepEqual(archiveInNamespace(n, 'prod'), t)
    assert.equal(archiveInNamespace(n, 'pro'), null)
    // namespace and container are joined by '-': every split is a reading.
    const amb = archiveName({ namespace: 'team-a', pod: 'p', container: 'app' }, new Date(0))
    assert.deepEqual(archiveReadings(amb)!.readings, [{ namespace: 'team', container: 'a-app' }, { namespace: 'team-a', container: 'app' }])
    assert.deepEqual(archiveInNamespace(amb, 'team-a'), { namespace: 'team-a', pod: 'p', container: 'app' })
    assert.ok(archiveMatches(n, t))
    assert.ok(!archiveMatches(n, { ...t, container: 'ap' }))
    for (const bad of ['../checkpoint-a_b-c-2026-11-25T10:11:12Z.tar', 'checkpoint-a_b-c-2026-11-25T10:11:12Z.tar/x', 'checkpoint-a_b-c.tar', '.inprogress-x.tar', 'checkpoint-A_b-c-2026-11-25T10:11:12Z.tar']) {
      assert.ok(!isArchiveName(bad), bad)
      assert.equal(archiveReadings(bad), null)
    }
  })
})

describe('errors', () => {
  it('every code has a status and survives problem+json', () => {
    for (const [c, status] of Object.entries(ERROR_STATUS)) {
      const e = new CheckpointError(c as keyof typeof ERROR_STATUS, 'x', { field: 'f' })
      assert.equal(e.status, status)
      const p = toProblem(e)
      assert.equal(p.status, status)
      assert.equal(p.code, c)
      assert.equal(p.field, 'f')
      assert.ok(isErrorCode(JSON.parse(JSON.stringify(p)).code))
    }
    assert.ok(!isErrorCode('weird'))
    assert.ok(!isErrorCode('toString'))
  })
})

describe('events', () => {
  it('encode and decode NDJSON split at any byte boundary', async () => {
    const events: CheckpointEvent[] = [
      { type: 'heartbeat', elapsedMs: 1, phase: 'checkpointing', time: 't' },
      { type: 'failed', status: 504, code: 'timeout', message: 'ü', time: 't' },
    ]
    const bytes = new TextEncoder().encode(events.map(encodeEvent).join(''))
    const body = new ReadableStream<Uint8Array>({
      start(c) {
        for (let i = 0; i < bytes.length; i += 7) c.enqueue(bytes.subarray(i, i + 7))
        c.close()
      },
    })
    const out = []
    for await (const e of decodeEvents(body)) out.push(e)
    assert.deepEqual(out, events)
  })

  it('refuses lines that are not events', () => {
    assert.throws(() => parseEvent('{"type":"nope"}'), TypeError)
    assert.throws(() => parseEvent('[1]'), TypeError)
    assert.throws(() => parseEvent('{'), SyntaxError)
  })
})

describe('grant coverage', () => {
  const t = { namespace: 'a', pod: 'b', container: 'c' }
  it('covers exactly the bound target, operation and node', () => {
    checkGrantCovers({ op: 'checkpoint:create', node: 'n', ...t }, { op: 'checkpoint:create', node: 'n', target: t })
    for (const [claims, field] of [
      [{ op: 'checkpoint:read', node: 'n', ...t }, 'op'],
      [{ op: 'checkpoint:create', node: 'm', ...t }, 'node'],
      [{ op: 'checkpoint:create', node: 'n', ...t, pod: 'x' }, 'pod'],
      [{ op: 'checkpoint:create', node: 'n', namespace: 'a', pod: 'b' }, 'container'],
    ] as const) {
      assert.deepEqual(code(() => checkGrantCovers(claims, { op: 'checkpoint:create', node: 'n', target: t })), ['grant_mismatch', field])
    }
    assert.deepEqual(code(() => checkGrantCovers({ op: 'checkpoint:read', node: 'n' }, { op: 'checkpoint:read', node: 'n', archive: 'x' })), ['grant_mismatch', 'archive'])
  })
  it('the audience on the wire is checkpoint-agent:<node>', () => {
    // Gateway, agent, fake agent and harness all call grantAudience(): only a literal pins it.
    assert.equal(grantAudience('node-a'), 'checkpoint-agent:node-a')
  })
  it('an archive grant covers the recorded namespace, or every reading of an unrecorded name', () => {
    // a/b-c and a-b/c are one name.
    const name = archiveName({ namespace: 'a-b', pod: 'p', container: 'c' }, new Date('2026-01-01T00:00:00Z'))
    const owner = { namespace: 'a-b', pod: 'p', container: 'c' }
    const covers = (namespaces: unknown, recorded: typeof owner | null) => code(() => checkGrantCoversArchive({ namespaces } as never, name, recorded))
    assert.equal(covers(['a-b'], owner), null)
    assert.equal(covers(['a', 'a-b'], owner), null)
    for (const bad of [['a'], [], undefined, 'a-b', [['a-b']]]) assert.deepEqual(covers(bad, owner), ['grant_mismatch', 'namespace'], JSON.stringify(bad))
    // A record that does not match the name (written by someone else) covers nothing.
    assert.deepEqual(covers(['a'], { namespace: 'a', pod: 'p', container: 'x' }), ['grant_mismatch', 'namespace'])
    assert.equal(covers(['a', 'a-b'], null), null)
    assert.deepEqual(covers(['a'], null), ['grant_mismatch', 'namespace'])
    assert.deepEqual(covers(['a-b'], null), ['grant_mismatch', 'namespace'])
  })
})
