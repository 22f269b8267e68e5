/**
 * The custody log through the Node gateway (node:sqlite file, real agent over mTLS): created,
 * downloaded (by whom), a refused access, deleted — each entry chained to the one before; a log
 * with an entry changed or removed in the database fails verification.
 */
import assert from 'node:assert/strict'
import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { DatabaseSync } from 'node:sqlite'
import { after, before, describe, it } from 'node:test'
import { exportJWK, generateKeyPair, SignJWT, type CryptoKey } from 'jose'
import { sqlCustodyLog, verifyChain } from '../../functions/custody/log.ts'
import { parseConfig } from '../../functions/config.ts'
import { loadGrantKeys } from '../../functions/grants.ts'
import { sqliteDriver } from '../../functions/node/sqlite.ts'
import { startNodeGateway } from '../../functions/node/start.ts'
import type { Served } from '../../functions/node/server.ts'
import { makeIdentities, startTestAgent, type TestAgent } from '../support/agent-harness.ts'
import { startFakeCri, type FakeCri } from '../support/fake-cri.ts'

const ISSUER = 'https://idp.custody.test'

describe('the custody log', () => {
  let dir: string
  let cri: FakeCri
  let a: TestAgent
  let gw: Served
  let dbFile: string
  let key: CryptoKey
  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'custody-'))
    const ids = await makeIdentities(dir)
    cri = await startFakeCri(join(dir, 'cri.sock'), {}, [{ id: 'c-api', namespace: 'shop', pod: 'api-0', container: 'app' }])
    a = await startTestAgent({ ids, endpoint: cri.endpoint, dir })
    const pair = await generateKeyPair('ES256', { extractable: true })
    key = pair.privateKey as CryptoKey
    dbFile = join(dir, 'gateway.sqlite')
    gw = await startNodeGateway({
      config: parseConfig({
        clusters: { prod: { agentUrl: a.agent.url, agentCa: ids.pki.ca.certPem } },
        auth: { issuers: [ISSUER], audience: 'gw', jwks: { keys: [{ ...(await exportJWK(pair.publicKey)), kid: 'k', alg: 'ES256' }] } },
        policy: { rules: [
          { id: 'ir', groups: ['ir'], actions: ['create', 'read', 'delete'], clusters: ['*'], namespaces: ['*'] },
          { id: 'dev', subjects: ['dan'], actions: ['read'], clusters: ['*'], namespaces: ['dev'] },
        ] },
        grants: { issuer: 'gw-custody' },
      }, () => undefined),
      keys: await loadGrantKeys([{ ...(await exportJWK(ids.grantKey)), kid: ids.kid, alg: 'EdDSA' }]),
      client: { cert: ids.gateway.certPem, key: ids.gateway.keyPem },
      port: 0,
      operationsDb: dbFile,
      log: () => {},
    })
  })
  after(async () => {
    await gw?.close(2000)
    await a?.stop()
    await cri?.stop()
    await rm(dir, { recursive: true, force: true })
  })

  const token = (sub: string, groups: string[] = []) => new SignJWT({ groups, scope: 'checkpoint:create checkpoint:read checkpoint:delete' })
    .setProtectedHeader({ alg: 'ES256', kid: 'k' }).setIssuer(ISSUER).setAudience('gw').setSubject(sub).setIssuedAt().setExpirationTime('10m').sign(key)
  const call = async (path: string, sub: string, init: RequestInit = {}, groups: string[] = []) => fetch(gw.url + path, { ...init, headers: { authorization: `Bearer ${await token(sub, groups)}`, ...(init.headers as object) } })
  const logOf = async (path: string) => {
    const deadline = Date.now() + 5000
    for (;;) {
      const r = await call(path, 'ivy', {}, ['ir'])
      const body = (await r.json()) as { entries?: Array<{ event: string; actor: { sub: string } }>; verified?: boolean; code?: string }
      if (r.status === 200 || Date.now() > deadline) return { status: r.status, ...body }
      await new Promise((res) => setTimeout(res, 50))
    }
  }

  it('created → downloaded → refused → deleted, chained, each with who and the request', async () => {
    const made = await call(`/v1/clusters/prod/nodes/${a.node}/checkpoint/shop/api-0/app?reason=case%207`, 'ivy', { method: 'POST', headers: { accept: 'application/json' } }, ['ir'])
    const { archive, download } = (await made.json()) as { archive: { name: string; sha256: string }; download: string }
    const custodyPath = `/v1/custody/prod/${a.node}/${encodeURIComponent(archive.name)}?namespace=shop`
    const dl = await call(download, 'ivy', {}, ['ir'])
    assert.equal(dl.status, 200)
    await dl.arrayBuffer()
    const refused = await call(download.replace('namespace=shop', 'namespace=shop'), 'dan')
    assert.equal(refused.status, 403)
    await refused.body?.cancel()
    const del = await call(download, 'ivy', { method: 'DELETE' }, ['ir'])
    assert.equal(del.status, 204)
    const deadline = Date.now() + 5000
    let log = await logOf(custodyPath)
    while ((log.entries?.length ?? 0) < 4 && Date.now() < deadline) log = await logOf(custodyPath)
    assert.equal(log.status, 200)
    assert.deepEqual(log.entries!.map((e) => [e.event, e.actor.sub]), [['created', 'ivy'], ['downloaded', 'ivy'], ['refused', 'dan'], ['deleted', 'ivy']])
    assert.equal(log.verified, true)
    const created = log.entries![0] as unknown as { details: { sha256: string; reason: string; statementKey?: string } }
    assert.deepEqual([created.details.sha256, created.details.reason], [archive.sha256, 'case 7'])
    assert.ok(created.details.statementKey)
    // A caller without read on the archive does not see its log.
    const other = await call(custodyPath, 'dan')
    assert.equal(other.status, 403)
    await other.body?.cancel()
  })

  it('an entry changed or removed in the database fails verification', async () => {
    const db = new DatabaseSync(dbFile)
    const subject = String((db.prepare('SELECT subject FROM custody_log LIMIT 1').get() as { subject: string }).subject)
    const log = sqlCustodyLog(sqliteDriver(dbFile), Date.now)
    assert.deepEqual(await verifyChain(subject, await log.read(subject)), { ok: true })
    db.prepare("UPDATE custody_log SET actor = '{\"sub\":\"mallory\"}' WHERE subject = ? AND seq = 2").run(subject)
    assert.deepEqual(await verifyChain(subject, await log.read(subject)), { ok: false, seq: 2, problem: 'hash' })
    const path = `/v1/custody/${subject.split('/').map(encodeURIComponent).join('/')}`
    const r = await call(path, 'ivy', {}, ['ir'])
    assert.deepEqual(((await r.json()) as { verified: boolean; broken: unknown }).broken, { seq: 2, problem: 'hash' })
    db.prepare('DELETE FROM custody_log WHERE subject = ? AND seq = 3').run(subject)
    assert.deepEqual(await verifyChain(subject, await log.read(subject)), { ok: false, seq: 2, problem: 'hash' })
    db.prepare("UPDATE custody_log SET actor = '{\"sub\":\"ivy\"}' WHERE subject = ? AND seq = 2").run(subject)
    assert.deepEqual(await verifyChain(subject, await log.read(subject)), { ok: false, seq: 3, problem: 'gap' })
    db.close()
  })
  it('stored(): a cluster id is matched exactly (`_` is no wildcard); an undefined detail keeps the chain whole', async () => {
    const log = sqlCustodyLog(sqliteDriver(join(dir, 'stored.sqlite')), Date.now)
    const actor = { sub: 'ivy' }
    const put = (cluster: string) => log.append(`${cluster}/node-1/a.tar`, { event: 'stored', actor, requestId: 'r', details: { key: `${cluster}/ns/p/c/a.tar.zst.age`, gone: undefined } })
    await put('a_b')
    await put('a-b')
    await put('axb')
    assert.deepEqual((await log.stored({ cluster: 'a_b', limit: 10 })).map((e) => e.subject), ['a_b/node-1/a.tar'])
    assert.equal((await log.stored({ limit: 10 })).length, 3)
    assert.deepEqual(await verifyChain('a_b/node-1/a.tar', await log.read('a_b/node-1/a.tar')), { ok: true })
  })
})
