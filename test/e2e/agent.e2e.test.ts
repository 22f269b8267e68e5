// End-to-end: the node agent, in-process with real mTLS and real grants (test/support/agent-harness.ts),
// against a real containerd 2.x + runc + CRIU (test/runtime/containerd.ts). Everything goes through
// the agent's HTTPS API as the gateway would call it.
// Never skips: if the runtime cannot start, `before` fails and so does every test, with the reason.
//
//   node_modules/.bin/node --test test/e2e/agent.e2e.test.ts
import { after, before, describe, it } from 'node:test'
import assert from 'node:assert/strict'
import { execFileSync } from 'node:child_process'
import { createHash } from 'node:crypto'
import { mkdir, mkdtemp, readdir, readFile, stat, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { dirname, join } from 'node:path'
import type { Dispatcher } from 'undici'
import { connectRuntime, type Runtime } from '../../agent/cri/client.ts'
import { NDJSON, parseEvent, type AcceptedEvent, type CheckpointEvent, type CompletedEvent, type ResolvedEvent } from '../../shared/events.ts'
import type { ArchiveEntry } from '../../shared/events.ts'
import type { Target } from '../../shared/names.ts'
import { everyReading, makeIdentities, notAgentState, startTestAgent, type Identities, type TestAgent } from '../support/agent-harness.ts'
import { buildAndPushBusybox, removePod, runPod, startLocalRuntime, type LocalRuntime } from '../runtime/containerd.ts'
import { counter, holdMemory, undumpable } from '../runtime/workloads.ts'
import { stopE2e } from '../support/teardown.ts'
import { poll, sleep, within } from '../support/wait.ts'

/** The counter and the memory hog: neither forks while it runs (see ../runtime/workloads.ts). */
const COUNTER = counter()
const POD: Target = { namespace: 'e2e', pod: 'counter', container: 'counter' }
/**
 * Holds BIG_MB MB resident (with the wait in a main awk rule instead of BEGIN, the checkpoint held
 * < 1 MB; a shell variable filled through `$(...)` takes ~10 s for 300 MB; /dev/shm in a pod is 64 MB).
 */
const BIG_MB = 500
const BIG: Target = { namespace: 'e2e', pod: 'big', container: 'hog' }
const BIG_CMD = holdMemory(BIG_MB)
/** A counter CRIU always refuses to dump (../runtime/workloads.ts undumpable). */
const GHOST: Target = { namespace: 'e2e', pod: 'ghost', container: 'app' }
/** `checkpoint-<pod>_<ns>-<container>-<RFC 3339 UTC>.tar` */
const archiveRe = (t: Target) =>
  new RegExp(`^checkpoint-${t.pod}_${t.namespace}-${t.container}-\\d{4}-\\d\\d-\\d\\dT\\d\\d:\\d\\d:\\d\\d(?:\\.\\d+)?Z\\.tar$`)

type Response = Dispatcher.ResponseData

const sha256 = (b: Buffer) => createHash('sha256').update(b).digest('hex')

/** Reads an error answer: status and problem `code`. */
async function problem(res: Response): Promise<{ status: number; code: unknown; body: Record<string, unknown> }> {
  const text = await res.body.text()
  const type = String(res.headers['content-type'])
  if (!type.startsWith('application/problem+json')) assert.fail(`expected a problem answer, got ${res.statusCode} ${type}: ${text.slice(0, 500)}`)
  const body = JSON.parse(text) as Record<string, unknown>
  return { status: res.statusCode, code: body.code, body }
}

describe('agent over mTLS against containerd', { timeout: 120_000 }, () => {
  let work: string
  let ids: Identities
  let rt: LocalRuntime
  let runtime: Runtime
  let ta: TestAgent
  let disabled: TestAgent | undefined
  let counter: { podId: string; containerId: string }
  let big: { podId: string; containerId: string }
  let ghost: { podId: string; containerId: string }
  let bigStarted = 0
  /** From the NDJSON test, for the restore test. */
  let streamed: { name: string; bytes: Buffer } | undefined
  let firstName = ''
  const timings: Record<string, string> = {}

  const checkpointDir = () => ta.agent.store.dir
  const createGrant = (t: Target, agent = ta) => agent.mint({ op: 'checkpoint:create', ...t })
  const post = (t: Target, o: { accept?: string; grant?: string; query?: string; agent?: TestAgent } = {}) =>
    within(
      (o.agent ?? ta).fetch(`/checkpoint/${t.namespace}/${t.pod}/${t.container}${o.query ?? ''}`, {
        method: 'POST',
        headers: { accept: o.accept ?? 'application/json', ...(o.grant ? { authorization: `Bearer ${o.grant}` } : {}) },
      }),
      60_000,
      `POST /checkpoint/${t.namespace}/${t.pod}/${t.container}`,
    )
  const listArchives = async (): Promise<ArchiveEntry[]> => {
    const grant = await ta.mint({ op: 'checkpoint:list' })
    const res = await within(ta.fetch('/checkpoints', { headers: { authorization: `Bearer ${grant}` } }), 10_000, 'GET /checkpoints')
    assert.equal(res.statusCode, 200)
    return ((await res.body.json()) as { items: ArchiveEntry[] }).items
  }
  const download = async (name: string, headers: Record<string, string> = {}): Promise<{ res: Response; bytes: Buffer; ms: number }> => {
    const grant = await ta.mint({ op: 'checkpoint:read', archive: name, namespaces: everyReading(name) })
    const t0 = performance.now()
    const res = await within(ta.fetch(`/checkpoints/${encodeURIComponent(name)}`, { headers: { authorization: `Bearer ${grant}`, ...headers } }), 10_000, `GET /checkpoints/${name}`)
    const bytes = Buffer.from(await within(res.body.arrayBuffer(), 60_000, `body of ${name}`))
    return { res, bytes, ms: performance.now() - t0 }
  }
  /** `ctr tasks ls` STATUS of a task (RUNNING, PAUSED, PAUSING, STOPPED…), undefined when absent. */
  const taskStatus = async (containerId: string): Promise<string | undefined> => {
    const out = await rt.ctr(['-n', 'k8s.io', 'tasks', 'ls'])
    for (const line of out.split('\n')) {
      const [id, , status] = line.trim().split(/\s+/)
      if (id === containerId) return status
    }
    return undefined
  }
  const criState = async (containerId: string) => (await runtime.listContainers({})).find((c) => c.id === containerId)?.state
  const assertRunningNotPaused = async (containerId: string) => {
    assert.equal(await criState(containerId), 'CONTAINER_RUNNING')
    assert.equal(await taskStatus(containerId), 'RUNNING')
  }
  /** A file in the container's filesystem, read from the host through its init's /proc/<pid>/root. */
  const readInContainer = async (containerId: string, file: string): Promise<string> => {
    const out = await rt.ctr(['-n', 'k8s.io', 'tasks', 'ls'])
    const pid = out.split('\n').map((l) => l.trim().split(/\s+/)).find(([id]) => id === containerId)?.[1]
    if (!pid) throw new Error(`no task ${containerId}`)
    return readFile(`/proc/${pid}/root${file}`, 'utf8')
  }
  /** The counter's current value (the file is rewritten five times a second: retry an empty read). */
  const readCount = (containerId: string) =>
    poll(async () => {
      const text = (await readInContainer(containerId, '/tmp/count').catch(() => '')).trim()
      return /^\d+$/.test(text) ? Number(text) : undefined
    }, 5_000, 'reading /tmp/count', 50)
  /** POST with a fresh grant in JSON mode; asserts 200 and returns the archive path. */
  const checkpointJson = async (t: Target, grant?: string): Promise<{ text: string; path: string; res: Response }> => {
    const res = await post(t, { grant: grant ?? await createGrant(t) })
    const text = await res.body.text()
    if (res.statusCode !== 200) assert.fail(`checkpoint answered ${res.statusCode}: ${text.slice(0, 2000)}`) // runtimeLog says why
    return { text, path: (JSON.parse(text) as { items: string[] }).items[0]!, res }
  }
  /** The counter's value at checkpoint time, from the archive's rootfs diff (gzip in spite of its name). */
  const countInArchive = (archive: string) => {
    const diff = execFileSync('tar', ['-xOf', archive, 'rootfs-diff.tar'], { maxBuffer: 64 << 20, timeout: 30_000 })
    return Number(execFileSync('tar', ['-xzO', 'tmp/count'], { input: diff, encoding: 'utf8', timeout: 30_000 }).trim())
  }

  before(async () => {
    work = await mkdtemp(join(tmpdir(), 'agent-e2e-'))
    ids = await makeIdentities(work)
    rt = await startLocalRuntime({ log: (line) => console.log(`# runtime: ${line}`) })
    const image = await buildAndPushBusybox(rt.registry, 'e2e/busybox', 'v1')
    counter = await runPod(rt.endpoint, { ...POD, image, command: ['sh', '-c', COUNTER] })
    // Started now so that it fills its memory while the other tests run.
    bigStarted = performance.now()
    big = await runPod(rt.endpoint, { ...BIG, image, command: ['sh', '-c', BIG_CMD] })
    ghost = await runPod(rt.endpoint, { ...GHOST, image, command: ['sh', '-c', undumpable()] })
    runtime = connectRuntime(rt.endpoint)
    ta = await startTestAgent({ ids, endpoint: rt.endpoint })
    await poll(async () => ((await readCount(counter.containerId).catch(() => 0)) >= 5 ? true : undefined), 30_000, 'counter reaching 5')
  }, { timeout: 90_000 })

  after(() => stopE2e({ agents: [['disabled agent', disabled], ['agent', ta]], runtime, rt, work, timings }), { timeout: 60_000 })

  it('JSON mode answers the kubelet body byte for byte; archive 0600 in a 0700 dir; container keeps running', async () => {
    const t0 = performance.now()
    const { res, text } = await checkpointJson(POD)
    timings['JSON checkpoint (tiny counter), request to answer'] = `${Math.round(performance.now() - t0)} ms`
    assert.match(String(res.headers['content-type']), /^application\/json/)
    const { items } = JSON.parse(text) as { items: string[] }
    assert.equal(items.length, 1)
    const path = items[0]!
    assert.equal(text, `{"items":[${JSON.stringify(path)}]}`)
    assert.equal(dirname(path), checkpointDir())
    firstName = path.slice(checkpointDir().length + 1)
    assert.match(firstName, archiveRe(POD))
    // The timestamp is a real RFC 3339 instant close to now.
    const ts = Date.parse(/-(\d{4}-.*Z)\.tar$/.exec(firstName)![1]!)
    assert.ok(Math.abs(Date.now() - ts) < 60_000, `archive time ${firstName}`)

    const s = await stat(path)
    assert.ok(s.isFile() && s.size > 0)
    assert.equal(s.mode & 0o777, 0o600)
    assert.equal((await stat(checkpointDir())).mode & 0o777, 0o700)
    timings['archive size (tiny counter)'] = `${s.size} bytes`
    const shown = await rt.checkpointctl(['show', path])
    assert.match(shown, new RegExp(counter.containerId.slice(0, 12)))

    await assertRunningNotPaused(counter.containerId)
    // And it really runs: the counter moves on.
    const a = await readCount(counter.containerId)
    await poll(async () => ((await readCount(counter.containerId)) > a ? true : undefined), 5_000, 'counter moving after checkpoint')
  })

  it('NDJSON mode streams accepted → resolved → completed with the archive digest; list, download, Range', async () => {
    const t0 = performance.now()
    const res = await post(POD, { accept: NDJSON, grant: await createGrant(POD) })
    assert.equal(res.statusCode, 200)
    assert.equal(res.headers['content-type'], NDJSON)
    const text = await within(res.body.text(), 60_000, 'NDJSON stream')
    timings['NDJSON checkpoint (tiny counter), request to completed'] = `${Math.round(performance.now() - t0)} ms`
    assert.ok(text.endsWith('\n'), 'every event is a whole line')
    const events: CheckpointEvent[] = text.trimEnd().split('\n').map(parseEvent)
    if (events.at(-1)?.type === 'failed') assert.fail(`checkpoint failed: ${JSON.stringify(events.at(-1))}`) // runtimeLog says why
    assert.match(events.map((e) => e.type).join(','), /^accepted,resolved,(heartbeat,)*completed$/)

    const accepted = events[0] as AcceptedEvent
    assert.deepEqual(accepted.target, POD)
    assert.equal(accepted.node, ta.node)
    assert.equal(accepted.queuePosition, 0)
    assert.equal(accepted.requestId, res.headers['x-request-id'])
    const resolved = events[1] as ResolvedEvent
    assert.equal(resolved.containerId, counter.containerId)
    assert.equal(resolved.runtime.name, 'containerd')
    assert.match(resolved.runtime.version, /^v?2\./)
    const done = events.at(-1) as CompletedEvent
    assert.equal(done.containerId, counter.containerId)
    assert.deepEqual(done.runtime, resolved.runtime)
    const { name, size, sha256: digest } = done.archive
    assert.match(name, archiveRe(POD))
    assert.notEqual(name, firstName)
    assert.deepEqual(done.items, [join(checkpointDir(), name)])
    assert.match(digest, /^[0-9a-f]{64}$/)
    const onDisk = await readFile(join(checkpointDir(), name))
    assert.equal(size, onDisk.length)
    assert.equal(sha256(onDisk), digest)
    timings['NDJSON completed.durationMs (agent accept to archive hashed)'] = `${done.durationMs} ms`

    // Listed with the same digest.
    const listed = (await listArchives()).find((a) => a.name === name)
    assert.ok(listed, `${name} not listed`)
    assert.equal(listed.sha256, digest)
    assert.equal(listed.size, size)
    assert.equal(listed.sha256Known, true)
    assert.deepEqual({ namespace: listed.namespace, pod: listed.pod, container: listed.container }, POD)

    // Downloaded whole: same bytes, Content-Length, ETag = the digest.
    const whole = await download(name)
    assert.equal(whole.res.statusCode, 200)
    assert.equal(whole.res.headers['content-length'], String(size))
    assert.equal(whole.res.headers['etag'], `"${digest}"`)
    assert.equal(whole.res.headers['x-checkpoint-sha256'], digest)
    assert.equal(whole.bytes.length, size)
    assert.equal(sha256(whole.bytes), digest)
    streamed = { name, bytes: whole.bytes }

    // A range: 206 with exactly the first 100 bytes.
    const part = await download(name, { range: 'bytes=0-99' })
    assert.equal(part.res.statusCode, 206)
    assert.equal(part.res.headers['content-range'], `bytes 0-99/${size}`)
    assert.equal(part.res.headers['content-length'], '100')
    assert.equal(part.bytes.length, 100)
    assert.ok(part.bytes.equals(onDisk.subarray(0, 100)))

    await assertRunningNotPaused(counter.containerId)
  })

  it('restores from the archive downloaded through the agent and the counter continues', async () => {
    assert.ok(streamed, 'needs the archive from the NDJSON test')
    const dir = join(rt.root, 'restore')
    await mkdir(dir, { recursive: true })
    const path = join(dir, 'downloaded.tar')
    await writeFile(path, streamed.bytes, { mode: 0o600 })
    const checkpointed = countInArchive(path)
    assert.ok(checkpointed >= 5, `checkpointed count ${checkpointed}`)

    const t0 = performance.now()
    const restored = await runPod(rt.endpoint, { ...POD, pod: 'counter-restored', image: path, command: [] })
    timings['restore (RunPodSandbox + CreateContainer from archive + StartContainer)'] = `${Math.round(performance.now() - t0)} ms`
    assert.equal(await criState(restored.containerId), 'CONTAINER_RUNNING')
    // A fresh start would count from 1 again; a restored process continues from its memory.
    const first = await readCount(restored.containerId)
    assert.ok(first >= checkpointed, `restored count ${first} < checkpointed ${checkpointed}`)
    const later = await poll(async () => {
      const n = await readCount(restored.containerId)
      return n > first ? n : undefined
    }, 5_000, 'restored counter moving')
    console.log(`# counter: checkpointed ${checkpointed}, restored ${first}, then ${later}`)
    await removePod(rt.endpoint, restored.podId)
  })

  it('a second checkpoint of the same container gets another name; both are listed', async () => {
    const { path } = await checkpointJson(POD)
    const name = path.slice(checkpointDir().length + 1)
    assert.match(name, archiveRe(POD))
    assert.notEqual(name, firstName)
    assert.notEqual(name, streamed?.name)
    const names = (await listArchives()).map((a) => a.name)
    for (const n of [firstName, streamed!.name, name]) assert.ok(names.includes(n), `${n} not in ${names.join(' ')}`)
    await assertRunningNotPaused(counter.containerId)
  })

  it('unknown container, pod or namespace → 404 container_not_found; checkpointing off → 404 checkpointing_disabled', async () => {
    for (const t of [
      { ...POD, container: 'no-such-container' },
      { ...POD, pod: 'no-such-pod' },
      { ...POD, namespace: 'no-such-namespace' },
    ]) {
      const p = await problem(await post(t, { grant: await createGrant(t) }))
      assert.deepEqual([p.status, p.code], [404, 'container_not_found'], JSON.stringify(t))
    }

    disabled = await startTestAgent({ ids, endpoint: rt.endpoint, args: ['--checkpointing=false'] })
    try {
      for (const accept of ['application/json', NDJSON]) {
        const p = await problem(await post(POD, { accept, grant: await createGrant(POD, disabled), agent: disabled }))
        assert.deepEqual([p.status, p.code], [404, 'checkpointing_disabled'])
      }
      assert.deepEqual((await readdir(disabled.agent.store.dir)).filter(notAgentState), [])
    } finally {
      await disabled.stop()
      disabled = undefined
    }
  })

  it('a dump CRIU refuses → 500 checkpoint_failed (JSON and NDJSON); nothing kept, the container still runs', async () => {
    const namesBefore = (await listArchives()).map((a) => a.name).sort()
    const filesBefore = (await readdir(checkpointDir())).sort()
    const failed0 = await readCount(ghost.containerId)

    const res = await post(GHOST, { grant: await createGrant(GHOST) })
    const p = await problem(res)
    assert.deepEqual([p.status, p.code], [500, 'checkpoint_failed'], JSON.stringify(p.body))
    // CRIU's own reason, read by the agent from the dump log containerd names.
    const ghostLine = (log: unknown) => Array.isArray(log) && log.some((l) => /ghost file/.test(String(l)))
    assert.ok(ghostLine(p.body.runtimeLog), `runtimeLog ${JSON.stringify(p.body.runtimeLog)}`)

    const streamed = await post(GHOST, { accept: NDJSON, grant: await createGrant(GHOST) })
    assert.equal(streamed.statusCode, 200)
    const events = (await within(streamed.body.text(), 60_000, 'NDJSON stream')).trimEnd().split('\n').map(parseEvent)
    assert.match(events.map((e) => e.type).join(','), /^accepted,resolved,(heartbeat,)*failed$/)
    const last = events.at(-1)!
    assert.ok(last.type === 'failed')
    assert.deepEqual([last.status, last.code], [500, 'checkpoint_failed'])
    assert.ok(ghostLine(last.runtimeLog), `runtimeLog ${JSON.stringify(last.runtimeLog)}`)

    // Frozen for the dump, thawed after the failure: RUNNING (not PAUSED) and still counting.
    await assertRunningNotPaused(ghost.containerId)
    await poll(async () => ((await readCount(ghost.containerId)) > failed0 + 2 ? true : undefined), 10_000, 'the counter moving on after the failed dumps')
    assert.deepEqual((await listArchives()).map((a) => a.name).sort(), namesBefore, 'no archive listed')
    assert.deepEqual((await readdir(checkpointDir())).sort(), filesBefore, 'no file left behind, partial or hidden')
  })

  it('grants on the real stack: none → 401, another pod → 403, replay → 401', async () => {
    const before = (await listArchives()).length

    const none = await post(POD)
    assert.equal(none.headers['www-authenticate'], 'Bearer error="invalid_token"')
    const p1 = await problem(none)
    assert.deepEqual([p1.status, p1.code], [401, 'invalid_grant'])

    const p2 = await problem(await post(POD, { grant: await createGrant({ ...POD, pod: 'another-pod' }) }))
    assert.deepEqual([p2.status, p2.code], [403, 'grant_mismatch'])
    assert.equal(p2.body.field, 'pod')

    assert.equal((await listArchives()).length, before, 'a refused request must not checkpoint')

    const grant = await createGrant(POD)
    await checkpointJson(POD, grant)
    const p3 = await problem(await post(POD, { grant }))
    assert.deepEqual([p3.status, p3.code], [401, 'invalid_grant'])
    assert.equal(p3.body.reason, 'replay')
    assert.equal((await listArchives()).length, before + 1)
  })

  it('frozen-container rule: ?timeout=1 → 504 timeout while the runtime works; the runtime finishes, the archive is kept, nothing frozen or partial', async () => {
    await poll(async () => ((await readInContainer(big.containerId, '/tmp/ready').catch(() => '')).includes('ready') ? true : undefined), 60_000, `${BIG_MB} MB container filling its memory`)
    timings[`large container start to ${BIG_MB} MB resident`] = `${Math.round(performance.now() - bigStarted)} ms`
    const ws = (await runtime.containerStats(big.containerId)).workingSetBytes ?? 0
    timings['large container working set'] = `${(ws / 1e6).toFixed(0)} MB`
    assert.ok(ws >= BIG_MB * 0.9e6, `working set ${ws}`)
    const namesBefore = new Set((await listArchives()).map((a) => a.name))

    const t0 = performance.now()
    const res = await post(BIG, { grant: await createGrant(BIG), query: '?timeout=1' })
    const p = await problem(res)
    const answeredMs = performance.now() - t0
    timings['?timeout=1 answered after'] = `${Math.round(answeredMs)} ms`
    assert.deepEqual([p.status, p.code], [504, 'timeout'])
    // Order and state, not durations (a fast machine dumps 500 MB in under a second; then the
    // 504 comes while the archive is hashed): the agent took the caller's 1 s, and answered while
    // the job was still pending, before its archive was written; nothing partial is listed.
    const bigLine = (msg: string) => (l: Record<string, unknown>) => l.msg === msg && l.pod === BIG.pod
    const writtenLine = (l: Record<string, unknown>) => l.msg === 'checkpoint written' && archiveRe(BIG).test(String(l.archive))
    assert.equal(ta.logs.find(bigLine('checkpoint accepted'))?.timeoutSeconds, 1)
    assert.ok(!ta.logs.some(writtenLine), 'answered before the archive was written')
    assert.equal(ta.agent.checkpointer.busy, 1, 'the checkpoint must go on after the caller gave up')
    assert.ok(!(await listArchives()).some((a) => archiveRe(BIG).test(a.name)), 'no archive before the runtime finished')
    const seen = new Set<string>()
    const statusPoll = (async () => {
      while (ta.agent.checkpointer.busy > 0) {
        seen.add((await taskStatus(big.containerId).catch(() => undefined)) ?? 'absent')
        await sleep(250)
      }
    })()

    // The archive appears once the runtime is done (kept, like any other).
    const archive = await poll(async () => (await listArchives()).find((a) => !namesBefore.has(a.name) && archiveRe(BIG).test(a.name) && a.sha256Known), 90_000, 'archive of the timed-out checkpoint', 250)
    const listedMs = performance.now() - t0
    await poll(async () => (ta.agent.checkpointer.busy === 0 ? true : undefined), 10_000, 'checkpointer idle')
    await within(statusPoll, 10_000, 'task status poll')
    const written = ta.logs.find((l) => l.msg === 'checkpoint written' && l.archive === archive.name)
    assert.ok(written, 'checkpoint written log line')
    const answeredAt = ta.logs.findIndex((l) => bigLine('checkpoint outcome')(l) && l.code === 'timeout')
    assert.ok(answeredAt >= 0 && answeredAt < ta.logs.indexOf(written), 'the 504 went out before the archive was written')
    const runtimeMs = Number(written.runtimeMs)
    timings['large checkpoint: CRI CheckpointContainer'] = `${runtimeMs} ms`
    timings['large checkpoint: request to archive listed (incl. sha256)'] = `${Math.round(listedMs)} ms`
    const accepted = ta.logs.find(bigLine('checkpoint accepted'))
    if (accepted) {
      const afterRuntime = Date.parse(String(written.time)) - Date.parse(String(accepted.time)) - runtimeMs
      timings['large checkpoint: accepted to archive written, minus CheckpointContainer (≈ chmod + sha256 + link)'] = `${Math.round(afterRuntime)} ms`
    }
    timings['large archive size'] = `${(archive.size / 1e6).toFixed(0)} MB`
    timings['task states seen while the checkpoint ran after the 504'] = [...seen].join(', ')
    assert.ok(archive.size >= BIG_MB * 0.9e6, `archive ${archive.size} bytes`)

    // Nothing is left frozen and nothing partial remains.
    await poll(async () => ((await taskStatus(big.containerId)) === 'RUNNING' ? true : undefined), 10_000, 'large task RUNNING')
    await assertRunningNotPaused(big.containerId)
    const leftovers = (await readdir(checkpointDir())).filter((n) => n.startsWith('.inprogress-'))
    assert.deepEqual(leftovers, [])
    assert.equal((await stat(join(checkpointDir(), archive.name))).mode & 0o777, 0o600)
    assert.equal(ta.logs.find(bigLine('checkpoint outcome'))?.code, 'timeout')

    // The kept archive downloads whole and matches its digest.
    const grant = await ta.mint({ op: 'checkpoint:read', archive: archive.name, namespaces: everyReading(archive.name) })
    const d0 = performance.now()
    const dl = await within(ta.fetch(`/checkpoints/${encodeURIComponent(archive.name)}`, { headers: { authorization: `Bearer ${grant}` } }), 10_000, 'large download')
    assert.equal(dl.statusCode, 200)
    assert.equal(dl.headers['content-length'], String(archive.size))
    const h = createHash('sha256')
    let got = 0
    await within((async () => {
      for await (const chunk of dl.body) {
        h.update(chunk as Buffer)
        got += (chunk as Buffer).length
      }
    })(), 60_000, 'large download body')
    const dlMs = performance.now() - d0
    assert.equal(got, archive.size)
    assert.equal(h.digest('hex'), archive.sha256)
    timings['large download over mTLS (with sha256 on the client)'] = `${Math.round(dlMs)} ms, ${(got / 1e6 / (dlMs / 1000)).toFixed(0)} MB/s`
  })
})
