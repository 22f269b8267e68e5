// The alert webhooks end to end: an Alertmanager-shaped firing alert for a real running container
// → the gateway's Worker bundle in miniflare (real workerd, D1 and Queues bound as wrangler.toml
// binds them) → the queue consumer → a `network` service binding with a client certificate (mTLS)
// → the real agent → a real containerd 2.x + runc + CRIU (test/support/stack.ts). The alerts carry
// no node label, as real ones do not: the node comes from the cluster's Kubernetes API (the
// stack's fake one on loopback answers the pod's spec.nodeName).
// Asserts on statuses, codes, outcomes and states, never on message text. Every wait is bounded.
// Never skips: if the stack cannot start, `before` fails and so does every test, with the reason.
//
//   node_modules/.bin/node --test test/e2e/hooks.e2e.test.ts
import { after, before, describe, it } from 'node:test'
import { zstdDecompressSync } from 'node:zlib'
import { ageDecrypt, generateIdentity } from '../../agent/seal/age.ts'
import assert from 'node:assert/strict'
import { createHash } from 'node:crypto'
import { writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import type { Target } from '../../shared/names.ts'
import type { OperationView as BaseView } from '../functions/hooks.suite.ts'
import { alertmanagerPayload, grafanaPayload, grafanaSignature, uniqueFingerprint, type AlertSpec } from '../support/gateway/hooks-payloads.ts'
import { removeBundle } from '../support/gateway/targets.ts'
import { counter, undumpable } from '../runtime/workloads.ts'
import { CLUSTER, startStack, type Stack } from '../support/stack.ts'

const investigator = generateIdentity()
const NS = 'hooks-e2e'
/** Does not fork while it runs (../runtime/workloads.ts). */
const COUNTER = counter()
/** The container the Alertmanager alert names, and the one the Grafana alert names. */
const AM_POD: Target = { namespace: NS, pod: 'shop-web', container: 'web' }
const GF_POD: Target = { namespace: NS, pod: 'shop-worker', container: 'worker' }
/** A container CRIU always refuses to dump (../runtime/workloads.ts undumpable). */
const GHOST_POD: Target = { namespace: NS, pod: 'shop-ghost', container: 'app' }
const GRAFANA_SECRET = `grafana-e2e-${process.pid}-${Date.now()}`
const TS_HEADER = 'X-Grafana-Alerting-Signature-Timestamp'
const HOOKS = {
  select: [{ checkpoint: 'true' }],
  defaultCluster: CLUSTER,
  cooldownSec: 60,
  maxPerNotification: 3,
  timeoutSec: 60,
  retry: { maxAttempts: 3, baseDelayMs: 500, maxDelayMs: 2000 },
  grafana: { secretName: 'GRAFANA_SECRET', timestampHeader: TS_HEADER, maxAgeSec: 60, subject: 'grafana' },
}
const POLICY = [
  { id: 'alertmanager', subjects: ['alertmanager'], actions: ['create'], clusters: [CLUSTER], namespaces: [NS] },
  { id: 'grafana', subjects: ['grafana'], actions: ['create'], clusters: [CLUSTER], namespaces: [NS] },
]
/** How long an operation may take from webhook to succeeded. */
const OPERATION_MS = 30_000

/** The webhook's answer: counts, and one summary per alert (functions/hooks/routes.ts AlertSummary). */
type HookAnswer = Record<'accepted' | 'duplicate' | 'skipped', number> & {
  alerts: Array<{ outcome: string; operation?: string; state?: string; reason?: string; label?: string }>
}
/** `GET /v1/operations/{id}` (functions/operations/routes.ts view()). */
interface OperationView extends BaseView, Target {
  source: string
  cluster: string
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms))
const sha256 = (b: Buffer) => createHash('sha256').update(b).digest('hex')
const archiveRe = (t: Target) =>
  new RegExp(`^checkpoint-${t.pod}_${t.namespace}-${t.container}-\\d{4}-\\d\\d-\\d\\dT\\d\\d:\\d\\d:\\d\\d(?:\\.\\d+)?Z\\.tar$`)
