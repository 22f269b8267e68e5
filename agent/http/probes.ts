/**
 * What the kubelet and Prometheus ask, behind the same identity filter as everything else:
 * /healthz (the process answers), /readyz (the runtime answers CRI Version), /metrics.
 */
import { CheckpointError } from '../../shared/errors.ts'
import { sendJson, type AgentDeps, type Ctx } from './context.ts'

export async function healthz(ctx: Ctx): Promise<void> {
  sendJson(ctx.res, 200, '{"status":"ok"}')
}

export async function readyz(ctx: Ctx, d: AgentDeps): Promise<void> {
  let timer: NodeJS.Timeout | undefined
  try {
    const v = await Promise.race([
      d.runtime.version(),
      new Promise<never>((_, rej) => (timer = setTimeout(() => rej(new Error('runtime did not answer Version within 3s')), 3000))),
    ])
    sendJson(ctx.res, 200, JSON.stringify({ status: 'ready', node: d.node, runtime: { name: v.runtimeName, version: v.runtimeVersion, apiVersion: v.runtimeApiVersion } }))
  } catch (err) {
    throw new CheckpointError('runtime_unavailable', `runtime not ready: ${(err as Error).message}`, { cause: err })
  } finally {
    clearTimeout(timer)
  }
}

export async function metrics(ctx: Ctx, d: AgentDeps): Promise<void> {
  const body = d.metrics.render()
  ctx.res.writeHead(200, { 'content-type': 'text/plain; version=0.0.4; charset=utf-8', 'content-length': Buffer.byteLength(body) }).end(body)
}
