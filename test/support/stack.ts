/**
 * The whole product on one machine, loopback only: a real containerd 2.x (test/runtime/containerd.ts)
 * with a local registry and a busybox image, a throwaway PKI, grant keys, a real agent over mTLS,
 * a dev token issuer, and the gateway's Worker bundle in miniflare (real workerd) reaching the
 * agent through a `network` service binding with a client certificate — the local stand-in for
 * the `mtls_certificates` binding. `test/e2e/gateway.e2e.test.ts` and `npm run dev` both use it.
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
import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { exportJWK, generateKeyPair, SignJWT } from 'jose'
import { startAgent, type RunningAgent } from '../../agent/agent.ts'
import { loadConfig } from '../../agent/config.ts'
import { memoryLogger, type Logger } from '../../agent/log.ts'
import type { Target } from '../../shared/names.ts'
import { bundleWorker } from '../functions/targets.ts'
import { buildAndPushBusybox, removePod, runPod, startLocalRuntime, type LocalRuntime, type PodSpec } from '../runtime/containerd.ts'
import { GATEWAY_ID, makeIdentities, type Identities } from './agent-harness.ts'

/** The one cluster the stack's gateway knows. */
export const CLUSTER = 'local'
/** `iss` and `aud` of the dev token issuer's caller tokens. */
export const DEV_ISSUER = 'https://dev-issuer.checkpoint.local'
export const DEV_AUDIENCE = 'checkpoint-gateway'
/** `iss` of the grants the gateway signs and the agent requires. */
export const GRANT_ISSUER = 'checkpoint-gateway-local'
export const ALL_SCOPES = ['checkpoint:create', 'checkpoint:read', 'checkpoint:delete'] as const
/** The Workers compatibility date of wrangler.toml. */
const COMPATIBILITY_DATE = '2025-09-01'

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
   * The caller handles SIGINT/SIGTERM and calls stop(). Miniflare otherwise installs its own
   * handlers that kill workerd and `process.exit(130)` at once, cutting any teardown short (its
   * `exit` hook, which only kills workerd, stays).
   */
  ownSignals?: boolean
}

export interface Stack {
  /** `http://127.0.0.1:<port>` of the gateway in workerd. */
  gatewayUrl: string
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
  /** Runs a one-container pod with kubelet labels (default image: the stack's busybox). Local runtime only. */
  runPod(spec: Omit<PodSpec, 'image'> & { image?: string }): Promise<{ podId: string; containerId: string }>
  removePod(podId: string): Promise<void>
  /** `ctr tasks exec` in a running container; returns stdout. Local runtime only. */
  exec(containerId: string, cmd: string[]): Promise<string>
  /** Stops the gateway (miniflare), the agent, containerd and the registry; removes the state dir. Idempotent. */
  stop(): Promise<void>
}

/**
 * Starts everything; on any failure tears down what was started before rethrowing.
 * One bundle of functions/worker.ts is built per process (test/functions/targets.ts); callers
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
      `--checkpoint-dir=${join(dir, 'checkpoints')}`,
      '--disk-margin=0',
      ...(opts.agentArgs ?? []),
    ], {})
    const agent = await step('agent', () => startAgent(agentCfg, { log: opts.agentLog ?? memory }))
    cleanups.push(['agent', () => agent.shutdown(5_000)])

    // The dev token issuer: an EdDSA key; the gateway gets its public half as a static JWKS.
    const issuerKid = 'dev-issuer-1'
    const issuer = await generateKeyPair('EdDSA', { extractable: true })
    const issuerJwk = { ...(await exportJWK(issuer.publicKey)), kid: issuerKid, alg: 'EdDSA', use: 'sig' }
    const grantSigningKey = { ...(await exportJWK(ids.grantKey)), kid: ids.kid, alg: 'EdDSA' }

    const gatewayConfig = {
      clusters: { [CLUSTER]: { agentUrl: agent.url } },
      auth: { issuers: [DEV_ISSUER], audience: DEV_AUDIENCE, jwks: { keys: [issuerJwk] }, algorithms: ['EdDSA'] },
      policy: { rules: [{ id: 'dev', subjects: [subject], actions: ['create', 'read', 'delete'], clusters: [CLUSTER], namespaces: ['*'] }] },
      grants: { issuer: GRANT_ISSUER },
    }
    const gatewayLogs: Record<string, unknown>[] = []
    const { script, dir: bundleDir } = await step('worker bundle', () => bundleWorker())
    const { Miniflare } = await import('miniflare')
    const signalsBefore = { SIGINT: process.listeners('SIGINT'), SIGTERM: process.listeners('SIGTERM') }
    const mf = new Miniflare({
      modules: true,
      scriptPath: script,
      modulesRoot: bundleDir,
      compatibilityDate: COMPATIBILITY_DATE,
      host: '127.0.0.1',
      port: opts.gatewayPort ?? 0,
      bindings: { GATEWAY_CONFIG: JSON.stringify(gatewayConfig), GRANT_SIGNING_KEYS: JSON.stringify(grantSigningKey) },
      serviceBindings: {
        AGENT_MTLS: {
          network: {
            allow: ['local'],
            tlsOptions: {
              keypair: { privateKey: ids.gateway.keyPem, certificateChain: ids.gateway.certPem },
              trustedCertificates: [ids.pki.ca.certPem],
            },
          },
        },
      },
      handleStructuredLogs({ message }: { message: string }) {
        let line: Record<string, unknown>
        try {
          line = JSON.parse(message) as Record<string, unknown>
        } catch {
          return // not one of ours
        }
        gatewayLogs.push(line)
        opts.gatewayLog?.(line)
      },
      // workerd echoes console output on stdio too; the structured copy above is the one kept.
      handleRuntimeStdio(stdout: NodeJS.ReadableStream, stderr: NodeJS.ReadableStream) {
        stdout.resume()
        stderr.resume()
      },
    })
    cleanups.push(['gateway', () => mf.dispose()])
    if (opts.ownSignals) {
      for (const sig of ['SIGINT', 'SIGTERM'] as const) {
        for (const l of process.listeners(sig)) if (!signalsBefore[sig].includes(l)) process.removeListener(sig, l)
      }
    }
    const gatewayUrl = (await step('gateway in workerd', () => mf.ready)).href.replace(/\/$/, '')
    timings.total = Math.round(performance.now() - t0)
    log(`stack ready in ${timings.total} ms`)

    const local = (what: string): LocalRuntime => {
      if (!runtime) throw new Error(`${what} needs the local runtime (the stack runs against ${endpoint})`)
      return runtime
    }
    return {
      gatewayUrl, cluster: CLUSTER, node, subject, dir, agent, identities: ids, runtime, endpoint, image,
      agentLogs: memory.lines, gatewayLogs, timings,
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
      runPod: (spec) => runPod(local('runPod').endpoint, { ...spec, image: spec.image ?? image! }),
      removePod: (podId) => removePod(local('removePod').endpoint, podId),
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
