/**
 * One archive on a node into the vault, as every way in asks for it — after a caller's checkpoint
 * (`?store=vault`), for an archive already on the node (`POST …/checkpoints/{name}/store`), and
 * after an alert's checkpoint (`hooks.store`): grant the agent the plan, seal and upload
 * (vault.ts), write the outcome into the archive's custody log, and delete the node copy after a
 * verified upload unless `keepOnNode`.
 */
import { AGENT_PATHS } from '../../shared/agent-api.ts'
import { CheckpointError } from '../../shared/errors.ts'
import type { StoredEvent, StoreEvent, StoreFailedEvent } from '../../shared/events.ts'
import type { Target } from '../../shared/names.ts'
import type { AgentClient } from '../agent-client.ts'
import type { ClusterConfig, GatewayConfig } from '../config.ts'
import type { CustodyEvent } from '../custody/log.ts'
import type { EvidenceStorage } from './storage.ts'
import { AGE_RECIPIENT, recipientsFor, storeArchive, type VaultConfig } from './vault.ts'

export interface Vault {
  cfg: VaultConfig
  storage: EvidenceStorage
}

export interface StoreFromNode {
  cl: ClusterConfig
  node: string
  target: Target
  /** Whom the grants are signed for, and the request the custody entries name. */
  sub: string
  requestId: string
  archive: { name: string; size: number; sha256: string }
  statement?: unknown
  recipients: string[]
  emit(e: StoreEvent | StoredEvent | StoreFailedEvent): void
  /** Appends to the archive's custody log. */
  note(event: CustodyEvent, details: Record<string, unknown>): void
  now(): number
}

/**
 * The recipients an archive of `target` is sealed to: every one configuration allows for it, or
 * the `asked` subset. `invalid_recipient` (400) when configuration allows none; `forbidden` (403,
 * field `recipient`) when a request names one it does not allow — refused before anything is frozen.
 */
export function chooseRecipients(cfg: VaultConfig, cluster: string, namespace: string, asked: string[] = []): string[] {
  const allowed = recipientsFor(cfg, cluster, namespace)
  if (allowed.length === 0) throw new CheckpointError('invalid_recipient', `no vault recipients are configured for cluster ${cluster} namespace ${namespace}`, { field: 'store' })
  if (asked.length === 0) return allowed
  const refused = asked.find((r) => !allowed.includes(r))
  if (refused !== undefined) throw new CheckpointError('forbidden', `recipient ${refused.slice(0, 80)} is not allowed for cluster ${cluster} namespace ${namespace}`, { field: 'recipient' })
  return [...new Set(asked)]
}

/** `?recipient=age1…[,age1…]`: narrows the configured recipients (functions/vault/flow.ts). */
export function recipientsAsked(raw: string | null): string[] {
  if (raw === null) return []
  const list = raw.split(',')
  if (list.length > 64) throw new CheckpointError('invalid_query', 'recipient: at most 64', { field: 'recipient' })
  list.forEach((r, i) => {
    if (!AGE_RECIPIENT.test(r)) throw new CheckpointError('invalid_recipient', `recipient[${i}]: not an age X25519 recipient (age1…)`, { field: 'recipient' })
  })
  return list
}

/** Seals and stores one archive from its node; resolves with the outcome it emitted last (never throws). */
export async function storeFromNode(v: Vault, agent: AgentClient, config: GatewayConfig, j: StoreFromNode): Promise<StoredEvent | StoreFailedEvent> {
  const { cl, node, archive, target } = j
  const out = await storeArchive({
    storage: v.storage, cfg: v.cfg, cluster: cl.id, target, archive, recipients: j.recipients, requestId: j.requestId,
    ...(j.statement !== undefined ? { statement: j.statement } : {}),
    grant: (plan) => agent.grantHeaders(j.sub, j.requestId, { op: 'checkpoint:store', cluster: cl.id, node, archive: archive.name, namespaces: [target.namespace], plan }, config.grants.readTtlSec),
    agent: (path, init) => agent.forward(cl, node, path, init),
    emit: j.emit,
    now: j.now,
  })
  j.note(out.type, out.type === 'stored'
    ? { bucket: out.bucket, key: out.key, sealed: out.sealed, plaintext: out.plaintext, recipients: out.recipients, ...(out.statementKey ? { statementKey: out.statementKey } : {}) }
    : { code: out.code })
  if (out.type === 'stored' && !v.cfg.keepOnNode) {
    const del = await agent.grantHeaders(j.sub, j.requestId, { op: 'checkpoint:delete', cluster: cl.id, node, archive: archive.name, namespaces: [target.namespace] }, config.grants.readTtlSec)
    const gone = await agent.forward(cl, node, AGENT_PATHS.archive(archive.name), { method: 'DELETE', headers: del }).then(async (r) => (await r.body?.cancel(), r.ok), () => false)
    if (gone) j.note('deleted', { why: 'stored in the vault (keepOnNode: false)' })
  }
  return out
}
