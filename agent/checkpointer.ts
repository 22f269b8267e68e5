/**
 * Checkpoints one container at a time per slot. `start(target)` is the one entry: resolve the
 * container through the CRI runtime, check that the node can hold the archive, queue the runtime
 * call; the job then turns the runtime's output into a named, hashed archive.
 *
 * The runtime call is never given a deadline: containerd 2.1 ignores the request's timeout, and a
 * gRPC deadline that fires mid-checkpoint leaves the container frozen. A caller's timeout bounds
 * how long the caller waits, not how long the runtime works; an archive finished after its caller
 * gave up is kept like any other (listed, subject to retention).
 */
import { CheckpointError } from '../shared/errors.ts'
import type { ArchiveInfo, RuntimeInfo } from '../shared/events.ts'
import type { Target } from '../shared/names.ts'
import type { ArchiveMeta, ArchiveStore } from './archives.ts'
import type { ContainerInfo, Runtime } from './cri/client.ts'
import { dumpLogErrors } from './cri/dump-log.ts'
import type { Logger } from './log.ts'
import type { Metrics } from './metrics.ts'

export interface CheckpointerOptions {
  runtime: Runtime
  runtimeInfo: RuntimeInfo
  store: ArchiveStore
  metrics: Metrics
  log: Logger
  maxConcurrent: number
  maxQueue: number
  diskMarginBytes: number
  /**
   * The node's memory and swap: no container's pages can take more. With at least this much (plus
   * the margin) free, the preflight does not ask the runtime for the container's working set.
   * Omitted: always asked.
   */
  nodeMemoryBytes?: number
  /** Signs the statement of a finished archive (custody.ts); without it none is made. */
  attest?: (archive: ArchiveMeta, job: Job, startedAt: Date, completedAt: Date) => unknown
}

/** Who asked for a checkpoint, from the grant that authorized it (the first request of a shared job). */
export interface Requester {
  sub: string
  client?: string
  requestId: string
  jti: string
  issuer?: string
  reason?: string
  requestedAt: Date
}

export type Phase = 'queued' | 'checkpointing' | 'hashing' | 'done'

export interface Resolved {
  target: Target
  container: ContainerInfo
}

/** A submitted checkpoint: the job, whether it was already running, the caller's queue position (0 = running). */
export interface Started {
  job: Job
  joined: boolean
  queuePosition: number
}

export interface JobResult {
  archive: ArchiveInfo
  path: string
  containerId: string
  runtime: RuntimeInfo
  durationMs: number
  /** The signed statement (a Sigstore bundle), when the agent attests. */
  statement?: unknown
}

/** One runtime call, shared by every request for the same container while it is pending. */
export class Job {
  readonly target: Target
  readonly containerId: string
  /** The container's image as the runtime names it (for the statement). */
  readonly image: { ref: string; digest: string }
  readonly requester: Requester | undefined
  readonly acceptedAt = Date.now()
  phase: Phase = 'queued'
  /** Queued behind other checkpoints before it ran (its preflight is that much older). */
  waited = false
  readonly result: Promise<JobResult>
  resolveResult!: (r: JobResult) => void
  rejectResult!: (e: CheckpointError) => void

  constructor(target: Target, container: Pick<ContainerInfo, 'id' | 'image' | 'imageRef'>, requester?: Requester) {
    this.target = target
    this.containerId = container.id
    this.image = { ref: container.image, digest: container.imageRef }
    this.requester = requester
    this.result = new Promise<JobResult>((res, rej) => {
      this.resolveResult = res
      this.rejectResult = rej
    })
    // Every waiter attaches its own handler; this one only keeps an unobserved failure quiet.
    this.result.catch(() => {})
  }
}

export class Checkpointer {
  private readonly o: CheckpointerOptions
  private running = 0
  private readonly waiting: Job[] = []
  private readonly pending = new Map<string, Job>()
  private closed = false
  /** CheckpointContainer calls the runtime is working on: never cut one short. */
  runtimeCalls = 0

  constructor(o: CheckpointerOptions) {
    this.o = o
  }

  get runtimeInfo(): RuntimeInfo {
    return this.o.runtimeInfo
  }

  /**
   * Starts the checkpoint of a target, or joins the one already running for its container:
   * resolve → preflight → submit. Every refusal comes before anything is frozen.
   */
  async start(target: Target, requester?: Requester): Promise<Started> {
    // Neither the disk look-up nor the memory of the target's containers needs the container's
    // id: both run beside the runtime's ListContainers, not after it. The memory is asked only
    // when the free space could be short of it (statfs answers long before ListContainers does).
    const disk = this.diskFree()
    const stats = disk.then((free) => this.enough(free) ? null : this.o.runtime.listContainerStats(targetLabels(target)).catch(() => null), () => null)
    disk.catch(() => {}) // its error is reported by preflight, after resolve's own
    const resolved = await this.resolve(target)
    await this.preflight(resolved, disk, stats)
    return this.submit(resolved, requester)
  }

