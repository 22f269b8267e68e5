/**
 * The whole product on one machine, loopback only: a real containerd 2.x (test/runtime/containerd.ts)
 * with a local registry and a busybox image, a throwaway PKI, grant keys, a real agent over mTLS,
 * a dev token issuer, and the gateway's Worker bundle in miniflare (real workerd) reaching the
 * agent through a `network` service binding with a client certificate — the local stand-in for
 * the `mtls_certificates` binding. `test/e2e/gateway.e2e.test.ts` and `npm run dev` both use it.
 * A tiny fake Kubernetes API on loopback knows the pods {@link Stack.runPod} started (their
 * `spec.nodeName` is the stack's node), so node-less routes and alert webhooks resolve the node.
 * With `hooks`, the gateway also gets the D1 and Queues bindings of the webhooks
 * (`test/e2e/hooks.e2e.test.ts`).
 *
 * @example
 * const stack = await startStack({ log: console.log })
 * try {
 *   const { containerId } = await stack.runPod({ namespace: 'demo', pod: 'counter', container: 'app', command: ['sh', '-c', 'sleep 3600'] })
 *   const token = await stack.mintToken(['checkpoint:create'])
 *   await fetch(`${stack.gatewayUrl}${stack.checkpointPath({ namespace: 'demo', pod: 'counter', container: 'app' })}`,
 *     { method: 'POST', headers: { authorization: `Bearer ${token}` } })
 * } finally {
 *   await stack.stop()
 * }
 */
import { randomUUID } from 'node:crypto'
import { createServer } from 'node:http'
import type { AddressInfo } from 'node:net'
import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { exportJWK, generateKeyPair, SignJWT } from 'jose'
import { startAgent, type RunningAgent } from '../../agent/start.ts'
import { loadConfig } from '../../agent/config.ts'
import { memoryLogger, type Logger } from '../../agent/log.ts'
import type { Target } from '../../shared/names.ts'
import { bundleWorker, startWorkerGateway } from './gateway/targets.ts'
import { buildAndPushBusybox, removePod, runPod, startLocalRuntime, type LocalRuntime, type PodSpec } from '../runtime/containerd.ts'
import { GATEWAY_ID, makeIdentities, type Identities } from './agent-harness.ts'
import { freePort } from './net.ts'

/** The one cluster the stack's gateway knows. */
export const CLUSTER = 'local'
/** `iss` and `aud` of the dev token issuer's caller tokens. */
export const DEV_ISSUER = 'https://dev-issuer.checkpoint.local'
export const DEV_AUDIENCE = 'checkpoint-gateway'
/** `iss` of the grants the gateway signs and the agent requires. */
export const GRANT_ISSUER = 'checkpoint-gateway-local'
export const ALL_SCOPES = ['checkpoint:create', 'checkpoint:read', 'checkpoint:delete'] as const
/** The secret holding the fake Kubernetes API's bearer token (`clusters.local.kube.tokenSecret`). */
const KUBE_TOKEN_SECRET = 'KUBE_TOKEN_LOCAL'

export interface StackOptions {
  /** Parent dir of the stack's state dir (PKI, keys, checkpoints, runtime). Default `os.tmpdir()`. */
  dir?: string
  /** The agent's node name. Default `node-1`. */
  node?: string
  /** The subject the gateway's policy allows everything on cluster `local`. Default `dev`. */
  subject?: string
  /** The gateway's loopback port. Default 0 (any free port). */
  gatewayPort?: number
  /** An existing CRI endpoint (`unix:///…`) instead of starting the local containerd. */
  runtimeEndpoint?: string
  /** Progress lines while starting and stopping. */
  log?: (line: string) => void
  /** The agent's logger. Default: kept in memory, see {@link Stack.agentLogs}. */
  agentLog?: Logger
  /** Called with each structured line the gateway logs (audit, decisions, errors). */
  gatewayLog?: (line: Record<string, unknown>) => void
  /** Extra agent flags, e.g. `--max-concurrent=2`. */
  agentArgs?: string[]
  /**
   * The gateway configuration's `hooks` section (see functions/hooks/config.ts). Turns on the
   * webhooks: the gateway gets `OPERATIONS_DB` (D1) and `CHECKPOINT_JOBS` (Queues) as wrangler.toml binds them.
   */
  hooks?: Record<string, unknown>
  /**
   * The evidence vault: the `r2` backend in workerd (miniflare's R2, binding `EVIDENCE`) sealing to
   * these age recipients, with D1 for the custody log. `?store=vault`, `/v1/evidence`.
   */
  vault?: { recipients: string[] }
  /** Policy rules added after the one allowing `subject` everything (e.g. for webhook senders). */
  policyRules?: Array<Record<string, unknown>>
  /** More string bindings for the gateway: secrets its configuration names (e.g. the Grafana HMAC key). */
  secrets?: Record<string, string>
  /**
   * The caller handles SIGINT/SIGTERM and calls stop(). Miniflare otherwise installs its own
   * handlers that kill workerd and `process.exit(130)` at once, cutting any teardown short (its
   * `exit` hook, which only kills workerd, stays).
   */
  ownSignals?: boolean
}

