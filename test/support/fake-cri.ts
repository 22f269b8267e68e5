/**
 * A CRI gRPC server built from the project's proto, for faults a real runtime will not produce on
 * demand: hangs, slow checkpoints, errors, UNIMPLEMENTED, huge archives. Listens on a unix socket.
 */
import * as grpc from '@grpc/grpc-js'
import { loadSync } from '@grpc/proto-loader'
import { randomFillSync } from 'node:crypto'
import { open } from 'node:fs/promises'
import { fileURLToPath } from 'node:url'

export interface FakeContainer {
  id: string
  namespace: string
  pod: string
  container: string
  attempt?: number
  createdAtNs?: bigint
  state?: 'CONTAINER_RUNNING' | 'CONTAINER_EXITED'
  workingSetBytes?: number
}

export interface FakeBehaviour {
  /** Version answers this, or fails with a gRPC code. */
  runtimeName: string
  runtimeVersion: string
  versionError?: number
  /** CheckpointContainer: wait this long, then write `archiveBytes` bytes (or fail with `checkpointError`). */
  checkpointDelayMs: number
  archiveBytes: number
  /** Random (incompressible) archive bytes instead of one repeated byte. */
  randomArchive?: boolean
  checkpointError?: { code: number; details: string }
  /** Never answer CheckpointContainer (until the server stops). */
  hang: boolean
  /** Hold CheckpointContainer calls until `release()`, then go on as usual (delay, write, answer). */
  hold: boolean
  /** Report success without writing a file. */
  writeNothing: boolean
  statsError?: number
  /** ListContainerStats answers UNIMPLEMENTED (a runtime without it): the agent asks ContainerStats. */
  listStatsUnimplemented?: boolean
}

export interface FakeCri {
  endpoint: string
  containers: FakeContainer[]
  behaviour: FakeBehaviour
  /**
   * Every CheckpointContainer call: its deadline (ms from the call) if any, when it arrived
   * (Date.now()), and whether the fake has answered it yet (`answered`, set when the answer goes out).
   */
  checkpointCalls: { containerId: string; location: string; deadlineMs: number | null; at: number; answered: boolean }[]
  /** How many ListContainerStats and ContainerStats calls were answered or refused. */
  listStatsCalls: number
  statsCalls: number
  /** Lets held calls (`behaviour.hold`) go on. */
  release(): void
  stop(): Promise<void>
  /** Dies as a crashed runtime would: the server goes, pending calls are never answered (their connections drop). */
  kill(): void
}

const PROTO = fileURLToPath(new URL('../../proto/runtime.proto', import.meta.url))

