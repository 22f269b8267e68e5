// End-to-end: the node agent against a real runtime that cannot checkpoint. Debian trixie's
// containerd 1.7.24 (test/runtime/fetch.sh --containerd=1.7) answers CRI CheckpointContainer with
// UNIMPLEMENTED; the agent must say so as a 500 `runtime_unimplemented` that names the runtime and
// version as CRI Version reports them, and leave the container running and nothing on disk.
// Never skips: if the runtime cannot start, `before` fails and so does every test, with the reason.
//
//   node_modules/.bin/node --test test/e2e/unimplemented.e2e.test.ts
import { after, before, describe, it } from 'node:test'
import assert from 'node:assert/strict'
import { createHash } from 'node:crypto'
import { existsSync } from 'node:fs'
import { mkdtemp, readdir, readFile, readlink } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { basename, join } from 'node:path'
import type { Dispatcher } from 'undici'
import { connectRuntime, type Runtime, type RuntimeVersion } from '../../agent/cri/client.ts'
import { NDJSON, parseEvent, type AcceptedEvent, type CheckpointEvent, type FailedEvent, type ResolvedEvent } from '../../shared/events.ts'
import type { Target } from '../../shared/names.ts'
import { makeIdentities, notAgentState, startTestAgent, type Identities, type TestAgent } from '../support/agent-harness.ts'
import { buildAndPushBusybox, runPod, startLocalRuntime, type LocalRuntime } from '../runtime/containerd.ts'
import { counter } from '../runtime/workloads.ts'
import { stopE2e } from '../support/teardown.ts'
import { poll as pollEvery, within } from '../support/wait.ts'

const POD: Target = { namespace: 'e2e', pod: 'legacy', container: 'app' }
/** Does not fork while it runs; writes a counter the test reads through /proc/<pid>/root. */
const COUNTER = counter()

/** Polls every 100 ms (the shared default is 200). */
const poll = <T>(probe: () => Promise<T | undefined>, ms: number, what: string, everyMs = 100) => pollEvery(probe, ms, what, everyMs)

/** What the runtime-unimplemented message must say, given what CRI Version said. */
function assertUnimplementedMessage(message: string, v: RuntimeVersion) {
  assert.ok(message.includes(`${v.runtimeName} ${v.runtimeVersion}`), `names "${v.runtimeName} ${v.runtimeVersion}": ${message}`)
  assert.match(message, /CheckpointContainer/)
  assert.match(message, /not implemented/, 'carries the runtime\'s own words')
  assert.match(message, /containerd >= 2\.0/)
  assert.match(message, /CRI-O >= 1\.25/)
}

