/**
 * `GET /v1/custody/{cluster}/{node}/{name}?namespace=`: an archive's custody log with the result of
 * checking its chain, under the read permission on the archive (the same decision as a download).
 */
import type { Handler } from 'hono'
import { CheckpointError } from '../../shared/errors.ts'
import { archiveRequest } from '../archives.ts'
import type { AuditTrail } from '../audit.ts'
import type { GatewayConfig } from '../config.ts'
import { NO_STORE, type Env } from '../context.ts'
import { custodySubject, verifyChain, type CustodyLog } from './log.ts'

export function createCustodyHandler({ config, trail, custody }: { config: GatewayConfig; trail: AuditTrail; custody: CustodyLog }): Handler<Env> {
  return async function custodyLog(c) {
    const { cluster, node, name, namespace: ns, decision } = archiveRequest(config, c, 'read')
    trail.authorize(c, 'read', decision)
    const subject = custodySubject(cluster, node, name)
    const entries = await custody.read(subject)
    if (entries.length === 0) throw new CheckpointError('archive_not_found', `no custody log for ${name} on node ${node}`)
    // Entries recorded for another namespace's archive of the same name are not this caller's to see.
    const recorded = entries.find((e) => e.event === 'created')?.details.namespace
    if (ns !== null && typeof recorded === 'string' && recorded !== ns) throw new CheckpointError('archive_not_found', `no custody log for ${name} in namespace ${ns}`, { field: 'namespace' })
    const verified = await verifyChain(subject, entries)
    return c.json({ subject, entries, verified: verified.ok, ...(verified.ok ? {} : { broken: { seq: verified.seq, problem: verified.problem } }) }, 200, NO_STORE)
  }
}
