/**
 * `?store=vault` through the Node gateway with real parts: a real agent over mutual TLS (fake CRI
 * for the archive, random bytes so it does not compress), a real S3 server that checks signatures
 * (radosgw). The checkpoint's stream goes on after `completed` with the agent's sealing and
 * uploading progress and ends with `stored`; JSON mode waits for it; the object decrypts to the
 * archive; nothing is frozen when no recipient is configured.
 */
import assert from 'node:assert/strict'
import { createHash } from 'node:crypto'
import { mkdtemp, readdir, readFile, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { after, before, describe, it } from 'node:test'
import { zstdDecompressSync } from 'node:zlib'
import { exportJWK, generateKeyPair, SignJWT, type CryptoKey } from 'jose'
import { verifyBundle } from '../../agent/custody.ts'
import { ageDecrypt, generateIdentity } from '../../agent/seal/age.ts'
import { parseConfig } from '../../functions/config.ts'
import { sqlCustodyLog } from '../../functions/custody/log.ts'
import { sqliteDriver } from '../../functions/node/sqlite.ts'
import { loadNodeGrantKeys } from '../../functions/node/jws.ts'
import { startNodeGateway } from '../../functions/node/start.ts'
import { s3Client } from '../../functions/vault/s3.ts'
import type { Served } from '../../functions/node/server.ts'
import { startS3Server, type S3Server } from '../runtime/s3-server.ts'
import { makeIdentities, startTestAgent, type Identities, type TestAgent } from '../support/agent-harness.ts'
import { startFakeCri, type FakeCri } from '../support/fake-cri.ts'
import { alertmanagerPayload } from '../support/gateway/hooks-payloads.ts'

const MiB = 1024 * 1024
const ISSUER = 'https://idp.vault.test'

describe('?store=vault through the gateway (real agent, real S3)', { timeout: 180_000 }, () => {
  let dir: string
  let ids: Identities
  let cri: FakeCri
  let a: TestAgent
  let s3: S3Server
  const gateways: Served[] = []
  let idpKey: CryptoKey
  let idpJwk: Record<string, unknown>
  const investigator = generateIdentity()
  const second = generateIdentity()

  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'vault-gw-'))
    s3 = await startS3Server()
    ids = await makeIdentities(dir)
    cri = await startFakeCri(join(dir, 'cri.sock'), { archiveBytes: 6 * MiB, randomArchive: true }, [
      { id: 'c-api', namespace: 'shop', pod: 'api-0', container: 'app' },
      { id: 'c-dev', namespace: 'dev', pod: 'api-0', container: 'app' },
    ])
    a = await startTestAgent({ ids, endpoint: cri.endpoint, dir })
    const pair = await generateKeyPair('ES256', { extractable: true })
    idpKey = pair.privateKey as CryptoKey
    idpJwk = { ...(await exportJWK(pair.publicKey)), kid: 'idp', alg: 'ES256' }
  })
  after(async () => {
    for (const g of gateways) await g.close(2000)
    await a?.stop()
    await cri?.stop()
    await s3?.stop()
    await rm(dir, { recursive: true, force: true })
  })

  async function gateway(vault?: Record<string, unknown>, operationsDb?: string, hooks?: Record<string, unknown>): Promise<string> {
    const raw = {
      clusters: { prod: { agentUrl: a.agent.url, agentCa: ids.pki.ca.certPem } },
      auth: { issuers: [ISSUER], audience: 'gw', jwks: { keys: [idpJwk] } },
      policy: { rules: [
        { id: 'ir', groups: ['ir'], actions: ['create', 'read', 'delete'], clusters: ['*'], namespaces: ['*'] },
        { id: 'dev', groups: ['dev'], actions: ['read'], clusters: ['*'], namespaces: ['dev'] },
      ] },
      grants: { issuer: 'gw-vault' },
      limits: { agentHeadersTimeoutMs: 10_000 },
      ...(vault ? { vault } : {}),
      ...(hooks ? { hooks } : {}),
    }
    const secrets: Record<string, string> = { S3_KEY: s3.accessKeyId, S3_SECRET: s3.secretAccessKey }
    const g = await startNodeGateway({
      config: parseConfig(raw, (n) => secrets[n]),
      keys: await loadNodeGrantKeys([{ ...(await exportJWK(ids.grantKey)), kid: ids.kid, alg: 'EdDSA' }]),
      client: { cert: ids.gateway.certPem, key: ids.gateway.keyPem },
      port: 0,
      log: () => {},
      ...(operationsDb ? { operationsDb } : {}),
    })
    gateways.push(g)
    return g.url
  }
  const vaultCfg = (extra: Record<string, unknown> = {}) => ({
    backend: 's3', s3: { endpoint: s3.endpoint, bucket: s3.bucket, region: s3.region, accessKeyIdSecret: 'S3_KEY', secretAccessKeySecret: 'S3_SECRET' },
    partSizeMiB: 16, recipients: [{ id: 'ir', clusters: ['prod'], namespaces: ['shop'], recipients: [investigator.recipient] }], ...extra,
  })
  const token = async (groups = ['ir']) => new SignJWT({ groups, scope: 'checkpoint:create checkpoint:read checkpoint:delete' })
    .setProtectedHeader({ alg: 'ES256', kid: 'idp' }).setIssuer(ISSUER).setAudience('gw').setSubject('ivy').setIssuedAt().setExpirationTime('10m').sign(idpKey)
  const post = async (url: string, path: string, accept = 'application/x-ndjson') =>
    fetch(url + path, { method: 'POST', headers: { authorization: `Bearer ${await token()}`, accept } })
  const node = () => a.node

  it('NDJSON: completed, then sealing/uploading progress, then stored; the object decrypts to the archive', async () => {
    const url = await gateway(vaultCfg())
    const r = await post(url, `/v1/clusters/prod/nodes/${node()}/checkpoint/shop/api-0/app?store=vault&reason=case%2042`)
    assert.equal(r.status, 200)
    const events = (await r.text()).trim().split('\n').map((l) => JSON.parse(l) as Record<string, any>)
    const types = events.map((e) => e.type)
    const iCompleted = types.indexOf('completed')
    assert.ok(iCompleted > 0 && types.includes('sealing') && types.includes('uploading'), types.join(','))
    assert.equal(types.at(-1), 'stored', JSON.stringify(events.at(-1)))
    const completed = events[iCompleted]!
    const stored = events.at(-1)!
    assert.equal(stored.key, `prod/shop/api-0/app/${completed.archive.name}.zst.age`)
    assert.deepEqual(stored.plaintext, { sha256: completed.archive.sha256, size: completed.archive.size })
    // The reason reached the signed statement.
    const statement = JSON.parse(Buffer.from(completed.statement.dsseEnvelope.payload, 'base64').toString()) as { predicate: { reason: string } }
    assert.equal(statement.predicate.reason, 'case 42')
    const client = s3Client({ endpoint: s3.endpoint, bucket: s3.bucket, region: s3.region, accessKeyId: s3.accessKeyId, secretAccessKey: s3.secretAccessKey })
    const sealed = Buffer.from(await (await fetch(await client.presignGet(stored.key, 60))).arrayBuffer())
    assert.equal(createHash('sha256').update(sealed).digest('hex'), stored.sealed.sha256)
    const plain: Buffer[] = []
    for await (const c of ageDecrypt([sealed], [investigator.identity])) plain.push(c)
    assert.ok(zstdDecompressSync(Buffer.concat(plain)).equals(await readFile(join(a.agent.store.dir, completed.archive.name))))
    // The statement stored beside it is signed again with the sealed object as a second subject:
    // it verifies the object in the vault and the archive it opens to, with the node's key.
    const bundle = JSON.parse(await (await fetch(await client.presignGet(stored.statementKey, 60))).text()) as unknown
    const { keys } = JSON.parse(await (await a.fetch('/statement-keys')).body.text()) as { keys: Array<{ publicKey: string }> }
    const bySealed = verifyBundle(bundle, keys[0]!.publicKey, stored.sealed.sha256)
    assert.ok(bySealed.ok, JSON.stringify(bySealed))
    assert.deepEqual(bySealed.ok && bySealed.statement.subject.map((x: { name: string }) => x.name), [completed.archive.name, `${completed.archive.name}.zst.age`])
    assert.equal(bySealed.ok && bySealed.statement.predicate.sealed.sha256, stored.sealed.sha256)
    assert.ok(verifyBundle(bundle, keys[0]!.publicKey, completed.archive.sha256).ok)
    assert.equal(verifyBundle(bundle, keys[0]!.publicKey, 'f'.repeat(64)).ok, false)
  })

  it('JSON: the answer waits for the vault and carries `stored`; keepOnNode false deletes the node copy', async () => {
    const url = await gateway(vaultCfg({ keepOnNode: false }))
    const r = await post(url, `/v1/clusters/prod/nodes/${node()}/checkpoint/shop/api-0/app?store=vault`, 'application/json')
    assert.equal(r.status, 200)
    const body = (await r.json()) as { archive: { name: string }; stored?: { key: string }; statement?: unknown }
    assert.ok(body.stored?.key.endsWith(`${body.archive.name}.zst.age`), JSON.stringify(body))
    assert.ok(body.statement)
    const deadline = Date.now() + 10_000
    while ((await readdir(a.agent.store.dir)).includes(body.archive.name) && Date.now() < deadline) await new Promise((res) => setTimeout(res, 50))
    assert.ok(!(await readdir(a.agent.store.dir)).includes(body.archive.name), 'the node copy is gone')
  })

  it('no recipient for the target → 400 invalid_recipient before anything is frozen; no vault → 400 invalid_query (store)', async () => {
    const url = await gateway(vaultCfg())
    const calls = cri.checkpointCalls.length
    const none = await post(url, `/v1/clusters/prod/nodes/${node()}/checkpoint/dev/api-0/app?store=vault`)
    assert.equal(none.status, 400)
    assert.deepEqual(((await none.json()) as { code: string }).code, 'invalid_recipient')
    const plain = await gateway()
    const novault = await post(plain, `/v1/clusters/prod/nodes/${node()}/checkpoint/shop/api-0/app?store=vault`)
    assert.deepEqual([novault.status, ((await novault.json()) as { field: string }).field], [400, 'store'])
    const bad = await post(url, `/v1/clusters/prod/nodes/${node()}/checkpoint/shop/api-0/app?store=s3`)
    assert.deepEqual([bad.status, ((await bad.json()) as { field: string }).field], [400, 'store'])
    assert.equal(cri.checkpointCalls.length, calls)
  })

  it('the evidence API: stored objects listed for who may read them, a presigned URL per request, each issue a custody entry', async () => {
    const url = await gateway(vaultCfg(), join(dir, 'gateway.sqlite'))
    const made = await post(url, `/v1/clusters/prod/nodes/${node()}/checkpoint/shop/api-0/app?store=vault`, 'application/json')
    const body = (await made.json()) as { archive: { name: string }; stored: { key: string; sealed: { sha256: string; size: number } } }
    assert.ok(body.stored, JSON.stringify(body))
    const get = async (path: string, groups?: string[]) => fetch(url + path, { headers: { authorization: `Bearer ${await token(groups)}` } })
    const list = (await (await get('/v1/evidence?cluster=prod&namespace=shop')).json()) as { items: Array<{ id: string; archive: string; sealed: unknown }> }
    const item = list.items.find((i) => i.id === body.stored.key)
    assert.ok(item, JSON.stringify(list))
    assert.deepEqual([item.archive, item.sealed], [body.archive.name, body.stored.sealed])
    // Another namespace's reader sees none of it, and gets no URL.
    const theirs = (await (await get('/v1/evidence', ['dev'])).json()) as { items: unknown[] }
    assert.deepEqual(theirs.items, [])
    const refused = await get(`/v1/evidence/${body.stored.key}`, ['dev'])
    assert.equal(refused.status, 403)
    await refused.body?.cancel()
    const r = await get(`/v1/evidence/${body.stored.key}`)
    assert.equal(r.status, 200)
    const issued = (await r.json()) as { url: string; sealed: { sha256: string }; custody: string }
    // The custody link it writes is one the gateway answers.
    const linked = await get(issued.custody)
    assert.equal(linked.status, 200)
    assert.equal(((await linked.json()) as { verified?: boolean }).verified, true)
    const sealed = Buffer.from(await (await fetch(issued.url)).arrayBuffer())
    assert.equal(createHash('sha256').update(sealed).digest('hex'), body.stored.sealed.sha256)
    const unknown = await get('/v1/evidence/prod/shop/api-0/app/checkpoint-api-0_shop-app-2026-01-01T00:00:00Z.tar.zst.age')
    assert.equal(unknown.status, 404)
    await unknown.body?.cancel()
    // The custody log: created, stored, then the URL issued to ivy.
    const deadline = Date.now() + 5000
    let events: string[] = []
    while (Date.now() < deadline) {
      const log = (await (await get(`/v1/custody/prod/${node()}/${encodeURIComponent(body.archive.name)}?namespace=shop`)).json()) as { entries?: Array<{ event: string; actor: { sub: string } }>; verified?: boolean }
      events = (log.entries ?? []).map((e) => `${e.event}:${e.actor.sub}`)
      if (events.length >= 3 && log.verified) break
      await new Promise((res) => setTimeout(res, 50))
    }
    assert.deepEqual(events, ['created:ivy', 'stored:ivy', 'url_issued:ivy'])
  })

  it('the evidence list pages past newer evidence the caller may not read (1,001 newer rows)', async () => {
    const db = join(dir, 'paging.sqlite')
    const url = await gateway(vaultCfg(), db)
    let t = Date.parse('2026-01-01T00:00:00Z')
    const log = sqlCustodyLog(sqliteDriver(db), () => (t += 1000))
    const stored = (ns: string, i: number) => {
      const archive = `checkpoint-p-${i}_${ns}-c-2026-01-01T00:00:00Z.tar`
      return log.append(`prod/n1/${archive}`, { event: 'stored', actor: { sub: 'ivy' }, requestId: `r${i}`, details: { key: `prod/${ns}/p/c/${archive}.zst.age`, bucket: 'b', sealed: { sha256: 'a'.repeat(64), size: 1 }, plaintext: { sha256: 'b'.repeat(64), size: 1 }, recipients: [] } })
    }
    await stored('dev', 0)
    for (let i = 1; i <= 1001; i++) await stored('shop', i)
    const list = async (groups: string[], q = '') => (await (await fetch(`${url}/v1/evidence${q}`, { headers: { authorization: `Bearer ${await token(groups)}` } })).json()) as { items: Array<{ namespace: string }>; incomplete?: boolean }
    const dev = await list(['dev'])
    assert.deepEqual(dev.items.map((i) => i.namespace), ['dev'])
    assert.equal(dev.incomplete, undefined)
    const all = await list(['ir'], '?limit=500')
    assert.equal(all.items.length, 500)
    assert.ok(all.items.every((i) => i.namespace === 'shop'))
  })

  it('the CLI: create --store, evidence ls, evidence get -i decrypts to the archive', async () => {
    const { execFile } = await import('node:child_process')
    const url = await gateway(vaultCfg(), join(dir, 'cli.sqlite'))
    const identityFile = join(dir, 'investigator.txt')
    await (await import('node:fs/promises')).writeFile(identityFile, `${investigator.identity}\n`, { mode: 0o600 })
    const cli = (args: string[]) => new Promise<{ code: number; stdout: string; stderr: string }>((resolve) => {
      execFile(process.execPath, [join(import.meta.dirname, '../../cli/main.ts'), ...args], { env: { PATH: process.env.PATH ?? '', CHECKPOINT_GATEWAY: url, CHECKPOINT_TOKEN: tokenFor }, timeout: 60_000 }, (err, stdout, stderr) =>
        resolve({ code: err ? Number((err as { code?: number }).code ?? 1) : 0, stdout, stderr }))
    })
    const tokenFor = await token()
    const made = await cli(['create', `prod/shop/api-0/app`, `--node=${node()}`, '--store', '--json'])
    assert.equal(made.code, 0, made.stderr)
    assert.match(made.stderr, /^sealing … \d+ %$/m)
    assert.match(made.stderr, /^stored: prod\/shop\/api-0\/app\//m)
    const [completed, stored] = made.stdout.trim().split('\n').map((l) => JSON.parse(l) as Record<string, any>)
    const ls = await cli(['evidence', 'ls', '--cluster=prod', '--json'])
    assert.ok((JSON.parse(ls.stdout) as { items: Array<{ id: string }> }).items.some((i) => i.id === stored!.key))
    const out = join(dir, 'evidence.tar')
    const keyFile = join(dir, 'agent.pub')
    const published = JSON.parse(await (await a.fetch('/statement-keys')).body.text()) as { keys: Array<{ publicKey: string }> }
    await (await import('node:fs/promises')).writeFile(keyFile, published.keys[0]!.publicKey)
    const got = await cli(['evidence', 'get', stored!.key, '-o', out, '-i', identityFile, '--key', keyFile])
    assert.equal(got.code, 0, got.stderr)
    assert.ok((await readFile(out)).equals(await readFile(join(a.agent.store.dir, completed!.archive.name))))
    // The URL just issued is logged in the background: it may or may not be in the log read right after.
    assert.match(got.stderr, /^custody: created by ivy, stored by ivy(, url_issued by ivy)* — chain verified$/m)
    assert.match(got.stdout, /^verified: checkpoint-api-0_shop-app-/m)
    assert.ok(stored!.statementKey)
    // Without --key: the key the gateway collected from that node's agent (the same key, by id).
    const auto = await cli(['evidence', 'get', stored!.key, '-o', join(dir, 'evidence-auto.tar'), '-i', identityFile])
    assert.equal(auto.code, 0, auto.stderr)
    assert.match(auto.stderr, new RegExp(`^statement key [0-9a-f]{16}… of node ${node()}, collected by the gateway from its agent on `, 'm'))
    assert.match(auto.stdout, /^verified: checkpoint-api-0_shop-app-/m)
    const collected = (await (await fetch(`${url}/v1/clusters/prod/statement-keys?node=${node()}`, { headers: { authorization: `Bearer ${tokenFor}` } })).json()) as { keys: Array<{ publicKey: string }> }
    assert.deepEqual(collected.keys.map((k) => k.publicKey), [published.keys[0]!.publicKey])
  })

  it('?recipient= narrows the configured recipients; one configuration does not allow is 403 before anything is frozen', async () => {
    const url = await gateway(vaultCfg({ recipients: [{ id: 'ir', clusters: ['prod'], namespaces: ['shop'], recipients: [investigator.recipient, second.recipient] }] }))
    const r = await post(url, `/v1/clusters/prod/nodes/${node()}/checkpoint/shop/api-0/app?store=vault&recipient=${second.recipient}`, 'application/json')
    const body = (await r.json()) as { stored: { key: string; recipients: string[] } }
    assert.equal(body.stored.recipients.length, 1, JSON.stringify(body))
    const client = s3Client({ endpoint: s3.endpoint, bucket: s3.bucket, region: s3.region, accessKeyId: s3.accessKeyId, secretAccessKey: s3.secretAccessKey })
    const sealed = Buffer.from(await (await fetch(await client.presignGet(body.stored.key, 60))).arrayBuffer())
    const open = async (identity: string) => {
      const out: Buffer[] = []
      for await (const c of ageDecrypt([sealed], [identity])) out.push(c)
      return Buffer.concat(out)
    }
    assert.ok((await open(second.identity)).length > 0)
    await assert.rejects(open(investigator.identity))
    const calls = cri.checkpointCalls.length
    const outsider = generateIdentity()
    const codeOf = async (q: string) => {
      const res = await post(url, `/v1/clusters/prod/nodes/${node()}/checkpoint/shop/api-0/app${q}`)
      const p = (await res.json()) as { code: string; field?: string }
      return [res.status, p.code, p.field]
    }
    assert.deepEqual(await codeOf(`?store=vault&recipient=${outsider.recipient}`), [403, 'forbidden', 'recipient'])
    assert.deepEqual(await codeOf(`?store=vault&recipient=${second.recipient},not-a-recipient`), [400, 'invalid_recipient', 'recipient'])
    assert.deepEqual(await codeOf(`?recipient=${second.recipient}`), [400, 'invalid_query', 'recipient'])
    assert.equal(cri.checkpointCalls.length, calls, 'nothing was frozen')
  })

  it('POST …/checkpoints/{name}/store seals an archive already on the node, with its statement; JSON and NDJSON', async () => {
    const url = await gateway(vaultCfg(), join(dir, 'store-existing.sqlite'))
    const made = (await (await post(url, `/v1/clusters/prod/nodes/${node()}/checkpoint/shop/api-0/app`, 'application/json')).json()) as { archive: { name: string; sha256: string } }
    const storePath = `/v1/clusters/prod/nodes/${node()}/checkpoints/${made.archive.name}/store`
    const r = await post(url, storePath, 'application/json')
    assert.equal(r.status, 200)
    const { stored } = (await r.json()) as { stored: { type: string; key: string; plaintext: { sha256: string }; statementKey?: string } }
    assert.equal(stored.type, 'stored')
    assert.equal(stored.key, `prod/shop/api-0/app/${made.archive.name}.zst.age`)
    assert.equal(stored.plaintext.sha256, made.archive.sha256)
    assert.ok(stored.statementKey, 'the statement travels with it')
    const client = s3Client({ endpoint: s3.endpoint, bucket: s3.bucket, region: s3.region, accessKeyId: s3.accessKeyId, secretAccessKey: s3.secretAccessKey })
    const sealed = Buffer.from(await (await fetch(await client.presignGet(stored.key, 60))).arrayBuffer())
    const plain: Buffer[] = []
    for await (const c of ageDecrypt([sealed], [investigator.identity])) plain.push(c)
    assert.ok(zstdDecompressSync(Buffer.concat(plain)).equals(await readFile(join(a.agent.store.dir, made.archive.name))))
    // NDJSON: progress, then stored.
    const streamed = await post(url, storePath)
    const types = (await streamed.text()).trim().split('\n').map((l) => (JSON.parse(l) as { type: string }).type)
    assert.deepEqual([types.includes('sealing'), types.includes('uploading'), types.at(-1)], [true, true, 'stored'])
    // Refusals: an archive that is not there, a reader of another namespace, no recipient for the namespace.
    const missing = await post(url, `/v1/clusters/prod/nodes/${node()}/checkpoints/checkpoint-api-0_shop-app-2026-01-01T00:00:00Z.tar/store`, 'application/json')
    assert.deepEqual([missing.status, ((await missing.json()) as { code: string }).code], [404, 'archive_not_found'])
    const dev = await fetch(url + storePath, { method: 'POST', headers: { authorization: `Bearer ${await token(['dev'])}` } })
    assert.deepEqual([dev.status, ((await dev.json()) as { code: string }).code], [403, 'forbidden'])
    const devArchive = (await (await post(url, `/v1/clusters/prod/nodes/${node()}/checkpoint/dev/api-0/app`, 'application/json')).json()) as { archive: { name: string } }
    const none = await post(url, `/v1/clusters/prod/nodes/${node()}/checkpoints/${devArchive.archive.name}/store`, 'application/json')
    assert.deepEqual([none.status, ((await none.json()) as { code: string }).code], [400, 'invalid_recipient'])
  })

  it('hooks.store: an alert\'s checkpoint is stored; the operation names the evidence', async () => {
    const url = await gateway(vaultCfg(), join(dir, 'hooks-store.sqlite'), { select: [{ checkpoint: 'true' }], cooldownSec: 0, store: 'vault', retry: { maxAttempts: 1 } })
    const notification = alertmanagerPayload([{ labels: { alertname: 'Suspicious', checkpoint: 'true', cluster: 'prod', namespace: 'shop', pod: 'api-0', container: 'app', node: node() } }])
    const res = await fetch(url + '/v1/hooks/alertmanager', { method: 'POST', headers: { authorization: `Bearer ${await token()}`, 'content-type': 'application/json' }, body: JSON.stringify(notification) })
    assert.equal(res.status, 202)
    const id = ((await res.json()) as { alerts: Array<{ operation: string }> }).alerts[0]!.operation
    let op: { state: string; stored?: { key: string; sealed: { sha256: string } }; archive?: { name: string } } = { state: 'queued' }
    const deadline = Date.now() + 30_000
    while (!['succeeded', 'failed'].includes(op.state) && Date.now() < deadline) {
      await new Promise((r) => setTimeout(r, 100))
      op = (await (await fetch(`${url}/v1/operations/${id}`, { headers: { authorization: `Bearer ${await token()}` } })).json()) as typeof op
    }
    assert.equal(op.state, 'succeeded', JSON.stringify(op))
    assert.equal(op.stored?.key, `prod/shop/api-0/app/${op.archive!.name}.zst.age`)
    const client = s3Client({ endpoint: s3.endpoint, bucket: s3.bucket, region: s3.region, accessKeyId: s3.accessKeyId, secretAccessKey: s3.secretAccessKey })
    const sealed = Buffer.from(await (await fetch(await client.presignGet(op.stored!.key, 60))).arrayBuffer())
    assert.equal(createHash('sha256').update(sealed).digest('hex'), op.stored!.sealed.sha256)
    // The agent's signed statement, stored beside it, says why: the alert's name and fingerprint.
    const bundle = JSON.parse(await (await fetch(await client.presignGet(`${op.stored!.key}.statement.json`, 60))).text()) as { dsseEnvelope: { payload: string } }
    const predicate = (JSON.parse(Buffer.from(bundle.dsseEnvelope.payload, 'base64').toString()) as { predicate: { reason?: string } }).predicate
    assert.match(predicate.reason ?? '', new RegExp(`^alertmanager alert Suspicious fingerprint ${notification.alerts ? (notification.alerts as Array<{ fingerprint: string }>)[0]!.fingerprint : ''} since `))
    // The evidence API lists it, and its custody log says who: the webhook's caller.
    const list = (await (await fetch(`${url}/v1/evidence?cluster=prod`, { headers: { authorization: `Bearer ${await token()}` } })).json()) as { items: Array<{ id: string }> }
    assert.ok(list.items.some((i) => i.id === op.stored!.key))
  })

  it('storage refusing: the checkpoint still succeeds, the stream ends store_failed, the archive stays', async () => {
    const url = await gateway({ ...vaultCfg(), s3: { endpoint: s3.endpoint, bucket: 'no-such-bucket', region: s3.region, accessKeyIdSecret: 'S3_KEY', secretAccessKeySecret: 'S3_SECRET' } })
    const r = await post(url, `/v1/clusters/prod/nodes/${node()}/checkpoint/shop/api-0/app?store=vault`)
    const events = (await r.text()).trim().split('\n').map((l) => JSON.parse(l) as Record<string, any>)
    const completed = events.find((e) => e.type === 'completed')!
    assert.ok(completed)
    assert.deepEqual([events.at(-1)!.type, events.at(-1)!.code], ['store_failed', 'storage_rejected'])
    assert.ok((await readdir(a.agent.store.dir)).includes(completed.archive.name))
  })
})
