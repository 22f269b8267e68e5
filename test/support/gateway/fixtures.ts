/**
 * The world the gateway suite runs in: test PKI, an identity provider (ES256 key + JWKS over
 * HTTP on loopback), grant keys, the fake agent (and an impostor agent with an untrusted
 * certificate), a fake Kubernetes API, and the gateway configuration that ties them together.
 */
import { createServer, type Server } from 'node:http'
import type { AddressInfo } from 'node:net'
import { exportJWK, generateKeyPair, SignJWT, type CryptoKey, type JWK, type JWTPayload } from 'jose'
import { makeTestPki, type TestPki } from '../certs.ts'
import { startFakeAgent, type FakeAgent } from './fake-agent.ts'

export const ISSUER = 'https://idp.test'
export const AUDIENCE = 'checkpoint-gateway'
export const GRANT_ISSUER = 'checkpoint-gateway-test'
export const KUBE_TOKEN = 'kube-token-for-tests'

export interface World {
  pki: TestPki
  idp: { jwksUrl: string; jwks: { keys: JWK[] }; privateKey: CryptoKey; publicJwk: JWK; kid: string }
  /** A second key the IdP never published (unknown kid / bad signature). */
  stranger: { privateKey: CryptoKey }
  grantKeys: JWK[]
  agent: FakeAgent
  impostor: FakeAgent
  kubeUrl: string
  deadUrl: string
  rawConfig(opts?: { jwksUrl?: string; staticJwks?: boolean }): Record<string, unknown>
  token(claims: JWTPayload, opts?: { kid?: string; alg?: string; key?: CryptoKey | Uint8Array; iss?: string; aud?: string; exp?: number; nbf?: number }): Promise<string>
  close(): Promise<void>
}

async function listen(server: Server): Promise<string> {
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r))
  return `http://127.0.0.1:${(server.address() as AddressInfo).port}`
}

