/**
 * The admin API suite (/v1/admin/config): the same tests against the Node gateway (node:sqlite
 * file) and the Worker bundle in workerd (real D1), with the store source and with the variable.
 * A version "stored elsewhere" goes straight into the database, as another isolate or process
 * would write it. On Node the gateway's clock is moved past the refresh interval (so the cache is
 * seen to hold until then); in workerd the interval is short and real time passes.
 * Assertions are on status, `code`, headers, versions and summaries; the one message check is
 * that an invalid document's detail names the field at fault, which is the contract.
 */
import assert from 'node:assert/strict'
import { after, before, describe, it } from 'node:test'
import { capSummary, summarize } from '../../functions/admin/diff.ts'
import type { ConfigStore, ConfigSummary, SourceKind } from '../../functions/admin/model.ts'
import { etagOf } from '../../functions/admin/source.ts'
import { sqlConfigStore } from '../../functions/admin/store.ts'
import { loadGrantKeys } from '../../functions/grants.ts'
import { sqliteDriver } from '../../functions/node/sqlite.ts'
import { startNodeGateway } from '../../functions/node/start.ts'
import { d1Driver, type D1Like } from '../../functions/workers/d1.ts'
import { KUBE_TOKEN, makeWorld, type World } from '../support/gateway/fixtures.ts'
import { tempDir } from '../support/gateway/hooks-targets.ts'
import { startWorkerGateway, worldBindings, type GatewayUnderTest } from '../support/gateway/targets.ts'

export interface AdminTarget extends GatewayUnderTest {
  /** The interval the gateway asks the store for a newer version at. */
  refreshMs: number
  /** Node: moves the gateway's clock forward. Absent in workerd (real time, short interval). */
  advance?(ms: number): void
  /** The configuration versions as another isolate sees them: straight to the database. */
  versions(): Promise<ConfigStore>
}
export type MakeAdminTarget = (world: World, raw: Record<string, unknown>) => Promise<AdminTarget>

/** Node runs with a long interval and a movable clock; workerd with a short one. */
const NODE_REFRESH_MS = 60_000
const WORKER_REFRESH_MS = 1000
/** How much later than the interval a change may show in workerd (a request's own time, the D1 round trips). */
const SLACK_MS = 2000

const secrets = (n: string) => (n === 'KUBE_TOKEN_PROD' ? KUBE_TOKEN : undefined)

export function nodeAdminTarget(kind: SourceKind): MakeAdminTarget {
  return async (world, raw) => {
    const tmp = tempDir()
    const file = `${tmp.dir}/gateway.sqlite`
    const logs: Array<Record<string, unknown>> = []
    let offset = 0
    const gw = await startNodeGateway({
      source: { kind, document: structuredClone(raw), secret: secrets, refreshMs: NODE_REFRESH_MS },
      keys: await loadGrantKeys(world.grantKeys),
      client: { cert: world.pki.clientCert, key: world.pki.clientKey },
      port: 0,
      log: (l) => logs.push(l),
      clock: { now: () => Date.now() + offset },
      operationsDb: file,
    })
    // A second connection to the file: another process sharing the database.
    const other = sqliteDriver(file)
    return {
      name: `node (${kind})`,
      url: gw.url,
      logs,
      fetch: (path, init) => fetch(gw.url + path, init),
      refreshMs: NODE_REFRESH_MS,
      advance: (ms) => void (offset += ms),
      versions: async () => sqlConfigStore(other),
      async close() {
        await gw.close(2000)
        other.close()
        tmp.remove()
      },
    }
  }
}

export function workerAdminTarget(kind: SourceKind): MakeAdminTarget {
  return async (world, raw) => {
    const vars: Record<string, string> = kind === 'store' ? { GATEWAY_CONFIG_SOURCE: 'store', GATEWAY_CONFIG_REFRESH_MS: String(WORKER_REFRESH_MS) } : {}
    const gw = await startWorkerGateway({ ...worldBindings(world, raw, vars), bindings: { d1: true } })
    return {
      name: `workerd (${kind})`,
      url: gw.url,
      logs: gw.logs,
      fetch: gw.fetch,
      close: gw.close,
      refreshMs: WORKER_REFRESH_MS,
      versions: async () => sqlConfigStore(d1Driver((await gw.mf.getD1Database('OPERATIONS_DB')) as unknown as D1Like)),
    }
  }
}

const ADMINS = { id: 'admins', groups: ['config-admins'], actions: ['admin'], clusters: ['*'], namespaces: ['*'] }
const BOB_ADMIN = { id: 'bob-admin', subjects: ['bob'], actions: ['admin'], clusters: ['*'], namespaces: ['*'] }