  /** Whether `freeBytes` holds any container this node can run, whatever its working set. */
  private enough(freeBytes: number): boolean {
    return freeBytes >= (this.o.nodeMemoryBytes ?? Infinity) + this.o.diskMarginBytes
  }

  /** Free bytes in the checkpoint directory, which must exist (containerd finds out only after dumping). */
  private async diskFree(): Promise<number> {
    await this.o.store.checkDir()
    return this.o.store.freeBytes()
  }

  /** Finds the running container for a target, as the kubelet's labels name it. */
  async resolve(target: Target): Promise<Resolved> {
    const found = await this.o.runtime.listContainers({ state: 'CONTAINER_RUNNING', labels: targetLabels(target) })
    if (found.length === 0) {
      throw new CheckpointError('container_not_found', `no running container ${target.container} in pod ${target.namespace}/${target.pod} on this node`)
    }
    // The newest attempt wins (a restarted container keeps its name with a higher attempt).
    const container = found.reduce((a, b) => (b.attempt > a.attempt || (b.attempt === a.attempt && b.createdAtNs > a.createdAtNs) ? b : a))
    return { target, container }
  }

  /**
   * Refuses before anything is frozen: the directory must exist (containerd finds out only after
   * dumping) and hold the container's working set plus the margin. The look-ups sit on every
   * checkpoint's path, so they start before the container is resolved: the disk's, and the memory
   * of the containers with the target's labels (CRI ListContainerStats), from which the resolved
   * one is picked. A runtime that does not list it (or fails) is asked by id (ContainerStats).
   * Free space for the node's whole memory needs no working set at all.
   */
  async preflight(r: Resolved, disk: Promise<number> = this.diskFree(), listed: Promise<Array<ContainerMemory & { id: string }> | null> = Promise.resolve(null)): Promise<void> {
    const { diskMarginBytes, runtime, log } = this.o
    const freeBytes = await disk
    if (this.enough(freeBytes)) return
    const stats = (await listed)?.find((s) => s.id === r.container.id) ??
      await runtime.containerStats(r.container.id).catch((err) => {
        log.warn('container stats unavailable; disk preflight uses the margin only', { containerId: r.container.id, err })
        return null
      })
    const workingSetBytes = stats?.workingSetBytes ?? null
    const need = (workingSetBytes ?? 0) + diskMarginBytes
    if (freeBytes < need) {
      throw new CheckpointError('insufficient_storage', `checkpoint directory has ${freeBytes} bytes free; this container needs about ${need} (working set ${workingSetBytes ?? 'unknown'} + margin ${diskMarginBytes})`, { extra: { freeBytes, neededBytes: need } })
    }
  }

  /**
   * Starts or joins the checkpoint of a resolved container. Throws `too_many_requests` when the
   * queue is full and `shutting_down` after close().
   */
  submit(r: Resolved, requester?: Requester): Started {
    if (this.closed) throw new CheckpointError('shutting_down', 'the agent is shutting down', { headers: { 'retry-after': '30' } })
    const existing = this.pending.get(r.container.id)
    if (existing) return { job: existing, joined: true, queuePosition: Math.max(0, this.waiting.indexOf(existing) + 1) }
    if (this.running >= this.o.maxConcurrent && this.waiting.length >= this.o.maxQueue) {
      throw new CheckpointError('too_many_requests', `node is busy: ${this.running} checkpoints running, ${this.waiting.length} queued`, {
        headers: { 'retry-after': String(Math.max(5, 10 * (this.waiting.length + 1))) },
      })
    }
    const job = new Job(r.target, r.container, requester)
    this.pending.set(job.containerId, job)
    this.waiting.push(job)
    const queuePosition = this.running >= this.o.maxConcurrent ? this.waiting.length : 0
    job.waited = queuePosition > 0
    this.pump()
    return { job, joined: false, queuePosition }
  }

  private pump(): void {
    while (this.running < this.o.maxConcurrent && this.waiting.length > 0) {
      const job = this.waiting.shift()!
      this.running++
      void this.run(job).finally(() => {
        this.running--
        this.release(job)
        this.syncGauges()
        this.pump()
      })
    }
    this.syncGauges()
  }

  /** Stops sharing `job` with new requests (a later job for the same container stays). */
  private release(job: Job): void {
    if (this.pending.get(job.containerId) === job) this.pending.delete(job.containerId)
  }

  private syncGauges(): void {
    this.o.metrics.inFlight = this.running
    this.o.metrics.queueDepth = this.waiting.length
  }

