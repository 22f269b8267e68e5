import assert from 'node:assert/strict'
import { mkdtemp, readdir, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { describe, it } from 'node:test'
import { ArchiveStore } from '../../agent/archives.ts'
import { Checkpointer, type Resolved } from '../../agent/checkpointer.ts'
import type { Runtime } from '../../agent/cri/client.ts'
import { ConfigError, envName, helpText, loadConfig, OPTIONS, parseDuration, parseSize } from '../../agent/config.ts'
import { fromGrpc, GRPC } from '../../agent/cri/errors.ts'
import { memoryLogger } from '../../agent/log.ts'
import { sha256File } from '../../agent/files.ts'
import { createHash, randomBytes } from 'node:crypto'
import { nodeMemoryBytes } from '../../agent/start.ts'
import { Metrics } from '../../agent/metrics.ts'
import { parseRange } from '../../shared/range.ts'
import { CheckpointError } from '../../shared/errors.ts'
import { descriptorJson, JSON_PATH } from '../../proto/generate.ts'
import { readFileSync } from 'node:fs'

const REQUIRED = ['--tls-cert=c', '--tls-key=k', '--tls-ca=a', '--allowed-clients=uri:spiffe://x/gw', '--grant-jwks-file=j']

describe('config', () => {
  it('reads flags, then environment, then defaults', () => {
    const c = loadConfig([...REQUIRED, '--max-concurrent=3'], { [envName('max-concurrent')]: '5', [envName('max-queue')]: '2', NODE_NAME: 'n1' })
    assert.equal(c.maxConcurrent, 3)
    assert.equal(c.maxQueue, 2)
    assert.equal(c.nodeName, 'n1')
    assert.equal(c.checkpointDir, '/var/lib/kubelet/checkpoints')
    assert.equal(c.defaultTimeoutSeconds, 300)
    assert.equal(c.heartbeatIntervalMs, 5000)
    assert.deepEqual(c.listen, { host: '0.0.0.0', port: 10443 })
  })

  it('names the bad option', () => {
    const bad: [string[], string][] = [
      [REQUIRED.filter((a) => !a.startsWith('--allowed')), 'allowed-clients'],
      [[...REQUIRED, '--allowed-clients=spiffe://x'], 'allowed-clients'],
      [REQUIRED.filter((a) => !a.startsWith('--tls-key')), 'tls-key'],
      [[...REQUIRED, '--grant-jwks-url=https://x/jwks'], 'grant-jwks-file'],
      [[...REQUIRED, '--heartbeat-interval=11s'], 'heartbeat-interval'],
      [[...REQUIRED, '--max-concurrent=0'], 'max-concurrent'],
      [[...REQUIRED, '--checkpointing=maybe'], 'checkpointing'],
      [[...REQUIRED, '--listen=nope'], 'listen'],
      [[...REQUIRED, '--default-timeout=2h', '--max-timeout=1h'], 'default-timeout'],
    ]
    for (const [argv, option] of bad) {
      assert.throws(() => loadConfig(argv, {}), (e: unknown) => e instanceof ConfigError && e.option === option, option)
    }
    assert.throws(() => loadConfig([...REQUIRED, '--no-such-flag=1'], {}), { code: 'ERR_PARSE_ARGS_UNKNOWN_OPTION' })
  })

  it('sizes: bytes or Kubernetes quantity suffixes, as the README writes them', () => {
    assert.equal(parseSize('268435456'), 268435456)
    assert.equal(parseSize('256Mi'), 256 * 2 ** 20)
    assert.equal(parseSize('1Gi'), 2 ** 30)
    assert.equal(parseSize('500M'), 500e6)
    for (const bad of ['256 MiB', '1.5Gi', '-1', 'Mi', '']) assert.equal(parseSize(bad), null, bad)
    assert.equal(loadConfig(REQUIRED, {}).diskMarginBytes, 256 * 2 ** 20)
    assert.equal(loadConfig([...REQUIRED, '--disk-margin=1Gi'], {}).diskMarginBytes, 2 ** 30)
    assert.equal(loadConfig([...REQUIRED, '--disk-margin=0'], {}).diskMarginBytes, 0)
    assert.throws(() => loadConfig([...REQUIRED, '--disk-margin=256 MiB'], {}), (e: unknown) => e instanceof ConfigError && e.option === 'disk-margin')
    assert.equal(loadConfig([...REQUIRED, '--retention-max-total-bytes=10Gi'], {}).retention.maxTotalBytes, 10 * 2 ** 30)
    assert.equal(loadConfig([...REQUIRED, '--retention-max-total-bytes=1073741824'], {}).retention.maxTotalBytes, 2 ** 30)
    assert.throws(() => loadConfig([...REQUIRED, '--retention-max-total-bytes=10 GB'], {}), (e: unknown) => e instanceof ConfigError && e.option === 'retention-max-total-bytes')
  })

  it('durations and help', () => {
    assert.equal(parseDuration('90'), 90)
    assert.equal(parseDuration('5m'), 300)
    assert.equal(parseDuration('500ms'), 0.5)
    assert.equal(parseDuration('x'), null)
    const help = helpText()
    for (const name of Object.keys(OPTIONS)) assert.ok(help.includes(`--${name}`) && help.includes(envName(name)), name)
  })

  it('the node memory the disk preflight bounds a checkpoint by: memory and swap from /proc/meminfo', async () => {
    const d = await mkdtemp(join(tmpdir(), 'meminfo-'))
    try {
      const f = join(d, 'meminfo')
      await writeFile(f, 'MemTotal:       24683584 kB\nMemFree:        20000000 kB\nSwapTotal:       2097152 kB\n')
      assert.equal(await nodeMemoryBytes(f), (24683584 + 2097152) * 1024)
      await writeFile(f, 'MemTotal:       1024 kB\nSwapTotal:             0 kB\n')
      assert.equal(await nodeMemoryBytes(f), 1024 * 1024)
      await writeFile(f, 'MemFree:        1024 kB\n')
      assert.equal(await nodeMemoryBytes(f), undefined)
      assert.equal(await nodeMemoryBytes(join(d, 'missing')), undefined)
      // This machine's own, which the agent reads.
      assert.ok((await nodeMemoryBytes())! >= 2 ** 20)
    } finally { await rm(d, { recursive: true, force: true }) }
  })
})

describe('sha256File', () => {
  it('hashes the whole file, or exactly the size a stat gave, and refuses a file shorter than that', async () => {
    const d = await mkdtemp(join(tmpdir(), 'sha-'))
    try {
      const f = join(d, 'a.tar')
      // More than one read's worth (1 MiB), and not a multiple of it.
      const bytes = randomBytes((1 << 20) * 2 + 12345)
      await writeFile(f, bytes)
      const want = createHash('sha256').update(bytes).digest('hex')
      assert.equal(await sha256File(f), want)
      assert.equal(await sha256File(f, bytes.length), want)
      assert.equal(await sha256File(f, 100), createHash('sha256').update(bytes.subarray(0, 100)).digest('hex'))
      await assert.rejects(sha256File(f, bytes.length + 1))
      const empty = join(d, 'empty')
      await writeFile(empty, '')
      assert.equal(await sha256File(empty), createHash('sha256').digest('hex'))
    } finally { await rm(d, { recursive: true, force: true }) }
  })
})

describe('CRI descriptor', () => {
  it('proto/runtime.json is proto/runtime.proto as it is now (regenerate: node proto/generate.ts)', () => {
    assert.equal(readFileSync(JSON_PATH, 'utf8'), descriptorJson())
  })
})

describe('gRPC → error code table', () => {
  const rt = { name: 'containerd', version: 'v1.7.24' }
  it('maps the codes that matter', () => {
    assert.equal(fromGrpc({ code: GRPC.UNIMPLEMENTED, details: 'x' }, { method: 'CheckpointContainer', runtime: rt }).code, 'runtime_unimplemented')
    assert.equal(fromGrpc({ code: GRPC.NOT_FOUND, details: 'x' }, { method: 'CheckpointContainer' }).code, 'container_not_found')
    assert.equal(fromGrpc({ code: GRPC.UNAVAILABLE, details: 'x' }, { method: 'ListContainers' }).code, 'runtime_unavailable')
    assert.equal(fromGrpc({ code: GRPC.DEADLINE_EXCEEDED, details: 'x' }, { method: 'ListContainers' }).code, 'timeout')
    assert.equal(fromGrpc({ code: GRPC.UNKNOWN, details: 'x' }, { method: 'CheckpointContainer' }).code, 'checkpoint_failed')
    assert.equal(fromGrpc({ code: GRPC.INTERNAL, details: 'x' }, { method: 'ContainerStats' }).code, 'runtime_error')
    assert.equal(fromGrpc(new Error('boom'), { method: 'Version' }).code, 'internal')
  })
  it('UNIMPLEMENTED names the runtime and what is needed', () => {
    const e = fromGrpc({ code: GRPC.UNIMPLEMENTED, details: 'method CheckpointContainer not implemented' }, { method: 'CheckpointContainer', runtime: rt })
    assert.equal(e.status, 500)
    assert.ok(e.message.includes('containerd v1.7.24') && e.message.includes('containerd >= 2.0') && e.message.includes('CRI-O >= 1.25'))
  })
})

describe('Range', () => {
  it('parses single ranges and refuses unsatisfiable ones', () => {
    assert.deepEqual(parseRange('bytes=0-99', 1000), { start: 0, end: 99 })
    assert.deepEqual(parseRange('bytes=900-', 1000), { start: 900, end: 999 })
    assert.deepEqual(parseRange('bytes=-100', 1000), { start: 900, end: 999 })
    assert.deepEqual(parseRange('bytes=990-5000', 1000), { start: 990, end: 999 })
    assert.equal(parseRange(undefined, 1000), null)
    assert.equal(parseRange('bytes=0-1,5-6', 1000), null)
    assert.equal(parseRange('items=0-1', 1000), null)
    assert.throws(() => parseRange('bytes=1000-', 1000), (e: CheckpointError) => e.code === 'invalid_range')
  })
})

describe('retention', () => {
  it('deletes by count per container, total bytes and age, oldest first', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'ret-'))
    try {
      const names = [
        'checkpoint-a_ns-c-2026-01-01T00:00:01Z.tar',
        'checkpoint-a_ns-c-2026-01-01T00:00:02Z.tar',
        'checkpoint-a_ns-c-2026-01-01T00:00:03Z.tar',
        'checkpoint-b_ns-c-2026-01-01T00:00:04Z.tar',
      ]
      for (const [i, n] of names.entries()) {
        await writeFile(join(dir, n), Buffer.alloc(100))
        await writeFile(join(dir, `.${n}.json`), JSON.stringify({ sha256: 'x', created: new Date(Date.UTC(2026, 0, 1, 0, 0, i + 1)).toISOString() }))
      }
      // The kubelet's own archive (no record of ours) is never touched by retention.
      const kubelets = 'checkpoint-a_ns-c-2025-01-01T00:00:00Z.tar'
      await writeFile(join(dir, kubelets), Buffer.alloc(1000))
      const byCount = new ArchiveStore(dir, { maxPerContainer: 2, maxTotalBytes: 0, maxAgeSeconds: 0 }, memoryLogger())
      assert.deepEqual(await byCount.applyRetention(), [names[0]])
      const byBytes = new ArchiveStore(dir, { maxPerContainer: 0, maxTotalBytes: 150, maxAgeSeconds: 0 }, memoryLogger())
      assert.deepEqual(await byBytes.applyRetention(), [names[1], names[2]])
      const byAge = new ArchiveStore(dir, { maxPerContainer: 0, maxTotalBytes: 0, maxAgeSeconds: 60 }, memoryLogger())
      assert.deepEqual(await byAge.applyRetention(Date.UTC(2026, 0, 1, 0, 1, 10)), [names[3]])
      assert.deepEqual(await readdir(dir), [kubelets])
    } finally {
      await rm(dir, { recursive: true, force: true })
    }
  })
})