export async function makeWorld(): Promise<World> {
  const pki = await makeTestPki()
  const kid = 'idp-1'
  const { privateKey, publicKey } = await generateKeyPair('ES256', { extractable: true })
  const publicJwk = { ...(await exportJWK(publicKey)), kid, alg: 'ES256', use: 'sig' }
  const jwks = { keys: [publicJwk] }
  const idpServer = createServer((req, res) => {
    if (req.url === '/jwks') {
      res.writeHead(200, { 'content-type': 'application/json' })
      res.end(JSON.stringify(jwks))
    } else {
      res.writeHead(404)
      res.end()
    }
  })
  const idpUrl = await listen(idpServer)
  const stranger = await generateKeyPair('ES256', { extractable: true })

  const grantPair = await generateKeyPair('EdDSA', { extractable: true })
  const grantJwk = { ...(await exportJWK(grantPair.privateKey)), kid: 'grant-1', alg: 'EdDSA' }
  const nextPair = await generateKeyPair('ES256', { extractable: true })
  const nextPublic = { ...(await exportJWK(nextPair.publicKey)), kid: 'grant-2', alg: 'ES256' }
  const grantKeys = [grantJwk, nextPublic]
  const publishedGrantKeys = grantKeys.map((k) => {
    const { d: _d, ...pub } = k as JWK & { d?: string }
    return pub
  })

  const agent = await startFakeAgent({ pki, jwks: { keys: publishedGrantKeys }, issuer: GRANT_ISSUER })
  const impostor = await startFakeAgent({ pki, jwks: { keys: publishedGrantKeys }, issuer: GRANT_ISSUER, cert: { cert: pki.otherServerCert, key: pki.otherServerKey } })

  const kube = createServer((req, res) => {
    const m = /^\/api\/v1\/namespaces\/([^/]+)\/pods\/([^/]+)$/.exec(req.url ?? '')
    if (req.headers.authorization !== `Bearer ${KUBE_TOKEN}`) {
      res.writeHead(401, { 'content-type': 'application/json' })
      return void res.end('{"kind":"Status","code":401}')
    }
    if (!m || m[2] === 'missing') {
      res.writeHead(404, { 'content-type': 'application/json' })
      return void res.end('{"kind":"Status","code":404}')
    }
    res.writeHead(200, { 'content-type': 'application/json' })
    const spec = m[2] === 'unscheduled' ? { containers: [{ name: 'app' }] } : { nodeName: 'node-b', containers: [{ name: 'app' }, { name: 'sidecar' }] }
    res.end(JSON.stringify({ kind: 'Pod', metadata: { namespace: m[1], name: m[2] }, spec }))
  })
  const kubeUrl = await listen(kube)

  // A port nobody listens on: bind, note, close.
  const probe = createServer()
  const deadUrl = (await listen(probe)).replace('http:', 'https:')
  await new Promise<void>((r) => probe.close(() => r()))

  return {
    pki,
    idp: { jwksUrl: `${idpUrl}/jwks`, jwks, privateKey, publicJwk, kid },
    stranger: { privateKey: stranger.privateKey },
    grantKeys,
    agent,
    impostor,
    kubeUrl,
    deadUrl,
    rawConfig(opts = {}) {
      return {
        clusters: {
          prod: { agentUrl: `${agent.url}/n/{node}`, agentCa: pki.caCert, kube: { apiUrl: kubeUrl, tokenSecret: 'KUBE_TOKEN_PROD', binding: 'KUBE' } },
          edge: { agentUrl: `${agent.url}/n/{node}`, agentCa: pki.caCert },
          dead: { agentUrl: `${deadUrl}/n/{node}`, agentCa: pki.caCert },
          rogue: { agentUrl: `${impostor.url}/n/{node}`, agentCa: pki.caCert },
        },
        auth: {
          issuers: [ISSUER],
          audience: AUDIENCE,
          ...(opts.staticJwks ? { jwks } : { jwksUrl: opts.jwksUrl ?? `${idpUrl}/jwks` }),
          clockToleranceSec: 5,
        },
        policy: {
          rules: [
            { id: 'sre', groups: ['sre'], actions: ['create', 'read', 'delete'], clusters: ['*'], namespaces: ['*'] },
            { id: 'team-a', subjects: ['alice'], actions: ['create', 'read'], clusters: ['prod', 'edge'], namespaces: ['team-a'] },
            { id: 'ci', clients: ['ci-bot'], actions: ['read'], clusters: ['edge'], namespaces: ['ci-*'] },
            { id: 'team', subjects: ['tess'], actions: ['read'], clusters: ['edge'], namespaces: ['team'] },
            { id: 'team-ops', subjects: ['tom'], actions: ['read', 'delete'], clusters: ['edge'], namespaces: ['team'] },
          ],
        },
        grants: { issuer: GRANT_ISSUER },
        limits: { agentHeadersTimeoutMs: 5000, defaultTimeoutSec: 30, maxTimeoutSec: 600 },
      }
    },
    async token(claims, o = {}) {
      const now = Math.floor(Date.now() / 1000)
      const jwt = new SignJWT({ ...claims })
        .setProtectedHeader({ alg: o.alg ?? 'ES256', kid: o.kid ?? kid, typ: 'JWT' })
        .setIssuer(o.iss ?? ISSUER)
        .setAudience(o.aud ?? AUDIENCE)
        .setIssuedAt(now)
        .setExpirationTime(o.exp ?? now + 300)
      if (o.nbf !== undefined) jwt.setNotBefore(o.nbf)
      return jwt.sign(o.key ?? privateKey)
    },
    async close() {
      const closing = [agent.close(), impostor.close(), new Promise<void>((r) => idpServer.close(() => r())), new Promise<void>((r) => kube.close(() => r()))]
      idpServer.closeAllConnections()
      kube.closeAllConnections()
      await Promise.all(closing)
    },
  }
}