  private async run(job: Job): Promise<void> {
    const { runtime, runtimeInfo, store, metrics, log } = this.o
    const started = new Date()
    let temp: string | undefined
    try {
      // The preflight has just found the directory, unless the job waited in the queue since.
      if (job.waited) await store.checkDir()
      temp = await store.newTempPath()
      job.phase = 'checkpointing'
      const t0 = performance.now()
      this.runtimeCalls++
      try {
        await runtime.checkpointContainer(job.containerId, temp)
      } finally {
        this.runtimeCalls--
      }
      const runtimeMs = performance.now() - t0
      metrics.duration(runtimeMs / 1000)
      job.phase = 'hashing'
      const meta: ArchiveMeta = await store.finalize(temp, job.target, started, { containerId: job.containerId, runtime: runtimeInfo })
      metrics.bytesWritten += meta.size
      const statement = this.o.attest ? await this.attest(meta, job, started) : undefined
      job.phase = 'done'
      log.info('checkpoint written', { containerId: job.containerId, archive: meta.name, size: meta.size, sha256: meta.sha256, runtimeMs: Math.round(runtimeMs), attested: statement !== undefined })
      // From here a request for this container wants a new checkpoint, not this one.
      this.release(job)
      job.resolveResult({
        archive: { name: meta.name, size: meta.size, sha256: meta.sha256, created: meta.created },
        path: `${store.dir}/${meta.name}`,
        containerId: job.containerId,
        runtime: runtimeInfo,
        durationMs: Date.now() - job.acceptedAt,
        ...(statement !== undefined ? { statement } : {}),
      })
      await store.applyRetention(Date.now(), meta.name).catch((err) => log.warn('retention failed', { err }))
    } catch (err) {
      job.phase = 'done'
      if (temp) await store.discard(temp)
      // The runtime's errors arrive mapped; anything else (the directory, hashing) is ours.
      let e = err instanceof CheckpointError ? err : new CheckpointError('internal', `CheckpointContainer ${job.containerId}: ${String((err as Error | undefined)?.message ?? err)}`, { cause: err })
      if (e.code === 'checkpoint_failed') {
        const runtimeLog = await dumpLogErrors(e.message)
        if (runtimeLog.length) e = new CheckpointError(e.code, e.message, { extra: { ...e.extra, runtimeLog }, cause: e.cause })
      }
      log.warn('checkpoint failed', { containerId: job.containerId, code: e.code, err: e, ...(e.extra?.runtimeLog ? { runtimeLog: e.extra.runtimeLog } : {}) })
      this.release(job)
      job.rejectResult(e)
    }
  }

  /**
   * Signs and records the statement of a finished archive. A failure to sign costs the statement,
   * never the archive: it is logged, and the archive is still reported.
   */
  private async attest(meta: ArchiveMeta, job: Job, started: Date): Promise<unknown> {
    try {
      const bundle = this.o.attest!(meta, job, started, new Date())
      await this.o.store.writeStatement(meta.name, bundle)
      return bundle
    } catch (err) {
      this.o.log.error('statement not signed', { archive: meta.name, err })
      return undefined
    }
  }

  /**
   * Refuses new work, then waits up to `graceMs` for running and queued checkpoints. After that,
   * queued ones are failed with `shutting_down`, but checkpoints already in the runtime are still
   * awaited however long they take: a runtime call cut short can leave its container frozen.
   * Resolves true when everything finished within the grace period.
   */
  async close(graceMs: number): Promise<boolean> {
    this.closed = true
    const settle = (jobs: Job[]) => Promise.all(jobs.map((j) => j.result.then(() => {}, () => {})))
    let timer: NodeJS.Timeout | undefined
    const inTime = await Promise.race([
      settle([...this.pending.values()]).then(() => true),
      new Promise<boolean>((r) => (timer = setTimeout(() => r(false), graceMs))),
    ])
    clearTimeout(timer)
    if (inTime) return true
    for (const job of this.waiting.splice(0)) {
      this.pending.delete(job.containerId)
      job.rejectResult(new CheckpointError('shutting_down', 'the agent stopped before this checkpoint started', { headers: { 'retry-after': '30' } }))
    }
    this.syncGauges()
    this.o.log.warn('shutdown grace period over; waiting for checkpoints already in the runtime', { running: this.running })
    await settle([...this.pending.values()])
    return false
  }

  get busy(): number {
    return this.pending.size
  }
}

type ContainerMemory = { workingSetBytes: number | null }

/** The kubelet's labels of a target's containers. */
function targetLabels(target: Target): Record<string, string> {
  return {
    'io.kubernetes.pod.namespace': target.namespace,
    'io.kubernetes.pod.name': target.pod,
    'io.kubernetes.container.name': target.container,
  }
}
