/**
 * The Workers user's own loop: the Worker bundle in workerd with exactly what
 * `cp .dev.vars.example .dev.vars && wrangler dev --env dev` gives it — `[env.dev]`'s vars from
 * wrangler.toml, the secrets of .dev.vars.example, and no mTLS binding (wrangler dev cannot emulate
 * it). The gateway is configured (not 500 "misconfigured"), a `npm run dev-token` token passes
 * authentication and policy, and a call that needs the agent fails by code, saying why.
 */
import assert from 'node:assert/strict'
import { readFile } from 'node:fs/promises'
import { after, before, describe, it } from 'node:test'
import { fileURLToPath } from 'node:url'
import { devToken, parseDotenv } from '../../functions/node/dev-token.ts'
import { bundleWorker, COMPATIBILITY_DATE, removeBundle } from '../support/gateway/targets.ts'

const root = (p: string) => fileURLToPath(new URL(`../../${p}`, import.meta.url))

/** The `[env.dev.vars]` GATEWAY_CONFIG of wrangler.toml. */
async function devVars(): Promise<Record<string, string>> {
  const toml = await readFile(root('wrangler.toml'), 'utf8')
  const section = toml.slice(toml.indexOf('[env.dev.vars]'))
  const m = /GATEWAY_CONFIG = '''\n([\s\S]*?)'''/.exec(section)
  assert.ok(m, 'wrangler.toml has [env.dev.vars] GATEWAY_CONFIG')
  return { GATEWAY_CONFIG: m[1]! }
}

describe('wrangler dev --env dev, as workerd runs it', () => {
  let mf: import('miniflare').Miniflare
  let url: string
  let secrets: Record<string, string>
  const logs: string[] = []
  before(async () => {
    const { Miniflare } = await import('miniflare')
    const { dir, script } = await bundleWorker()
    secrets = parseDotenv(await readFile(root('.dev.vars.example'), 'utf8'))
    mf = new Miniflare({
      modules: true, scriptPath: script, modulesRoot: dir, compatibilityDate: COMPATIBILITY_DATE,
      host: '127.0.0.1', port: 0,
      bindings: { ...(await devVars()), ...secrets },
      handleStructuredLogs: ({ message }: { message: string }) => void logs.push(message),
      handleRuntimeStdio: (o: NodeJS.ReadableStream, e: NodeJS.ReadableStream) => { o.resume(); e.resume() },
    })
    url = (await mf.ready).href.replace(/\/$/, '')
  })
  after(async () => {
    await mf?.dispose()
    removeBundle()
  })
  const get = async (path: string, init?: RequestInit) => (await mf.dispatchFetch(url + path, init as never)) as unknown as Response

  it('is configured: /healthz, the grant keys and /openapi.json answer', async () => {
    assert.equal((await get('/healthz')).status, 200)
    const jwks = (await (await get('/.well-known/jwks.json')).json()) as { keys: Array<{ kid: string; d?: string }> }
    assert.deepEqual(jwks.keys.map((k) => [k.kid, k.d]), [['dev-grant-1', undefined]])
    assert.equal((await get('/openapi.json')).status, 200)
  })

  it('a dev token passes authentication and policy; validation answers before any agent call', async () => {
    const token = await devToken(secrets)
    const bad = await get('/v1/clusters/local/nodes/localhost/checkpoint/Demo/counter/app', { method: 'POST', headers: { authorization: `Bearer ${token}` } })
    assert.equal(bad.status, 400)
    assert.equal(((await bad.json()) as { code: string; field: string }).field, 'namespace')
    const none = await get('/v1/clusters/local/nodes/localhost/checkpoints')
    assert.equal(none.status, 401)
  })

  it('without the mTLS binding an agent call fails by code, and the log says which binding is missing', async () => {
    const token = await devToken(secrets)
    const r = await get('/v1/clusters/local/nodes/localhost/checkpoints', { headers: { authorization: `Bearer ${token}` } })
    assert.equal(r.status, 500)
    assert.equal(((await r.json()) as { code: string }).code, 'internal')
    await new Promise((res) => setTimeout(res, 200))
    assert.ok(logs.some((l) => l.includes('AGENT_MTLS')), `the log names the binding: ${logs.join(' | ').slice(0, 800)}`)
  })
})
