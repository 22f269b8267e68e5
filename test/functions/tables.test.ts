/** The two boundary tables: the policy decision and the agent answer → our error mapping. */
import assert from 'node:assert/strict'
import { describe, it } from 'node:test'
import { decide, decideArchive, parsePolicy, type Caller } from '../../functions/authz.ts'
import { agentFailure } from '../../functions/problem.ts'

const policy = parsePolicy({
  rules: [
    { id: 'a', subjects: ['alice'], actions: ['create', 'read'], clusters: ['prod-*'], namespaces: ['team-a'] },
    { id: 'g', groups: ['ops'], actions: ['checkpoint:delete'], clusters: ['*'], namespaces: ['*'], pods: ['db-?'] },
  ],
})
const caller = (sub: string, scopes: string[], groups: string[] = []): Caller => ({ sub, groups, scopes: new Set(scopes) })

describe('policy', () => {
  it('allows by subject and glob', () => {
    assert.deepEqual(decide(policy, caller('alice', ['checkpoint:create']), 'create', { cluster: 'prod-eu', namespace: 'team-a', pod: 'x' }), { allow: true, rule: 'a' })
  })
  it('denies without scope, naming it', () => {
    assert.equal(decide(policy, caller('alice', []), 'create', { cluster: 'prod-eu', namespace: 'team-a' }).missing, 'scope checkpoint:create')
  })
  it('denies outside the globs', () => {
    assert.equal(decide(policy, caller('alice', ['checkpoint:create']), 'create', { cluster: 'dev', namespace: 'team-a' }).allow, false)
    assert.equal(decide(policy, caller('bob', ['checkpoint:delete'], ['ops']), 'delete', { cluster: 'x', namespace: 'n', pod: 'db-10' }).allow, false)
    assert.equal(decide(policy, caller('bob', ['checkpoint:delete'], ['ops']), 'delete', { cluster: 'x', namespace: 'n', pod: 'db-1' }).allow, true)
  })
  it('glob metacharacters other than * and ? are literal', () => {
    const p = parsePolicy({ rules: [{ id: 'r', subjects: ['s'], actions: ['read'], clusters: ['a.b'], namespaces: ['*'] }] })
    assert.equal(decide(p, caller('s', ['checkpoint:read']), 'read', { cluster: 'axb' }).allow, false)
  })
  it('archive names: every split must be allowed', () => {
    const p = parsePolicy({ rules: [{ id: 'r', subjects: ['s'], actions: ['read'], clusters: ['*'], namespaces: ['team'] }] })
    assert.equal(decideArchive(p, caller('s', ['checkpoint:read']), 'read', 'c', 'checkpoint-web_team-a-app-2026-01-01T00:00:00Z.tar').allow, false)
    assert.equal(decideArchive(p, caller('s', ['checkpoint:read']), 'read', 'c', 'checkpoint-web_team-app-2026-01-01T00:00:00Z.tar').allow, true)
    assert.equal(decideArchive(p, caller('s', ['checkpoint:read']), 'read', 'c', 'checkpoint-web_team-app-2026-01-01.tar').allow, false)
  })
  it('rejects a rule naming nobody, or an unknown action', () => {
    // Policy errors are plain Errors without a code: the check is what the message opens with,
    // and never a TypeError (a crash on the way would pass a bare assert.throws).
    const policyError = (what: RegExp) => (err: unknown) => err instanceof Error && !(err instanceof TypeError) && what.test(err.message)
    assert.throws(() => parsePolicy({ rules: [{ actions: ['read'], clusters: ['*'], namespaces: ['*'] }] }), policyError(/^policy: rule-0 names no /))
    assert.throws(() => parsePolicy({ rules: [{ subjects: ['s'], actions: ['write'], clusters: ['*'], namespaces: ['*'] }] }), policyError(/^policy: rule-0\.actions: /))
  })
})

describe('agent answer → error', () => {
  const cases: Array<[number, string, unknown, string]> = [
    [404, 'application/problem+json', { code: 'archive_not_found' }, 'archive_not_found'],
    [500, 'application/problem+json', { code: 'runtime_error' }, 'runtime_error'],
    [503, 'text/html', '<html>', 'runtime_unavailable'],
    [502, 'text/html', '<html>', 'bad_gateway'],
    // a code whose class disagrees with the status never changes the status class
    [500, 'application/problem+json', { code: 'not_found' }, 'bad_gateway'],
    [418, 'text/plain', 'teapot', 'invalid_body'],
  ]
  for (const [status, type, body, code] of cases) {
    it(`${status} ${JSON.stringify(body)} → ${code}, status kept`, async () => {
      const f = await agentFailure(new Response(typeof body === 'string' ? body : JSON.stringify(body), { status, headers: { 'content-type': type } }))
      assert.equal(f.err.code, code)
      assert.equal(f.status, status)
    })
  }
  // The agent judging the gateway's grant or certificate is not the caller's 401/403.
  const refusals: Array<[number, unknown, string]> = [
    [401, { code: 'invalid_grant' }, 'invalid_grant'],
    [403, { code: 'grant_mismatch' }, 'grant_mismatch'],
    [403, { code: 'forbidden' }, 'forbidden'],
    [401, '<html>', 'invalid_grant'],
    [403, '<html>', 'forbidden'],
  ]
  for (const [status, body, agentCode] of refusals) {
    it(`${status} ${JSON.stringify(body)} → 502 bad_gateway with agentCode ${agentCode}`, async () => {
      const f = await agentFailure(new Response(typeof body === 'string' ? body : JSON.stringify(body), { status, headers: { 'content-type': typeof body === 'string' ? 'text/html' : 'application/problem+json' } }))
      assert.deepEqual([f.status, f.err.code, f.err.extra], [502, 'bad_gateway', { agentCode, agentStatus: status }])
    })
  }
})