describe('metrics', () => {
  it('renders counters, a histogram and gauges', () => {
    const m = new Metrics()
    m.outcome('success')
    m.outcome('success')
    m.outcome('timeout')
    m.duration(0.3)
    m.duration(7)
    m.bytesWritten = 42
    const t = m.render()
    assert.match(t, /^checkpoint_agent_checkpoints_total\{outcome="success"\} 2$/m)
    assert.match(t, /^checkpoint_agent_checkpoint_duration_seconds_bucket\{le="0.5"\} 1$/m)
    assert.match(t, /^checkpoint_agent_checkpoint_duration_seconds_bucket\{le="10"\} 2$/m)
    assert.match(t, /^checkpoint_agent_checkpoint_duration_seconds_count 2$/m)
    assert.match(t, /^checkpoint_agent_bytes_written_total 42$/m)
  })
})

describe('checkpointer sharing', () => {
  it('joins a running checkpoint, but not one that has finished and is only applying retention', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'share-'))
    let releaseRetention!: () => void
    const retentionGate = new Promise<void>((r) => (releaseRetention = r))
    let retentionCalls = 0
    let armed = false
    class SlowRetention extends ArchiveStore {
      override async applyRetention(now?: number, keep?: string): Promise<string[]> {
        if (!armed) return super.applyRetention(now, keep) // the pass at start
        retentionCalls++
        await retentionGate
        return super.applyRetention(now, keep)
      }
    }
    const store = new SlowRetention(dir, { maxPerContainer: 0, maxTotalBytes: 0, maxAgeSeconds: 0 }, memoryLogger())
    try {
      await store.init()
      armed = true
      let calls = 0
      let finishCall!: () => void
      const runtime: Runtime = {
        version: async () => ({ runtimeName: 'fake', runtimeVersion: '1', runtimeApiVersion: 'v1', version: '0.1.0' }),
        listContainers: async () => [],
        containerStats: async () => ({ workingSetBytes: 1, memoryUsageBytes: 1 }),
        listContainerStats: async () => [],
        checkpointContainer: async (_id, location) => {
          calls++
          await new Promise<void>((r) => (finishCall = r))
          await writeFile(location, `archive ${calls}`)
        },
        close: () => {},
      }
      const cp = new Checkpointer({ runtime, runtimeInfo: { name: 'fake', version: '1' }, store, metrics: new Metrics(), log: memoryLogger(), maxConcurrent: 2, maxQueue: 2, diskMarginBytes: 0 })
      const target = { namespace: 'prod', pod: 'web-0', container: 'app' }
      const resolved = { target, container: { id: 'c1', podSandboxId: 'p', name: 'app', attempt: 0, createdAtNs: 0n, state: 'CONTAINER_RUNNING', labels: {}, annotations: {}, image: '', imageRef: '' } } as Resolved
      const until = async (ok: () => boolean, what: string) => {
        for (let i = 0; i < 400 && !ok(); i++) await new Promise((r) => setTimeout(r, 5))
        assert.ok(ok(), what)
      }
      const a = cp.submit(resolved)
      await until(() => calls === 1, 'the first runtime call')
      const b = cp.submit(resolved)
      assert.equal(b.joined, true, 'a request while the runtime works shares its call')
      assert.equal(b.job, a.job)
      finishCall()
      const first = await a.job.result
      // The first job now waits in retention; a new request must get a new checkpoint.
      await until(() => retentionCalls === 1, 'retention after the first checkpoint')
      const c = cp.submit(resolved)
      assert.equal(c.joined, false)
      assert.notEqual(c.job, a.job)
      await until(() => calls === 2, 'a second runtime call')
      finishCall()
      releaseRetention()
      const second = await c.job.result
      assert.notEqual(second.archive.name, first.archive.name)
      assert.equal(await cp.close(1000), true)
    } finally {
      releaseRetention()
      await rm(dir, { recursive: true, force: true })
    }
  })
})
