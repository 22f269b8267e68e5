/**
 * The Node agent transport over real mutual TLS: a small answer with a Content-Length is read
 * whole and its bytes are kept for callers (`bytes(res)`), exactly as sent, while the Response
 * still reads the same; anything larger or without a length streams and keeps nothing.
 */
import assert from 'node:assert/strict'
import { randomBytes } from 'node:crypto'
import { createServer, type Server } from 'node:https'
import type { AddressInfo } from 'node:net'
import { after, before, describe, it } from 'node:test'
import type { ClusterConfig } from '../../functions/config.ts'
import { nodeAgentTransport } from '../../functions/node/transport.ts'
import { makeTestPki } from '../support/certs.ts'

const answers: Record<string, { body: Buffer; chunked?: boolean; status?: number; headers?: Record<string, string | string[]> }> = {
  '/etag': { body: randomBytes(100), headers: { etag: '"abc"', 'X-Checkpoint-Sha256': 'f'.repeat(64) } },
  '/repeated': { body: randomBytes(100), headers: { 'x-twice': ['a', 'b'], etag: '"abc"' } },
  '/small': { body: randomBytes(4096) },
  '/edge': { body: randomBytes(64 * 1024) },
  '/large': { body: randomBytes(64 * 1024 + 1) },
  '/chunked': { body: randomBytes(1000), chunked: true },
  '/problem': { body: Buffer.from('{"code":"not_found"}'), status: 404 },
}

let server: Server
let cluster: ClusterConfig
let transport: ReturnType<typeof nodeAgentTransport>

before(async () => {
  const pki = await makeTestPki()
  server = createServer({ key: pki.serverKey, cert: pki.serverCert, ca: pki.caCert, requestCert: true, rejectUnauthorized: true }, (req, res) => {
    const a = answers[req.url ?? '']!
    res.writeHead(a.status ?? 200, { ...(a.chunked ? { 'content-type': 'application/octet-stream' } : { 'content-type': 'application/octet-stream', 'content-length': a.body.length }), ...a.headers })
    res.end(a.body)
  })
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r))
  const url = `https://127.0.0.1:${(server.address() as AddressInfo).port}`
  cluster = { id: 'c', agentUrl: url, agentCa: pki.caCert, mtlsBinding: 'AGENT_MTLS' }
  transport = nodeAgentTransport({ cert: pki.clientCert, key: pki.clientKey })
})
after(async () => {
  await transport?.close()
  server?.closeAllConnections()
  await new Promise<void>((r) => (server ? server.close(() => r()) : r()))
})

describe('node agent transport: small answers as bytes', () => {
  for (const path of ['/small', '/edge', '/problem']) {
    it(`${path}: read whole, the same bytes kept for callers and in the Response`, async () => {
      const res = await transport.fetch(cluster, 'n', path, { method: 'GET', headers: {} })
      assert.equal(res.status, answers[path]!.status ?? 200)
      const kept = transport.bytes!(res)
      assert.ok(kept, 'bytes kept')
      assert.deepEqual(Buffer.from(kept), answers[path]!.body)
      assert.deepEqual(Buffer.from(await res.arrayBuffer()), answers[path]!.body)
    })
  }
  for (const path of ['/large', '/chunked']) {
    it(`${path}: streamed, nothing kept`, async () => {
      const res = await transport.fetch(cluster, 'n', path, { method: 'GET', headers: {} })
      assert.equal(transport.bytes!(res), undefined)
      assert.deepEqual(Buffer.from(await res.arrayBuffer()), answers[path]!.body)
    })
  }
  it('every answer\'s headers are kept as a plain record (lowercase names), the same as the Response\'s', async () => {
    for (const path of ['/etag', '/large', '/chunked', '/problem']) {
      const res = await transport.fetch(cluster, 'n', path, { method: 'GET', headers: {} })
      const kept = transport.headers!(res)
      assert.ok(kept, path)
      assert.deepEqual(Object.fromEntries(res.headers), kept, path)
      await res.arrayBuffer()
    }
    const res = await transport.fetch(cluster, 'n', '/etag', { method: 'GET', headers: {} })
    assert.equal(transport.headers!(res)!['etag'], '"abc"')
    assert.equal(transport.headers!(res)!['x-checkpoint-sha256'], 'f'.repeat(64))
    await res.arrayBuffer()
  })

  it('a name that repeats: no record kept, every value still in the Response', async () => {
    const res = await transport.fetch(cluster, 'n', '/repeated', { method: 'GET', headers: {} })
    assert.equal(transport.headers!(res), undefined)
    assert.equal(res.headers.get('x-twice'), 'a, b')
    assert.equal(res.headers.get('etag'), '"abc"')
    assert.deepEqual(Buffer.from(await res.arrayBuffer()), answers['/repeated']!.body)
  })

  it('a HEAD answer keeps nothing', async () => {
    const res = await transport.fetch(cluster, 'n', '/small', { method: 'HEAD', headers: {} })
    assert.equal(res.status, 200)
    assert.equal(transport.bytes!(res), undefined)
    assert.equal(res.body, null)
  })
})
