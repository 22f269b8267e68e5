/**
 * Requests the HTTP parser refuses before any route runs still get a problem body with a stable
 * code, on the Node gateway and on the agent (oversized headers → 431, malformed → 400).
 */
import assert from 'node:assert/strict'
import { mkdtemp, rm } from 'node:fs/promises'
import { connect as tcpConnect } from 'node:net'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { connect as tlsConnect } from 'node:tls'
import { after, before, describe, it } from 'node:test'
import { makeIdentities, startTestAgent, type TestAgent } from '../support/agent-harness.ts'
import { startFakeCri, type FakeCri } from '../support/fake-cri.ts'
import { makeWorld, type World } from '../support/gateway/fixtures.ts'
import { nodeTarget, type GatewayUnderTest } from '../support/gateway/targets.ts'

/** Sends raw bytes, returns status and parsed problem body of the answer. */
async function rawExchange(open: () => import('node:stream').Duplex, request: string): Promise<{ status: number; code: string; contentType: string }> {
  const socket = open()
  const chunks: Buffer[] = []
  await new Promise<void>((resolve, reject) => {
    socket.on('data', (c: Buffer) => chunks.push(c))
    socket.on('end', resolve)
    socket.on('close', resolve)
    socket.on('error', reject)
    socket.write(request)
  })
  const text = Buffer.concat(chunks).toString('utf8')
  const [head, body] = text.split('\r\n\r\n', 2) as [string, string]
  const status = Number(/^HTTP\/1\.1 (\d{3})/.exec(head)?.[1])
  const contentType = /content-type: ([^\r\n]+)/i.exec(head)?.[1] ?? ''
  return { status, code: (JSON.parse(body) as { code: string }).code, contentType }
}

const BIG = `GET /healthz HTTP/1.1\r\nhost: x\r\nx-big: ${'a'.repeat(20_000)}\r\n\r\n`
const GARBAGE = 'GET /healthz HTTP/1.1\r\nhost x\r\n\r\n'

describe('parser errors on the Node gateway', () => {
  let world: World
  let gw: GatewayUnderTest
  before(async () => {
    world = await makeWorld()
    gw = await nodeTarget(world, world.rawConfig())
  })
  after(async () => {
    await gw?.close()
    await world?.close()
  })
  const open = () => {
    const u = new URL(gw.url)
    return tcpConnect(Number(u.port), u.hostname)
  }
  it('oversized headers → 431 headers_too_large, problem+json', async () => {
    assert.deepEqual(await rawExchange(open, BIG), { status: 431, code: 'headers_too_large', contentType: 'application/problem+json' })
  })
  it('a malformed request → 400 malformed_request', async () => {
    assert.deepEqual(await rawExchange(open, GARBAGE), { status: 400, code: 'malformed_request', contentType: 'application/problem+json' })
  })
  it('the server still answers afterwards', async () => {
    assert.equal((await gw.fetch('/healthz')).status, 200)
  })
})

describe('parser errors on the agent', () => {
  let dir: string
  let cri: FakeCri
  let a: TestAgent
  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'agent-parser-'))
    const ids = await makeIdentities(dir)
    cri = await startFakeCri(join(dir, 'cri.sock'))
    a = await startTestAgent({ ids, endpoint: cri.endpoint, dir })
  })
  after(async () => {
    await a?.stop()
    await cri?.stop()
    await rm(dir, { recursive: true, force: true })
  })
  const open = () => {
    const u = new URL(a.agent.url)
    const id = a.ids.gateway
    return tlsConnect({ port: Number(u.port), host: u.hostname, servername: 'localhost', ca: a.ids.pki.ca.certPem, cert: id.certPem, key: id.keyPem })
  }
  it('oversized headers → 431 headers_too_large, problem+json', async () => {
    assert.deepEqual(await rawExchange(open, BIG), { status: 431, code: 'headers_too_large', contentType: 'application/problem+json' })
  })
  it('a malformed request → 400 malformed_request', async () => {
    assert.deepEqual(await rawExchange(open, GARBAGE), { status: 400, code: 'malformed_request', contentType: 'application/problem+json' })
  })
})
