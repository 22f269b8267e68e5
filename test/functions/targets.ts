/**
 * The two ways the suite reaches a gateway: the Node entry (real HTTP on loopback) and the
 * Worker bundle in miniflare (real workerd; the agent reached through a `network` service binding
 * with tlsOptions — the local stand-in for the `mtls_certificates` binding).
 */
import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { parseConfig } from '../../functions/config.ts'
import { loadGrantKeys } from '../../functions/grants.ts'
import { startNodeGateway } from '../../functions/node.ts'
import { KUBE_TOKEN, type World } from './fixtures.ts'

export interface Target {
  name: string
  fetch(path: string, init?: RequestInit): Promise<Response>
  /** Audit and log lines the gateway wrote. */
  logs: Array<Record<string, unknown>>
  close(): Promise<void>
}

export type MakeTarget = (world: World, raw: Record<string, unknown>) => Promise<Target>

const secrets = (n: string) => (n === 'KUBE_TOKEN_PROD' ? KUBE_TOKEN : undefined)

export const nodeTarget: MakeTarget = async (world, raw) => {
  const logs: Array<Record<string, unknown>> = []
  const gw = await startNodeGateway({
    config: parseConfig(structuredClone(raw), secrets),
    keys: await loadGrantKeys(world.grantKeys),
    client: { cert: world.pki.clientCert, key: world.pki.clientKey },
    port: 0,
    log: (l) => logs.push(l),
  })
  return {
    name: 'node',
    logs,
    fetch: (path, init) => fetch(gw.url + path, init),
    close: () => gw.close(2000),
  }
}

let bundled: Promise<{ dir: string; script: string }> | undefined

/** Bundles functions/worker.ts with esbuild once per process. */
export function bundleWorker(): Promise<{ dir: string; script: string }> {
  bundled ??= (async () => {
    const { build } = await import('esbuild')
    const dir = mkdtempSync(join(tmpdir(), 'cp-worker-'))
    const script = join(dir, 'worker.js')
    await build({
      entryPoints: [fileURLToPath(new URL('../../functions/worker.ts', import.meta.url))],
      bundle: true,
      format: 'esm',
      platform: 'neutral',
      target: 'es2022',
      mainFields: ['module', 'main'],
      conditions: ['workerd', 'worker', 'browser', 'import'],
      outfile: script,
      logLevel: 'error',
    })
    return { dir, script }
  })()
  return bundled
}

export function removeBundle(): void {
  bundled?.then(({ dir }) => rmSync(dir, { recursive: true, force: true })).catch(() => {})
}

export const workerTarget: MakeTarget = async (world, raw) => {
  const { Miniflare } = await import('miniflare')
  const { dir, script } = await bundleWorker()
  const logs: Array<Record<string, unknown>> = []
  // workerd also echoes console output on stdio; the structured copy is the one we keep.
  const drain = (stream: NodeJS.ReadableStream) => void stream.resume()
  const mf = new Miniflare({
    modules: true,
    scriptPath: script,
    modulesRoot: dir,
    compatibilityDate: '2025-09-01',
    bindings: { GATEWAY_CONFIG: JSON.stringify(raw), GRANT_SIGNING_KEYS: JSON.stringify(world.grantKeys), KUBE_TOKEN_PROD: KUBE_TOKEN },
    serviceBindings: {
      AGENT_MTLS: {
        network: {
          allow: ['local', 'private'],
          tlsOptions: {
            keypair: { privateKey: world.pki.clientKey, certificateChain: world.pki.clientCert },
            trustedCertificates: [world.pki.caCert],
          },
        },
      },
      KUBE: { network: { allow: ['local', 'private'] } },
    },
    handleStructuredLogs({ message }: { message: string }) {
      try {
        logs.push(JSON.parse(message))
      } catch {
        // not one of ours
      }
    },
    handleRuntimeStdio(stdout: NodeJS.ReadableStream, stderr: NodeJS.ReadableStream) {
      drain(stdout)
      drain(stderr)
    },
  })
  const base = (await mf.ready).href.replace(/\/$/, '')
  return {
    name: 'workerd',
    logs,
    fetch: async (path, init) => (await mf.dispatchFetch(base + path, init as never)) as unknown as Response,
    close: () => mf.dispose(),
  }
}
