// End-to-end through every piece: caller JWT → the gateway's Worker bundle in miniflare (real
// workerd) → a `network` service binding with a client certificate (mTLS) → the real agent →
// a real containerd 2.x + runc + CRIU (test/support/stack.ts). Plain fetch() against the gateway's
// loopback listener, as curl would.
// Never skips: if the stack cannot start, `before` fails and so does every test, with the reason.
//
//   node_modules/.bin/node --test test/e2e/gateway.e2e.test.ts
import { after, before, describe, it } from 'node:test'
import assert from 'node:assert/strict'
import { execFile } from 'node:child_process'
import { createHash } from 'node:crypto'
import { generateIdentity } from '../../agent/seal/age.ts'
import { readFile, writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { NDJSON, parseEvent, type AcceptedEvent, type ArchiveEntry, type CheckpointEvent, type CompletedEvent, type ResolvedEvent } from '../../shared/events.ts'
import type { Target } from '../../shared/names.ts'
import { removeBundle } from '../support/gateway/targets.ts'
import { counter, holdMemory } from '../runtime/workloads.ts'
import { ALL_SCOPES, startStack, type Stack } from '../support/stack.ts'

const COUNTER = counter()
const POD: Target = { namespace: 'e2e', pod: 'counter', container: 'counter' }
/** Holds BIG_MB MB resident (../runtime/workloads.ts). */
const BIG_MB = 200
const BIG: Target = { namespace: 'e2e', pod: 'big', container: 'hog' }
const BIG_CMD = holdMemory(BIG_MB)
const archiveRe = (t: Target) =>
  new RegExp(`^checkpoint-${t.pod}_${t.namespace}-${t.container}-\\d{4}-\\d\\d-\\d\\dT\\d\\d:\\d\\d:\\d\\d(?:\\.\\d+)?Z\\.tar$`)

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms))
const sha256 = (b: Buffer) => createHash('sha256').update(b).digest('hex')

/** Polls `probe` until it returns something other than undefined, at most `ms`. */
async function poll<T>(probe: () => Promise<T | undefined>, ms: number, what: string): Promise<T> {
  const deadline = Date.now() + ms
  for (;;) {
    const v = await probe().catch(() => undefined)
    if (v !== undefined) return v
    if (Date.now() > deadline) throw new Error(`${what}: not within ${ms} ms`)
    await sleep(200)
  }
}

async function problem(res: Response): Promise<Record<string, unknown>> {
  assert.match(res.headers.get('content-type') ?? '', /^application\/problem\+json/)
  return (await res.json()) as Record<string, unknown>
}