export interface Stack {
  /** `http://127.0.0.1:<port>` of the gateway in workerd. */
  gatewayUrl: string
  /** `http://127.0.0.1:<port>` of the fake Kubernetes API (`GET /api/v1/namespaces/{ns}/pods/{pod}` for runPod's pods). */
  kubeUrl: string
  cluster: string
  node: string
  subject: string
  /** The state dir; removed by stop(). */
  dir: string
  agent: RunningAgent
  /** The PKI (agent server, gateway client certificates) and the grant key; see agent-harness.ts mintGrant. */
  identities: Identities
  /** The local containerd, unless an external endpoint was given. */
  runtime: LocalRuntime | undefined
  /** The CRI endpoint the agent talks to. */
  endpoint: string
  /** A busybox image in the local registry (`127.0.0.1:<port>/stack/busybox:v1`), if local. */
  image: string | undefined
  /** The agent's log lines when no agentLog was given. */
  agentLogs: Record<string, unknown>[]
  /** The gateway's structured log lines. */
  gatewayLogs: Record<string, unknown>[]
  /** Milliseconds each start step took. */
  timings: Record<string, number>
  /** A caller token from the dev issuer: `sub` (default the stack's subject), `scope`, 12 h by default. */
  mintToken(scopes: readonly string[] | string, o?: { sub?: string; expiresInSec?: number }): Promise<string>
  /** `/v1/clusters/local/nodes/<node>/checkpoint/<ns>/<pod>/<container>` */
  checkpointPath(t: Target): string
  /** `/v1/clusters/local/nodes/<node>/checkpoints` */
  listPath(): string
  /** fetch() against the gateway's real loopback listener. */
  fetch(path: string, init?: RequestInit): Promise<Response>
  /**
   * Runs a one-container pod with kubelet labels (default image: the stack's busybox); the fake
   * Kubernetes API knows it until removePod. Local runtime only.
   */
  runPod(spec: Omit<PodSpec, 'image'> & { image?: string }): Promise<{ podId: string; containerId: string }>
  removePod(podId: string): Promise<void>
  /** `ctr tasks exec` in a running container; returns stdout. Local runtime only. */
  exec(containerId: string, cmd: string[]): Promise<string>
  /** Stops the gateway (miniflare), the agent, containerd and the registry; removes the state dir. Idempotent. */
  stop(): Promise<void>
}

/**
 * Starts everything; on any failure tears down what was started before rethrowing.
 * One bundle of functions/workers/worker.ts is built per process (test/support/gateway/targets.ts); callers
 * that are done with stacks call its `removeBundle()`.
 */