/** A firing alert as Prometheus rules label it: no node, no cluster (the hooks' defaultCluster). */
const firing = (t: Target, fingerprint: string, startsAt: string): AlertSpec => ({
  labels: { alertname: 'ContainerCompromised', severity: 'critical', checkpoint: 'true', namespace: t.namespace, pod: t.pod, container: t.container },
  fingerprint,
  startsAt,
})

describe('alert webhooks in workerd (D1 + Queues) → mTLS → agent → containerd', { timeout: 120_000 }, () => {
  let stack: Stack
  let am = ''
  let reader = ''
  let amPod: { podId: string; containerId: string }
  let gfPod: { podId: string; containerId: string }
  let ghostPod: { podId: string; containerId: string }
  /** The Alertmanager notification, sent twice byte for byte. */
  let amBody = ''
  let amOperation = ''
  let amArchive = ''
  let amAttempts = 0
  const timings: Record<string, string> = {}

  const post = (source: 'alertmanager' | 'grafana', body: string, headers: Record<string, string>) =>
    stack.fetch(`/v1/hooks/${source}`, { method: 'POST', headers: { 'content-type': 'application/json', ...headers }, body, signal: AbortSignal.timeout(10_000) })
  const get = (path: string) => stack.fetch(path, { headers: { authorization: `Bearer ${reader}` }, signal: AbortSignal.timeout(20_000) })
  const answer = async (res: Response, status: number): Promise<HookAnswer> => {
    const text = await res.text()
    assert.equal(res.status, status, text)
    return JSON.parse(text) as HookAnswer
  }
  const operation = async (id: string): Promise<OperationView> => {
    const res = await get(`/v1/operations/${id}`)
    assert.equal(res.status, 200)
    return (await res.json()) as OperationView
  }
  /** Polls the operations API until the operation is finished (≤ OPERATION_MS). */
  const finished = async (id: string): Promise<OperationView> => {
    const deadline = Date.now() + OPERATION_MS
    for (;;) {
      const op = await operation(id)
      if (op.state === 'succeeded' || op.state === 'failed') return op
      if (Date.now() > deadline) assert.fail(`operation ${id} still ${op.state} after ${OPERATION_MS} ms`)
      await sleep(200)
    }
  }
  const archivesOf = async (t: Target) => (await stack.agent.store.list()).filter((a) => a.namespace === t.namespace && a.pod === t.pod && a.container === t.container)
  /** A succeeded operation for `t` on the stack's node, with its archive where the agent keeps it. */
  const assertSucceeded = async (op: OperationView, t: Target, source: string) => {
    if (op.state !== 'succeeded') assert.fail(JSON.stringify(op.error)) // with runtimeLog for a failed dump
    assert.equal(op.source, source)
    assert.deepEqual({ cluster: op.cluster, namespace: op.namespace, pod: op.pod, container: op.container }, { cluster: CLUSTER, ...t })
    assert.equal(op.node, stack.node, 'the node came from the Kubernetes API')
    // 1 unless CRIU failed a dump and the runner retried it (the agent keeps nothing from a failed dump).
    assert.ok(op.attempts >= 1 && op.attempts <= HOOKS.retry.maxAttempts, `attempts ${op.attempts}`)
    if (op.attempts > 1) console.log(`# ${source} operation needed ${op.attempts} attempts`)
    assert.ok(op.archive)
    assert.match(op.archive.name, archiveRe(t))
    assert.ok(Number.isInteger(op.archive.size) && op.archive.size > 0)
    assert.match(op.archive.sha256, /^[0-9a-f]{64}$/)
    assert.equal(op.download, `/v1/clusters/${CLUSTER}/nodes/${stack.node}/checkpoints/${encodeURIComponent(op.archive.name)}?namespace=${t.namespace}`)
    const kept = await archivesOf(t)
    assert.deepEqual(kept.map((a) => a.name), [op.archive.name], 'exactly one archive for the container')
    assert.equal(kept[0]!.sha256, op.archive.sha256)
  }
  /** Downloads an operation's archive through the gateway; checks its digest; returns the bytes. */
  const download = async (op: OperationView): Promise<Buffer> => {
    const res = await get(op.download!)
    const bytes = Buffer.from(await res.arrayBuffer())
    assert.equal(res.status, 200)
    assert.equal(res.headers.get('content-type'), 'application/x-tar')
    assert.equal(res.headers.get('etag'), `"${op.archive!.sha256}"`)
    assert.equal(bytes.length, op.archive!.size)
    assert.equal(sha256(bytes), op.archive!.sha256)
    return bytes
  }

  before(async () => {
    const t0 = performance.now()
    stack = await startStack({ hooks: { ...HOOKS, store: 'vault' }, vault: { recipients: [investigator.recipient] }, policyRules: POLICY, secrets: { GRAFANA_SECRET }, log: (line) => console.log(`# stack: ${line}`) })
    timings['stack start (containerd, registry, image, PKI, agent, kube API, workerd + D1 + Queues)'] = `${Math.round(performance.now() - t0)} ms`
    ;[amPod, gfPod, ghostPod] = await Promise.all([
      stack.runPod({ ...AM_POD, command: ['sh', '-c', COUNTER] }),
      stack.runPod({ ...GF_POD, command: ['sh', '-c', COUNTER] }),
      stack.runPod({ ...GHOST_POD, command: ['sh', '-c', undumpable()] }),
    ])
    am = await stack.mintToken(['checkpoint:create'], { sub: 'alertmanager', expiresInSec: 600 })
    reader = await stack.mintToken(['checkpoint:read'], { expiresInSec: 600 })
  })

  after(async () => {
    await stack?.stop() // never throws: it logs what failed to stop
    removeBundle()
    for (const [k, v] of Object.entries(timings)) console.log(`# timing ${k}: ${v}`)
  })

  it('an Alertmanager firing alert yields one archive, visible through the operations API and downloadable', async () => {
    const startsAt = new Date().toISOString()
    const incomplete = firing(AM_POD, uniqueFingerprint(), startsAt)
    delete incomplete.labels.container
    amBody = JSON.stringify(alertmanagerPayload([firing(AM_POD, uniqueFingerprint(), startsAt), incomplete]))
    const t0 = performance.now()
    const res = await answer(await post('alertmanager', amBody, { authorization: `Bearer ${am}` }), 202)
    timings['webhook answer'] = `${Math.round(performance.now() - t0)} ms`
    assert.deepEqual([res.accepted, res.duplicate, res.skipped], [1, 0, 1])
    const [first, second] = res.alerts
    assert.equal(first!.outcome, 'accepted')
    assert.equal(first!.state, 'queued')
    assert.match(first!.operation ?? '', /^[0-9a-f-]{36}$/)
    assert.deepEqual({ outcome: second!.outcome, reason: second!.reason, label: second!.label, operation: second!.operation }, { outcome: 'skipped', reason: 'missing_label', label: 'container', operation: undefined })
    amOperation = first!.operation!

    const op = await finished(amOperation)
    timings['webhook to operation succeeded (queue, kube lookup, checkpoint)'] = `${Math.round(performance.now() - t0)} ms`
    await assertSucceeded(op, AM_POD, 'alertmanager')
    amArchive = op.archive!.name
    amAttempts = op.attempts

    // The operations list shows it too.
    const list = await get(`/v1/operations?cluster=${CLUSTER}&namespace=${NS}`)
    assert.equal(list.status, 200)
    const items = ((await list.json()) as { items: OperationView[] }).items
    assert.deepEqual(items.filter((i) => i.id === amOperation).map((i) => [i.state, i.archive?.sha256]), [['succeeded', op.archive!.sha256]])

    const file = join(stack.dir, 'alertmanager.tar')
    await writeFile(file, await download(op))
    const shown = await stack.runtime!.checkpointctl(['show', file])
    assert.match(shown, new RegExp(amPod.containerId.slice(0, 12)))

    // hooks.store: the alert's archive was sealed and stored too; the evidence decrypts to it.
    const stored = (op as OperationView & { stored?: { key: string } }).stored
    assert.equal(stored?.key, `${CLUSTER}/${AM_POD.namespace}/${AM_POD.pod}/${AM_POD.container}/${op.archive!.name}.zst.age`, JSON.stringify(op))
    const issued = (await (await get(`/v1/evidence/${stored!.key}`)).json()) as { url: string }
    const sealed = Buffer.from(await (await fetch(issued.url)).arrayBuffer())
    const plain: Buffer[] = []
    for await (const c of ageDecrypt([sealed], [investigator.identity])) plain.push(c)
    assert.equal(sha256(zstdDecompressSync(Buffer.concat(plain))), op.archive!.sha256)
  })

  it('the same notification again is a duplicate of the same operation, and no second checkpoint is taken', async () => {
    assert.ok(amOperation, 'needs the first notification')
    const res = await answer(await post('alertmanager', amBody, { authorization: `Bearer ${am}` }), 200)
    assert.deepEqual([res.accepted, res.duplicate, res.skipped], [0, 1, 1])
    assert.deepEqual(
      res.alerts.map((a) => [a.outcome, a.operation, a.state ?? a.reason]),
      [['duplicate', amOperation, 'succeeded'], ['skipped', undefined, 'missing_label']],
    )
    // Longer than the queue's batch timeout (1 s): a message it had been sent would have run.
    await sleep(2_500)
    assert.deepEqual((await archivesOf(AM_POD)).map((a) => a.name), [amArchive])
    const op = await operation(amOperation)
    assert.equal(op.state, 'succeeded')
    assert.equal(op.attempts, amAttempts)
    const accepted = stack.agentLogs.filter((l) => l.msg === 'checkpoint accepted' && l.containerId === amPod.containerId)
    assert.equal(accepted.length, amAttempts, 'one checkpoint request per attempt reached the agent, none for the redelivery')
  })

  it('a Grafana notification with a valid HMAC checkpoints a second container; a bad one is refused', async () => {
    const body = JSON.stringify(grafanaPayload([firing(GF_POD, uniqueFingerprint(), new Date().toISOString())]))
    const ts = Math.floor(Date.now() / 1000)

    const forged = grafanaSignature(`${GRAFANA_SECRET}-not`, body, ts)
    const refused = await post('grafana', body, forged)
    assert.equal(refused.status, 401)
    assert.equal(((await refused.json()) as { code: string }).code, 'unauthenticated')

    const t0 = performance.now()
    const res = await answer(await post('grafana', body, grafanaSignature(GRAFANA_SECRET, body, ts)), 202)
    assert.deepEqual([res.accepted, res.duplicate, res.skipped], [1, 0, 0])
    assert.equal(res.alerts[0]!.outcome, 'accepted')
    const op = await finished(res.alerts[0]!.operation!)
    timings['Grafana webhook to operation succeeded'] = `${Math.round(performance.now() - t0)} ms`
    await assertSucceeded(op, GF_POD, 'grafana')
    await download(op)
    // The first container still has its one archive.
    assert.deepEqual((await archivesOf(AM_POD)).map((a) => a.name), [amArchive])
    assert.notEqual(gfPod.containerId, amPod.containerId)
  })

  it('a dump the runtime refuses is retried up to the last attempt, then failed; no archive, the container still runs', async () => {
    const body = JSON.stringify(alertmanagerPayload([firing(GHOST_POD, uniqueFingerprint(), new Date().toISOString())]))
    const res = await answer(await post('alertmanager', body, { authorization: `Bearer ${am}` }), 202)
    assert.equal(res.alerts[0]!.outcome, 'accepted')
    const op = await finished(res.alerts[0]!.operation!)
    assert.deepEqual([op.state, op.error?.code, op.attempts], ['failed', 'checkpoint_failed', HOOKS.retry.maxAttempts], JSON.stringify(op.error))
    assert.ok(op.error?.runtimeLog?.some((l) => /ghost file/.test(l)), `CRIU's reason kept with the operation: ${JSON.stringify(op.error?.runtimeLog)}`)
    const accepted = stack.agentLogs.filter((l) => l.msg === 'checkpoint accepted' && l.containerId === ghostPod.containerId)
    assert.equal(accepted.length, HOOKS.retry.maxAttempts, 'one runtime attempt per operation attempt')
    assert.deepEqual(await archivesOf(GHOST_POD), [])
    const task = (await stack.runtime!.ctr(['-n', 'k8s.io', 'tasks', 'ls'])).split('\n').map((l) => l.trim().split(/\s+/)).find(([id]) => id === ghostPod.containerId)
    assert.equal(task?.[2], 'RUNNING', 'thawed after every failed dump')
  })
})
