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
  let archiveName: string

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
    archiveName = done.archive.name
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

  it('the statement re-signed when the archive is sealed names the sealed object too: cosign verifies the object and the archive with it', async () => {
    // A stand-in for presigned part URLs: a loopback server that keeps what is PUT.
    const { createServer } = await import('node:http')
    const got: Buffer[] = []
    const server = createServer((req, res) => {
      const chunks: Buffer[] = []
      req.on('data', (c: Buffer) => chunks.push(c)).on('end', () => {
        got.push(Buffer.concat(chunks))
        res.writeHead(200, { etag: `"p${got.length}"` }).end()
      })
    })
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r))
    try {
      const port = (server.address() as import('node:net').AddressInfo).port
      const { generateIdentity } = await import('../../agent/seal/age.ts')
      const { createHash } = await import('node:crypto')
      const body = JSON.stringify({ recipients: [generateIdentity().recipient], partSize: 5 * 1024 * 1024, urls: [`http://127.0.0.1:${port}/p1`, `http://127.0.0.1:${port}/p2`] })
      const grant = await a.mint({ op: 'checkpoint:store', archive: archiveName, namespaces: [T.namespace], plan: createHash('sha256').update(body).digest('hex') })
      const r = await a.fetch(`/checkpoints/${encodeURIComponent(archiveName)}/store`, { method: 'POST', headers: { authorization: `Bearer ${grant}`, 'content-type': 'application/json' }, body })
      const sealedEvent = JSON.parse((await r.body.text()).trim().split('\n').at(-1)!) as { type: string; statement?: unknown }
      assert.equal(sealedEvent.type, 'sealed')
      assert.ok(sealedEvent.statement, 'the sealed event carries the re-signed statement')
      const sealedPath = join(dir, 'archive.tar.zst.age')
      await writeFile(sealedPath, Buffer.concat(got))
      const sealedBundle = join(dir, 'sealed-bundle.json')
      await writeFile(sealedBundle, JSON.stringify(sealedEvent.statement))
      const bySealed = await cosign(keyPath, sealedBundle, sealedPath)
      assert.ok(bySealed.ok, bySealed.out)
      assert.ok((await cosign(keyPath, sealedBundle, archivePath)).ok)
      assert.equal((await cosign(otherKeyPath, sealedBundle, sealedPath)).ok, false)
      // The statement beside the archive on the node is the one made at completion, unchanged.
      assert.deepEqual(await a.agent.store.readStatement(archiveName), JSON.parse(await readFile(bundlePath, 'utf8')))
    } finally {
      await new Promise<void>((r) => server.close(() => r()))
    }
  })
})