export async function startFakeCri(socketPath: string, init: Partial<FakeBehaviour> = {}, containers: FakeContainer[] = []): Promise<FakeCri> {
  const def = loadSync(PROTO, { keepCase: false, longs: String, enums: String, defaults: true, oneofs: true })
  const pkg = grpc.loadPackageDefinition(def) as any
  const server = new grpc.Server()
  const fake: FakeCri = {
    endpoint: `unix://${socketPath}`,
    containers,
    behaviour: { runtimeName: 'fake-cri', runtimeVersion: '9.9.9', checkpointDelayMs: 0, archiveBytes: 4096, hang: false, hold: false, writeNothing: false, ...init },
    checkpointCalls: [],
    listStatsCalls: 0,
    statsCalls: 0,
    release: () => {
      for (const h of held) h.go()
      held.clear()
    },
    stop: () => new Promise((r) => server.tryShutdown(() => r())),
    kill: () => {
      hanging.clear()
      held.clear()
      server.forceShutdown()
    },
  }
  const hanging = new Set<(e: grpc.ServiceError | null, v?: unknown) => void>()
  const held = new Set<{ go: () => void; cb: grpc.sendUnaryData<unknown> }>()
  const fail = (code: number, details: string) => Object.assign(new Error(details), { code, details }) as grpc.ServiceError
  const unimplemented = (_c: unknown, cb: (e: grpc.ServiceError) => void) => cb(fail(grpc.status.UNIMPLEMENTED, 'not in the fake'))
  const impl: Record<string, unknown> = {}
  for (const m of Object.keys(pkg.runtime.v1.RuntimeService.service)) impl[m] = unimplemented
  Object.assign(impl, {
    Version(_call: unknown, cb: grpc.sendUnaryData<unknown>) {
      const b = fake.behaviour
      if (b.versionError !== undefined) return cb(fail(b.versionError, 'version failed'))
      cb(null, { version: '0.1.0', runtimeName: b.runtimeName, runtimeVersion: b.runtimeVersion, runtimeApiVersion: 'v1' })
    },
    ListContainers(call: grpc.ServerUnaryCall<any, unknown>, cb: grpc.sendUnaryData<unknown>) {
      const f = call.request.filter ?? {}
      const want: Record<string, string> = f.labelSelector ?? {}
      const out = fake.containers.filter((c) => {
        const labels: Record<string, string> = { 'io.kubernetes.pod.namespace': c.namespace, 'io.kubernetes.pod.name': c.pod, 'io.kubernetes.container.name': c.container }
        if (f.state?.state && f.state.state !== (c.state ?? 'CONTAINER_RUNNING')) return false
        return Object.entries(want).every(([k, v]) => labels[k] === v)
      }).map((c) => ({
        id: c.id, podSandboxId: `sb-${c.pod}`, metadata: { name: c.container, attempt: c.attempt ?? 0 },
        state: c.state ?? 'CONTAINER_RUNNING', createdAt: String(c.createdAtNs ?? 1n),
        labels: { 'io.kubernetes.pod.namespace': c.namespace, 'io.kubernetes.pod.name': c.pod, 'io.kubernetes.container.name': c.container },
        image: { image: `registry.test/${c.pod}:1` }, imageRef: `sha256:${Buffer.from(c.id).toString('hex').padEnd(64, '0').slice(0, 64)}`,
      }))
      cb(null, { containers: out })
    },
    ListContainerStats(call: grpc.ServerUnaryCall<any, unknown>, cb: grpc.sendUnaryData<unknown>) {
      fake.listStatsCalls++
      const b = fake.behaviour
      if (b.statsError !== undefined) return cb(fail(b.statsError, 'stats failed'))
      if (b.listStatsUnimplemented) return cb(fail(grpc.status.UNIMPLEMENTED, 'not in this runtime'))
      const want: Record<string, string> = call.request.filter?.labelSelector ?? {}
      const stats = fake.containers.filter((c) => (c.state ?? 'CONTAINER_RUNNING') === 'CONTAINER_RUNNING').filter((c) => {
        const labels: Record<string, string> = { 'io.kubernetes.pod.namespace': c.namespace, 'io.kubernetes.pod.name': c.pod, 'io.kubernetes.container.name': c.container }
        return Object.entries(want).every(([k, v]) => labels[k] === v)
      }).map((c) => ({ attributes: { id: c.id }, memory: { workingSetBytes: { value: String(c.workingSetBytes ?? 1_000_000) } } }))
      cb(null, { stats })
    },
    ContainerStats(call: grpc.ServerUnaryCall<any, unknown>, cb: grpc.sendUnaryData<unknown>) {
      fake.statsCalls++
      if (fake.behaviour.statsError !== undefined) return cb(fail(fake.behaviour.statsError, 'stats failed'))
      const c = fake.containers.find((x) => x.id === call.request.containerId)
      if (!c) return cb(fail(grpc.status.NOT_FOUND, `container ${call.request.containerId} not found`))
      cb(null, { stats: { attributes: { id: c.id }, memory: { workingSetBytes: { value: String(c.workingSetBytes ?? 1_000_000) } } } })
    },
    CheckpointContainer(call: grpc.ServerUnaryCall<any, unknown>, callback: grpc.sendUnaryData<unknown>) {
      const b = fake.behaviour
      const deadline = call.getDeadline()
      const deadlineMs = deadline instanceof Date ? deadline.getTime() - Date.now() : Number.isFinite(deadline) && deadline !== Infinity ? Number(deadline) - Date.now() : null
      const record = { containerId: call.request.containerId, location: call.request.location, deadlineMs, at: Date.now(), answered: false }
      fake.checkpointCalls.push(record)
      const cb: grpc.sendUnaryData<unknown> = (e, v) => {
        record.answered = true
        callback(e, v)
      }
      if (b.hang) return void hanging.add(cb)
      if (!fake.containers.some((c) => c.id === call.request.containerId)) return cb(fail(grpc.status.NOT_FOUND, 'no such container'))
      const work = () => setTimeout(async () => {
        if (b.checkpointError) return cb(fail(b.checkpointError.code, b.checkpointError.details))
        if (!b.writeNothing) {
          // As containerd: open without truncation, write the archive; a failed write (ENOSPC) is its error.
          const fh = await open(call.request.location, 'a', 0o600)
          try {
            const chunk = Buffer.alloc(Math.min(b.archiveBytes, 1 << 20), 7)
            for (let left = b.archiveBytes; left > 0; left -= chunk.length) {
              if (b.randomArchive) randomFillSync(chunk)
              await fh.write(chunk, 0, Math.min(left, chunk.length))
            }
          } catch (err) {
            return cb(fail(grpc.status.UNKNOWN, `writing checkpoint ${call.request.location}: ${(err as Error).message}`))
          } finally {
            await fh.close()
          }
        }
        cb(null, {})
      }, b.checkpointDelayMs)
      if (b.hold) held.add({ go: work, cb })
      else work()
    },
  })
  server.addService(pkg.runtime.v1.RuntimeService.service, impl as grpc.UntypedServiceImplementation)
  await new Promise<void>((resolve, reject) => server.bindAsync(fake.endpoint, grpc.ServerCredentials.createInsecure(), (e) => (e ? reject(e) : resolve())))
  const stop = fake.stop
  fake.stop = async () => {
    for (const cb of hanging) cb(fail(grpc.status.UNAVAILABLE, 'fake stopping'))
    hanging.clear()
    for (const h of held) h.cb(fail(grpc.status.UNAVAILABLE, 'fake stopping'))
    held.clear()
    server.forceShutdown()
    await stop().catch(() => {})
  }
  return fake
}