type Doc = Record<string, any>
type Problem = { code: string; detail: string; missing?: string; etag?: string; source?: string }

/** The world's configuration with an admin rule: the seed of the store, or the variable. */
export function adminConfig(world: World): Doc {
  const raw = world.rawConfig() as Doc
  raw.policy.rules.push(ADMINS)
  return raw
}

/** Version 2: cluster lab added and rogue removed; rule ci removed, team-a given team-b, bob-admin added. */
function nextOf(seed: Doc): Doc {
  const next = structuredClone(seed)
  next.clusters.lab = structuredClone(next.clusters.edge)
  delete next.clusters.rogue
  next.policy.rules = next.policy.rules
    .filter((r: Doc) => r.id !== 'ci')
    .map((r: Doc) => (r.id === 'team-a' ? { ...r, namespaces: ['team-a', 'team-b'] } : r))
  next.policy.rules.push(BOB_ADMIN)
  return next
}

async function waitFor(cond: () => boolean, ms = 5000): Promise<void> {
  const end = Date.now() + ms
  while (!cond()) {
    if (Date.now() > end) throw new Error('condition not met in time')
    await new Promise((r) => setTimeout(r, 20))
  }
}

export function adminSuite(targets: { store: MakeAdminTarget; variable: MakeAdminTarget }): void {
  describe('store source', () => {
    let world: World
    let gw: AdminTarget
    let seed: Doc
    let next: Doc
    let ada: string
    let bob: string
    let noScope: string
    let noRule: string
    const etags: string[] = []

    const call = (token: string, method = 'GET', path = '/v1/admin/config', init: { body?: unknown; ifMatch?: string; requestId?: string } = {}) =>
      gw.fetch(path, {
        method,
        headers: {
          authorization: `Bearer ${token}`,
          ...(init.body !== undefined ? { 'content-type': 'application/json' } : {}),
          ...(init.ifMatch ? { 'if-match': init.ifMatch } : {}),
          ...(init.requestId ? { 'x-request-id': init.requestId } : {}),
        },
        ...(init.body !== undefined ? { body: typeof init.body === 'string' ? init.body : JSON.stringify(init.body) } : {}),
        signal: AbortSignal.timeout(10_000),
      })
    const put = (token: string, body: unknown, ifMatch?: string, query = '') => call(token, 'PUT', `/v1/admin/config${query}`, { body, ...(ifMatch ? { ifMatch } : {}) })
    const problem = async (r: Response, status: number, code: string): Promise<Problem> => {
      const text = await r.text()
      assert.equal(r.status, status, text)
      assert.match(r.headers.get('content-type') ?? '', /^application\/problem\+json/)
      const p = JSON.parse(text) as Problem
      assert.equal(p.code, code, text)
      return p
    }
    /** Whether bob may administer: the observable of which version this gateway serves. */
    const bobIsAdmin = async () => {
      const r = await call(bob)
      await r.body?.cancel()
      assert.ok(r.status === 200 || r.status === 403, `bob: ${r.status}`)
      return r.status === 200
    }

    before(async () => {
      world = await makeWorld()
      seed = adminConfig(world)
      next = nextOf(seed)
      gw = await targets.store(world, seed)
      ada = await world.token({ sub: 'ada', groups: ['config-admins'], scope: 'checkpoint:admin' })
      bob = await world.token({ sub: 'bob', scope: 'checkpoint:admin' })
      noScope = await world.token({ sub: 'ada', groups: ['config-admins'], scope: 'checkpoint:read checkpoint:create checkpoint:delete' })
      noRule = await world.token({ sub: 'sam', groups: ['sre'], scope: 'checkpoint:admin checkpoint:read checkpoint:create checkpoint:delete' })
    })
    after(async () => {
      await gw?.close()
      await world?.close()
    })

    it('GET answers the seed (GATEWAY_CONFIG) as version 1 with its ETag', async () => {
      const r = await call(ada)
      assert.equal(r.status, 200)
      const etag = r.headers.get('etag') ?? ''
      assert.match(etag, /^"1-[0-9a-f]{16}"$/)
      assert.equal(r.headers.get('x-config-version'), '1')
      assert.equal(r.headers.get('x-config-source'), 'store')
      assert.equal(r.headers.get('cache-control'), 'no-store')
      assert.deepEqual(await r.json(), seed)
      etags.push(etag)
    })

    it('a change without If-Match is 428 precondition_required', async () => {
      await problem(await put(ada, next), 428, 'precondition_required')
    })

    it('a dry run lists clusters, rules and permissions gained and lost, and stores nothing', async () => {
      const r = await put(ada, next, undefined, '?dryRun=true')
      assert.equal(r.status, 200)
      const body = (await r.json()) as { dryRun: boolean; base: { version: number; etag: string }; summary: ConfigSummary }
      assert.equal(body.dryRun, true)
      assert.deepEqual(body.base, { version: 1, etag: etags[0] })
      assert.deepEqual(body.summary.clusters, { added: ['lab'], removed: ['rogue'], changed: [] })
      assert.deepEqual(body.summary.rules, { added: ['bob-admin'], removed: ['ci'], changed: ['team-a'] })
      assert.deepEqual(body.summary.permissions, [
        // team-a changed: only the namespace it gained, on both its clusters, for both its actions
        { change: 'gained', caller: 'subject:alice', action: 'create', clusters: ['edge', 'prod'], namespaces: ['team-b'], rules: ['team-a'] },
        { change: 'gained', caller: 'subject:alice', action: 'read', clusters: ['edge', 'prod'], namespaces: ['team-b'], rules: ['team-a'] },
        // bob-admin added
        { change: 'gained', caller: 'subject:bob', action: 'admin', clusters: ['*'], namespaces: ['*'], rules: ['bob-admin'] },
        // ci removed
        { change: 'lost', caller: 'client:ci-bot', action: 'read', clusters: ['edge'], namespaces: ['ci-*'], rules: ['ci'] },
      ])
      assert.deepEqual(body.summary.sections, [])
      // With the current tag the dry run passes the precondition too; a stale one would not.
      assert.equal((await put(ada, next, etags[0], '?dryRun=true')).status, 200)
      const now = await call(ada)
      assert.equal(now.headers.get('etag'), etags[0], 'nothing was stored')
      await now.body?.cancel()
    })

    it('PUT with the ETag stores version 2 and it is active within the refresh bound', async () => {
      assert.equal(await bobIsAdmin(), false)
      const r = await put(ada, next, etags[0])
      assert.equal(r.status, 200)
      const body = (await r.json()) as { version: number; etag: string; summary: ConfigSummary }
      assert.equal(body.version, 2)
      assert.match(body.etag, /^"2-[0-9a-f]{16}"$/)
      assert.equal(r.headers.get('etag'), body.etag)
      assert.equal(r.headers.get('x-config-version'), '2')
      assert.deepEqual(body.summary.rules, { added: ['bob-admin'], removed: ['ci'], changed: ['team-a'] })
      etags.push(body.etag)
      // The isolate that stored it serves it from its next request (well within the bound, which
      // is the promise for every other isolate: the next test).
      assert.equal(await bobIsAdmin(), true)
      const got = await call(ada)
      assert.equal(got.headers.get('etag'), body.etag)
      assert.deepEqual(await got.json(), next)
    })

    it('a version stored by another isolate is served within the refresh bound, not before', async () => {
      const versions = await gw.versions()
      const third = structuredClone(next)
      third.policy.rules = third.policy.rules.filter((r: Doc) => r.id !== 'bob-admin')
      const document = JSON.stringify(third)
      const head = await versions.head()
      assert.equal(head?.version, 2)
      const stored = await versions.append({ version: 3, etag: await etagOf(3, document), document, author: 'other-isolate', createdAt: Date.now(), summary: capSummary(summarize(next, third)) })
      assert.equal(stored, true)
      etags.push((await versions.head())!.etag)
      if (gw.advance) {
        // Node: the clock stands still, so the version checked a moment ago is still served…
        assert.equal(await bobIsAdmin(), true, 'served from the isolate cache until the interval passes')
        gw.advance(gw.refreshMs)
        // …and the first request after the interval sees version 3.
        assert.equal(await bobIsAdmin(), false)
      } else {
        const start = Date.now()
        while (await bobIsAdmin()) {
          assert.ok(Date.now() - start < gw.refreshMs + SLACK_MS, `version 3 not active after ${Date.now() - start} ms`)
          await new Promise((res) => setTimeout(res, 100))
        }
      }
      await waitFor(() => gw.logs.some((l) => l.type === 'config_activated' && l.version === 3))
    })

    it('a stale If-Match is 412 precondition_failed, naming the newest tag', async () => {
      const p = await problem(await put(ada, next, etags[0]), 412, 'precondition_failed')
      assert.equal(p.etag, etags[2])
      // A weak tag never matches (strong comparison), even for the newest version.
      await problem(await put(ada, next, `W/${etags[2]}`), 412, 'precondition_failed')
    })

    it('an invalid document is 400 invalid_config naming the field, and never becomes active', async () => {
      const current = etags[2]!
      const badUrl = structuredClone(next)
      badUrl.clusters.lab.agentUrl = 'http://lab.example.net/{node}'
      const p1 = await problem(await put(ada, badUrl, current), 400, 'invalid_config')
      assert.ok(p1.detail.includes('clusters.lab.agentUrl'), p1.detail)
      const badAction = structuredClone(next)
      badAction.policy.rules[0].actions = ['create', 'write']
      const p2 = await problem(await put(ada, badAction, current), 400, 'invalid_config')
      assert.ok(p2.detail.includes(`${badAction.policy.rules[0].id}.actions`), p2.detail)
      const scopedAdmin = structuredClone(next)
      scopedAdmin.policy.rules.push({ id: 'half-admin', subjects: ['eve'], actions: ['admin'], clusters: ['prod'], namespaces: ['*'] })
      const p3 = await problem(await put(ada, scopedAdmin, current, '?dryRun=true'), 400, 'invalid_config')
      assert.ok(p3.detail.includes('half-admin.actions'), p3.detail)
      const noAdmin = structuredClone(next)
      noAdmin.policy.rules = noAdmin.policy.rules.filter((r: Doc) => !r.actions.includes('admin'))
      const p4 = await problem(await put(ada, noAdmin, current), 400, 'invalid_config')
      assert.ok(p4.detail.includes('policy.rules'), p4.detail)
      await problem(await put(ada, '{"clusters": ', current), 400, 'invalid_config')
      const missingSecret = structuredClone(next)
      missingSecret.clusters.edge.kube = { apiUrl: world.kubeUrl, tokenSecret: 'KUBE_TOKEN_NOWHERE' }
      const p5 = await problem(await put(ada, missingSecret, current), 400, 'invalid_config')
      assert.ok(p5.detail.includes('clusters.edge.kube.tokenSecret'), p5.detail)

      // Nothing of it was stored or activated.
      const versions = await gw.versions()
      assert.equal((await versions.head())?.etag, current)
      gw.advance?.(gw.refreshMs)
      assert.equal(await bobIsAdmin(), false)
      const r = await call(ada)
      assert.equal(r.headers.get('etag'), current)
      await r.body?.cancel()
    })

    it('an unchanged document stores no version', async () => {
      const third = JSON.parse(JSON.stringify(next)) as Doc
      third.policy.rules = third.policy.rules.filter((r: Doc) => r.id !== 'bob-admin')
      const r = await put(ada, third, etags[2])
      assert.equal(r.status, 200)
      const body = (await r.json()) as { version: number; unchanged?: boolean }
      assert.equal(body.version, 3)
      assert.equal(body.unchanged, true)
    })

    it('the history lists every version newest first, with author, time and summary', async () => {
      const r = await call(ada, 'GET', '/v1/admin/config/history')
      assert.equal(r.status, 200)
      const h = (await r.json()) as { source: string; items: Array<{ version: number; etag: string; author: string; createdAt: string; summary: ConfigSummary }> }
      assert.equal(h.source, 'store')
      assert.deepEqual(h.items.map((i) => [i.version, i.author, i.etag]), [[3, 'other-isolate', etags[2]], [2, 'ada', etags[1]], [1, 'GATEWAY_CONFIG', etags[0]]])
      for (const i of h.items) assert.ok(!Number.isNaN(Date.parse(i.createdAt)), i.createdAt)
      assert.deepEqual(h.items[1]!.summary.rules, { added: ['bob-admin'], removed: ['ci'], changed: ['team-a'] })
      assert.deepEqual(h.items[0]!.summary.permissions.map((p) => [p.change, p.caller, p.action]), [['lost', 'subject:bob', 'admin']])
      assert.deepEqual(h.items[2]!.summary.clusters.added, ['dead', 'edge', 'prod', 'rogue'])
      const one = await call(ada, 'GET', '/v1/admin/config/history?limit=1')
      assert.deepEqual(((await one.json()) as { items: unknown[] }).items.length, 1)
      await problem(await call(ada, 'GET', '/v1/admin/config/history?limit=0'), 400, 'invalid_query')
    })

    it('a caller without the admin scope, or without an admin rule, is 403 on every admin route, audited', async () => {
      for (const [token, missing] of [[noScope, 'scope checkpoint:admin'], [noRule, 'permission checkpoint:admin']] as const) {
        for (const [method, path, body] of [['GET', '/v1/admin/config'], ['PUT', '/v1/admin/config', next], ['PUT', '/v1/admin/config?dryRun=true', next], ['GET', '/v1/admin/config/history']] as const) {
          const requestId = `admin-deny-${Math.random().toString(36).slice(2)}`
          const p = await problem(await call(token, method, path, { ...(body ? { body } : {}), ifMatch: etags[2]!, requestId }), 403, 'forbidden')
          assert.equal(p.missing, missing)
          await waitFor(() => gw.logs.some((l) => l.requestId === requestId && l.type === 'outcome'))
          const decision = gw.logs.find((l) => l.requestId === requestId && l.type === 'decision')
          assert.equal(decision?.op, 'checkpoint:admin')
          assert.equal(decision?.decision, 'deny')
          const outcome = gw.logs.find((l) => l.requestId === requestId && l.type === 'outcome')
          assert.equal(outcome?.status, 403)
          assert.equal(outcome?.code, 'forbidden')
        }
      }
      // Nothing changed through them.
      assert.equal((await (await gw.versions()).head())?.etag, etags[2])
    })

    it('an allowed change is audited: the decision names the rule, the outcome the version', async () => {
      const fourth = structuredClone(next)
      fourth.limits.maxTimeoutSec = 900
      const requestId = 'admin-put-audited'
      const r = await call(ada, 'PUT', '/v1/admin/config', { body: fourth, ifMatch: etags[2]!, requestId })
      assert.equal(r.status, 200)
      const body = (await r.json()) as { version: number; summary: ConfigSummary }
      assert.equal(body.version, 4)
      assert.deepEqual(body.summary.sections, ['limits'])
      await waitFor(() => gw.logs.some((l) => l.requestId === requestId && l.type === 'outcome'))
      const decision = gw.logs.find((l) => l.requestId === requestId && l.type === 'decision')
      assert.deepEqual([decision?.op, decision?.decision, decision?.rule, decision?.sub], ['checkpoint:admin', 'allow', 'admins', 'ada'])
      const outcome = gw.logs.find((l) => l.requestId === requestId && l.type === 'outcome')
      assert.deepEqual([outcome?.method, outcome?.status, outcome?.configVersion], ['PUT', 200, 4])
      assert.ok(gw.logs.some((l) => l.requestId === requestId && l.type === 'config_changed' && l.version === 4 && l.sub === 'ada'))
    })
  })

  describe('variable source', () => {
    let world: World
    let gw: AdminTarget
    let raw: Doc
    let ada: string

    before(async () => {
      world = await makeWorld()
      raw = adminConfig(world)
      gw = await targets.variable(world, raw)
      ada = await world.token({ sub: 'ada', groups: ['config-admins'], scope: 'checkpoint:admin' })
    })
    after(async () => {
      await gw?.close()
      await world?.close()
    })
    const call = (method: string, path: string, headers: Record<string, string> = {}, body?: unknown) =>
      gw.fetch(path, { method, headers: { authorization: `Bearer ${ada}`, ...headers }, ...(body !== undefined ? { body: JSON.stringify(body) } : {}), signal: AbortSignal.timeout(10_000) })

    it('GET answers GATEWAY_CONFIG as version 0', async () => {
      const r = await call('GET', '/v1/admin/config')
      assert.equal(r.status, 200)
      assert.match(r.headers.get('etag') ?? '', /^"0-[0-9a-f]{16}"$/)
      assert.equal(r.headers.get('x-config-source'), 'variable')
      assert.deepEqual(await r.json(), raw)
    })

    it('PUT is 409 conflict naming the source, even with the right tag; a dry run still validates and summarizes', async () => {
      const etag = (await call('GET', '/v1/admin/config')).headers.get('etag')!
      const changed = nextOf(raw)
      const r = await call('PUT', '/v1/admin/config', { 'if-match': etag, 'content-type': 'application/json' }, changed)
      assert.equal(r.status, 409)
      const p = (await r.json()) as Problem
      assert.equal(p.code, 'conflict')
      assert.equal(p.source, 'variable')
      const dry = await call('PUT', '/v1/admin/config?dryRun=true', { 'content-type': 'application/json' }, changed)
      assert.equal(dry.status, 200)
      assert.deepEqual(((await dry.json()) as { summary: ConfigSummary }).summary.rules, { added: ['bob-admin'], removed: ['ci'], changed: ['team-a'] })
      const bad = structuredClone(changed)
      bad.clusters.lab.agentUrl = 'not a url {node}'
      const invalid = await call('PUT', '/v1/admin/config?dryRun=true', { 'content-type': 'application/json' }, bad)
      assert.equal(invalid.status, 400)
      assert.equal(((await invalid.json()) as Problem).code, 'invalid_config')
    })

    it('the history is empty', async () => {
      const r = await call('GET', '/v1/admin/config/history')
      assert.equal(r.status, 200)
      assert.deepEqual(await r.json(), { source: 'variable', items: [] })
    })
  })
}
