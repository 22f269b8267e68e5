/**
 * The checkpoint gateway: one Hono app that runs unchanged on Cloudflare Workers and on Node, and
 * mounts inside another Hono app. Everything that differs between runtimes (how the agent is
 * reached over mTLS, how config is read, where logs go) comes in through {@link Deps}; handlers
 * never ask which runtime they are on. This file is the middleware order and the route table.
 *
 * Every /v1 request: authenticate (401/503) → validate (400) → authorize (403) → find the
 * cluster (404) → sign a grant → forward to the node's agent → map the answer.
 */
import { Hono } from 'hono'
import { asCheckpointError, CheckpointError } from '../shared/errors.ts'
import { createConfigGetHandler, createConfigHistoryHandler, createConfigPutHandler } from './admin/routes.ts'
import { createAgentClient } from './agent-client.ts'
import { createArchiveHandler, createListHandler } from './archives.ts'
import { auditOutcome, createAuditTrail, requestContext } from './audit.ts'
import { bearerAuth, createAuthenticator } from './authn.ts'
import { createCheckpointHandler } from './checkpoints.ts'
import { NO_STORE, type Deps, type Env, type Gateway } from './context.ts'
import { createGrafanaSignature, createWebhookHandler } from './hooks/routes.ts'
import { createJobs } from './jobs.ts'
import { createNodeResolver } from './kube.ts'
import { OPENAPI } from './openapi.ts'
import { createStatementKeysHandler } from './custody/keys.ts'
import { createCustodyHandler } from './custody/routes.ts'
import { createEvidenceListHandler, createEvidenceUrlHandler } from './vault/routes.ts'
import { createObjectHandler, createPartUploadHandler } from './vault/r2.ts'
import { createStoreArchiveHandler } from './vault/store-route.ts'
import { openStorage } from './vault/vault.ts'
import { createOperationHandler, createOperationListHandler } from './operations/routes.ts'

export type { AdminDeps, AgentTransport, Audit, Clock, Deps, Env, Gateway, KubeTransport, Log } from './context.ts'

/**
 * Builds the gateway with its job runner (Workers' `queue()` handler and Node's queue call it).
 *
 * @example
 * const { app } = createGateway({ config, agents, keys, clock: { now: Date.now }, log: (l) => console.log(JSON.stringify(l)) })
 * export default { fetch: app.fetch }
 * @example
 * // Mounted under a prefix in another Hono app: the same prefix as `basePath`, for the links it writes.
 * const gateway = createGateway({ ...deps, basePath: '/forensics' })
 * outer.route('/forensics', gateway.app)
 */
