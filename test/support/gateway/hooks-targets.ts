/**
 * Gateways with webhooks on: Node (node:sqlite file + in-process queue) and the Worker bundle in
 * miniflare (real D1 and Queues in workerd). Same shape as targets.ts, plus the hooks config.
 */
import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import type { NodeGatewayOptions } from '../../../functions/node/start.ts'
import { KUBE_TOKEN, type World } from './fixtures.ts'
import { startNodeTarget, startWorkerGateway, worldBindings, type GatewayUnderTest } from './targets.ts'
import type { D1Like } from '../../../functions/workers/d1.ts'

export const GRAFANA_SECRET = 'grafana-webhook-secret-for-tests'
/** The JWT client id the Alertmanager's token carries; the policy rule names it. */
export const AM_CLIENT = 'alertmanager'

export type MakeHooksTarget = (world: World, raw: Record<string, unknown>) => Promise<GatewayUnderTest>

/** workerd only: the operations D1 database and the cron trigger, for lost-message tests. */
export interface WorkerHooksTarget extends GatewayUnderTest {
  d1(): Promise<D1Like>
  cron(): Promise<void>
}

const secrets = (n: string) => (n === 'KUBE_TOKEN_PROD' ? KUBE_TOKEN : n === 'GRAFANA_SECRET' ? GRAFANA_SECRET : undefined)

/** The suite's configuration: the world's, plus hooks and policy rules for the two senders. */
export function hooksConfig(world: World, hooks: Record<string, unknown> = {}): Record<string, unknown> {
  const raw = world.rawConfig()
  const policy = raw.policy as { rules: unknown[] }
  policy.rules.push(
    { id: 'alertmanager', clients: [AM_CLIENT], actions: ['create'], clusters: ['prod', 'edge', 'dead'], namespaces: ['shop-*', 'pay'] },
    { id: 'grafana', subjects: ['grafana'], actions: ['create'], clusters: ['prod'], namespaces: ['shop-*'] },
  )
  raw.hooks = {
    select: [{ checkpoint: 'true' }, { alertname: ['CryptoMinerDetected', 'ShellSpawned'] }],
    defaultCluster: 'prod',
    cooldownSec: 60,
    maxPerNotification: 3,
    timeoutSec: 30,
    maxBodyBytes: 65_536,
    retry: { maxAttempts: 3, baseDelayMs: 200, maxDelayMs: 1000 },
    grafana: { secretName: 'GRAFANA_SECRET', timestampHeader: 'X-Grafana-Alerting-Signature-Timestamp', maxAgeSec: 60, subject: 'grafana' },
    ...hooks,
  }
  return raw
}

export function nodeHooksTarget(opts: { dbFile?: string; queue?: NodeGatewayOptions['queue'] } = {}): MakeHooksTarget {
  return (world, raw) =>
    startNodeTarget(world, raw, secrets, {
      ...(opts.dbFile ? { operationsDb: opts.dbFile } : {}),
      queue: { sweepMs: 200, ...opts.queue },
    })
}

/** A throwaway directory for sqlite files. */
export function tempDir(): { dir: string; remove(): void } {
  const dir = mkdtempSync(join(tmpdir(), 'cp-hooks-'))
  return { dir, remove: () => rmSync(dir, { recursive: true, force: true }) }
}

export const workerHooksTarget: (world: World, raw: Record<string, unknown>) => Promise<WorkerHooksTarget> = async (world, raw) => {
  const gw = await startWorkerGateway({ ...worldBindings(world, raw, { GRAFANA_SECRET }), bindings: { d1: true, queues: true } })
  return {
    name: 'workerd',
    url: gw.url,
    logs: gw.logs,
    fetch: gw.fetch,
    close: gw.close,
    d1: async () => (await gw.mf.getD1Database('OPERATIONS_DB')) as unknown as D1Like,
    cron: async () => {
      const worker = (await gw.mf.getWorker()) as unknown as { scheduled(o: { cron: string }): Promise<unknown> }
      await worker.scheduled({ cron: '* * * * *' })
    },
  }
}
