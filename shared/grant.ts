/**
 * Grants: short-lived JWTs the gateway signs for one operation on one target on one node. mTLS
 * says "this is the gateway"; a grant says "the gateway authorized exactly this". The agent
 * refuses a grant for anything else, and a `jti` it has seen before.
 */
import { CheckpointError } from './errors.ts'
import { archiveMatches, archiveReadings, type Target } from './names.ts'

export type Operation = 'checkpoint:create' | 'checkpoint:read' | 'checkpoint:delete' | 'checkpoint:list' | 'checkpoint:store'

/** Claims of a grant, beyond the registered ones (iss, aud, exp, iat, jti, sub). */
export interface GrantClaims {
  /** The operation this grant allows. */
  op: Operation
  cluster?: string
  node: string
  /** For checkpoint:create. */
  namespace?: string
  pod?: string
  container?: string
  /** For read/delete of one archive. */
  archive?: string
  /**
   * For read/delete: the namespaces the gateway authorized this archive in. An archive name joins
   * namespace and container with '-', so the agent serves it only when its recorded namespace is
   * one of these (an archive without a record: when every reading of its name is).
   */
  namespaces?: string[]
  /** Who asked the gateway (for the agent's audit log and the signed statement). */
  sub?: string
  /** For checkpoint:create: why, as the caller said it (`?reason=`), for the signed statement. */
  reason?: string
  /** For checkpoint:store: SHA-256 (hex) of the exact upload plan body the gateway sent with it. */
  plan?: string
}

/** The `aud` of a grant for a node's agent. */
export function grantAudience(node: string): string {
  return `checkpoint-agent:${node}`
}

export const GRANT_TYP = 'checkpoint-grant+jwt'

/** What the agent expects for a request; compared with the grant's claims. */
export interface GrantRequirement {
  op: Operation
  node: string
  target?: Target
  archive?: string
}

/**
 * Throws `grant_mismatch` when a (signature-checked) grant does not cover the request. Every
 * bound field must be equal; a grant naming no archive does not cover a download.
 */
export function checkGrantCovers(claims: Partial<GrantClaims>, need: GrantRequirement): void {
  const mismatch = (what: string) => {
    throw new CheckpointError('grant_mismatch', `grant does not cover this request: ${what} differs`, { field: what })
  }
  if (claims.op !== need.op) mismatch('op')
  if (claims.node !== need.node) mismatch('node')
  if (need.target) {
    if (claims.namespace !== need.target.namespace) mismatch('namespace')
    if (claims.pod !== need.target.pod) mismatch('pod')
    if (claims.container !== need.target.container) mismatch('container')
  }
  if (need.archive !== undefined && claims.archive !== need.archive) mismatch('archive')
}

/**
 * Throws `grant_mismatch` (field `namespace`) unless a read/delete grant was authorized for the
 * archive's real target. `recorded` is the target the agent wrote down with the archive, or null
 * for an archive it did not write (a kubelet one), whose every reading must then be covered: the
 * caller never chooses what an ambiguous name means.
 */
export function checkGrantCoversArchive(claims: Partial<GrantClaims>, name: string, recorded: Target | null): void {
  const granted = Array.isArray(claims.namespaces) ? claims.namespaces.filter((n): n is string => typeof n === 'string') : []
  const covered = recorded
    ? archiveMatches(name, recorded) && granted.includes(recorded.namespace)
    : (archiveReadings(name)?.readings.every((r) => granted.includes(r.namespace)) ?? false)
  if (!covered) {
    throw new CheckpointError('grant_mismatch', 'grant does not cover this archive: not authorized in its namespace', { field: 'namespace' })
  }
}