export async function startStack(opts: StackOptions = {}): Promise<Stack> {
  const log = opts.log ?? (() => {})
  const node = opts.node ?? 'node-1'
  const subject = opts.subject ?? 'dev'
  const timings: Record<string, number> = {}
  const t0 = performance.now()
  const step = async <T>(name: string, f: () => Promise<T>): Promise<T> => {
    const t = performance.now()
    const v = await f()
    timings[name] = Math.round(performance.now() - t)
    log(`${name}: ${timings[name]} ms`)
    return v
  }

  const dir = await mkdtemp(join(opts.dir ?? tmpdir(), 'cpgw-stack-'))
  const cleanups: Array<[string, () => Promise<unknown>]> = [['state dir', () => rm(dir, { recursive: true, force: true })]]
  let stopping: Promise<void> | undefined
  const stop = () => {
    stopping ??= (async () => {
      const errors: string[] = []
      for (const [what, f] of cleanups.reverse()) {
        try {
          await f()
        } catch (err) {
          errors.push(`${what}: ${(err as Error).message}`)
        }
      }
      if (errors.length) log(`stop: ${errors.join('; ')}`)
    })()
    return stopping
  }

  try {
    // The PKI and keys (openssl, a few hundred ms) while containerd starts.
    // allSettled: a failed PKI must not leave a containerd starting behind our back.
    const [idsR, runtimeR] = await Promise.allSettled([
      step('pki and grant keys', () => makeIdentities(join(dir, 'identities'))),
      opts.runtimeEndpoint
        ? Promise.resolve(undefined)
        : step('containerd and registry', async () => {
          const rt = await startLocalRuntime({ dir, log: (l) => log(`runtime: ${l}`) })
          cleanups.push(['runtime', () => rt.stop()])
          return rt
        }),
    ])
    if (idsR.status === 'rejected') throw idsR.reason
    if (runtimeR.status === 'rejected') throw runtimeR.reason
    const ids = idsR.value
    const runtime = runtimeR.value
    const endpoint = opts.runtimeEndpoint ?? runtime!.endpoint
    const image = runtime ? await step('busybox image', () => buildAndPushBusybox(runtime.registry, 'stack/busybox', 'v1')) : undefined

    const memory = memoryLogger('debug')
    const agentCfg = loadConfig([
      '--listen=127.0.0.1:0',
      `--node-name=${node}`,
      `--runtime-endpoint=${endpoint}`,
      `--tls-cert=${ids.server.cert}`, `--tls-key=${ids.server.key}`, `--tls-ca=${ids.pki.ca.cert}`,
      `--allowed-clients=${GATEWAY_ID}`,
      `--grant-jwks-file=${ids.jwksFile}`,
      `--grant-issuer=${GRANT_ISSUER}`,
      `--cluster=${CLUSTER}`,
      `--checkpoint-dir=${join(dir, 'checkpoints')}`,
      '--disk-margin=0',
      ...(opts.agentArgs ?? []),
    ], {})
    const agent = await step('agent', () => startAgent(agentCfg, { log: opts.agentLog ?? memory }))
    cleanups.push(['agent', () => agent.shutdown(5_000)])

    const kube = await step('fake kubernetes api', () => startFakeKube(node))
    cleanups.push(['kubernetes api', () => kube.close()])

    // The dev token issuer: an EdDSA key; the gateway gets its public half as a static JWKS.
    const issuerKid = 'dev-issuer-1'
    const issuer = await generateKeyPair('EdDSA', { extractable: true })
    const issuerJwk = { ...(await exportJWK(issuer.publicKey)), kid: issuerKid, alg: 'EdDSA', use: 'sig' }
    const grantSigningKey = { ...(await exportJWK(ids.grantKey)), kid: ids.kid, alg: 'EdDSA' }

    // The vault's part and download URLs name the gateway, so its port is chosen before it starts.
    const gatewayPort = opts.gatewayPort || (opts.vault ? await freePort() : 0)
    const gatewayConfig = {
      clusters: { [CLUSTER]: { agentUrl: agent.url, kube: { apiUrl: kube.url, tokenSecret: KUBE_TOKEN_SECRET, binding: 'KUBE' } } },
      auth: { issuers: [DEV_ISSUER], audience: DEV_AUDIENCE, jwks: { keys: [issuerJwk] }, algorithms: ['EdDSA'] },
      policy: { rules: [{ id: 'dev', subjects: [subject], actions: ['create', 'read', 'delete'], clusters: [CLUSTER], namespaces: ['*'] }, ...(opts.policyRules ?? [])] },
      grants: { issuer: GRANT_ISSUER },
      ...(opts.hooks ? { hooks: opts.hooks } : {}),
      ...(opts.vault ? { vault: { backend: 'r2', r2: { binding: 'EVIDENCE', publicUrl: `http://127.0.0.1:${gatewayPort}` }, partSizeMiB: 16, recipients: [{ id: 'dev', clusters: ['*'], namespaces: ['*'], recipients: opts.vault.recipients }] } } : {}),
    }
    await step('worker bundle', () => bundleWorker())
    const gw = await step('gateway in workerd', () =>
      startWorkerGateway({
        config: gatewayConfig,
        grantKeys: grantSigningKey,
        client: { cert: ids.gateway.certPem, key: ids.gateway.keyPem },
        ca: ids.pki.ca.certPem,
        secrets: { [KUBE_TOKEN_SECRET]: kube.token, ...opts.secrets },
        port: gatewayPort,
        bindings: { d1: !!opts.hooks || !!opts.vault, queues: !!opts.hooks, ...(opts.vault ? { r2: ['EVIDENCE'] } : {}) },
        ...(opts.gatewayLog ? { onLog: opts.gatewayLog } : {}),
        ...(opts.ownSignals ? { ownSignals: true } : {}),
      }))
    cleanups.push(['gateway', () => gw.close()])
    const gatewayUrl = gw.url
    timings.total = Math.round(performance.now() - t0)
    log(`stack ready in ${timings.total} ms`)

    const local = (what: string): LocalRuntime => {
      if (!runtime) throw new Error(`${what} needs the local runtime (the stack runs against ${endpoint})`)
      return runtime
    }
    return {
      gatewayUrl, kubeUrl: kube.url, cluster: CLUSTER, node, subject, dir, agent, identities: ids, runtime, endpoint, image,
      agentLogs: memory.lines, gatewayLogs: gw.logs, timings,
      async mintToken(scopes, o = {}) {
        const now = Math.floor(Date.now() / 1000)
        return new SignJWT({ scope: typeof scopes === 'string' ? scopes : scopes.join(' ') })
          .setProtectedHeader({ alg: 'EdDSA', kid: issuerKid, typ: 'JWT' })
          .setIssuer(DEV_ISSUER)
          .setAudience(DEV_AUDIENCE)
          .setSubject(o.sub ?? subject)
          .setIssuedAt(now)
          .setExpirationTime(now + (o.expiresInSec ?? 12 * 3600))
          .setJti(randomUUID())
          .sign(issuer.privateKey)
      },
      checkpointPath: (t) => `/v1/clusters/${CLUSTER}/nodes/${node}/checkpoint/${t.namespace}/${t.pod}/${t.container}`,
      listPath: () => `/v1/clusters/${CLUSTER}/nodes/${node}/checkpoints`,
      fetch: (path, init) => fetch(gatewayUrl + path, init),
      runPod: async (spec) => {
        const r = await runPod(local('runPod').endpoint, { ...spec, image: spec.image ?? image! })
        kube.pods.set(r.podId, spec)
        return r
      },
      removePod: async (podId) => {
        await removePod(local('removePod').endpoint, podId)
        kube.pods.delete(podId)
      },
      exec: (containerId, cmd) => {
        const rt = local('exec')
        return rt.ctr(['-n', 'k8s.io', 'tasks', 'exec', '--fifo-dir', join(rt.root, 'fifo'), '--exec-id', `x-${randomUUID().slice(0, 8)}`, containerId, ...cmd])
      },
      stop,
    }
  } catch (err) {
    await stop()
    throw err
  }
}

