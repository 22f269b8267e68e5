/**
 * The gateway of the active configuration version, per isolate (Workers) or process (Node). The
 * app is built for one configuration (its policy index, token cache and pod → node cache live in
 * it), so a new version means a new app: this module keeps the active one, asks the source for a
 * newer version at most every `refreshMs`, builds the new app beside the old one and switches
 * only when the build succeeded. A version that does not validate here never becomes active; the
 * isolate keeps serving the one it has and logs why.
 *
 * The bound: a request is served by a version the source named at most `refreshMs` before the
 * request started. When the last check is older, the request waits for a new one (concurrent
 * requests share it); a source that cannot be read is logged and tried again after `refreshMs`,
 * the active version serving meanwhile.
 */
import { CheckpointError } from '../shared/errors.ts'
import type { ConfigHead, ConfigSource, ConfigVersion } from './admin/model.ts'
import { createGateway } from './app.ts'
import type { GatewayConfig } from './config.ts'
import type { AdminDeps, Deps, Gateway } from './context.ts'
import type { Operations } from './operations/model.ts'
import { problemResponse } from './problem.ts'

export interface LiveGatewayOptions {
  source: ConfigSource
  /** Parses and checks a document as this runtime runs it (secrets, bindings); throws an `Error` naming the field. */
  validate(raw: unknown): GatewayConfig
  /** Everything createGateway needs besides the configuration. */
  deps: Omit<Deps, 'config' | 'admin' | 'operations'>
  /** Webhook storage; given to the versions that configure `hooks`. */
  operations?: Operations
  /** How long a checked version is served before the source is asked again (0: every request). */
  refreshMs: number
}

export interface LiveGateway {
  /** Answers with the active version's app; 500 `internal` when no version could ever be built. */
  fetch(request: Request, env?: unknown, ctx?: unknown): Promise<Response>
  /** The active version's gateway, checking the source first when the last check is older than `refreshMs`. */
  current(): Promise<Gateway>
  runOperation(opId: string): Promise<void>
  sweepOperations(): Promise<number>
  /** The version being served (undefined before the first one was built). */
  active(): ConfigHead | undefined
}

/**
 * @example
 * const live = createLiveGateway({ source, validate, deps: { agents, keys, clock, log }, refreshMs: 30_000 })
 * export default { fetch: (req, env, ctx) => live.fetch(req, env, ctx) }
 */
export function createLiveGateway(o: LiveGatewayOptions): LiveGateway {
  const { source, validate, refreshMs } = o
  const { clock, log } = o.deps
  let active: (ConfigHead & { gateway: Gateway; checkedAt: number }) | undefined
  /** A version that did not build here: not tried again until the source moves on. */
  let refused: string | undefined
  let pending: Promise<Gateway> | undefined

  const admin: AdminDeps = {
    source,
    validate,
    async activate() {
      // A check that started before the change was stored may miss it: wait for it, then look again.
      await pending?.catch(() => {})
      await check()
    },
  }

  const keep = (at: number, why: string, err: unknown): Gateway => {
    if (!active) throw err
    log({ type: 'error', error: `configuration: ${why}: ${err instanceof Error ? err.message : String(err)}`, activeVersion: active.version })
    active.checkedAt = at
    return active.gateway
  }

  async function refresh(): Promise<Gateway> {
    const at = clock.now()
    let head: ConfigHead
    try {
      head = await source.head()
    } catch (err) {
      return keep(at, 'the source could not be read', err)
    }
    if (active && (head.etag === active.etag || head.etag === refused)) {
      active.checkedAt = at
      return active.gateway
    }
    let v: ConfigVersion
    try {
      v = await source.latest()
    } catch (err) {
      return keep(at, 'the source could not be read', err)
    }
    let gateway: Gateway
    try {
      const config = validate(JSON.parse(v.document))
      gateway = createGateway({ ...o.deps, config, admin, ...(o.operations && config.hooks ? { operations: o.operations } : {}) })
    } catch (err) {
      refused = v.etag
      return keep(at, `version ${v.version} was not activated`, err)
    }
    const previous = active?.version
    active = { version: v.version, etag: v.etag, gateway, checkedAt: at }
    log({ type: 'config_activated', source: source.kind, version: v.version, etag: v.etag, ...(previous !== undefined ? { previous } : {}) })
    return gateway
  }

  function check(): Promise<Gateway> {
    return (pending ??= refresh().finally(() => {
      pending = undefined
    }))
  }

  function current(): Promise<Gateway> {
    if (active && clock.now() - active.checkedAt < refreshMs) return Promise.resolve(active.gateway)
    return check()
  }

  return {
    current,
    async fetch(request, env, ctx) {
      let gateway: Gateway
      try {
        gateway = await current()
      } catch (err) {
        log({ type: 'error', error: `configuration: ${err instanceof Error ? err.message : String(err)}` })
        return problemResponse(new CheckpointError('internal', 'gateway misconfigured'))
      }
      return gateway.app.fetch(request, env as never, ctx as never)
    },
    runOperation: async (id) => (await current()).runOperation(id),
    sweepOperations: async () => (await current()).sweepOperations(),
    active: () => (active ? { version: active.version, etag: active.etag } : undefined),
  }
}
