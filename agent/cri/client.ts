/**
 * CRI (runtime.v1) client: the narrow {@link Runtime} interface the agent depends on, plus the raw
 * gRPC clients and a promisified {@link call} for the test harness.
 *
 * The proto comes as protobufjs's JSON descriptor of `proto/runtime.proto` (`proto/runtime.json`,
 * made by `proto/generate.ts` with camelCase fields): nothing parses `.proto` text at run time.
 * Loaded with `longs: String` (int64/uint64 arrive as decimal strings and are converted here: byte
 * counts to `number`, nanosecond timestamps to `bigint`), `enums: String` and `defaults: true`.
 *
 * The {@link Runtime} methods map gRPC failures themselves, through the one table in `errors.ts`:
 * they reject with a CheckpointError whose cause is the {@link CriError}. The raw {@link call}
 * rejects with the CriError itself.
 */
import * as grpc from '@grpc/grpc-js'
import { fromJSON } from '@grpc/proto-loader'
import descriptor from '../../proto/runtime.json' with { type: 'json' }
import { existsSync } from 'node:fs'
import { fromGrpc, type RuntimeIdentity } from './errors.ts'

export interface RuntimeVersion {
  runtimeName: string
  runtimeVersion: string
  runtimeApiVersion: string
}

export type ContainerState = 'CONTAINER_CREATED' | 'CONTAINER_RUNNING' | 'CONTAINER_EXITED' | 'CONTAINER_UNKNOWN'

export interface ContainerInfo {
  id: string
  podSandboxId: string
  name: string
  attempt: number
  /** Creation time, nanoseconds since the epoch. */
  createdAtNs: bigint
  state: ContainerState
  labels: Record<string, string>
  annotations: Record<string, string>
  /** The image as the container spec names it. */
  image: string
  /** The runtime's reference to the image it runs (a digest). */
  imageRef: string
}

export interface CheckpointOptions {
  /** gRPC deadline for the call; omitted = no deadline. */
  deadline?: Date
  /** Sent as CheckpointContainerRequest.timeout (seconds). containerd 2.1 ignores it. */
  timeoutSeconds?: number
}

export interface ContainerFilterOptions {
  state?: ContainerState
  /** Exact-match label selector; every pair must match. */
  labels?: Record<string, string>
}

/**
 * The narrow runtime interface the agent depends on (tests fake it with an object of functions).
 * Methods reject with CheckpointError (see `errors.ts`), never with a raw gRPC error.
 */
export interface Runtime {
  version(): Promise<RuntimeVersion>
  listContainers(filter?: ContainerFilterOptions): Promise<ContainerInfo[]>
  containerStats(id: string): Promise<{ workingSetBytes: number | null; memoryUsageBytes: number | null }>
  /** Memory of the running containers whose labels match (CRI ListContainerStats). */
  listContainerStats(labels: Record<string, string>): Promise<Array<{ id: string; workingSetBytes: number | null; memoryUsageBytes: number | null }>>
  checkpointContainer(id: string, location: string, opts?: CheckpointOptions): Promise<void>
  close(): void
}

export interface ConnectOptions {
  /** Deadline for the small calls (version, list, stats). Default 10 000 ms. */
  callTimeoutMs?: number
  /**
   * Who the runtime is, when a Version call already said so (a probe); otherwise learned from this
   * client's own Version answers. Errors name it (UNIMPLEMENTED says which runtime lacks a method).
   */
  identity?: RuntimeIdentity
}

/** The usual CRI sockets, in the order {@link probeEndpoints} tries them. */
export const DEFAULT_ENDPOINTS = ['unix:///run/containerd/containerd.sock', 'unix:///var/run/crio/crio.sock']

/** A failed CRI call. `code` is the gRPC status (`grpc.status`), `details` the runtime's message. */
export class CriError extends Error {
  readonly code: number
  readonly method: string
  readonly details: string
  constructor(method: string, code: number, details: string, options?: { cause?: unknown }) {
    super(`${method}: ${grpc.status[code] ?? code}: ${details}`, options)
    this.name = 'CriError'
    this.code = code
    this.method = method
    this.details = details
  }
}


let services: { RuntimeService: grpc.ServiceClientConstructor; ImageService: grpc.ServiceClientConstructor } | undefined

function loadServices() {
  if (!services) {
    // The descriptor as JSON (proto/generate.ts): no .proto text is parsed at run time.
    const definition = fromJSON(descriptor as Parameters<typeof fromJSON>[0], { longs: String, enums: String, defaults: true, oneofs: true })
    const pkg = grpc.loadPackageDefinition(definition) as any
    services = { RuntimeService: pkg.runtime.v1.RuntimeService, ImageService: pkg.runtime.v1.ImageService }
  }
  return services
}

export interface CriServices {
  runtime: grpc.Client
  image: grpc.Client
  close(): void
}

const CHANNEL_OPTIONS: grpc.ChannelOptions = {
  // kubelet's limit: ListContainers on a busy node exceeds gRPC's 4 MiB default.
  'grpc.max_receive_message_length': 16 * 1024 * 1024,
}

/**
 * Raw gRPC clients for `runtime.v1.RuntimeService` and `runtime.v1.ImageService`.
 *
 * @example
 * const cri = criServices('unix:///run/containerd/containerd.sock')
 * const { podSandboxId } = await call<{ podSandboxId: string }>(cri.runtime, 'RunPodSandbox', { config })
 * cri.close()
 */
export function criServices(endpoint: string): CriServices {
  const { RuntimeService, ImageService } = loadServices()
  const creds = grpc.credentials.createInsecure()
  const runtime = new RuntimeService(endpoint, creds, CHANNEL_OPTIONS)
  const image = new ImageService(endpoint, creds, CHANNEL_OPTIONS)
  return {
    runtime,
    image,
    close() {
      runtime.close()
      image.close()
    },
  }
}

