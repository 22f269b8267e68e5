/** Checks every /v1 handler makes before it acts: no body where none belongs, a registered cluster. */
import { NDJSON } from '../shared/events.ts'
import { CheckpointError } from '../shared/errors.ts'
import type { ClusterConfig, GatewayConfig } from './config.ts'
import type { Ctx } from './context.ts'

/** Bodies where none belong are refused (400) before anything else happens. */
export function refuseBody(c: Ctx): void {
  const length = c.req.header('content-length')
  if ((length !== undefined && length.trim() !== '0') || c.req.header('transfer-encoding') !== undefined) {
    throw new CheckpointError('invalid_body', `${c.req.method} on this route takes no body`, { field: 'body' })
  }
}

/** The cluster registered as `id`, or 404 `not_found`. */
export function clusterOf(config: GatewayConfig, id: string): ClusterConfig {
  const cl = config.clusters.get(id)
  if (!cl) throw new CheckpointError('not_found', `cluster ${id} is not registered`, { field: 'cluster' })
  return cl
}

/** True when `Accept` asks for NDJSON (streamed events). */
export function wantsNdjson(accept: string | undefined): boolean {
  if (!accept) return false
  return accept.split(',').some((part) => part.split(';')[0]!.trim().toLowerCase() === NDJSON)
}
