/**
 * The `r2` vault backend in real workerd (miniflare's R2 and D1), with a real agent over mutual TLS
 * (fake CRI, random bytes so nothing compresses, 2.5 parts of 5 MiB): `?store=vault` streams the
 * parts through the gateway's capability URLs into an R2 multipart upload, the evidence API hands
 * out a gateway download URL that streams from the binding (with ranges), and the object decrypts
 * to the archive. Capabilities that are tampered with, expired, or for another part are refused.
 */
import assert from 'node:assert/strict'
import { createHash } from 'node:crypto'
import { request } from 'node:http'
import { Agent, fetch as undiciFetch } from 'undici'
import { mkdtemp, readFile, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { after, before, describe, it } from 'node:test'
import { zstdDecompressSync } from 'node:zlib'
import { exportJWK, generateKeyPair, SignJWT, type CryptoKey } from 'jose'
import { ageDecrypt, generateIdentity } from '../../agent/seal/age.ts'
import { loadGrantKeys } from '../../functions/grants.ts'
import { makeIdentities, startTestAgent, type Identities, type TestAgent } from '../support/agent-harness.ts'
import { startFakeCri, type FakeCri } from '../support/fake-cri.ts'
import { removeBundle, startWorkerGateway, type WorkerGateway } from '../support/gateway/targets.ts'
import { freePort } from '../support/net.ts'

const MiB = 1024 * 1024
const ISSUER = 'https://idp.r2.test'

describe('the r2 vault backend in workerd (real agent, miniflare R2)', { timeout: 180_000 }, () => {
  let dir: string
  let ids: Identities
  let cri: FakeCri
  let a: TestAgent
  let gw: WorkerGateway
  let idpKey: CryptoKey
  let grantKey: Record<string, unknown>
  const investigator = generateIdentity()

  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'vault-r2-'))
    ids = await makeIdentities(dir)
    cri = await startFakeCri(join(dir, 'cri.sock'), { archiveBytes: 12 * MiB + 123, randomArchive: true }, [
      { id: 'c-api', namespace: 'shop', pod: 'api-0', container: 'app' },
    ])
    a = await startTestAgent({ ids, endpoint: cri.endpoint, dir })
    const pair = await generateKeyPair('ES256', { extractable: true })
    idpKey = pair.privateKey as CryptoKey
    const idpJwk = { ...(await exportJWK(pair.publicKey)), kid: 'idp', alg: 'ES256' }
    grantKey = { ...(await exportJWK(ids.grantKey)), kid: ids.kid, alg: 'EdDSA' }
    const port = await freePort()
    gw = await startWorkerGateway({
      config: {
        clusters: { prod: { agentUrl: a.agent.url } },
        auth: { issuers: [ISSUER], audience: 'gw', jwks: { keys: [idpJwk] } },
        policy: { rules: [{ id: 'ir', groups: ['ir'], actions: ['create', 'read', 'delete'], clusters: ['*'], namespaces: ['*'] }] },
        grants: { issuer: 'gw-r2' },
        vault: { backend: 'r2', r2: { binding: 'EVIDENCE', publicUrl: `http://127.0.0.1:${port}` }, partSizeMiB: 5, urlTtlSec: 60, recipients: [{ id: 'ir', clusters: ['prod'], namespaces: ['shop'], recipients: [investigator.recipient] }] },
      },
      grantKeys: grantKey,
      client: { cert: ids.gateway.certPem, key: ids.gateway.keyPem },
      ca: ids.pki.ca.certPem,
      port,
      bindings: { d1: true, r2: ['EVIDENCE'] },
    })
  })
  after(async () => {
    await gw?.close()
    await a?.stop()
    await cri?.stop()
    await rm(dir, { recursive: true, force: true })
    await removeBundle()
  })

  const token = () => new SignJWT({ groups: ['ir'], scope: 'checkpoint:create checkpoint:read checkpoint:delete' })
    .setProtectedHeader({ alg: 'ES256', kid: 'idp' }).setIssuer(ISSUER).setAudience('gw').setSubject('ivy').setIssuedAt().setExpirationTime('10m').sign(idpKey)
  const call = async (path: string, init: RequestInit = {}) => fetch(gw.url + path, { ...init, headers: { authorization: `Bearer ${await token()}`, ...(init.headers as Record<string, string>) } })
  const checkpoint = () => call(`/v1/clusters/prod/nodes/${a.node}/checkpoint/shop/api-0/app?store=vault`, { method: 'POST', headers: { accept: 'application/x-ndjson' } })

  let stored: Record<string, any>
  let completed: Record<string, any>

  it('?store=vault: the parts stream through the gateway into R2; stored; the evidence URL streams from the binding and decrypts to the archive', async () => {
    const r = await checkpoint()
    assert.equal(r.status, 200)
    const events = (await r.text()).trim().split('\n').map((l) => JSON.parse(l) as Record<string, any>)
    const types = events.map((e) => e.type)
    assert.equal(types.at(-1), 'stored', JSON.stringify(events.at(-1)))
    completed = events.find((e) => e.type === 'completed')!
    stored = events.at(-1)!
    assert.equal(stored.bucket, 'EVIDENCE')
    assert.equal(stored.parts, 3) // 12 MiB of random bytes, sealed, in 5 MiB parts
    assert.equal(types.filter((t) => t === 'uploading').length, 3)

    const issued = (await (await call(`/v1/evidence/${stored.key}`)).json()) as { url: string; statementUrl?: string; sealed: { sha256: string; size: number } }
    assert.ok(issued.url.startsWith(`${gw.url}/v1/vault/objects/`), issued.url)
    const got = await fetch(issued.url)
    assert.equal(got.status, 200)
    const sealed = Buffer.from(await got.arrayBuffer())
    assert.equal(sealed.length, stored.sealed.size)
    assert.equal(createHash('sha256').update(sealed).digest('hex'), stored.sealed.sha256)
    const plain: Buffer[] = []
    for await (const c of ageDecrypt([sealed], [investigator.identity])) plain.push(c)
    assert.ok(zstdDecompressSync(Buffer.concat(plain)).equals(await readFile(join(a.agent.store.dir, completed.archive.name))))
    // The signed statement travels with it.
    assert.ok(issued.statementUrl)
    const statement = (await (await fetch(issued.statementUrl)).json()) as { dsseEnvelope?: unknown }
    assert.ok(statement.dsseEnvelope)

    // A resumed download: a range with the object's ETag as If-Range.
    const etag = got.headers.get('etag')!
    const tail = await fetch(issued.url, { headers: { range: 'bytes=1000-', 'if-range': etag } })
    assert.equal(tail.status, 206)
    assert.equal(tail.headers.get('content-range'), `bytes 1000-${sealed.length - 1}/${sealed.length}`)
    assert.ok(Buffer.from(await tail.arrayBuffer()).equals(sealed.subarray(1000)))
    const beyond = await fetch(issued.url, { headers: { range: `bytes=${sealed.length}-` } })
    assert.deepEqual([beyond.status, ((await beyond.json()) as { code: string }).code], [416, 'invalid_range'])
  })

  it('capabilities: tampered, for another object, for another part, expired, or missing → refused with a stable code', async () => {
    assert.ok(stored, 'needs the first test')
    const issued = (await (await call(`/v1/evidence/${stored.key}`)).json()) as { url: string }
    const url = new URL(issued.url)
    const cap = url.searchParams.get('cap')!
    const codeOf = async (r: Response) => [r.status, ((await r.json()) as { code: string }).code]
    // One changed signature character.
    const sig = cap.slice(-10)
    const tampered = cap.slice(0, -10) + (sig[0] === 'A' ? 'B' : 'A') + sig.slice(1)
    assert.deepEqual(await codeOf(await fetch(`${url.origin}${url.pathname}?cap=${tampered}`)), [401, 'invalid_grant'])
    // The right capability on another object's path.
    assert.deepEqual(await codeOf(await fetch(`${url.origin}${url.pathname.replace(/\.zst\.age$/, '.zst.age.statement.json')}?cap=${cap}`)), [403, 'grant_mismatch'])
    assert.deepEqual(await codeOf(await fetch(`${url.origin}${url.pathname}`)), [401, 'invalid_grant'])

    // Part capabilities, minted as the gateway mints them (its grant key).
    const keys = await loadGrantKeys(grantKey)
    const part = (n: number, nowMs = Date.now(), ttl = 60) => keys.capability({ use: 'vault:part', key: 'prod/shop/x/y/z.tar.zst.age', upload: 'up-1', part: n }, nowMs, ttl)
    // One connection per request: workerd closes a connection whose request body it did not read.
    const put = (path: string, capability: string, body: Uint8Array = new Uint8Array(10)) => undiciFetch(`${gw.url}${path}?cap=${capability}`, { method: 'PUT', body, dispatcher: new Agent({ pipelining: 0 }) }) as unknown as Promise<Response>
    assert.deepEqual(await codeOf(await put('/v1/vault/uploads/up-1/parts/2', await part(1))), [403, 'grant_mismatch'])
    assert.deepEqual(await codeOf(await put('/v1/vault/uploads/up-2/parts/1', await part(1))), [403, 'grant_mismatch'])
    assert.deepEqual(await codeOf(await put('/v1/vault/uploads/up-1/parts/1', await part(1, Date.now() - 120_000))), [401, 'invalid_grant'])
    // A download capability is not a part capability.
    assert.deepEqual(await codeOf(await put('/v1/vault/uploads/up-1/parts/1', cap)), [403, 'grant_mismatch'])
    // A caller's token is not a capability either, and the route takes no bearer token instead.
    assert.deepEqual(await codeOf(await put('/v1/vault/uploads/up-1/parts/1', await token())), [401, 'invalid_grant'])
    // A part larger than the configured part size; an upload that does not exist.
    // Announced and refused before any byte of the body is read (workerd then drops the connection).
    const announced = await new Promise<{ status: number; body: string }>((resolve, reject) => {
      void part(1).then((capability) => {
        const req = request(`${gw.url}/v1/vault/uploads/up-1/parts/1?cap=${capability}`, { method: 'PUT', headers: { 'content-length': String(5 * MiB + 1) } }, (res) => {
          let body = ''
          res.setEncoding('utf8').on('data', (c: string) => (body += c)).on('end', () => { resolve({ status: res.statusCode!, body }); req.destroy() })
        })
        req.on('error', reject)
        req.flushHeaders()
      })
    })
    assert.deepEqual([announced.status, (JSON.parse(announced.body) as { code: string }).code], [413, 'payload_too_large'])
    assert.deepEqual(await codeOf(await put('/v1/vault/uploads/up-1/parts/1', await part(1))), [409, 'conflict'])
  })

  it('the audit trail names each part and download, never the capability', async () => {
    const parts = gw.logs.filter((l) => l.op === 'vault:part' && l.status === 200)
    assert.ok(parts.length >= 3, JSON.stringify(gw.logs.slice(-5)))
    assert.ok(gw.logs.some((l) => l.op === 'vault:get' && l.status === 200))
    assert.ok(!JSON.stringify(gw.logs).includes('cap='))
  })
})