describe('agent against containerd 1.7 (no CheckpointContainer)', { timeout: 120_000 }, () => {
  let work: string
  let ids: Identities
  let rt: LocalRuntime | undefined
  let runtime: Runtime | undefined
  let ta: TestAgent | undefined
  let version: RuntimeVersion
  let pod: { podId: string; containerId: string }
  let rtRoot = ''
  /**
   * The pod's shim socket: containerd names it sha256("<containerd socket>/<namespace>/<sandbox id>")
   * under its compiled-in /run/containerd/s, whatever the config says.
   */
  let shimSocket = ''
  const timings: Record<string, string> = {}

  const agent = () => ta!
  const cri = () => runtime!
  const post = async (t: Target, accept: string): Promise<Dispatcher.ResponseData> => {
    const grant = await agent().mint({ op: 'checkpoint:create', ...t })
    return within(
      agent().fetch(`/checkpoint/${t.namespace}/${t.pod}/${t.container}`, { method: 'POST', headers: { accept, authorization: `Bearer ${grant}` } }),
      30_000,
      `POST /checkpoint/${t.namespace}/${t.pod}/${t.container}`,
    )
  }
  /** `ctr tasks ls` STATUS of a task (RUNNING, PAUSED…), undefined when absent. */
  const taskLine = async (containerId: string): Promise<{ pid: number; status: string } | undefined> => {
    const out = await rt!.ctr(['-n', 'k8s.io', 'tasks', 'ls'])
    for (const line of out.split('\n')) {
      const [id, pid, status] = line.trim().split(/\s+/)
      if (id === containerId) return { pid: Number(pid), status: status! }
    }
    return undefined
  }
  const readCount = async (containerId: string): Promise<number> =>
    poll(async () => {
      const task = await taskLine(containerId)
      if (!task) throw new Error(`no task ${containerId}`)
      const text = (await readFile(`/proc/${task.pid}/root/tmp/count`, 'utf8').catch(() => '')).trim()
      return /^\d+$/.test(text) ? Number(text) : undefined
    }, 5_000, 'reading /tmp/count', 50)
  /** RUNNING for CRI and for the task (not paused), and the counter still moves. */
  const assertStillRunning = async (containerId: string) => {
    const [c] = await cri().listContainers({ labels: { 'io.kubernetes.pod.name': POD.pod } })
    assert.equal(c?.id, containerId)
    assert.equal(c?.state, 'CONTAINER_RUNNING')
    assert.equal((await taskLine(containerId))?.status, 'RUNNING')
    const a = await readCount(containerId)
    await poll(async () => ((await readCount(containerId)) > a ? true : undefined), 5_000, 'counter moving')
  }
  /** Nothing in the checkpoint dir: no archive, no metadata, no `.inprogress-*`; and none listed. */
  const assertNothingWritten = async () => {
    assert.deepEqual((await readdir(agent().agent.store.dir)).filter(notAgentState), [])
    const grant = await agent().mint({ op: 'checkpoint:list' })
    const res = await within(agent().fetch('/checkpoints', { headers: { authorization: `Bearer ${grant}` } }), 10_000, 'GET /checkpoints')
    assert.equal(res.statusCode, 200)
    assert.deepEqual(((await res.body.json()) as { items: unknown[] }).items, [])
  }

  before(async () => {
    const t0 = performance.now()
    work = await mkdtemp(join(tmpdir(), 'unimpl-e2e-'))
    ids = await makeIdentities(work)
    rt = await startLocalRuntime({ flavor: 'containerd-1.7', log: (line) => console.log(`# runtime: ${line}`) })
    rtRoot = rt.root
    timings['runtime start (fetch.sh, registry, containerd 1.7 answering Version)'] = `${Math.round(performance.now() - t0)} ms`
    const image = await buildAndPushBusybox(rt.registry, 'e2e/busybox', 'v1')
    const t1 = performance.now()
    pod = await runPod(rt.endpoint, { ...POD, image, command: ['sh', '-c', COUNTER] })
    timings['runPod (pull, sandbox, container)'] = `${Math.round(performance.now() - t1)} ms`
    shimSocket = join('/run/containerd/s', createHash('sha256').update(`${rt.endpoint.slice('unix://'.length)}/k8s.io/${pod.podId}`).digest('hex'))
    runtime = connectRuntime(rt.endpoint)
    version = await runtime.version()
    ta = await startTestAgent({ ids, endpoint: rt.endpoint })
    await poll(async () => ((await readCount(pod.containerId).catch(() => 0)) >= 3 ? true : undefined), 30_000, 'counter reaching 3')
  }, { timeout: 90_000 })

  after(() => stopE2e({ agents: [['agent', ta]], runtime, rt, work, timings }), { timeout: 60_000 })

  it('CRI Version reports containerd 1.7, and the agent took its identity from it', async () => {
    assert.equal(version.runtimeName, 'containerd')
    assert.match(version.runtimeVersion, /^v?1\.7\./)
    assert.equal(version.runtimeApiVersion, 'v1')
    assert.deepEqual(agent().agent.runtimeInfo, { name: version.runtimeName, version: version.runtimeVersion })
    assert.ok(existsSync(shimSocket), `the pod's shim socket ${shimSocket} (checked again after teardown)`)
  })

  it('JSON mode: 500 runtime_unimplemented naming the runtime and version; container keeps running; nothing written', async () => {
    const t0 = performance.now()
    const res = await post(POD, 'application/json')
    const text = await within(res.body.text(), 10_000, 'problem body')
    timings['JSON request to 500'] = `${Math.round(performance.now() - t0)} ms`
    assert.equal(res.statusCode, 500, text)
    assert.match(String(res.headers['content-type']), /^application\/problem\+json/)
    const body = JSON.parse(text) as { status?: number; code?: string; detail?: string }
    assert.equal(body.code, 'runtime_unimplemented')
    assert.equal(body.status, 500)
    assertUnimplementedMessage(String(body.detail), version)
    console.log(`# detail: ${body.detail}`)

    const logged = agent().logs.find((l) => l.msg === 'checkpoint failed' && l.containerId === pod.containerId)
    assert.equal(logged?.code, 'runtime_unimplemented')
    await assertStillRunning(pod.containerId)
    await assertNothingWritten()
  })

  it('NDJSON mode: accepted → resolved → failed with status 500 and the same code', async () => {
    const t0 = performance.now()
    const res = await post(POD, NDJSON)
    assert.equal(res.statusCode, 200)
    assert.equal(res.headers['content-type'], NDJSON)
    const text = await within(res.body.text(), 10_000, 'NDJSON stream')
    timings['NDJSON request to failed'] = `${Math.round(performance.now() - t0)} ms`
    assert.ok(text.endsWith('\n'), 'every event is a whole line')
    const events: CheckpointEvent[] = text.trimEnd().split('\n').map(parseEvent)
    assert.match(events.map((e) => e.type).join(','), /^accepted,resolved,(heartbeat,)*failed$/, text)

    const accepted = events[0] as AcceptedEvent
    assert.deepEqual(accepted.target, POD)
    assert.equal(accepted.node, agent().node)
    const resolved = events[1] as ResolvedEvent
    assert.equal(resolved.containerId, pod.containerId)
    assert.deepEqual(resolved.runtime, { name: version.runtimeName, version: version.runtimeVersion })
    const failed = events.at(-1) as FailedEvent
    assert.equal(failed.status, 500)
    assert.equal(failed.code, 'runtime_unimplemented')
    assertUnimplementedMessage(failed.message, version)

    await assertStillRunning(pod.containerId)
    await assertNothingWritten()
  })

  it('tears down without leftovers: no processes, mounts, cgroups or shim sockets', async () => {
    await agent().stop()
    ta = undefined
    cri().close()
    runtime = undefined
    const t0 = performance.now()
    await rt!.stop()
    rt = undefined
    timings['runtime stop'] = `${Math.round(performance.now() - t0)} ms`

    assert.equal(existsSync(rtRoot), false, `${rtRoot} removed`)
    const mounts = (await readFile('/proc/self/mountinfo', 'utf8')).split('\n').map((l) => l.split(' ')[4] ?? '')
    assert.deepEqual(mounts.filter((p) => p.startsWith(rtRoot)), [])
    const cgroups: string[] = []
    for (const h of await readdir('/sys/fs/cgroup').catch(() => [])) {
      if (existsSync(join('/sys/fs/cgroup', h, basename(rtRoot)))) cgroups.push(h)
    }
    assert.deepEqual(cgroups, [], 'no cgroup dirs left for this runtime')
    const procs: string[] = []
    for (const name of await readdir('/proc')) {
      if (!/^\d+$/.test(name) || Number(name) === process.pid) continue
      const cmdline = (await readFile(`/proc/${name}/cmdline`, 'utf8').catch(() => '')).replaceAll('\0', ' ')
      const root = await readlink(`/proc/${name}/root`).catch(() => '')
      if (cmdline.includes(rtRoot) || root.startsWith(rtRoot)) procs.push(`${name}: ${cmdline}`)
    }
    assert.deepEqual(procs, [])
    assert.equal(existsSync(shimSocket), false, `shim socket ${shimSocket} removed`)
  })
})