/**
 * The cluster's Kubernetes API as far as the gateway uses it: `GET /api/v1/namespaces/{ns}/pods/{pod}`
 * with the bearer token, answering the pods in `pods` (by pod sandbox id) as scheduled on `node`;
 * 404 for any other pod, 401 without the token.
 */
async function startFakeKube(node: string) {
  const token = `kube-${randomUUID()}`
  const pods = new Map<string, Target>()
  const json = (res: import('node:http').ServerResponse, status: number, body: unknown) => {
    res.writeHead(status, { 'content-type': 'application/json' })
    res.end(JSON.stringify(body))
  }
  const server = createServer((req, res) => {
    if (req.headers.authorization !== `Bearer ${token}`) return json(res, 401, { kind: 'Status', code: 401, reason: 'Unauthorized' })
    const m = req.method === 'GET' ? /^\/api\/v1\/namespaces\/([^/]+)\/pods\/([^/?]+)$/.exec(req.url ?? '') : null
    const found = m ? [...pods.values()].filter((p) => p.namespace === m[1] && p.pod === m[2]) : []
    if (!m || found.length === 0) return json(res, 404, { kind: 'Status', code: 404, reason: 'NotFound' })
    json(res, 200, {
      kind: 'Pod',
      apiVersion: 'v1',
      metadata: { namespace: m[1], name: m[2] },
      spec: { nodeName: node, containers: found.map((p) => ({ name: p.container })) },
      status: { phase: 'Running' },
    })
  })
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r))
  return {
    url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`,
    token,
    pods,
    close: () =>
      new Promise<void>((r) => {
        server.close(() => r())
        server.closeAllConnections()
      }),
  }
}