export function createGateway(deps: Deps): Gateway {
  const { config, keys, clock, log, operations } = deps
  const basePath = deps.basePath ?? ''
  if (basePath !== '' && !/^(\/[A-Za-z0-9._~-]+)+$/.test(basePath)) throw new Error(`basePath ${JSON.stringify(basePath)}: '' or /segment[/segment…], no trailing slash`)
  const trail = createAuditTrail({ log, clock })
  const agent = createAgentClient({ config, agents: deps.agents, keys, clock, basePath })
  const resolveNode = createNodeResolver({ config, kube: deps.kube, clock })
  const custody = deps.custody
  const statementKeys = deps.statementKeys
  const archives = { config, agent, trail, ...(custody ? { custody } : {}) }
  const now = () => clock.now()
  const vault = config.vault && { cfg: config.vault, storage: openStorage(config.vault, { keys, now, ...(deps.bucket ? { bucket: deps.bucket } : {}) }) }
  const checkpoints = { config, agent, resolveNode, trail, clock, ...(statementKeys ? { statementKeys } : {}), ...(vault ? { vault } : {}), ...(custody ? { custody } : {}) }
  const webhooks = operations && { config, ...operations, clock, log }
  const grafana = operations && config.hooks?.grafana
  const admin = deps.admin && { config, admin: deps.admin, trail }
  const app = new Hono<Env>()

  app.use('*', requestContext(clock))
  app.get('/healthz', (c) => c.json({ status: 'ok' }, 200, NO_STORE))
  app.get('/.well-known/jwks.json', (c) => c.json(keys.jwks(), 200, { 'cache-control': 'public, max-age=300' }))
  const described = { ...OPENAPI, servers: [{ url: basePath || '/' }] }
  app.get('/openapi.json', (c) => c.json(described, 200, { 'cache-control': 'public, max-age=300' }))
  app.use('/v1/*', auditOutcome(trail))
  if (config.hooks && grafana) app.use('/v1/hooks/grafana', createGrafanaSignature(config.hooks, grafana, clock))
  // The r2 vault's own URLs carry a capability instead of a caller token: routed before authentication.
  if (vault?.cfg.backend === 'r2') {
    const bucket = deps.bucket!(vault.cfg.r2!.binding)!
    app.put('/v1/vault/uploads/:upload/parts/:part', createPartUploadHandler({ bucket, keys, now, maxPartBytes: vault.cfg.partSizeBytes }))
    app.get('/v1/vault/objects/:key{.+}', createObjectHandler({ bucket, keys, now }))
  }
  app.use('/v1/*', bearerAuth(createAuthenticator(config.auth, now)))

  app.post('/v1/clusters/:cluster/nodes/:node/checkpoint/:namespace/:pod/:container', createCheckpointHandler(checkpoints, true))
  app.post('/v1/clusters/:cluster/checkpoint/:namespace/:pod/:container', createCheckpointHandler(checkpoints, false))
  app.get('/v1/clusters/:cluster/nodes/:node/checkpoints', createListHandler(archives))
  app.get('/v1/clusters/:cluster/nodes/:node/checkpoints/:name', createArchiveHandler(archives, 'read'))
  if (vault) app.post('/v1/clusters/:cluster/nodes/:node/checkpoints/:name/store', createStoreArchiveHandler({ config, agent, trail, vault, clock, ...(custody ? { custody } : {}) }))
  app.delete('/v1/clusters/:cluster/nodes/:node/checkpoints/:name', createArchiveHandler(archives, 'delete'))
  if (custody) app.get('/v1/custody/:cluster/:node/:name', createCustodyHandler({ config, trail, custody }))
  if (statementKeys) app.get('/v1/clusters/:cluster/statement-keys', createStatementKeysHandler({ config, trail, keys: statementKeys }))
  if (custody && vault) {
    const evidence = { config, trail, custody, storage: vault.storage, basePath }
    app.get('/v1/evidence', createEvidenceListHandler(evidence))
    app.get('/v1/evidence/:id{.+}', createEvidenceUrlHandler(evidence))
  }
  if (webhooks) {
    app.post('/v1/hooks/alertmanager', createWebhookHandler(webhooks, 'alertmanager'))
    app.post('/v1/hooks/grafana', createWebhookHandler(webhooks, 'grafana'))
    app.get('/v1/operations', createOperationListHandler(webhooks))
    app.get('/v1/operations/:id', createOperationHandler(webhooks))
  }
  if (admin) {
    app.get('/v1/admin/config', createConfigGetHandler(admin))
    app.put('/v1/admin/config', createConfigPutHandler(admin))
    app.get('/v1/admin/config/history', createConfigHistoryHandler(admin))
  }

  // A catch-all route, not app.notFound: a parent app's route() carries routes (and onError) over, not notFound.
  app.all('*', (c) => trail.problem(c, new CheckpointError('not_found', `no route for ${c.req.method} ${new URL(c.req.url).pathname.slice(0, 200)}`)))
  app.onError((err, c) => trail.problem(c, asCheckpointError(err)))

  const jobs = operations && createJobs({ config, operations, agent, resolveNode, trail, clock, ...(vault ? { vault } : {}), ...(custody ? { custody } : {}), ...(statementKeys ? { statementKeys } : {}) })
  return { app, runOperation: jobs?.runOperation ?? (async () => {}), sweepOperations: jobs?.sweepOperations ?? (async () => 0) }
}
