/**
 * The one table from gRPC status codes (what the CRI runtime says) to our error codes (what the
 * agent answers). The runtime client (client.ts) applies it to every call; nothing else in the
 * agent looks at gRPC codes.
 */
import { CheckpointError, type ErrorCode } from '../../shared/errors.ts'

/** gRPC status codes we name (grpc/status.h). */
export const GRPC = {
  OK: 0, CANCELLED: 1, UNKNOWN: 2, INVALID_ARGUMENT: 3, DEADLINE_EXCEEDED: 4, NOT_FOUND: 5,
  ALREADY_EXISTS: 6, PERMISSION_DENIED: 7, RESOURCE_EXHAUSTED: 8, FAILED_PRECONDITION: 9,
  ABORTED: 10, OUT_OF_RANGE: 11, UNIMPLEMENTED: 12, INTERNAL: 13, UNAVAILABLE: 14,
  DATA_LOSS: 15, UNAUTHENTICATED: 16,
} as const

const TABLE: Record<number, ErrorCode> = {
  [GRPC.UNIMPLEMENTED]: 'runtime_unimplemented',
  [GRPC.NOT_FOUND]: 'container_not_found',
  [GRPC.UNAVAILABLE]: 'runtime_unavailable',
  [GRPC.DEADLINE_EXCEEDED]: 'timeout',
  [GRPC.CANCELLED]: 'runtime_unavailable',
}

export interface RuntimeIdentity {
  name: string
  version: string
}

/** Maps an error thrown by a CRI call to a CheckpointError; non-gRPC errors become `internal`. */
export function fromGrpc(err: unknown, ctx: { method: string; containerId?: string; runtime?: RuntimeIdentity }): CheckpointError {
  if (err instanceof CheckpointError) return err
  const e = err as { code?: unknown; details?: unknown; message?: unknown }
  const what = ctx.containerId ? `${ctx.method} ${ctx.containerId}` : ctx.method
  if (typeof e?.code !== 'number') {
    return new CheckpointError('internal', `${what}: ${String(e?.message ?? err)}`, { cause: err })
  }
  const code: ErrorCode = TABLE[e.code] ?? (ctx.method === 'CheckpointContainer' ? 'checkpoint_failed' : 'runtime_error')
  const details = typeof e.details === 'string' && e.details ? e.details : String(e.message ?? '')
  const rt = ctx.runtime ? `${ctx.runtime.name} ${ctx.runtime.version}` : 'the runtime'
  const message = code === 'runtime_unimplemented'
    ? `${rt} does not implement CRI ${ctx.method} (${details}); checkpointing needs containerd >= 2.0 or CRI-O >= 1.25`
    : `${what}: ${details} (gRPC code ${e.code})`
  return new CheckpointError(code, message, { cause: err, extra: { grpcCode: e.code } })
}
