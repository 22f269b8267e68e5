/**
 * The Node server's look at an answer's body (functions/node/server.ts `bodyOf`): it finds a
 * streamed body without turning @hono/node-server's Response into a platform one, so bytes and
 * strings still go out through the adapter's direct write, and every kind of body still arrives
 * byte for byte.
 */
import assert from 'node:assert/strict'
import { randomBytes } from 'node:crypto'
import { after, before, describe, it } from 'node:test'
import { adapterCacheSymbol, bodyOf, serveFetch, type Served } from '../../functions/node/server.ts'

const BYTES = randomBytes(4096)
const STREAMED = randomBytes(100_000)

let served: Served
/** What the app answered, by path: to look at after the answer went out. */
const answered = new Map<string, Response>()

before(async () => {
  served = await serveFetch((req) => {
    const path = new URL(req.url).pathname
    const res = path === '/bytes'
      ? new Response(new Uint8Array(BYTES), { headers: { 'content-type': 'application/x-tar' } })
      : path === '/json'
        ? new Response('{"ok":true}', { headers: { 'content-type': 'application/json' } })
        : new Response(new ReadableStream({
          start(c) {
            for (let i = 0; i < STREAMED.length; i += 30_000) c.enqueue(new Uint8Array(STREAMED.subarray(i, i + 30_000)))
            c.close()
          },
        }))
    answered.set(path, res)
    return res
  }, { host: '127.0.0.1', port: 0 })
})
after(() => served?.close(1000))

describe('the Node server and the adapter\'s Response', () => {
  it('the adapter in this install keeps its Response\'s parts under a symbol the server can find', () => {
    // If an upgrade of @hono/node-server renames it, this fails: bodyOf would still be correct
    // (it reads res.body), but every answer would cost a platform Response again.
    assert.equal(typeof adapterCacheSymbol(), 'symbol')
  })

  it('bytes, a string and a stream arrive byte for byte; the bytes and the string were not made into a platform Response', async () => {
    for (const [path, want] of [['/bytes', BYTES], ['/json', Buffer.from('{"ok":true}')], ['/stream', STREAMED]] as const) {
      const r = await fetch(served.url + path)
      assert.equal(r.status, 200)
      assert.deepEqual(Buffer.from(await r.arrayBuffer()), want, path)
    }
    const key = adapterCacheSymbol()!
    // Reading `.body` of the adapter's Response would have dropped its parts for a platform Response.
    assert.ok(key in answered.get('/bytes')!)
    assert.ok(key in answered.get('/json')!)
  })

  it('bodyOf: the stream of a streamed answer, null for bytes, the platform body once one was made', () => {
    const stream = new ReadableStream()
    const streamed = new Response(stream)
    assert.equal(bodyOf(streamed), stream)
    const bytes = new Response(new Uint8Array(3))
    assert.equal(bodyOf(bytes), null)
    assert.ok(adapterCacheSymbol()! in bytes)
    assert.equal(bodyOf(new Response(null)), null)
    // Once something read it as a platform Response, its body is the platform one.
    const made = new Response('abc')
    const platformBody = made.body
    assert.ok(platformBody instanceof ReadableStream)
    assert.equal(bodyOf(made), platformBody)
  })
})
