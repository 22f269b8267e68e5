/**
 * Gateway configuration: the cluster registry, authentication settings, the authorization policy
 * and limits. One JSON shape on every runtime; secrets (Kubernetes tokens) are named, not
 * inlined, and resolved through a lookup the entry point supplies (env vars, Workers secrets).
 * Bad configuration is a programmer/operator mistake: a plain `Error` at startup.
 */
import type { JWK } from 'jose'
import { isClusterId } from '../shared/names.ts'
import { parsePolicy, type Policy } from './authz.ts'
import { parseHooksConfig, type HooksConfig } from './hooks/config.ts'
import { parseVaultConfig, type VaultConfig } from './vault/vault.ts'

export interface KubeConfig {
  /** Base URL of the cluster's Kubernetes API, e.g. https://10.0.0.1:6443 */
  apiUrl: string
  /** Bearer token allowed to `get pods` (resolved from the named secret). */
  token: string
  /** PEM CA of the API server (Node transport; on Workers the API must chain to a public CA). */
  ca?: string
  /** Workers: service/mTLS binding used to reach the API instead of the global fetch. */
  binding?: string
}

export interface ClusterConfig {
  id: string
  /** Agent base URL template; `{node}` is replaced by the node name. */
  agentUrl: string
  /** PEM of the CA that signs this cluster's agent server certificates (Node transport). */
  agentCa?: string
  /**
   * The name the agent's certificate must carry (template with `{node}`); default: the URL's
   * host. Enforced by the Node transport; on Workers the URL host is what gets verified.
   */
  agentIdentity?: string
  /** Workers: name of the `mtls_certificates` (or, in miniflare, network service) binding. */
  mtlsBinding: string
  kube?: KubeConfig
}

export interface AuthConfig {
  issuers: string[]
  audience: string[]
  jwksUrl?: string
  jwks?: { keys: JWK[] }
  algorithms: string[]
  clockToleranceSec: number
  /** Claim holding the caller's groups (array of strings). */
  groupsClaim: string
}

export interface Limits {
  defaultTimeoutSec: number
  maxTimeoutSec: number
  /** How long to wait for the agent's response headers before answering 504. */
  agentHeadersTimeoutMs: number
  /** How long a pod → node answer from the Kubernetes API is reused. */
  kubeCacheMs: number
}

export interface GatewayConfig {
  clusters: ReadonlyMap<string, ClusterConfig>
  auth: AuthConfig
  policy: Policy
  grants: { issuer: string; readTtlSec: number; marginSec: number }
  limits: Limits
  /** Alert webhooks (functions/hooks/config.ts); absent = /v1/hooks/* answer 404. */
  hooks?: HooksConfig
  /** The evidence vault (functions/vault/vault.ts); absent = `?store=vault` is refused. */
  vault?: VaultConfig
}

const ASYMMETRIC_ALGS = ['EdDSA', 'Ed25519', 'ES256', 'ES384', 'ES512', 'RS256', 'RS384', 'RS512', 'PS256', 'PS384', 'PS512'] as const

type Raw = Record<string, unknown>

function obj(v: unknown, what: string): Raw {
  if (!v || typeof v !== 'object' || Array.isArray(v)) throw new Error(`config: ${what} must be an object`)
  return v as Raw
}
function str(v: unknown, what: string): string {
  if (typeof v !== 'string' || v === '') throw new Error(`config: ${what} must be a non-empty string`)
  return v
}
function optStr(v: unknown, what: string): string | undefined {
  return v === undefined ? undefined : str(v, what)
}
function strList(v: unknown, what: string): string[] {
  const list = typeof v === 'string' ? [v] : v
  if (!Array.isArray(list) || list.length === 0 || !list.every((s) => typeof s === 'string' && s !== '')) {
    throw new Error(`config: ${what} must be a string or a non-empty list of strings`)
  }
  return list as string[]
}
/** A URL, or an error naming the field (URL's own TypeError says only "Invalid URL"). */
function url(v: string, what: string): URL {
  try {
    return new URL(v)
  } catch {
    throw new Error(`config: ${what} is not a URL`)
  }
}
function num(v: unknown, dflt: number, what: string): number {
  if (v === undefined) return dflt
  if (typeof v !== 'number' || !Number.isFinite(v) || v < 0) throw new Error(`config: ${what} must be a non-negative number`)
  return v
}

/** Accepts a JSON string or an already parsed value (wrangler `[vars]` may hold either). */
export function jsonValue(v: unknown, what: string): unknown {
  if (typeof v !== 'string') return v
  try {
    return JSON.parse(v)
  } catch {
    throw new Error(`config: ${what} is not valid JSON`)
  }
}

/**
 * Parses and checks the gateway configuration.
 *
 * @param raw the JSON document (`clusters`, `auth`, `policy`, `grants`, `limits`)
 * @param secret looks up a named secret (a Kubernetes token)
 * @example
 * const config = parseConfig(JSON.parse(readFileSync(path, 'utf8')), (n) => process.env[n])
 */