describe('gateway in workerd → mTLS → agent → containerd', { timeout: 150_000 }, () => {
  let stack: Stack
  let full = ''
  let readOnly = ''
  let counter: { podId: string; containerId: string }
  let big: { podId: string; containerId: string } | undefined
  /** The NDJSON test's completed event, for the download tests. */
  let streamed: CompletedEvent | undefined
  let jsonName = ''
  const timings: Record<string, string> = {}
  const investigator = generateIdentity()

  const post = (t: Target, token: string, accept?: string) =>
    stack.fetch(stack.checkpointPath(t), {
      method: 'POST',
      headers: { authorization: `Bearer ${token}`, ...(accept ? { accept } : {}) },
      signal: AbortSignal.timeout(60_000),
    })
  const get = (path: string, token: string, headers: Record<string, string> = {}) =>
    stack.fetch(path, { headers: { authorization: `Bearer ${token}`, ...headers }, signal: AbortSignal.timeout(60_000) })
  const downloadPath = (name: string, ns: string) =>
    `/v1/clusters/${stack.cluster}/nodes/${stack.node}/checkpoints/${encodeURIComponent(name)}?namespace=${ns}`
  const agentNames = async () => (await stack.agent.store.list()).map((a) => a.name).sort()
  const readCount = async (containerId: string) => Number((await stack.exec(containerId, ['cat', '/tmp/count'])).trim())

  before(async () => {
    const t0 = performance.now()
    stack = await startStack({ log: (line) => console.log(`# stack: ${line}`), vault: { recipients: [investigator.recipient] } })
    timings['stack start (containerd, registry, image, PKI, agent, workerd)'] = `${Math.round(performance.now() - t0)} ms`
    counter = await stack.runPod({ ...POD, command: ['sh', '-c', COUNTER] })
    // Fills its memory while the other tests run; used last, for throughput.
    big = await stack.runPod({ ...BIG, command: ['sh', '-c', BIG_CMD] })
    full = await stack.mintToken(ALL_SCOPES, { expiresInSec: 600 })
    readOnly = await stack.mintToken(['checkpoint:read'], { expiresInSec: 600 })
    await poll(async () => ((await readCount(counter.containerId)) >= 5 ? true : undefined), 20_000, 'counter reaching 5')
  })

  after(async () => {
    try {
      await stack?.stop()
    } catch (err) {
      console.log(`# after: stopping the stack failed: ${err}`)
    }
    removeBundle()
    for (const [k, v] of Object.entries(timings)) console.log(`# timing ${k}: ${v}`)
  })

  it('(a) NDJSON: accepted, resolved, completed pass through; completed gets cluster, node, download', async () => {
    const t0 = performance.now()
    const res = await post(POD, full, NDJSON)
    assert.equal(res.status, 200)
    assert.equal(res.headers.get('content-type'), NDJSON)
    const text = await res.text()
    timings['NDJSON checkpoint through the gateway, request to completed'] = `${Math.round(performance.now() - t0)} ms`
    assert.ok(text.endsWith('\n'), 'every event is a whole line')
    const events: CheckpointEvent[] = text.trimEnd().split('\n').map(parseEvent)
    assert.match(events.map((e) => e.type).join(','), /^accepted,resolved,(heartbeat,)*completed$/)

    const accepted = events[0] as AcceptedEvent
    assert.deepEqual(accepted.target, POD)
    assert.equal(accepted.node, stack.node)
    assert.equal(accepted.queuePosition, 0)
    // The gateway's request id travels to the agent and back.
    assert.equal(accepted.requestId, res.headers.get('x-request-id'))
    const resolved = events[1] as ResolvedEvent
    assert.equal(resolved.containerId, counter.containerId)
    assert.equal(resolved.runtime.name, 'containerd')
    assert.match(resolved.runtime.version, /^v?2\./)

    const done = events.at(-1) as CompletedEvent
    assert.equal(done.cluster, stack.cluster)
    assert.equal(done.node, stack.node)
    assert.equal(done.containerId, counter.containerId)
    assert.match(done.archive.name, archiveRe(POD))
    assert.match(done.archive.sha256, /^[0-9a-f]{64}$/)
    assert.equal(done.download, downloadPath(done.archive.name, POD.namespace))
    assert.deepEqual(done.items, [join(stack.agent.store.dir, done.archive.name)])
    const onDisk = await readFile(done.items[0]!)
    assert.equal(onDisk.length, done.archive.size)
    assert.equal(sha256(onDisk), done.archive.sha256)
    timings['completed.durationMs (agent: accept to archive hashed)'] = `${done.durationMs} ms`
    timings['archive size (tiny counter)'] = `${done.archive.size} bytes`
    streamed = done

    // The container was not left frozen: the counter moves on.
    const a = await readCount(counter.containerId)
    await poll(async () => ((await readCount(counter.containerId)) > a ? true : undefined), 5_000, 'counter moving after checkpoint')
  })

  it('(b) JSON: the final body with archive name, size, sha256 and download path', async () => {
    const t0 = performance.now()
    const res = await post(POD, full)
    const body = (await res.json()) as Record<string, unknown> & { archive: { name: string; size: number; sha256: string; created: string }; items: string[] }
    timings['JSON checkpoint through the gateway, request to answer'] = `${Math.round(performance.now() - t0)} ms`
    assert.equal(res.status, 200, JSON.stringify(body))
    assert.match(res.headers.get('content-type') ?? '', /^application\/json/)
    assert.equal(body.cluster, stack.cluster)
    assert.equal(body.node, stack.node)
    assert.equal(body.containerId, counter.containerId)
    assert.equal((body.runtime as { name: string }).name, 'containerd')
    const { name, size, sha256: digest, created } = body.archive
    assert.match(name, archiveRe(POD))
    assert.notEqual(name, streamed?.archive.name)
    assert.ok(Number.isInteger(size) && size > 0)
    assert.match(digest, /^[0-9a-f]{64}$/)
    assert.ok(!Number.isNaN(Date.parse(created)))
    assert.deepEqual(body.items, [join(stack.agent.store.dir, name)])
    assert.equal(body.download, downloadPath(name, POD.namespace))
    assert.equal(sha256(await readFile(body.items[0]!)), digest)
    jsonName = name
  })

  it('(c) downloads the archive through the gateway: same sha256, and checkpointctl reads it', async () => {
    assert.ok(streamed?.download, 'needs the completed event of (a)')
    const t0 = performance.now()
    const res = await get(streamed.download, full)
    const bytes = Buffer.from(await res.arrayBuffer())
    timings['download through the gateway (tiny archive)'] = `${Math.round(performance.now() - t0)} ms`
    assert.equal(res.status, 200)
    assert.equal(res.headers.get('content-type'), 'application/x-tar')
    assert.equal(res.headers.get('content-length'), String(streamed.archive.size))
    assert.equal(res.headers.get('etag'), `"${streamed.archive.sha256}"`)
    assert.equal(res.headers.get('x-checkpoint-sha256'), streamed.archive.sha256)
    assert.equal(bytes.length, streamed.archive.size)
    assert.equal(sha256(bytes), streamed.archive.sha256)

    const file = join(stack.dir, 'downloaded.tar')
    await writeFile(file, bytes)
    const shown = await stack.runtime!.checkpointctl(['show', file])
    assert.match(shown, new RegExp(counter.containerId.slice(0, 12)))
  })

  it('(d) Range through the gateway: 206 with the bytes asked for; 416 beyond the end', async () => {
    assert.ok(streamed?.download, 'needs the completed event of (a)')
    const onDisk = await readFile(streamed.items[0]!)
    const size = onDisk.length
    const part = await get(streamed.download, full, { range: 'bytes=0-99' })
    assert.equal(part.status, 206)
    assert.equal(part.headers.get('content-range'), `bytes 0-99/${size}`)
    assert.equal(part.headers.get('content-length'), '100')
    const bytes = Buffer.from(await part.arrayBuffer())
    assert.ok(bytes.equals(onDisk.subarray(0, 100)))

    const tail = await get(streamed.download, full, { range: 'bytes=-10' })
    assert.equal(tail.status, 206)
    assert.equal(tail.headers.get('content-range'), `bytes ${size - 10}-${size - 1}/${size}`)
    assert.ok(Buffer.from(await tail.arrayBuffer()).equals(onDisk.subarray(size - 10)))

    const beyond = await get(streamed.download, full, { range: `bytes=${size}-` })
    assert.equal(beyond.status, 416)
    assert.equal(beyond.headers.get('content-range'), `bytes */${size}`)
    const p = await problem(beyond)
    assert.equal(p.code, 'invalid_range')
    assert.equal(p.cluster, stack.cluster)
    assert.equal(p.node, stack.node)
  })

  it('(e) lists both archives through the gateway with their digests and download paths', async () => {
    assert.ok(streamed && jsonName, 'needs the archives of (a) and (b)')
    const res = await get(stack.listPath(), readOnly)
    assert.equal(res.status, 200)
    const body = (await res.json()) as { cluster: string; node: string; items: Array<ArchiveEntry & { download: string }> }
    assert.equal(body.cluster, stack.cluster)
    assert.equal(body.node, stack.node)
    const a = body.items.find((i) => i.name === streamed!.archive.name)
    assert.ok(a, `${streamed.archive.name} not listed`)
    assert.equal(a.sha256, streamed.archive.sha256)
    assert.equal(a.size, streamed.archive.size)
    assert.deepEqual({ namespace: a.namespace, pod: a.pod, container: a.container }, POD)
    assert.equal(a.download, streamed.download)
    const b = body.items.find((i) => i.name === jsonName)
    assert.ok(b, `${jsonName} not listed`)
    assert.equal(b.download, downloadPath(jsonName, POD.namespace))
  })

  it('(f) a caller without checkpoint:create gets 403 forbidden and no checkpoint is taken', async () => {
    const before = await agentNames()
    for (const accept of [undefined, NDJSON]) {
      const res = await post(POD, readOnly, accept)
      assert.equal(res.status, 403)
      const p = await problem(res)
      assert.equal(p.code, 'forbidden')
      assert.equal(stack.gatewayLogs.some((l) => l.type === 'outcome' && l.requestId === p.requestId && l.status === 403 && l.decision === 'deny'), true)
    }
    // A token for another subject, with every scope: no policy rule covers it.
    const stranger = await stack.mintToken(ALL_SCOPES, { sub: 'mallory', expiresInSec: 600 })
    const res = await post(POD, stranger)
    assert.equal(res.status, 403)
    assert.equal((await problem(res)).code, 'forbidden')
    // No token at all.
    const anon = await stack.fetch(stack.checkpointPath(POD), { method: 'POST', signal: AbortSignal.timeout(10_000) })
    assert.equal(anon.status, 401)
    assert.equal((await problem(anon)).code, 'unauthenticated')
    assert.deepEqual(await agentNames(), before)
    assert.equal(stack.agentLogs.filter((l) => l.msg === 'checkpoint accepted').length, 2, 'only (a) and (b) reached the checkpointer')
  })

  it('(g) an unknown container is 404 container_not_found from the agent, with cluster and node', async () => {
    const before = await agentNames()
    for (const accept of [undefined, NDJSON]) {
      const res = await post({ ...POD, container: 'nope' }, full, accept)
      assert.equal(res.status, 404)
      const p = await problem(res)
      assert.equal(p.code, 'container_not_found')
      assert.equal(p.cluster, stack.cluster)
      assert.equal(p.node, stack.node)
    }
    assert.deepEqual(await agentNames(), before)
  })

  it('(h) the CLI on the real stack with the vault in workerd (r2): create --store → get ID -i decrypts, verifies the statement with the key the gateway collected, checkpointctl reads it; exit codes by code', async () => {
    const identityFile = join(stack.dir, 'investigator.txt')
    await writeFile(identityFile, `${investigator.identity}\n`, { mode: 0o600 })
    const run = (args: string[], token = full) => new Promise<{ code: number; stdout: string; stderr: string }>((resolve) => {
      execFile(process.execPath, [join(import.meta.dirname, '../../cli/main.ts'), ...args], { env: { PATH: process.env.PATH ?? '', CHECKPOINT_GATEWAY: stack.gatewayUrl, CHECKPOINT_TOKEN: token }, timeout: 90_000 }, (err, stdout, stderr) =>
        resolve({ code: err ? Number((err as { code?: number }).code ?? 1) : 0, stdout, stderr }))
    })
    const target = `${stack.cluster}/${POD.namespace}/${POD.pod}/${POD.container}`
    const made = await run(['create', target, `--node=${stack.node}`, '--store', '--reason=e2e case 7', '--json'])
    assert.equal(made.code, 0, made.stderr)
    const [completed, stored] = made.stdout.trim().split('\n').map((l) => JSON.parse(l) as Record<string, any>)
    assert.equal(stored!.type, 'stored', made.stdout)
    assert.equal(stored!.bucket, 'EVIDENCE')
    const out = join(stack.dir, 'evidence.tar')
    const got = await run(['get', stored!.key, '-o', out, '-i', identityFile])
    assert.equal(got.code, 0, got.stderr)
    assert.match(got.stderr, /chain verified/)
    // The signed statement, verified with the key the gateway collected from the node's agent.
    assert.match(got.stderr, /collected by the gateway from its agent/)
    assert.match(got.stdout, /^verified: checkpoint-counter_e2e-counter-/m)
    assert.match(got.stdout, /reason: e2e case 7/)
    assert.equal(sha256(await readFile(out)), completed!.archive.sha256)
    const shown = await stack.runtime!.checkpointctl(['show', out])
    assert.match(shown, new RegExp(counter.containerId.slice(0, 12)))
    // Exit codes from the stable codes: forbidden 4, unknown pod 3, bad token 4.
    const forbidden = await run(['create', target, `--node=${stack.node}`], readOnly)
    assert.deepEqual([forbidden.code, /forbidden/.test(forbidden.stderr)], [4, true], forbidden.stderr)
    const unknown = await run(['create', `${stack.cluster}/${POD.namespace}/no-such-pod/${POD.container}`, `--node=${stack.node}`])
    assert.deepEqual([unknown.code, /container_not_found/.test(unknown.stderr)], [3, true], unknown.stderr)
    const badToken = await run(['ls', stack.cluster, stack.node], 'not-a-token')
    assert.deepEqual([badToken.code, /unauthenticated/.test(badToken.stderr)], [4, true], badToken.stderr)
  })

  it(`streams a ${BIG_MB} MB archive through the gateway intact (throughput)`, async () => {
    assert.ok(big, 'big pod')
    await poll(async () => ((await stack.exec(big!.containerId, ['cat', '/tmp/ready'])).trim() === 'ready' ? true : undefined), 60_000, 'big pod filling memory')
    let t0 = performance.now()
    const res = await post(BIG, full)
    const body = (await res.json()) as { download: string; archive: { size: number; sha256: string } }
    assert.equal(res.status, 200, JSON.stringify(body))
    timings[`JSON checkpoint through the gateway (${BIG_MB} MB resident)`] = `${Math.round(performance.now() - t0)} ms, archive ${body.archive.size} bytes`
    assert.ok(body.archive.size > BIG_MB * 1e6 * 0.9, `archive ${body.archive.size} bytes`)

    t0 = performance.now()
    const dl = await get(body.download, full)
    assert.equal(dl.status, 200)
    const hash = createHash('sha256')
    let n = 0
    for await (const chunk of dl.body! as unknown as AsyncIterable<Uint8Array>) {
      hash.update(chunk)
      n += chunk.byteLength
    }
    const s = (performance.now() - t0) / 1000
    timings[`download through the gateway (${BIG_MB} MB)`] = `${Math.round(s * 1000)} ms, ${(n / s / 1e6).toFixed(0)} MB/s`
    assert.equal(n, body.archive.size)
    assert.equal(hash.digest('hex'), body.archive.sha256)
  })
})
