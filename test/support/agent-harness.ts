/**
 * Starts a real agent in-process for tests and benchmarks: real TLS (a throwaway PKI), real grant
 * signatures (an EdDSA key whose JWKS the agent reads from a file), and a client that presents a
 * chosen certificate.
 */
import { randomUUID } from 'node:crypto'
import { mkdtemp, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { exportJWK, generateKeyPair, SignJWT, type CryptoKey as JoseKey } from 'jose'
import { Agent, type Dispatcher } from 'undici'
import { startAgent, STATEMENT_KEY_FILE, USED_GRANTS_FILE, type RunningAgent } from '../../agent/start.ts'
import { loadConfig } from '../../agent/config.ts'
import type { Runtime } from '../../agent/cri/client.ts'
import { memoryLogger } from '../../agent/log.ts'
import { GRANT_TYP, grantAudience, type GrantClaims } from '../../shared/grant.ts'
import { archiveReadings } from '../../shared/names.ts'
import { createPki, type Issued, type Pki } from './certs.ts'

/** The namespaces of every reading of an archive name: what a read/delete grant without `?namespace=` carries. */
export const everyReading = (archive: string): string[] => archiveReadings(archive)?.readings.map((r) => r.namespace) ?? []

/** Files of a checkpoint directory other than the agent's own state (used-grant journal, statement key). */
export const notAgentState = (name: string): boolean => name !== USED_GRANTS_FILE && name !== STATEMENT_KEY_FILE

export const GATEWAY_ID = 'uri:spiffe://test.local/gateway'

export interface Identities {
  pki: Pki
  server: Issued
  gateway: Issued
  /** Signed by the same CA, but not on the allowlist. */
  intruder: Issued
  /** Signed by another CA. */
  foreign: Issued
  grantKey: JoseKey
  jwksFile: string
  kid: string
}

/** Certificates and grant keys, made once per test file. */
export async function makeIdentities(dir: string): Promise<Identities> {
  const pki = await createPki(join(dir, 'pki'))
  const other = await createPki(join(dir, 'other-pki'), 'other-ca')
  const [server, gateway, intruder, foreign] = await Promise.all([
    pki.issue('server', { cn: 'agent', dns: ['localhost'], ips: ['127.0.0.1'], usage: 'server' }),
    pki.issue('gateway', { cn: 'gateway', uris: ['spiffe://test.local/gateway'], usage: 'client' }),
    pki.issue('intruder', { cn: 'intruder', uris: ['spiffe://test.local/intruder'], usage: 'client' }),
    other.issue('foreign', { cn: 'gateway', uris: ['spiffe://test.local/gateway'], usage: 'client' }),
  ])
  const { publicKey, privateKey } = await generateKeyPair('EdDSA', { extractable: true })
  const kid = 'grant-key-1'
  const jwksFile = join(dir, 'grant-jwks.json')
  await writeFile(jwksFile, JSON.stringify({ keys: [{ ...(await exportJWK(publicKey)), kid, alg: 'EdDSA', use: 'sig' }] }))
  return { pki, server, gateway, intruder, foreign, grantKey: privateKey, jwksFile, kid }
}

export interface MintOptions {
  node?: string
  expiresIn?: number
  kid?: string
  typ?: string
  iatOffset?: number
  jti?: string
  /** `iss`, for agents started with --grant-issuer. */
  issuer?: string
}

export interface TestAgent {
  agent: RunningAgent
  dir: string
  node: string
  ids: Identities
  logs: Record<string, unknown>[]
  mint(claims: Omit<GrantClaims, 'node'> & { node?: string }, o?: MintOptions): Promise<string>
  /** A request over mTLS with the named client certificate (default: the gateway's). */
  fetch(path: string, init?: { method?: string; headers?: Record<string, string>; as?: 'gateway' | 'intruder' | 'foreign' | 'none'; body?: string }): Promise<Dispatcher.ResponseData>
  stop(): Promise<void>
}

export async function mintGrant(ids: Identities, claims: GrantClaims, o: MintOptions = {}): Promise<string> {
  const now = Math.floor(Date.now() / 1000) + (o.iatOffset ?? 0)
  const jwt = new SignJWT({ ...claims })
    .setProtectedHeader({ alg: 'EdDSA', kid: o.kid ?? ids.kid, typ: o.typ ?? GRANT_TYP })
    .setAudience(grantAudience(claims.node))
    .setIssuedAt(now)
    .setExpirationTime(now + (o.expiresIn ?? 120))
    .setJti(o.jti ?? randomUUID())
    .setSubject(claims.sub ?? 'user:test')
  if (o.issuer) jwt.setIssuer(o.issuer)
  return jwt.sign(ids.grantKey)
}

/** `nodeMemoryBytes`: the node's memory as the preflight sees it (default: this machine's). */
export async function startTestAgent(o: { ids: Identities; runtime?: Runtime; endpoint?: string; args?: string[]; dir?: string; node?: string; nodeMemoryBytes?: number }): Promise<TestAgent> {
  const dir = o.dir ?? await mkdtemp(join(tmpdir(), 'agent-test-'))
  const node = o.node ?? 'node-a'
  const { ids } = o
  const cfg = loadConfig([
    '--listen=127.0.0.1:0',
    `--node-name=${node}`,
    `--tls-cert=${ids.server.cert}`, `--tls-key=${ids.server.key}`, `--tls-ca=${ids.pki.ca.cert}`,
    `--allowed-clients=${GATEWAY_ID}`,
    `--grant-jwks-file=${ids.jwksFile}`,
    `--checkpoint-dir=${join(dir, 'checkpoints')}`,
    '--disk-margin=0',
    ...(o.endpoint ? [`--runtime-endpoint=${o.endpoint}`] : []),
    ...(o.args ?? []),
  ], {})
  const log = memoryLogger('debug')
  const agent = await startAgent(cfg, { log, ...(o.runtime ? { runtime: o.runtime } : {}), ...(o.nodeMemoryBytes !== undefined ? { nodeMemoryBytes: o.nodeMemoryBytes } : {}) })
  const clients = new Map<string, Agent>()
  const client = (as: string) => {
    let c = clients.get(as)
    if (!c) {
      const id = as === 'none' ? undefined : ids[as as 'gateway' | 'intruder' | 'foreign']
      c = new Agent({ connect: { ca: ids.pki.ca.certPem, ...(id ? { cert: id.certPem, key: id.keyPem } : {}), servername: 'localhost' } })
      clients.set(as, c)
    }
    return c
  }
  return {
    agent, dir, node, ids, logs: log.lines,
    mint: (claims, mo = {}) => mintGrant(ids, { node, ...claims }, mo),
    // dispatcher.request sends the path as given (undici's request() would normalize %2E%2E).
    fetch: (path, init = {}) => client(init.as ?? 'gateway').request({
      origin: agent.url,
      path,
      method: (init.method ?? 'GET') as Dispatcher.HttpMethod,
      headers: init.headers ?? {},
      ...(init.body !== undefined ? { body: init.body } : {}),
    }),
    async stop() {
      await agent.shutdown(5_000)
      // destroy, not close: close waits for every response body, and a test that failed before
      // reading one would hang here.
      await Promise.all([...clients.values()].map((c) => c.destroy()))
      if (!o.dir) await rm(dir, { recursive: true, force: true })
    },
  }
}
