/**
 * The least a Worker does for the gateway bench's latency requests (`gateway.workerd.minimal_hop.*`),
 * the workerd counterpart of gateway-server.ts `--minimal-hop`: bound like the real Worker
 * (test/support/gateway/targets.ts startWorkerGateway), it signs one Ed25519 grant with WebCrypto
 * (the first key of GRANT_SIGNING_KEYS, imported once per isolate; the claims functions/grants.ts
 * signs) and sends the agent the same request through the `AGENT_MTLS` binding, returning the
 * agent's answer as it is. No caller token, policy, Hono, audit, headers deadline or problem
 * bodies; routes: GET …/checkpoints/<archive> and POST …/checkpoint/<ns>/<pod>/<container>.
 * `HOP_NODE` names the agent's node; cluster, agent URL and grant issuer come from GATEWAY_CONFIG.
 */
import { base64url, type CryptoKey, type JWK } from 'jose'
import { AGENT_PATHS } from '../../shared/agent-api.ts'
import { GRANT_TYP, grantAudience, type GrantClaims } from '../../shared/grant.ts'
import { archiveReadings } from '../../shared/names.ts'

interface HopEnv {
  GATEWAY_CONFIG: string
  GRANT_SIGNING_KEYS: string
  HOP_NODE: string
  AGENT_MTLS: { fetch(input: string, init?: RequestInit): Promise<Response> }
}

interface Hop {
  cluster: string
  agentUrl: string
  issuer: string
  prefix: string
  /** `b64url(header).` of every grant. */
  header: string
  key: CryptoKey
}

const encoder = new TextEncoder()
let hop: Promise<Hop> | undefined

async function setUp(env: HopEnv): Promise<Hop> {
  const config = JSON.parse(env.GATEWAY_CONFIG) as { clusters: Record<string, { agentUrl: string }>; grants: { issuer: string } }
  const [cluster, cl] = Object.entries(config.clusters)[0]!
  const keys = JSON.parse(env.GRANT_SIGNING_KEYS) as unknown
  const jwk = (Array.isArray(keys) ? keys[0] : keys) as JWK & { kid: string; alg: string }
  const key = await crypto.subtle.importKey('jwk', { kty: jwk.kty, crv: jwk.crv, x: jwk.x, d: jwk.d }, { name: 'Ed25519' }, false, ['sign'])
  const header = base64url.encode(JSON.stringify({ alg: jwk.alg, kid: jwk.kid, typ: GRANT_TYP })) + '.'
  return { cluster, agentUrl: cl.agentUrl, issuer: config.grants.issuer, prefix: `/v1/clusters/${cluster}/nodes/${env.HOP_NODE}/`, header, key }
}

async function grant(h: Hop, claims: GrantClaims): Promise<string> {
  const iat = Math.floor(Date.now() / 1000)
  const payload = { ...claims, iss: h.issuer, aud: grantAudience(claims.node), iat, nbf: iat - 5, exp: iat + 60, jti: crypto.randomUUID() }
  const input = h.header + base64url.encode(JSON.stringify(payload))
  const sig = await crypto.subtle.sign('Ed25519', h.key, encoder.encode(input))
  return `${input}.${base64url.encode(new Uint8Array(sig))}`
}

export default {
  async fetch(request: Request, env: HopEnv): Promise<Response> {
    const h = await (hop ??= setUp(env))
    const rest = new URL(request.url).pathname.slice(h.prefix.length)
    const base = { cluster: h.cluster, node: env.HOP_NODE, sub: 'sam' }
    let claims: GrantClaims, path: string, accept: string
    if (request.method === 'GET' && rest.startsWith('checkpoints/')) {
      const archive = decodeURIComponent(rest.slice('checkpoints/'.length))
      const namespaces = archiveReadings(archive)?.readings.map((r) => r.namespace) ?? []
      ;[claims, path, accept] = [{ op: 'checkpoint:read', ...base, archive, namespaces }, AGENT_PATHS.archive(archive), '*/*']
    } else if (request.method === 'POST' && rest.startsWith('checkpoint/')) {
      const [namespace = '', pod = '', container = ''] = rest.slice('checkpoint/'.length).split('/')
      ;[claims, path, accept] = [{ op: 'checkpoint:create', ...base, namespace, pod, container }, `${AGENT_PATHS.checkpoint({ namespace, pod, container })}?timeout=60`, 'application/x-ndjson']
    } else return new Response(null, { status: 404 })
    const authorization = `Bearer ${await grant(h, claims)}`
    return env.AGENT_MTLS.fetch(h.agentUrl + path, { method: request.method, headers: { authorization, accept } })
  },
}
