/**
 * `/openapi.json` is the gateway's API described once: it names every route the app registers and
 * no other, every error code of the shared table (each on a route whose responses include its
 * status), and the gateway and webhook suites' real responses — every one, on Node — fit its
 * schemas (JSON bodies, problem bodies, each NDJSON event).
 */
import assert from 'node:assert/strict'
import { after, describe, it } from 'node:test'
import { Ajv2020 } from 'ajv/dist/2020.js'
import { variableSource } from '../../functions/admin/source.ts'
import { createGateway } from '../../functions/app.ts'
import { parseConfig } from '../../functions/config.ts'
import { loadGrantKeys } from '../../functions/grants.ts'
import { OPENAPI } from '../../functions/openapi.ts'
import { ERROR_STATUS, type ErrorCode } from '../../shared/errors.ts'
import { adminSuite, nodeAdminTarget } from './admin.suite.ts'
import { gatewaySuite } from './gateway.suite.ts'
import { hooksSuite } from './hooks.suite.ts'
import { nodeHooksTarget, tempDir } from '../support/gateway/hooks-targets.ts'
import { nodeTarget, type GatewayUnderTest } from '../support/gateway/targets.ts'
import { makeWorld } from '../support/gateway/fixtures.ts'

type Doc = typeof OPENAPI
type Operation = { responses: Record<string, { content?: Record<string, { schema: object }> }>; 'x-error-codes': readonly ErrorCode[] }
type MakeTarget<T extends GatewayUnderTest = GatewayUnderTest> = (world: Parameters<typeof nodeTarget>[0], raw: Record<string, unknown>) => Promise<T>

/**
 * Codes only the agent speaks to the gateway (a caller sees them as 502 bad_gateway with
 * agentCode), and the vault's storage codes, which reach a caller only inside a `store_failed`
 * event or `storeFailed` member (the checkpoint itself succeeded), never as an HTTP status.
 */
const AGENT_ONLY: ErrorCode[] = ['invalid_grant', 'grant_mismatch', 'method_not_allowed', 'storage_rejected', 'storage_unavailable']
const METHODS = ['get', 'post', 'delete', 'put', 'patch'] as const

const doc = OPENAPI as unknown as Doc & { paths: Record<string, Partial<Record<(typeof METHODS)[number], Operation>>> }
const ajv = new Ajv2020({ strict: false, validateFormats: false, allErrors: true })
ajv.addSchema({ $id: 'doc', components: doc.components } as object)
const compiled = new Map<string, ReturnType<typeof ajv.compile>>()
/** A response schema, its `$ref`s resolved against the document (compiled once). */
function schemaFor(s: object): ReturnType<typeof ajv.compile> {
  const text = JSON.stringify(s).replaceAll('"#/components/', '"doc#/components/')
  let v = compiled.get(text)
  if (!v) compiled.set(text, (v = ajv.compile(JSON.parse(text) as object)))
  return v
}

const templates = Object.keys(doc.paths).map((p) => ({ path: p, re: new RegExp(`^${p.replace(/\{[^}]+\}/g, '[^/]+')}$`) }))
function operationFor(method: string, pathname: string): { template: string; op: Operation } | undefined {
  const t = templates.find((x) => x.re.test(pathname))
  const op = t && doc.paths[t.path]![method.toLowerCase() as (typeof METHODS)[number]]
  return t && op ? { template: t.path, op } : undefined
}

