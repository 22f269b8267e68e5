/**
 * The agent signs a statement for every archive it writes: in the completed event, beside the
 * archive (0600), at GET /checkpoints/{name}/statement, verifiable with the key the agent publishes
 * at GET /statement-keys — and naming who asked, with which grant, why, and what image ran.
 */
import assert from 'node:assert/strict'
import { createHash } from 'node:crypto'
import { mkdtemp, readdir, readFile, rm, stat } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { after, before, describe, it } from 'node:test'
import { verifyBundle } from '../../agent/custody.ts'
import { parseEvent, type CompletedEvent } from '../../shared/events.ts'
import { everyReading, makeIdentities, startTestAgent, type TestAgent } from '../support/agent-harness.ts'
import { startFakeCri, type FakeCri } from '../support/fake-cri.ts'

const T = { namespace: 'prod', pod: 'web-0', container: 'app' }

describe('signed statements from the agent', () => {
  let dir: string
  let cri: FakeCri
  let a: TestAgent
  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'statement-'))
    const ids = await makeIdentities(dir)
    cri = await startFakeCri(join(dir, 'cri.sock'), {}, [{ id: 'c-app', ...T }])
    a = await startTestAgent({ ids, endpoint: cri.endpoint, dir, args: ['--cluster=prod-eu'] })
  })
  after(async () => {
    await a?.stop()
    await cri?.stop()
    await rm(dir, { recursive: true, force: true })
  })

  const keys = async () => JSON.parse(await (await a.fetch('/statement-keys')).body.text()) as { node: string; keys: Array<{ keyid: string; alg: string; publicKey: string }> }

  it('the completed event carries a bundle that verifies with the published key against the archive bytes', async () => {
    const grant = await a.mint({ op: 'checkpoint:create', cluster: 'prod-eu', ...T, sub: 'alice', reason: 'incident 42' }, { jti: 'grant-jti-1' })
    const r = await a.fetch(`/checkpoint/${T.namespace}/${T.pod}/${T.container}`, { method: 'POST', headers: { accept: 'application/x-ndjson', authorization: `Bearer ${grant}`, 'x-request-id': 'req-statement-1' } })
    const done = (await r.body.text()).trim().split('\n').map(parseEvent).at(-1) as CompletedEvent
    assert.equal(done.type, 'completed')
    const bytes = await readFile(join(a.agent.store.dir, done.archive.name))
    const sha = createHash('sha256').update(bytes).digest('hex')
    const published = await keys()
    assert.equal(published.node, 'node-a')
    const v = verifyBundle(done.statement, published.keys[0]!.publicKey, sha)
    assert.ok(v.ok, JSON.stringify(v))
    const p = v.statement.predicate
    assert.deepEqual([p.cluster, p.node, p.namespace, p.pod, p.container, p.containerId], ['prod-eu', 'node-a', 'prod', 'web-0', 'app', 'c-app'])
    assert.deepEqual(p.requester.sub, 'alice')
    assert.deepEqual([p.grant.jti, p.reason, p.requestId], ['grant-jti-1', 'incident 42', 'req-statement-1'])
    assert.equal(p.image.ref, 'registry.test/web-0:1')
    assert.match(p.image.digest, /^sha256:[0-9a-f]{64}$/)
    assert.ok(Date.parse(p.times.requested) <= Date.parse(p.times.started) && Date.parse(p.times.started) <= Date.parse(p.times.completed))
    assert.equal(p.archive.size, bytes.length)

    // Kept beside the archive, root-only, and served to a read grant.
    const file = join(a.agent.store.dir, `.${done.archive.name}.statement.json`)
    assert.equal((await stat(file)).mode & 0o777, 0o600)
    const read = await a.mint({ op: 'checkpoint:read', cluster: 'prod-eu', archive: done.archive.name, namespaces: everyReading(done.archive.name) })
    const got = await a.fetch(`/checkpoints/${done.archive.name}/statement`, { headers: { authorization: `Bearer ${read}` } })
    assert.equal(got.statusCode, 200)
    assert.deepEqual(JSON.parse(await got.body.text()), done.statement)
    // A read grant of another namespace does not open it.
    const other = await a.mint({ op: 'checkpoint:read', cluster: 'prod-eu', archive: done.archive.name, namespaces: ['dev'] })
    const refused = await a.fetch(`/checkpoints/${done.archive.name}/statement`, { headers: { authorization: `Bearer ${other}` } })
    assert.equal(refused.statusCode, 403)
    await refused.body.dump()

    // Deleting the archive deletes its statement.
    const del = await a.mint({ op: 'checkpoint:delete', cluster: 'prod-eu', archive: done.archive.name, namespaces: ['prod'] })
    assert.equal((await a.fetch(`/checkpoints/${done.archive.name}`, { method: 'DELETE', headers: { authorization: `Bearer ${del}` } })).statusCode, 204)
    assert.deepEqual((await readdir(a.agent.store.dir)).filter((n) => n.includes(done.archive.name)), [])
  })

  it('the key survives a restart: statements made before still verify with what is published after', async () => {
    const before = (await keys()).keys[0]!.keyid
    await a.stop()
    const ids = await makeIdentities(await mkdtemp(join(dir, 'ids-')))
    a = await startTestAgent({ ids, endpoint: cri.endpoint, dir, args: ['--cluster=prod-eu'] })
    assert.equal((await keys()).keys[0]!.keyid, before)
  })
})
