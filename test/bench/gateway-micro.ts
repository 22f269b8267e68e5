/**
 * In-process CPU breakdown of one gateway request, without HTTP or an agent (helper for
 * gateway.bench.ts findings; not run by `npm run bench`): jose ES256 verification of a caller
 * token (token cache off), EdDSA grant signing, the whole app (Hono, authn with its token cache,
 * authz, audit, grant) with a stub agent transport answering `{"items":[]}`, and the app rejecting a bad signature. 16 in flight.
 *
 *   taskset -c 0 node_modules/.bin/node test/bench/gateway-micro.ts   (LOG=1: the production logger)
 */
import { exportJWK, generateKeyPair, SignJWT } from 'jose'
import { createGateway } from '../../functions/app.ts'
import { parseConfig } from '../../functions/config.ts'
import { loadGrantKeys } from '../../functions/grants.ts'
import { createAuthenticator, TokenCache } from '../../functions/authn.ts'
const idp = await generateKeyPair('ES256', { extractable: true })
const jwks = { keys: [{ ...(await exportJWK(idp.publicKey)), kid: 'k', alg: 'ES256' }] }
const g = await generateKeyPair('EdDSA', { extractable: true })
const keys = await loadGrantKeys([{ ...(await exportJWK(g.privateKey)), kid: 'g', alg: 'EdDSA' }])
const now = Math.floor(Date.now() / 1000)
const tok = await new SignJWT({ groups: ['sre'] }).setProtectedHeader({ alg: 'ES256', kid: 'k' }).setIssuer('i').setAudience('a').setSubject('sam').setIssuedAt(now).setExpirationTime(now + 3600).sign(idp.privateKey)
const config = parseConfig({ clusters: { bench: { agentUrl: 'https://127.0.0.1:1', agentCa: 'x' } }, auth: { issuers: ['i'], audience: 'a', jwks }, policy: { rules: [{ id: 'sre', groups: ['sre'], actions: ['create', 'read', 'delete'], clusters: ['*'], namespaces: ['*'] }] } }, () => undefined)
const log = process.env.LOG === '1' ? (l: any) => { process.stdout.write(JSON.stringify({ time: new Date().toISOString(), ...l }) + '\n') } : () => {}
const agents = { fetch: async () => new Response('{"items":[]}', { headers: { 'content-type': 'application/json' } }) }
const gw = createGateway({ config, agents, keys, clock: { now: Date.now }, log })
const auth = createAuthenticator(config.auth, Date.now, new TokenCache(0, 0)) // no cache: every call verifies
const ctx = { waitUntil() {}, passThroughOnException() {}, props: {} }
const cases: Record<string, () => Promise<unknown>> = {
  verify: () => auth(`Bearer ${tok}`),
  sign: () => keys.sign({ op: 'checkpoint:list', cluster: 'b', node: 'n', sub: 's' } as any, Date.now(), 60, 'x'),
  app: async () => { const r = await gw.app.fetch(new Request('http://x/v1/clusters/bench/nodes/node-a/checkpoints', { headers: { authorization: `Bearer ${tok}` } }), {}, ctx as any); await r.text() },
  appBad: async () => { const r = await gw.app.fetch(new Request('http://x/v1/clusters/bench/nodes/node-a/checkpoints', { headers: { authorization: `Bearer ${tok}x` } }), {}, ctx as any); await r.text() },
}
for (const round of [1, 2]) for (const [k, fn] of Object.entries(cases)) {
  const n = 3000
  const c0 = process.cpuUsage(); const t0 = performance.now()
  let i = 0
  await Promise.all(Array.from({ length: 16 }, async () => { while (i++ < n) await fn() }))
  const c = process.cpuUsage(c0)
  if (round === 2) console.error(k.padEnd(8), ((c.user + c.system) / n).toFixed(0).padStart(5), 'µs cpu/req', (n / ((performance.now() - t0) / 1000)).toFixed(0).padStart(6), 'req/s wall')
}