describe('the OpenAPI document', () => {
  it('is OpenAPI 3.1 and its schemas compile', () => {
    assert.equal(doc.openapi, '3.1.0')
    for (const name of Object.keys(doc.components.schemas)) ajv.compile({ $ref: `doc#/components/schemas/${name}` })
  })

  it('describes exactly the routes the app registers', async () => {
    const world = await makeWorld()
    try {
      const raw = world.rawConfig()
      const withHooks = {
        ...raw,
        hooks: { select: [{ checkpoint: 'true' }] },
        vault: { backend: 's3', s3: { endpoint: 'http://127.0.0.1:9', bucket: 'evidence', accessKeyIdSecret: 'K', secretAccessKeySecret: 'S' }, recipients: [{ clusters: ['*'], namespaces: ['*'], recipients: ['age1ql3z7hjy54pw3hyww5ayyfg7zqgvc7w3j2elw8zmrj2kg5sfn9aqmcac8p'] }] },
      }
      const config = parseConfig(withHooks, () => 'secret')
      const { app } = createGateway({
        config,
        agents: { fetch: async () => new Response(null, { status: 502 }) },
        keys: await loadGrantKeys(world.grantKeys),
        clock: { now: Date.now },
        log: () => {},
        custody: { append: async () => { throw new Error('unused') }, read: async () => [], stored: async () => [] },
        statementKeys: { has: async () => false, add: async () => {}, list: async () => [] },
        operations: { store: {} as never, queue: {} as never },
        admin: { source: variableSource(withHooks), validate: () => config, activate: async () => {} },
      })
      // The r2 backend adds its own capability routes.
      const r2Config = parseConfig({ ...withHooks, vault: { ...withHooks.vault, backend: 'r2', r2: { binding: 'EVIDENCE', publicUrl: 'https://gw.example' } } }, () => 'secret')
      const r2 = createGateway({ config: r2Config, agents: { fetch: async () => new Response(null, { status: 502 }) }, keys: await loadGrantKeys(world.grantKeys), clock: { now: Date.now }, log: () => {}, bucket: () => ({ createMultipartUpload: async () => ({ uploadId: 'u' }) }) as never })
      const registered = new Set([...app.routes, ...r2.app.routes].filter((r) => r.method !== 'ALL').map((r) => `${r.method} ${r.path.replace(/:([a-z]+)(\{[^}]*\})?/gi, '{$1}')}`))
      const documented = new Set(Object.entries(doc.paths).flatMap(([p, ops]) => Object.keys(ops).filter((m) => (METHODS as readonly string[]).includes(m)).map((m) => `${m.toUpperCase()} ${p}`)))
      assert.deepEqual([...registered].sort(), [...documented].sort())
    } finally {
      await world.close()
    }
  })

  it('names every error code of the shared table, each on a route that answers its status', () => {
    const onRoutes = new Set<ErrorCode>()
    for (const [p, ops] of Object.entries(doc.paths)) {
      for (const [m, op] of Object.entries(ops) as Array<[string, Operation]>) {
        for (const code of op['x-error-codes']) {
          assert.ok(Object.hasOwn(ERROR_STATUS, code), `${m} ${p}: ${code} is not a code`)
          assert.ok(op.responses[String(ERROR_STATUS[code])], `${m} ${p}: ${code} needs a ${ERROR_STATUS[code]} response`)
          onRoutes.add(code)
        }
      }
    }
    const missing = (Object.keys(ERROR_STATUS) as ErrorCode[]).filter((c) => !onRoutes.has(c) && !AGENT_ONLY.includes(c))
    assert.deepEqual(missing, [])
  })
})

/** Wraps a target so every response it returns is checked against the document, in the background. */
function checked<T extends GatewayUnderTest>(make: MakeTarget<T>, problems: string[], counts: { checked: number }): MakeTarget<T> {
  return async (world, raw) => {
    const t = await make(world, raw)
    const pending: Promise<void>[] = []
    return {
      ...t,
      async fetch(path, init) {
        const res = await t.fetch(path, init)
        const method = init?.method ?? 'GET'
        const url = new URL(path, 'http://x')
        const found = operationFor(method, url.pathname)
        const label = `${method} ${url.pathname} → ${res.status}`
        if (!found) {
          // Unknown routes answer 404 not_found: checked as a problem below.
          if (res.status !== 404 && res.status !== 401) problems.push(`${label}: no such route in the document`)
        }
        const response = found?.op.responses[String(res.status)]
        if (found && !response) problems.push(`${label}: status not documented for ${found.template}`)
        const type = (res.headers.get('content-type') ?? '').split(';')[0]!.trim()
        if (!['application/json', 'application/problem+json', 'application/x-ndjson'].includes(type)) return res
        const schema = type === 'application/problem+json' ? { $ref: '#/components/schemas/Problem' } : response?.content?.[type]?.schema
        if (!schema) {
          problems.push(`${label}: no ${type} schema`)
          return res
        }
        const validate = schemaFor(schema)
        const copy = res.clone()
        pending.push((async () => {
          const text = await copy.text().catch(() => null)
          if (text === null) return // the caller cancelled the body
          const values = type === 'application/x-ndjson' ? text.split('\n').filter(Boolean).map((l) => JSON.parse(l)) : [JSON.parse(text)]
          for (const v of values) {
            counts.checked++
            if (!validate(v)) problems.push(`${label}: ${ajv.errorsText(validate.errors)} in ${JSON.stringify(v).slice(0, 300)}`)
          }
        })())
        return res
      },
      async close() {
        await Promise.allSettled(pending)
        await t.close()
      },
    }
  }
}

describe('real responses fit the document', { timeout: 120_000 }, () => {
  const problems: string[] = []
  const counts = { checked: 0 }
  const tmp = tempDir()
  describe('gateway suite', () => gatewaySuite(checked(nodeTarget, problems, counts)))
  describe('webhook suite', () => hooksSuite(checked(nodeHooksTarget({ dbFile: `${tmp.dir}/operations.sqlite` }), problems, counts)))
  describe('admin suite', () => adminSuite({ store: checked(nodeAdminTarget('store'), problems, counts), variable: checked(nodeAdminTarget('variable'), problems, counts) }))
  after(() => {
    tmp.remove()
    console.log(JSON.stringify({ name: 'openapi_bodies_checked', value: counts.checked, unit: 'bodies' }))
    assert.ok(counts.checked > 100, `only ${counts.checked} bodies checked`)
    assert.deepEqual(problems, [])
  })
})