export function parseConfig(raw: unknown, secret: (name: string) => string | undefined): GatewayConfig {
  const root = obj(raw, 'root')
  const clusters = new Map<string, ClusterConfig>()
  for (const [id, v] of Object.entries(obj(root.clusters, 'clusters'))) {
    if (!isClusterId(id)) throw new Error(`config: cluster id ${JSON.stringify(id)} must match [a-z0-9][a-z0-9_-]{0,62}`)
    const c = obj(v, `clusters.${id}`)
    const agentUrl = str(c.agentUrl, `clusters.${id}.agentUrl`)
    const probe = url(agentUrl.replaceAll('{node}', 'node-0'), `clusters.${id}.agentUrl`)
    if (probe.protocol !== 'https:') throw new Error(`config: clusters.${id}.agentUrl must be https`)
    const cluster: ClusterConfig = { id, agentUrl: agentUrl.replace(/\/+$/, ''), mtlsBinding: optStr(c.mtlsBinding, `clusters.${id}.mtlsBinding`) ?? 'AGENT_MTLS' }
    const ca = optStr(c.agentCa, `clusters.${id}.agentCa`)
    if (ca !== undefined) cluster.agentCa = ca
    const ident = optStr(c.agentIdentity, `clusters.${id}.agentIdentity`)
    if (ident !== undefined) cluster.agentIdentity = ident
    if (c.kube !== undefined) {
      const k = obj(c.kube, `clusters.${id}.kube`)
      const apiUrl = str(k.apiUrl, `clusters.${id}.kube.apiUrl`).replace(/\/+$/, '')
      url(apiUrl, `clusters.${id}.kube.apiUrl`)
      const tokenName = str(k.tokenSecret, `clusters.${id}.kube.tokenSecret`)
      const token = secret(tokenName)
      if (!token) throw new Error(`config: secret ${tokenName} (clusters.${id}.kube.tokenSecret) is not set`)
      const kube: KubeConfig = { apiUrl, token }
      const kca = optStr(k.ca, `clusters.${id}.kube.ca`)
      if (kca !== undefined) kube.ca = kca
      const binding = optStr(k.binding, `clusters.${id}.kube.binding`)
      if (binding !== undefined) kube.binding = binding
      cluster.kube = kube
    }
    clusters.set(id, cluster)
  }

  const a = obj(root.auth, 'auth')
  const algorithms = a.algorithms === undefined ? ['EdDSA', 'Ed25519', 'ES256', 'ES384', 'RS256', 'PS256'] : strList(a.algorithms, 'auth.algorithms')
  for (const alg of algorithms) {
    if (!(ASYMMETRIC_ALGS as readonly string[]).includes(alg)) throw new Error(`config: auth.algorithms: ${alg} is not an asymmetric JWS algorithm`)
  }
  const auth: AuthConfig = {
    issuers: strList(a.issuers ?? a.issuer, 'auth.issuers'),
    audience: strList(a.audience, 'auth.audience'),
    algorithms,
    clockToleranceSec: num(a.clockToleranceSec, 30, 'auth.clockToleranceSec'),
    groupsClaim: optStr(a.groupsClaim, 'auth.groupsClaim') ?? 'groups',
  }
  if (a.jwksUrl !== undefined) {
    const u = url(str(a.jwksUrl, 'auth.jwksUrl'), 'auth.jwksUrl')
    if (u.protocol !== 'https:' && !(u.protocol === 'http:' && (u.hostname === '127.0.0.1' || u.hostname === 'localhost'))) {
      throw new Error('config: auth.jwksUrl must be https (plain http only on loopback)')
    }
    auth.jwksUrl = u.href
  }
  if (a.jwks !== undefined) {
    const keys = obj(jsonValue(a.jwks, 'auth.jwks'), 'auth.jwks').keys
    if (!Array.isArray(keys) || keys.length === 0) throw new Error('config: auth.jwks.keys must be a non-empty list')
    for (const k of keys as Raw[]) if ('d' in k) throw new Error('config: auth.jwks must hold public keys only')
    auth.jwks = { keys: keys as JWK[] }
  }
  if (!auth.jwksUrl === !auth.jwks) throw new Error('config: set exactly one of auth.jwksUrl and auth.jwks')

  const g = root.grants === undefined ? {} : obj(root.grants, 'grants')
  const l = root.limits === undefined ? {} : obj(root.limits, 'limits')
  const limits: Limits = {
    defaultTimeoutSec: num(l.defaultTimeoutSec, 60, 'limits.defaultTimeoutSec'),
    maxTimeoutSec: num(l.maxTimeoutSec, 600, 'limits.maxTimeoutSec'),
    agentHeadersTimeoutMs: num(l.agentHeadersTimeoutMs, 10_000, 'limits.agentHeadersTimeoutMs'),
    kubeCacheMs: num(l.kubeCacheMs, 10_000, 'limits.kubeCacheMs'),
  }
  if (limits.defaultTimeoutSec < 1 || limits.defaultTimeoutSec > limits.maxTimeoutSec) {
    throw new Error('config: limits.defaultTimeoutSec must be within 1..maxTimeoutSec')
  }
  const config: GatewayConfig = {
    clusters,
    auth,
    policy: parsePolicy(jsonValue(root.policy, 'policy')),
    grants: {
      issuer: optStr(g.issuer, 'grants.issuer') ?? 'checkpoint-gateway',
      readTtlSec: num(g.readTtlSec, 60, 'grants.readTtlSec'),
      marginSec: num(g.marginSec, 30, 'grants.marginSec'),
    },
    limits,
    ...(root.hooks !== undefined ? { hooks: parseHooksConfig(jsonValue(root.hooks, 'hooks'), secret) } : {}),
    ...(root.vault !== undefined ? { vault: parseVaultConfig(jsonValue(root.vault, 'vault'), secret) } : {}),
  }
  if (config.hooks?.store === 'vault' && !config.vault) throw new Error('config: hooks.store is "vault" but no vault is configured')
  return config
}

/** The agent base URL for a node of a cluster. */
export function agentBase(cluster: ClusterConfig, node: string): string {
  return cluster.agentUrl.replaceAll('{node}', node)
}

/** The TLS name the agent must present, or undefined for "the URL's host". */
export function agentIdentity(cluster: ClusterConfig, node: string): string | undefined {
  return cluster.agentIdentity?.replaceAll('{node}', node)
}
