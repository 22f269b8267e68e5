// End-to-end: the CRI client against a real containerd 2.x (test/runtime/containerd.ts).
// Never skips: if the runtime cannot start, `before` fails and so does every test, with the reason.
//
//   node_modules/.bin/node --test test/e2e/cri.e2e.test.ts
import { after, before, describe, it } from 'node:test'
import assert from 'node:assert/strict'
import { execFileSync } from 'node:child_process'
import { mkdtemp, stat } from 'node:fs/promises'
import { join } from 'node:path'
import * as grpc from '@grpc/grpc-js'
import { connectRuntime, CriError, type Runtime } from '../../agent/cri/client.ts'
import { CheckpointError } from '../../shared/errors.ts'
import { buildAndPushBusybox, criuErrors, removePod, runPod, startLocalRuntime, type LocalRuntime } from '../runtime/containerd.ts'
import { counter } from '../runtime/workloads.ts'

/** Does not fork while it runs (../runtime/workloads.ts). */
const COUNTER = counter()
const POD = { namespace: 'e2e', pod: 'counter', container: 'counter' }

describe('CRI client against containerd', { timeout: 120_000 }, () => {
  let rt: LocalRuntime
  let runtime: Runtime
  let image: string
  let original: { podId: string; containerId: string }
  let archive = ''
  let checkpointedCount = 0

  const readCount = async (containerId: string) => {
    const execId = `read-${Date.now()}`
    const out = await rt.ctr(['-n', 'k8s.io', 'tasks', 'exec', '--fifo-dir', join(rt.root, 'fifo'), '--exec-id', execId, containerId, 'cat', '/tmp/count'])
    return Number(out.trim())
  }

  before(async () => {
    rt = await startLocalRuntime({ log: (line) => console.log(`# runtime: ${line}`) })
    image = await buildAndPushBusybox(rt.registry, 'e2e/counter', 'v1')
    original = await runPod(rt.endpoint, { ...POD, image, command: ['sh', '-c', COUNTER] })
    runtime = connectRuntime(rt.endpoint)
  })

  after(async () => {
    runtime?.close()
    await rt?.stop()
  })

  it('Version reports containerd 2.x', async () => {
    const v = await runtime.version()
    assert.equal(v.runtimeName, 'containerd')
    assert.match(v.runtimeVersion, /^v?2\./)
    assert.equal(v.runtimeApiVersion, 'v1')
  })

  it('lists the container by its kubelet labels, RUNNING', async () => {
    const found = await runtime.listContainers({
      state: 'CONTAINER_RUNNING',
      labels: { 'io.kubernetes.pod.namespace': POD.namespace, 'io.kubernetes.pod.name': POD.pod, 'io.kubernetes.container.name': POD.container },
    })
    assert.equal(found.length, 1)
    const [c] = found
    assert.equal(c.id, original.containerId)
    assert.equal(c.podSandboxId, original.podId)
    assert.equal(c.name, POD.container)
    assert.equal(c.state, 'CONTAINER_RUNNING')
    assert.ok(c.createdAtNs > 0n)
    assert.match(c.imageRef, /^sha256:/)
    assert.deepEqual(await runtime.listContainers({ labels: { 'io.kubernetes.pod.name': 'no-such-pod' } }), [])
  })

  it('reports a memory working set, by id and listed by the kubelet\'s labels (the agent asks the list beside ListContainers)', async () => {
    const stats = await runtime.containerStats(original.containerId)
    assert.ok(stats.workingSetBytes !== null && stats.workingSetBytes > 0, `workingSetBytes ${stats.workingSetBytes}`)
    const listed = await runtime.listContainerStats({ 'io.kubernetes.pod.namespace': POD.namespace, 'io.kubernetes.pod.name': POD.pod, 'io.kubernetes.container.name': POD.container })
    assert.deepEqual(listed.map((s) => s.id), [original.containerId])
    assert.ok(listed[0]!.workingSetBytes !== null && listed[0]!.workingSetBytes > 0, `listed workingSetBytes ${listed[0]!.workingSetBytes}`)
    assert.deepEqual(await runtime.listContainerStats({ 'io.kubernetes.pod.name': 'no-such-pod' }), [])
  })

  it('checkpoints the container to a tar that checkpointctl reads', async () => {
    while ((await readCount(original.containerId)) < 10) await new Promise((r) => setTimeout(r, 200))
    const dir = await mkdtemp(join(rt.root, 'checkpoints-'))
    assert.equal((await stat(dir)).mode & 0o777, 0o700)
    archive = join(dir, 'counter.tar')

    const t0 = performance.now()
    await runtime.checkpointContainer(original.containerId, archive, { deadline: new Date(Date.now() + 60_000) }).catch(async (err) => {
      assert.fail(`${err}\n${await criuErrors(String(err))}`)
    })
    console.log(`# CheckpointContainer took ${Math.round(performance.now() - t0)} ms, ${(await stat(archive)).size} bytes`)

    const entries = execFileSync('tar', ['-tf', archive], { encoding: 'utf8' }).split('\n')
    assert.ok(entries.includes('checkpoint/'), `archive entries: ${entries.join(' ')}`)
    assert.ok(entries.includes('config.dump'), `archive entries: ${entries.join(' ')}`)
    await rt.checkpointctl(['show', archive])

    // The counter's value at checkpoint time, from the archive's copy of the container's rootfs diff
    // (gzip-compressed in spite of its name).
    const diff = execFileSync('tar', ['-xOf', archive, 'rootfs-diff.tar'], { maxBuffer: 64 << 20 })
    checkpointedCount = Number(execFileSync('tar', ['-xzO', 'tmp/count'], { input: diff, encoding: 'utf8' }).trim())
    assert.ok(checkpointedCount >= 10, `checkpointed count ${checkpointedCount}`)

    // CRI checkpoints leave the container running.
    const [c] = await runtime.listContainers({ labels: { 'io.kubernetes.pod.name': POD.pod } })
    assert.equal(c.state, 'CONTAINER_RUNNING')
  })

  it('maps NOT_FOUND for an unknown container to container_not_found, the CriError as its cause', async () => {
    const unknown = 'f'.repeat(64)
    await assert.rejects(runtime.checkpointContainer(unknown, join(rt.root, 'never.tar')), (err) => {
      assert.ok(err instanceof CheckpointError)
      assert.equal(err.code, 'container_not_found')
      assert.ok(err.cause instanceof CriError)
      assert.equal(err.cause.code, grpc.status.NOT_FOUND)
      assert.equal(err.cause.method, 'CheckpointContainer')
      return true
    })
    await assert.rejects(runtime.containerStats(unknown), (err) =>
      err instanceof CheckpointError && err.code === 'container_not_found' && err.cause instanceof CriError && err.cause.code === grpc.status.NOT_FOUND)
  })

  it('restores the checkpoint into a new pod and the counter continues', async () => {
    assert.ok(archive, 'needs the checkpoint from the previous test')
    await removePod(rt.endpoint, original.podId)

    const t0 = performance.now()
    const restored = await runPod(rt.endpoint, { ...POD, pod: 'counter-restored', image: archive, command: [] })
    console.log(`# restore (RunPodSandbox + CreateContainer from archive + StartContainer) took ${Math.round(performance.now() - t0)} ms`)

    const [c] = await runtime.listContainers({ labels: { 'io.kubernetes.pod.name': 'counter-restored' } })
    assert.equal(c.id, restored.containerId)
    assert.equal(c.state, 'CONTAINER_RUNNING')

    // A fresh start would count from 1 again; a restored process continues from its memory.
    const first = await readCount(restored.containerId)
    assert.ok(first >= checkpointedCount, `restored count ${first} < checkpointed ${checkpointedCount}`)
    await new Promise((r) => setTimeout(r, 1_000))
    const later = await readCount(restored.containerId)
    assert.ok(later > first, `counter stalled at ${later}`)
    console.log(`# counter: checkpointed ${checkpointedCount}, restored ${first}, a second later ${later}`)
  })
})
