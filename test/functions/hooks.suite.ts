/**
 * The webhook suite: the same tests against Node (node:sqlite + in-process queue) and workerd
 * (D1 + Queues in miniflare), with the fake agent. Assertions are on status, `code`, outcomes
 * and states — never on message text. Waits are bounded: operations are polled ≤ 10 s.
 */
import assert from 'node:assert/strict'
import { after, before, describe, it } from 'node:test'
import { makeWorld, type World } from '../support/gateway/fixtures.ts'
import { FAKE_RUNTIME_LOG } from '../support/gateway/fake-agent.ts'
import type { GatewayUnderTest } from '../support/gateway/targets.ts'
import { alertmanagerPayload, grafanaPayload, grafanaSignature, uniqueFingerprint, type AlertSpec } from '../support/gateway/hooks-payloads.ts'
import { AM_CLIENT, GRAFANA_SECRET, hooksConfig, type MakeHooksTarget } from '../support/gateway/hooks-targets.ts'

interface Summary {
  index: number
  outcome: 'accepted' | 'duplicate' | 'skipped'
  operation?: string
  reason?: string
  label?: string
  field?: string
}
interface HookAnswer {
  accepted: number
  duplicate: number
  skipped: number
  truncatedAlerts: number
  alerts: Summary[]
}
export interface OperationView {
  id: string
  state: string
  node?: string
  attempts: number
  reason?: string
  archive?: { name: string; size: number; sha256: string }
  download?: string
  error?: { code: string; status: number; attempts: number; message?: string; runtimeLog?: string[] }
}

let ns = 0
/** A namespace no other test uses, so cooldowns never cross tests. */
const freshNs = () => `shop-${process.pid % 1000}-${++ns}`

export function firing(namespace: string, pod: string, extra: Record<string, string> = {}): AlertSpec {
  return { labels: { alertname: 'ContainerCompromised', checkpoint: 'true', namespace, pod, container: 'app', ...extra } }
}

/** Polls an operation until `done` says so (≤ 30 s: three attempts through workerd's queue take ≈ 5 s idle). */
export async function waitFor(gw: GatewayUnderTest, token: string, id: string, done: (op: OperationView) => boolean = (op) => op.state === 'succeeded' || op.state === 'failed'): Promise<OperationView> {
  const deadline = Date.now() + 30_000
  for (;;) {
    const r = await gw.fetch(`/v1/operations/${id}`, { headers: { authorization: `Bearer ${token}` } })
    assert.equal(r.status, 200)
    const op = (await r.json()) as OperationView
    if (done(op)) return op
    if (Date.now() > deadline) assert.fail(`operation ${id} still ${op.state} after 30 s`)
    await new Promise((r) => setTimeout(r, 100))
  }
}

