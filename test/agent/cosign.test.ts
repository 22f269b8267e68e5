/**
 * Verified by an independent tool: the statement the agent signs for an archive passes Debian
 * sid's `cosign` 3 (`verify-blob-attestation --key --bundle --type --insecure-ignore-tlog`, offline)
 * against the archive it downloaded — and fails for a modified archive, a modified statement and
 * another node's key.
 */
import assert from 'node:assert/strict'
import { execFile } from 'node:child_process'
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { after, before, describe, it } from 'node:test'
import { promisify } from 'node:util'
import { PREDICATE_TYPE } from '../../agent/custody.ts'
import { parseEvent, type CompletedEvent } from '../../shared/events.ts'
import { ensureAge, type EvidenceTools } from '../runtime/evidence-tools.ts'
import { everyReading, makeIdentities, startTestAgent, type TestAgent } from '../support/agent-harness.ts'
import { startFakeCri, type FakeCri } from '../support/fake-cri.ts'

const T = { namespace: 'shop', pod: 'api-0', container: 'app' }

describe('signed statements verified by cosign (Debian sid, offline)', { timeout: 300_000 }, () => {
  let dir: string
  let cri: FakeCri
  let a: TestAgent
  let other: TestAgent
  let tools: EvidenceTools
  let archivePath: string
  let bundlePath: string
  let keyPath: string
  let otherKeyPath: string

  before(async () => {
    tools = await ensureAge()
    dir = await mkdtemp(join(tmpdir(), 'cosign-'))
    const ids = await makeIdentities(dir)
    cri = await startFakeCri(join(dir, 'cri.sock'), { archiveBytes: 200_000, randomArchive: true }, [{ id: 'c-api', ...T }])
    a = await startTestAgent({ ids, endpoint: cri.endpoint, dir: join(dir, 'a') })
    other = await startTestAgent({ ids, endpoint: cri.endpoint, dir: join(dir, 'b'), node: 'node-b' })
    const r = await a.fetch(`/checkpoint/${T.namespace}/${T.pod}/${T.container}`, { method: 'POST', headers: { accept: 'application/x-ndjson', authorization: `Bearer ${await a.mint({ op: 'checkpoint:create', ...T })}` } })
    const done = (await r.body.text()).trim().split('\n').map(parseEvent).at(-1) as CompletedEvent
    // As an investigator would have them: the downloaded archive, its statement, the agent's published key.
    const dl = await a.fetch(`/checkpoints/${done.archive.name}`, { headers: { authorization: `Bearer ${await a.mint({ op: 'checkpoint:read', archive: done.archive.name, namespaces: everyReading(done.archive.name) })}` } })
    archivePath = join(dir, 'archive.tar')
    await writeFile(archivePath, Buffer.from(await dl.body.arrayBuffer()))
    bundlePath = join(dir, 'bundle.json')
    await writeFile(bundlePath, JSON.stringify(done.statement))
    const publicKey = async (agent: TestAgent) => (JSON.parse(await (await agent.fetch('/statement-keys')).body.text()) as { keys: Array<{ publicKey: string }> }).keys[0]!.publicKey
    keyPath = join(dir, 'agent.pub')
    await writeFile(keyPath, await publicKey(a))
    otherKeyPath = join(dir, 'other.pub')
    await writeFile(otherKeyPath, await publicKey(other))
  })
  after(async () => {
    await other?.stop()
    await a?.stop()
    await cri?.stop()
    await rm(dir, { recursive: true, force: true })
  })

  const cosign = (key: string, bundle: string, blob: string) =>
    promisify(execFile)(tools.cosign, ['verify-blob-attestation', '--key', key, '--bundle', bundle, '--type', PREDICATE_TYPE, '--insecure-ignore-tlog', blob], { timeout: 60_000 })
      .then(({ stdout, stderr }) => ({ ok: true, out: stdout + stderr }), (err: { stdout?: string; stderr?: string }) => ({ ok: false, out: `${err.stdout ?? ''}${err.stderr ?? ''}` }))

  it('verifies the downloaded archive with the agent\'s published key', async () => {
    const r = await cosign(keyPath, bundlePath, archivePath)
    assert.ok(r.ok, r.out)
    assert.match(r.out, /Verified OK/)
  })

  it('fails for a modified archive, a modified statement, and another node\'s key', async () => {
    const changedArchive = join(dir, 'changed.tar')
    await writeFile(changedArchive, Buffer.concat([await readFile(archivePath), Buffer.from('x')]))
    assert.equal((await cosign(keyPath, bundlePath, changedArchive)).ok, false)

    const bundle = JSON.parse(await readFile(bundlePath, 'utf8')) as { dsseEnvelope: { payload: string } }
    const statement = JSON.parse(Buffer.from(bundle.dsseEnvelope.payload, 'base64').toString()) as { predicate: { requester: { sub: string } } }
    statement.predicate.requester.sub = 'mallory'
    bundle.dsseEnvelope.payload = Buffer.from(JSON.stringify(statement)).toString('base64')
    const changedBundle = join(dir, 'changed-bundle.json')
    await writeFile(changedBundle, JSON.stringify(bundle))
    assert.equal((await cosign(keyPath, changedBundle, archivePath)).ok, false)

    assert.equal((await cosign(otherKeyPath, bundlePath, archivePath)).ok, false)
  })
})
