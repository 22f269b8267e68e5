/**
 * Load on one agent (real mTLS, real checkpoint directory, the fake CRI holding its answers so
 * the timing is ours): identical requests share one runtime call, distinct ones beyond the cap
 * get 429 with Retry-After, and a bounded soak of mixed traffic leaves no sockets, descriptors or
 * archives behind. Prints one JSON figure per line; counters named `lost`, `5xx`, `leak` must be 0.
 */
import assert from 'node:assert/strict'
import { mkdtemp, readdir, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { after, before, describe, it } from 'node:test'
import { setFlagsFromString } from 'node:v8'
import { runInNewContext } from 'node:vm'
import { parseEvent, type CheckpointEvent } from '../../shared/events.ts'
import { everyReading, makeIdentities, startTestAgent, type Identities, type TestAgent } from '../support/agent-harness.ts'
import { startFakeCri, type FakeContainer, type FakeCri } from '../support/fake-cri.ts'
import { poll } from '../support/wait.ts'

const figure = (name: string, value: number, unit: string) => console.log(JSON.stringify({ name, value, unit }))
const openFds = async () => (await readdir('/proc/self/fd')).length
setFlagsFromString('--expose-gc')
const gc = runInNewContext('gc') as () => void
/** Heap in use after a full collection, MiB: what stays, not what awaits the collector. */
const liveHeapMiB = () => (gc(), Math.round(process.memoryUsage().heapUsed / 2 ** 20))
const rssMiB = () => Math.round((process.memoryUsage().rss / 2 ** 20) * 10) / 10

const DISTINCT = 1000
const IDENTICAL = 200
const containers: FakeContainer[] = Array.from({ length: DISTINCT }, (_, i) => ({ id: `c-${i}`, namespace: 'load', pod: `p-${i}`, container: 'app' }))
const target = (i: number) => containers[i]!

describe('load on one agent', () => {
  let dir: string
  let ids: Identities
  let cri: FakeCri
  let a: TestAgent
  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'load-'))
    ids = await makeIdentities(dir)
    cri = await startFakeCri(join(dir, 'cri.sock'), { archiveBytes: 64 * 1024 }, containers)
    a = await startTestAgent({ ids, endpoint: cri.endpoint, dir, args: ['--max-concurrent=1', '--max-queue=8', '--heartbeat-interval=1s', '--retention-max-per-container=0'] })
  })
  after(async () => {
    cri?.release()
    await cri?.stop()
    await a?.stop()
    await rm(dir, { recursive: true, force: true })
  })

  const post = async (t: FakeContainer, accept: string) =>
    a.fetch(`/checkpoint/${t.namespace}/${t.pod}/${t.container}`, { method: 'POST', headers: { accept, authorization: `Bearer ${await a.mint({ op: 'checkpoint:create', namespace: t.namespace, pod: t.pod, container: t.container })}` } })

  it(`${IDENTICAL} identical concurrent checkpoints → one runtime call, ${IDENTICAL} identical results`, async () => {
    cri.behaviour.hold = true
    const calls0 = cri.checkpointCalls.length
    let accepted = 0
    const streams = Array.from({ length: IDENTICAL }, async () => {
      const r = await post(target(0), 'application/x-ndjson')
      assert.equal(r.statusCode, 200)
      let buf = ''
      const events: CheckpointEvent[] = []
      for await (const chunk of r.body) {
        buf += chunk.toString()
        for (let nl = buf.indexOf('\n'); nl >= 0; nl = buf.indexOf('\n')) {
          const e = parseEvent(buf.slice(0, nl))
          buf = buf.slice(nl + 1)
          if (e.type === 'accepted') accepted++
          events.push(e)
        }
      }
      return events.at(-1)!
    })
    // Every request joined before the runtime may answer: the sharing is not a race we won.
    await poll(async () => (accepted === IDENTICAL ? true : undefined), 60_000, `${IDENTICAL} accepted`, 20)
    cri.behaviour.hold = false
    cri.release()
    const finals = await Promise.all(streams)
    const runtimeCalls = cri.checkpointCalls.length - calls0
    const names = new Set(finals.map((f) => (f.type === 'completed' ? `${f.archive.name} ${f.archive.sha256}` : `not completed: ${f.type}`)))
    figure('load_identical_requests', IDENTICAL, 'requests')
    figure('load_identical_runtime_calls', runtimeCalls, 'calls')
    figure('load_identical_lost', finals.filter((f) => f.type !== 'completed').length, 'requests')
    assert.equal(runtimeCalls, 1)
    assert.equal(names.size, 1)
    assert.ok([...names][0]!.startsWith('checkpoint-p-0_load-app-'))
  })

  it(`${DISTINCT} distinct concurrent checkpoints → the cap holds: 429 with Retry-After for the excess, nothing else fails`, async () => {
    cri.behaviour.hold = true
    const calls0 = cri.checkpointCalls.length
    const rss0 = rssMiB()
    let peakRss = rss0
    const sampler = setInterval(() => (peakRss = Math.max(peakRss, rssMiB())), 50)
    let settled = 0
    const answers = Array.from({ length: DISTINCT - 1 }, async (_, i) => {
      const r = await post(target(i + 1), 'application/json')
      const body = JSON.parse(await r.body.text()) as { code?: string }
      settled++
      return { status: r.statusCode, code: body.code, retryAfter: r.headers['retry-after'] }
    })
    // One running and eight queued, and everyone else answered already (429) before any slot frees.
    const m = a.agent.metrics
    await poll(async () => (m.inFlight === 1 && m.queueDepth === 8 && settled === DISTINCT - 1 - 9 ? true : undefined), 120_000, 'one running, eight queued, the rest answered', 20)
    cri.behaviour.hold = false
    cri.release()
    const all = await Promise.all(answers)
    clearInterval(sampler)
    const ok = all.filter((x) => x.status === 200).length
    const refused = all.filter((x) => x.status === 429 && x.code === 'too_many_requests' && /^\d+$/.test(String(x.retryAfter))).length
    const other = all.length - ok - refused
    figure('load_distinct_requests', all.length, 'requests')
    figure('load_distinct_accepted', ok, 'requests')
    figure('load_distinct_429', refused, 'requests')
    figure('load_distinct_5xx', all.filter((x) => x.status >= 500).length, 'requests')
    figure('load_distinct_lost', other, 'requests')
    figure('load_distinct_runtime_calls', cri.checkpointCalls.length - calls0, 'calls')
    figure('load_distinct_peak_rss', peakRss, 'MiB')
    figure('load_distinct_rss_before', rss0, 'MiB')
    assert.equal(ok, 9)
    assert.equal(refused, DISTINCT - 1 - 9)
    assert.equal(other, 0)
    assert.equal(cri.checkpointCalls.length - calls0, 9)
    assert.equal((await a.fetch('/healthz')).statusCode, 200)
  })

  it('a bounded soak of mixed traffic leaves no descriptors, sockets or partial files behind', async () => {
    const ROUNDS = 5
    const PER_ROUND = 90
    const fds: number[] = []
    const heap: number[] = []
    let failures = 0
    const names: string[] = []
    // The connections of the tests above close on the agent's keep-alive timeout (5 s): start after.
    await poll(async () => ((await openFds()) < 200 ? true : undefined), 30_000, 'idle connections closed', 100)
    for (let round = 0; round < ROUNDS; round++) {
      for (let i = 0; i < PER_ROUND; i += 3) {
        const t = target(100 + (i % 20))
        const [cp, list] = await Promise.all([
          post(t, 'application/json'),
          a.fetch('/checkpoints', { headers: { authorization: `Bearer ${await a.mint({ op: 'checkpoint:list' })}` } }),
        ])
        if (cp.statusCode !== 200) failures++
        const made = JSON.parse(await cp.body.text()) as { archive?: { name: string } }
        if (list.statusCode !== 200) failures++
        await list.body.dump()
        if (made.archive) {
          names.push(made.archive.name)
          const dl = await a.fetch(`/checkpoints/${made.archive.name}`, { headers: { authorization: `Bearer ${await a.mint({ op: 'checkpoint:read', archive: made.archive.name, namespaces: everyReading(made.archive.name) })}`, range: 'bytes=0-1023' } })
          if (dl.statusCode !== 206) failures++
          await dl.body.dump()
        }
      }
      fds.push(await openFds())
      heap.push(liveHeapMiB())
    }
    const partial = (await readdir(a.agent.store.dir)).filter((n) => n.startsWith('.inprogress-')).length
    // The first round warms pools and caches; growth is measured from there.
    const fdGrowth = Math.max(...fds.slice(1)) - fds[0]!
    figure('soak_requests', ROUNDS * PER_ROUND, 'requests')
    figure('soak_5xx', failures, 'requests')
    figure('soak_fd_first_round', fds[0]!, 'fds')
    figure('soak_fd_last_round', fds.at(-1)!, 'fds')
    figure('soak_heap_first_round', heap[0]!, 'MiB')
    figure('soak_heap_last_round', heap.at(-1)!, 'MiB')
    figure('soak_partial_files', partial, 'files')
    figure('soak_fd_leak', Math.max(0, fdGrowth - 4), 'fds')
    assert.equal(failures, 0)
    assert.equal(partial, 0)
    // A few descriptors of slack for the runtime client's and the TLS client's pools.
    assert.ok(fdGrowth <= 4, `descriptors grew by ${fdGrowth}: ${fds.join(', ')}`)
    assert.equal(new Set(names).size, names.length, 'every checkpoint made its own archive')
    // Secrets: none of the agent's log lines over this file (≈ 1,600 grants used) holds a grant or key material.
    const lines = a.logs.map((l) => JSON.stringify(l))
    const leaked = lines.filter((l) => /eyJ[A-Za-z0-9_-]{10,}\.eyJ/.test(l) || /PRIVATE KEY|"d":"|Bearer /.test(l))
    figure('load_log_lines_scanned', lines.length, 'lines')
    figure('load_secret_leak', leaked.length, 'lines')
    assert.ok(lines.length > 1000)
    assert.deepEqual(leaked.slice(0, 3), [])
  })
})