export function hooksSuite(make: MakeHooksTarget): void {
  let world: World
  let gw: GatewayUnderTest
  let am: string
  let reader: string
  let alice: string
  let noRead: string

  const hook = (source: 'alertmanager' | 'grafana', body: unknown, headers: Record<string, string> = { authorization: `Bearer ${am}` }) =>
    gw.fetch(`/v1/hooks/${source}`, { method: 'POST', headers: { 'content-type': 'application/json', ...headers }, body: typeof body === 'string' ? body : JSON.stringify(body), signal: AbortSignal.timeout(8000) })
  const answer = async (r: Response, status = 202) => {
    assert.equal(r.status, status, await r.clone().text())
    return (await r.json()) as HookAnswer
  }
  const code = async (r: Response) => ((await r.json()) as { code: string }).code

  before(async () => {
    world = await makeWorld()
    gw = await make(world, hooksConfig(world))
    am = await world.token({ sub: 'system:serviceaccount:monitoring:alertmanager', azp: AM_CLIENT, scope: 'checkpoint:create' })
    reader = await world.token({ sub: 'sam', groups: ['sre'], scope: 'checkpoint:read' })
    alice = await world.token({ sub: 'alice', scp: ['checkpoint:create', 'checkpoint:read'] })
    noRead = await world.token({ sub: 'sam', groups: ['sre'], scope: 'checkpoint:create' })
  })
  after(async () => {
    await gw?.close()
    await world?.close()
  })

  describe('alertmanager', () => {
    it('a firing alert becomes a checkpoint; resolved and unselected ones are skipped', async () => {
      const n = freshNs()
      const body = alertmanagerPayload([firing(n, 'web', { node: 'node-a' }), { ...firing(n, 'api'), status: 'resolved' }, { labels: { alertname: 'HighLatency', namespace: n, pod: 'db', container: 'app' } }])
      const a = await answer(await hook('alertmanager', body))
      assert.deepEqual(a.alerts.map((x) => [x.outcome, x.reason]), [['accepted', undefined], ['skipped', 'resolved'], ['skipped', 'not_selected']])
      assert.deepEqual([a.accepted, a.duplicate, a.skipped], [1, 0, 2])
      const op = await waitFor(gw, reader, a.alerts[0]!.operation!)
      assert.equal(op.state, 'succeeded')
      assert.equal(op.node, 'node-a')
      assert.equal(op.attempts, 1)
      assert.match(op.archive!.sha256, /^[0-9a-f]{64}$/)
      assert.equal(op.archive!.size, 4096)
      assert.equal(op.download, `/v1/clusters/prod/nodes/node-a/checkpoints/${encodeURIComponent(op.archive!.name)}?namespace=${n}`)
      const seen = world.agent.seen.filter((s) => s.path === `/checkpoint/${n}/web/app`)
      assert.equal(seen.length, 1)
      assert.equal(seen[0]!.claims?.sub, 'system:serviceaccount:monitoring:alertmanager')
      assert.equal(seen[0]!.requestId, op.id)
    })

    it('alerts without their own status take the notification\'s; an odd alert is skipped alone, never a 400', async () => {
      const n = freshNs()
      const body = alertmanagerPayload([firing(n, 'web', { node: 'node-a' }), firing(n, 'api', { node: 'node-a' })])
      const alerts = body.alerts as Array<Record<string, unknown>>
      for (const a of alerts) delete a.status
      alerts.push({ labels: { alertname: 'Odd' }, startsAt: 'not a time' })
      const a = await answer(await hook('alertmanager', body))
      assert.deepEqual(a.alerts.map((x) => [x.outcome, x.reason, x.field]), [['accepted', undefined, undefined], ['accepted', undefined, undefined], ['skipped', 'invalid_alert', 'alerts[2].startsAt']])
      for (const x of a.alerts.slice(0, 2)) assert.equal((await waitFor(gw, reader, x.operation!)).state, 'succeeded')
    })

    it('without a node label the node comes from the Kubernetes API', async () => {
      const n = freshNs()
      const a = await answer(await hook('alertmanager', alertmanagerPayload([firing(n, 'web')])))
      const op = await waitFor(gw, reader, a.alerts[0]!.operation!)
      assert.equal(op.state, 'succeeded')
      assert.equal(op.node, 'node-b')
    })

    it('alertname in the selector list acts without the checkpoint label', async () => {
      const n = freshNs()
      const a = await answer(await hook('alertmanager', alertmanagerPayload([{ labels: { alertname: 'ShellSpawned', namespace: n, pod: 'web', container: 'app', node: 'node-a' } }])))
      assert.equal(a.alerts[0]!.outcome, 'accepted')
    })

    it('a repeated notification is a duplicate of the same operation; one checkpoint in all', async () => {
      const n = freshNs()
      const body = alertmanagerPayload([firing(n, 'web', { node: 'node-a' })])
      const first = await answer(await hook('alertmanager', body))
      const second = await answer(await hook('alertmanager', body), 200)
      assert.equal(second.alerts[0]!.outcome, 'duplicate')
      assert.equal(second.alerts[0]!.operation, first.alerts[0]!.operation)
      await waitFor(gw, reader, first.alerts[0]!.operation!)
      const third = await answer(await hook('alertmanager', body), 200)
      assert.equal(third.alerts[0]!.operation, first.alerts[0]!.operation)
      assert.equal(world.agent.seen.filter((s) => s.path === `/checkpoint/${n}/web/app`).length, 1)
    })

    it('a new instance of the alert on the same container within the cooldown is skipped', async () => {
      const n = freshNs()
      const a = await answer(await hook('alertmanager', alertmanagerPayload([firing(n, 'web', { node: 'node-a' })])))
      const again = { ...firing(n, 'web', { node: 'node-a' }), startsAt: '2026-11-25T11:00:00.000Z' }
      const b = await answer(await hook('alertmanager', alertmanagerPayload([again])), 200)
      assert.equal(b.alerts[0]!.outcome, 'skipped')
      assert.equal(b.alerts[0]!.reason, 'cooldown')
      const skipped = await waitFor(gw, reader, b.alerts[0]!.operation!, () => true)
      assert.equal(skipped.state, 'skipped')
      assert.equal(skipped.reason, 'cooldown')
      await waitFor(gw, reader, a.alerts[0]!.operation!)
    })

    it('an alert storm starts at most maxPerNotification checkpoints', async () => {
      const n = freshNs()
      const alerts = Array.from({ length: 6 }, (_, i) => firing(n, `web-${i}`, { node: 'node-a' }))
      const a = await answer(await hook('alertmanager', alertmanagerPayload(alerts)))
      assert.deepEqual(a.alerts.map((x) => x.outcome), ['accepted', 'accepted', 'accepted', 'skipped', 'skipped', 'skipped'])
      assert.ok(a.alerts.slice(3).every((x) => x.reason === 'storm'))
      for (const x of a.alerts.slice(0, 3)) assert.equal((await waitFor(gw, reader, x.operation!)).state, 'succeeded')
    })

    it('a retried notification counts its duplicates toward the cap: no alerts beyond it start', async () => {
      const n = freshNs()
      const alerts = Array.from({ length: 6 }, (_, i) => firing(n, `web-${i}`, { node: 'node-a' }))
      const body = alertmanagerPayload(alerts)
      const first = await answer(await hook('alertmanager', body))
      // The sender saw a 5xx (say) and delivers the same notification again.
      const again = await answer(await hook('alertmanager', body), 200)
      assert.deepEqual(again.alerts.map((x) => x.outcome), ['duplicate', 'duplicate', 'duplicate', 'skipped', 'skipped', 'skipped'])
      assert.ok(again.alerts.slice(3).every((x) => x.reason === 'storm'))
      assert.deepEqual(again.alerts.slice(0, 3).map((x) => x.operation), first.alerts.slice(0, 3).map((x) => x.operation))
      for (const x of first.alerts.slice(0, 3)) await waitFor(gw, reader, x.operation!)
      assert.equal(world.agent.seen.filter((s) => s.path.startsWith(`/checkpoint/${n}/`)).length, 3)
    })

    it('alerts without a usable target are skipped with the label at fault', async () => {
      const n = freshNs()
      const alerts: AlertSpec[] = [
        { labels: { alertname: 'X', checkpoint: 'true', pod: 'web', container: 'app' } },
        { labels: { alertname: 'X', checkpoint: 'true', namespace: n, container: 'app' } },
        { labels: { alertname: 'X', checkpoint: 'true', namespace: n, pod: 'web' } },
        firing(n, 'Bad_Pod'),
        firing(n, 'web', { cluster: 'nowhere' }),
        firing(n, 'web', { cluster: 'edge' }),
        firing('kube-system', 'web', { node: 'node-a' }),
      ]
      const a = await answer(await hook('alertmanager', alertmanagerPayload(alerts)), 200)
      assert.deepEqual(
        a.alerts.map((x) => [x.reason, x.label]),
        [
          ['missing_label', 'namespace'],
          ['missing_label', 'pod'],
          ['missing_label', 'container'],
          ['invalid_label', 'pod'],
          ['unknown_cluster', 'cluster'],
          ['missing_label', 'node'],
          ['forbidden', undefined],
        ],
      )
    })

    it('tolerates unknown keys and reports truncatedAlerts', async () => {
      const n = freshNs()
      const body = alertmanagerPayload([firing(n, 'web', { node: 'node-a' })], { truncatedAlerts: 7, notification_reason: 'new_alerts', routeLabels: { team: 'shop' }, somethingNew: [1, 2] })
      const a = await answer(await hook('alertmanager', body))
      assert.equal(a.truncatedAlerts, 7)
      assert.equal(a.accepted, 1)
    })

    it('an agent that stays unreachable fails after the last attempt', async () => {
      const n = freshNs()
      const a = await answer(await hook('alertmanager', alertmanagerPayload([firing(n, 'web', { cluster: 'dead', node: 'node-a' })])))
      const op = await waitFor(gw, reader, a.alerts[0]!.operation!, (o) => o.state === 'failed')
      assert.equal(op.error?.code, 'bad_gateway')
      assert.equal(op.attempts, 3)
      assert.equal(op.error?.attempts, 3)
    })

    it('an agent 503 is retried; a 404 is final at once', async () => {
      const n = freshNs()
      const a = await answer(await hook('alertmanager', alertmanagerPayload([firing(n, 'fail-503', { node: 'node-a' }), firing(n, 'fail-404', { node: 'node-a' })])))
      const [busy, gone] = await Promise.all(a.alerts.map((x) => waitFor(gw, reader, x.operation!, (o) => o.state === 'failed')))
      assert.deepEqual([busy!.error?.code, busy!.attempts], ['runtime_unavailable', 3])
      assert.deepEqual([gone!.error?.code, gone!.attempts], ['container_not_found', 1])
      assert.equal(world.agent.seen.filter((s) => s.path === `/checkpoint/${n}/fail-503/app`).length, 3)
    })

    it('a failed dump is retried (the agent kept nothing); a timeout is final (its archive is kept)', async () => {
      const n = freshNs()
      const pods = ['flaky-dump', 'stream-fail', 'stream-timeout']
      const a = await answer(await hook('alertmanager', alertmanagerPayload(pods.map((p) => firing(n, p, { node: 'node-a' })))))
      const ops = await Promise.all(a.alerts.map((x) => waitFor(gw, reader, x.operation!, (o) => o.state === 'failed' || o.state === 'succeeded')))
      assert.deepEqual(
        ops.map((o) => [o.state, o.attempts, o.error?.code]),
        [['succeeded', 2, undefined], ['failed', 3, 'checkpoint_failed'], ['failed', 1, 'timeout']],
      )
      assert.deepEqual(ops[1]!.error?.runtimeLog, FAKE_RUNTIME_LOG, "the operation keeps the runtime's log lines")
      assert.deepEqual(pods.map((p) => world.agent.seen.filter((s) => s.path === `/checkpoint/${n}/${p}/app`).length), [2, 3, 1])
    })
  })

  describe('agent refusals', () => {
    it("the agent refusing the gateway's grant is a 502 for jobs too: retried (key rotation lag), then failed", async () => {
      const n = freshNs()
      const a = await answer(await hook('alertmanager', alertmanagerPayload([firing(n, 'fail-grant', { node: 'node-a' })])))
      const op = await waitFor(gw, reader, a.alerts[0]!.operation!, (o) => o.state === 'failed')
      assert.deepEqual([op.error?.code, op.error?.status, op.attempts], ['bad_gateway', 502, 3])
    })
  })

  describe('bad requests', () => {
    it('no token is 401', async () => {
      const r = await hook('alertmanager', alertmanagerPayload([]), {})
      assert.equal(r.status, 401)
      assert.equal(await code(r), 'unauthenticated')
    })
    it('malformed JSON is 400 invalid_body', async () => {
      const r = await hook('alertmanager', '{"version":"4","alerts":[')
      assert.equal(r.status, 400)
      assert.equal(await code(r), 'invalid_body')
    })
    for (const [name, body, field] of [
      ['wrong version', { ...alertmanagerPayload([]), version: '3' }, 'version'],
      ['alerts not a list', { ...alertmanagerPayload([]), alerts: {} }, 'alerts'],
    ] as const) {
      it(`${name} is 400 with the field`, async () => {
        const r = await hook('alertmanager', body)
        assert.equal(r.status, 400)
        const p = (await r.json()) as { code: string; field: string }
        assert.deepEqual([p.code, p.field], ['invalid_body', field])
      })
    }
    for (const [name, body, field] of [
      ['bad alert status', alertmanagerPayload([{ labels: {}, status: 'pending' as 'firing' }]), 'alerts[0].status'],
      ['labels not strings', alertmanagerPayload([{ labels: { pod: 3 as unknown as string } }]), 'alerts[0].labels'],
    ] as const) {
      it(`${name}: that alert is skipped as invalid_alert with the field (200, not 400)`, async () => {
        const a = await answer(await hook('alertmanager', body), 200)
        assert.deepEqual(a.alerts.map((x) => [x.outcome, x.reason, x.field]), [['skipped', 'invalid_alert', field]])
      })
    }
    it('a body over the limit is 413 payload_too_large', async () => {
      const big = alertmanagerPayload([firing('shop-x', 'web', { padding: 'x'.repeat(70_000) })])
      const r = await hook('alertmanager', big)
      assert.equal(r.status, 413)
      assert.equal(await code(r), 'payload_too_large')
    })
    it('an empty notification is 200 with nothing accepted', async () => {
      const a = await answer(await hook('alertmanager', alertmanagerPayload([])), 200)
      assert.deepEqual([a.accepted, a.alerts.length], [0, 0])
    })
  })

  describe('grafana', () => {
    const now = () => Math.floor(Date.now() / 1000)
    it('a valid HMAC signature with a fresh timestamp is accepted', async () => {
      const n = freshNs()
      const body = JSON.stringify(grafanaPayload([firing(n, 'web', { node: 'node-a' })]))
      const a = await answer(await hook('grafana', body, grafanaSignature(GRAFANA_SECRET, body, now())))
      const op = await waitFor(gw, reader, a.alerts[0]!.operation!)
      assert.equal(op.state, 'succeeded')
      assert.equal(world.agent.seen.find((s) => s.path === `/checkpoint/${n}/web/app`)?.claims?.sub, 'grafana')
    })
    it('a bearer token works too', async () => {
      const n = freshNs()
      const a = await answer(await hook('grafana', grafanaPayload([firing(n, 'web', { node: 'node-a' })])))
      assert.equal(a.accepted, 1)
    })
    const bad: Array<[string, (body: string) => Record<string, string>]> = [
      ['a wrong secret', (b) => grafanaSignature('not-the-secret', b, now())],
      ['a signature over another body', (b) => grafanaSignature(GRAFANA_SECRET, b + ' ', now())],
      ['a stale timestamp', (b) => grafanaSignature(GRAFANA_SECRET, b, now() - 600)],
      ['a timestamp other than the one signed', (b) => ({ ...grafanaSignature(GRAFANA_SECRET, b, now()), 'X-Grafana-Alerting-Signature-Timestamp': String(now() - 1) })],
      ['no timestamp', (b) => grafanaSignature(GRAFANA_SECRET, b)],
      ['a malformed signature', () => ({ 'X-Grafana-Alerting-Signature': 'zz', 'X-Grafana-Alerting-Signature-Timestamp': String(now()) })],
    ]
    for (const [name, sign] of bad) {
      it(`${name} is 401`, async () => {
        const n = freshNs()
        const body = JSON.stringify(grafanaPayload([firing(n, 'web', { node: 'node-a' })]))
        const r = await hook('grafana', body, sign(body))
        assert.equal(r.status, 401)
        assert.equal(await code(r), 'unauthenticated')
      })
    }
    it('a signed request is limited to what policy allows the grafana identity', async () => {
      const body = JSON.stringify(grafanaPayload([firing('pay', 'web', { node: 'node-a' })]))
      const a = await answer(await hook('grafana', body, grafanaSignature(GRAFANA_SECRET, body, now())), 200)
      assert.equal(a.alerts[0]!.reason, 'forbidden')
    })
    it('the Alertmanager route does not take Grafana signatures', async () => {
      const body = JSON.stringify(alertmanagerPayload([]))
      const r = await hook('alertmanager', body, grafanaSignature(GRAFANA_SECRET, body, now()))
      assert.equal(r.status, 401)
    })
  })

  describe('operations API', () => {
    let id: string
    let n: string
    before(async () => {
      n = freshNs()
      const a = await answer(await hook('alertmanager', alertmanagerPayload([{ labels: { alertname: 'CryptoMinerDetected', namespace: n, pod: 'miner', container: 'app', node: 'node-a' } }])))
      id = a.alerts[0]!.operation!
      await waitFor(gw, reader, id)
    })
    const list = async (q: string, token = reader) => {
      const r = await gw.fetch(`/v1/operations?${q}`, { headers: { authorization: `Bearer ${token}` } })
      assert.equal(r.status, 200)
      return ((await r.json()) as { items: OperationView[] }).items
    }
    it('lists by cluster, namespace, alert and state', async () => {
      assert.deepEqual((await list(`cluster=prod&namespace=${n}`)).map((o) => o.id), [id])
      assert.deepEqual((await list(`namespace=${n}&alert=CryptoMinerDetected&state=succeeded`)).map((o) => o.id), [id])
      assert.deepEqual(await list(`namespace=${n}&state=failed`), [])
      assert.deepEqual(await list(`namespace=${n}&alert=Other`), [])
    })
    it('filters what the caller may not read', async () => {
      assert.deepEqual(await list(`namespace=${n}`, alice), [])
      const r = await gw.fetch(`/v1/operations/${id}`, { headers: { authorization: `Bearer ${alice}` } })
      assert.equal(r.status, 403)
      assert.equal(await code(r), 'forbidden')
    })
    it('needs the read scope', async () => {
      const r = await gw.fetch(`/v1/operations?namespace=${n}`, { headers: { authorization: `Bearer ${noRead}` } })
      assert.equal(r.status, 403)
      const r2 = await gw.fetch(`/v1/operations?cluster=prod`, { headers: { authorization: `Bearer ${noRead}` } })
      assert.equal(r2.status, 403)
    })
    it('unknown id is 404, bad query is 400, no token is 401', async () => {
      const r = await gw.fetch(`/v1/operations/00000000-0000-4000-8000-000000000000`, { headers: { authorization: `Bearer ${reader}` } })
      assert.equal(r.status, 404)
      assert.equal(await code(r), 'not_found')
      for (const q of ['state=done', 'limit=0', 'cluster=Bad!', 'color=red']) {
        const b = await gw.fetch(`/v1/operations?${q}`, { headers: { authorization: `Bearer ${reader}` } })
        assert.equal(b.status, 400, q)
        assert.equal(await code(b), q.startsWith('cluster') ? 'invalid_name' : 'invalid_query')
      }
      const u = await gw.fetch(`/v1/operations/${id}`)
      assert.equal(u.status, 401)
    })
  })
}

export { uniqueFingerprint }