/**
 * One unary CRI call as a promise. `method` is the RPC name (`'Version'`, `'RunPodSandbox'`…);
 * `request` uses the loader's camelCase field names. Rejects with {@link CriError}.
 * `deadline` is a Date or milliseconds from now; omitted = no deadline.
 */
export function call<T = any>(client: grpc.Client, method: string, request: object, deadline?: Date | number): Promise<T> {
  const fn = (client as any)[method] as
    | ((req: object, md: grpc.Metadata, opts: grpc.CallOptions, cb: (err: grpc.ServiceError | null, res: T) => void) => void)
    | undefined
  if (typeof fn !== 'function') throw new TypeError(`unknown CRI method ${method}`)
  const options: grpc.CallOptions = {}
  if (deadline !== undefined) options.deadline = typeof deadline === 'number' ? Date.now() + deadline : deadline
  return new Promise<T>((resolve, reject) => {
    fn.call(client, request, new grpc.Metadata(), options, (err, res) => {
      if (err) reject(new CriError(method, err.code ?? grpc.status.UNKNOWN, err.details ?? err.message, { cause: err }))
      else resolve(res)
    })
  })
}

function toNumber(value: unknown): number | null {
  if (value === null || value === undefined) return null
  const n = Number(value)
  return Number.isFinite(n) ? n : null
}

/**
 * Connects to a CRI endpoint (`unix:///run/containerd/containerd.sock`). The channel connects
 * lazily: this never fails; the first call does if nothing answers.
 */
export function connectRuntime(endpoint: string, opts: ConnectOptions = {}): Runtime {
  const callTimeoutMs = opts.callTimeoutMs ?? 10_000
  const cri = criServices(endpoint)
  let identity = opts.identity
  /** Every runtime call goes through here: the method name that is called is the one the error names. */
  const rpc = async (method: string, request: object, deadline: Date | number | undefined, containerId?: string): Promise<any> => {
    try {
      return await call(cri.runtime, method, request, deadline)
    } catch (err) {
      throw fromGrpc(err, { method, containerId, runtime: identity })
    }
  }
  return {
    async version() {
      const res = await rpc('Version', { version: 'v1' }, callTimeoutMs)
      identity = { name: res.runtimeName, version: res.runtimeVersion }
      return { runtimeName: res.runtimeName, runtimeVersion: res.runtimeVersion, runtimeApiVersion: res.runtimeApiVersion }
    },

    async listContainers(filter = {}) {
      const request = {
        filter: {
          state: filter.state ? { state: filter.state } : null,
          labelSelector: filter.labels ?? {},
        },
      }
      const res = await rpc('ListContainers', request, callTimeoutMs)
      return (res.containers as any[]).map(
        (c): ContainerInfo => ({
          id: c.id,
          podSandboxId: c.podSandboxId,
          name: c.metadata?.name ?? '',
          attempt: c.metadata?.attempt ?? 0,
          createdAtNs: BigInt(c.createdAt || 0),
          state: c.state,
          labels: c.labels ?? {},
          annotations: c.annotations ?? {},
          image: c.image?.image ?? '',
          imageRef: c.imageRef,
        }),
      )
    },

    async containerStats(id) {
      const res = await rpc('ContainerStats', { containerId: id }, callTimeoutMs, id)
      const memory = res.stats?.memory
      return {
        workingSetBytes: toNumber(memory?.workingSetBytes?.value),
        memoryUsageBytes: toNumber(memory?.usageBytes?.value),
      }
    },

    async listContainerStats(labels) {
      const res = await rpc('ListContainerStats', { filter: { labelSelector: labels } }, callTimeoutMs)
      return (res.stats as any[]).map((st) => ({
        id: st.attributes?.id ?? '',
        workingSetBytes: toNumber(st.memory?.workingSetBytes?.value),
        memoryUsageBytes: toNumber(st.memory?.usageBytes?.value),
      }))
    },

    async checkpointContainer(id, location, opts = {}) {
      const request = { containerId: id, location, timeout: String(opts.timeoutSeconds ?? 0) }
      await rpc('CheckpointContainer', request, opts.deadline, id)
    },

    close() {
      cri.close()
    },
  }
}

/**
 * Tries each endpoint in order and returns the first whose Version call answers, with the open
 * runtime (the caller closes it). Unix sockets that do not exist are skipped without a call.
 * Returns null when none answers.
 */
export async function probeEndpoints(
  candidates: string[] = DEFAULT_ENDPOINTS,
  opts: ConnectOptions & { probeTimeoutMs?: number } = {},
): Promise<{ endpoint: string; runtime: Runtime; version: RuntimeVersion } | null> {
  for (const endpoint of candidates) {
    const path = unixSocketPath(endpoint)
    if (path !== null && !existsSync(path)) continue
    const runtime = connectRuntime(endpoint, { callTimeoutMs: opts.probeTimeoutMs ?? 2_000 })
    try {
      const version = await runtime.version()
      runtime.close()
      const identity = { name: version.runtimeName, version: version.runtimeVersion }
      return { endpoint, runtime: connectRuntime(endpoint, { ...opts, identity }), version }
    } catch {
      runtime.close()
    }
  }
  return null
}

/** The filesystem path of a `unix://` / `unix:` endpoint, else null. */
export function unixSocketPath(endpoint: string): string | null {
  if (endpoint.startsWith('unix://')) return endpoint.slice('unix://'.length)
  if (endpoint.startsWith('unix:')) return endpoint.slice('unix:'.length)
  return null
}
