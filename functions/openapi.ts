/**
 * The gateway's public HTTP API as one OpenAPI 3.1 document, served at `/openapi.json` so API
 * gateways and clients can import it. Error codes come from the shared table, so the document
 * cannot name a code that does not exist; `test/functions/openapi.test.ts` holds it against the
 * routes the app registers and validates the gateway suite's real responses against its schemas.
 * Each operation lists the codes it can answer in `x-error-codes`.
 */
import { ERROR_STATUS, type ErrorCode } from '../shared/errors.ts'

type Schema = Record<string, unknown>
const ref = (name: string): Schema => ({ $ref: `#/components/schemas/${name}` })
const str = (pattern?: string, extra: Schema = {}): Schema => ({ type: 'string', ...(pattern ? { pattern } : {}), ...extra })

const LABEL = '^[a-z0-9]([-a-z0-9]*[a-z0-9])?$'
const SUBDOMAIN = '^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$'
const pathParam = (name: string, schema: Schema, description: string) => ({ name, in: 'path', required: true, schema, description })
const PARAMS = {
  cluster: pathParam('cluster', str('^[a-z0-9][a-z0-9_-]{0,62}$'), 'a cluster id registered in the gateway'),
  node: pathParam('node', str(SUBDOMAIN, { maxLength: 253 }), 'the node (DNS-1123 subdomain)'),
  namespace: pathParam('namespace', str(LABEL, { maxLength: 63 }), 'DNS-1123 label'),
  pod: pathParam('pod', str(SUBDOMAIN, { maxLength: 253 }), 'DNS-1123 subdomain'),
  container: pathParam('container', str(LABEL, { maxLength: 63 }), 'DNS-1123 label'),
  name: pathParam('name', str('^checkpoint-.+\\.tar$', { maxLength: 400 }), 'archive name: checkpoint-<pod>_<namespace>-<container>-<RFC3339>.tar'),
  timeout: { name: 'timeout', in: 'query', schema: str('^\\d{1,9}$'), description: 'whole seconds the caller waits (0 = default)' },
  reason: { name: 'reason', in: 'query', schema: str(undefined, { minLength: 1, maxLength: 256 }), description: 'why, in 1..256 characters: it goes into the grant and the signed statement' },
  store: { name: 'store', in: 'query', schema: { const: 'vault' }, description: 'seal the archive (zstd, age to the configured recipients) and store it in the evidence vault after the checkpoint' },
  recipient: { name: 'recipient', in: 'query', schema: str('^age1[02-9ac-hj-np-z]{58}(,age1[02-9ac-hj-np-z]{58}){0,63}$'), description: 'seal to these recipients only (comma-separated, each one configuration allows for the target; 403 forbidden otherwise)' },
  archiveNamespace: { name: 'namespace', in: 'query', schema: str(LABEL, { maxLength: 63 }), description: 'the archive\'s namespace: picks one reading of the name; without it every reading must be allowed' },
}

/** Codes every authenticated route can answer. */
const AUTH: ErrorCode[] = ['unauthenticated', 'auth_unavailable', 'forbidden', 'invalid_query', 'malformed_request', 'headers_too_large']
/** What the agent can answer to a checkpoint, passed through with its status. */
const AGENT_CHECKPOINT: ErrorCode[] = ['container_not_found', 'checkpointing_disabled', 'too_many_requests', 'shutting_down', 'runtime_unavailable', 'internal', 'runtime_error', 'runtime_unimplemented', 'checkpoint_failed', 'insufficient_storage', 'timeout', 'bad_gateway']
const AGENT_ARCHIVE: ErrorCode[] = ['archive_not_found', 'invalid_range', 'bad_gateway', 'timeout', 'runtime_unavailable', 'shutting_down', 'internal']

const problemResponses = (codes: ErrorCode[]) => {
  const out: Record<string, unknown> = {}
  for (const status of [...new Set(codes.map((c) => ERROR_STATUS[c]))].sort()) {
    out[String(status)] = { description: codes.filter((c) => ERROR_STATUS[c] === status).join(', '), content: { 'application/problem+json': { schema: ref('Problem') } } }
  }
  return out
}

function op(summary: string, o: { params?: unknown[]; ok: Record<string, unknown>; codes: ErrorCode[]; auth?: boolean; body?: unknown }) {
  const codes = [...new Set([...(o.auth === false ? [] : AUTH), ...o.codes])]
  return {
    summary,
    ...(o.params ? { parameters: o.params } : {}),
    ...(o.body ? { requestBody: o.body } : {}),
    ...(o.auth === false ? { security: [] } : {}),
    responses: { ...o.ok, ...problemResponses(codes) },
    'x-error-codes': codes,
  }
}
const json = (description: string, schema: Schema) => ({ description, content: { 'application/json': { schema } } })

const checkpointOk = {
  '200': {
    description: 'With `Accept: application/x-ndjson` the agent\'s events as they come, one JSON object per line, the last one `completed` or `failed`; otherwise one JSON body',
    content: { 'application/json': { schema: ref('CheckpointResult') }, 'application/x-ndjson': { schema: ref('CheckpointEvent') } },
  },
}
const CREATE_CODES: ErrorCode[] = ['invalid_name', 'invalid_timeout', 'invalid_body', 'invalid_recipient', 'not_found', ...AGENT_CHECKPOINT]

const alertSummary: Schema = {
  type: 'object',
  required: ['index', 'fingerprint', 'alertname', 'outcome'],
  properties: {
    index: { type: 'integer' }, fingerprint: { type: 'string' }, alertname: { type: 'string' },
    outcome: { enum: ['accepted', 'duplicate', 'skipped'] }, operation: { type: 'string' }, state: { type: 'string' },
    reason: { enum: ['invalid_alert', 'resolved', 'not_selected', 'missing_label', 'invalid_label', 'unknown_cluster', 'forbidden', 'cooldown', 'storm'] },
    label: { type: 'string' }, field: { type: 'string' },
  },
}
const ADMIN_CODES: ErrorCode[] = ['invalid_body', 'internal']
const configHeaders = {
  ETag: { description: 'the version\'s strong entity tag, for If-Match', schema: { type: 'string' } },
  'x-config-version': { description: 'the version number (0: the variable, not versioned)', schema: { type: 'string' } },
  'x-config-source': { description: '`variable`, `bundled`, `file` or `store` (GATEWAY_CONFIG_SOURCE)', schema: { enum: ['variable', 'store', 'file', 'bundled'] } },
}
const configDocument = { type: 'object', description: 'the gateway configuration (functions/README.md, Configuration)' }

const hookOp = (source: string, version: string) => op(`Turn the firing alerts of a ${source} notification (version "${version}") into checkpoint operations`, {
  body: { required: true, content: { 'application/json': { schema: { type: 'object', required: ['version', 'alerts'], properties: { version: { const: version }, status: { type: 'string' }, alerts: { type: 'array' } } } } } },
  ok: { '200': json('nothing was accepted (each alert says why)', ref('HookAnswer')), '202': json('one or more alerts became operations', ref('HookAnswer')) },
  codes: ['invalid_body', 'payload_too_large', 'not_found'],
})

export const OPENAPI = {
  openapi: '3.1.0',
  info: {
    title: 'checkpoint gateway',
    version: '0.1.0',
    description: 'Forensic container checkpoints for Kubernetes fleets: authenticated, authorized by policy, forwarded over mutual TLS to the node agent. Errors are RFC 9457 problem+json with a stable `code`; match on it, never on text.',
  },
  components: {
    securitySchemes: { bearer: { type: 'http', scheme: 'bearer', bearerFormat: 'JWT' } },
    schemas: {
      Problem: {
        type: 'object',
        required: ['type', 'title', 'status', 'code', 'detail'],
        properties: {
          type: { type: 'string' }, title: { type: 'string' }, status: { type: 'integer', minimum: 400, maximum: 599 },
          code: { enum: Object.keys(ERROR_STATUS) }, detail: { type: 'string' }, field: { type: 'string' },
          requestId: { type: 'string' }, missing: { type: 'string' }, cluster: { type: 'string' }, node: { type: 'string' },
          runtimeLog: { type: 'array', items: { type: 'string' } }, agentCode: { type: 'string' }, agentStatus: { type: 'integer' },
          agentField: { type: 'string' }, reason: { type: 'string' },
          etag: { type: 'string', description: 'precondition_failed: the newest version\'s tag' }, version: { type: 'integer' }, source: { enum: ['variable', 'store', 'file', 'bundled'] },
        },
        'x-status-of-code': ERROR_STATUS,
      },
      Runtime: { type: 'object', required: ['name', 'version'], properties: { name: { type: 'string' }, version: { type: 'string' } } },
      Archive: {
        type: 'object',
        required: ['name', 'size', 'sha256', 'created'],
        properties: { name: { type: 'string' }, size: { type: 'integer', minimum: 0 }, sha256: str('^([0-9a-f]{64})?$'), created: { type: 'string', format: 'date-time' } },
      },
      ArchiveListItem: {
        allOf: [ref('Archive'), {
          type: 'object',
          required: ['namespace', 'pod', 'container', 'download'],
          properties: { namespace: { type: 'string' }, pod: { type: 'string' }, container: { type: 'string' }, sha256Known: { type: 'boolean' }, download: { type: 'string' } },
        }],
      },
      ArchiveList: { type: 'object', required: ['cluster', 'node', 'items'], properties: { cluster: { type: 'string' }, node: { type: 'string' }, items: { type: 'array', items: ref('ArchiveListItem') } } },
      CheckpointResult: {
        type: 'object',
        required: ['items', 'archive', 'cluster', 'node', 'download', 'containerId', 'runtime', 'durationMs'],
        properties: {
          items: { type: 'array', items: { type: 'string' }, description: 'the archive paths on the node, as the kubelet answers' },
          archive: ref('Archive'), cluster: { type: 'string' }, node: { type: 'string' }, download: { type: 'string' },
          containerId: { type: 'string' }, runtime: ref('Runtime'), durationMs: { type: 'number' },
          statement: { type: 'object', description: 'the agent\'s signed statement: a Sigstore bundle (v0.3) with a DSSE envelope' },
          stored: ref('Stored'), storeFailed: ref('StoreFailed'),
        },
      },
      Evidence: {
        type: 'object',
        required: ['id', 'cluster', 'namespace', 'pod', 'container', 'archive', 'storedAt'],
        properties: {
          id: { type: 'string' }, cluster: { type: 'string' }, namespace: { type: 'string' }, pod: { type: 'string' }, container: { type: 'string' },
          archive: { type: 'string' }, node: { type: 'string' }, storedAt: { type: 'string' }, bucket: { type: 'string' }, sealed: ref('Digest'), recipients: { type: 'array', items: { type: 'string' } },
        },
      },
      Digest: { type: 'object', required: ['sha256', 'size'], properties: { sha256: str('^[0-9a-f]{64}$'), size: { type: 'integer', minimum: 0 } } },
      Stored: {
        type: 'object',
        required: ['type', 'bucket', 'key', 'plaintext', 'sealed', 'recipients', 'parts', 'time'],
        properties: { type: { const: 'stored' }, bucket: { type: 'string' }, key: { type: 'string' }, statementKey: { type: 'string' }, plaintext: ref('Digest'), sealed: ref('Digest'), recipients: { type: 'array', items: { type: 'string' } }, parts: { type: 'integer' }, time: { type: 'string' } },
      },
      StoreFailed: {
        type: 'object',
        required: ['type', 'code', 'status', 'message', 'time'],
        properties: { type: { const: 'store_failed' }, code: { enum: Object.keys(ERROR_STATUS) }, status: { type: 'integer' }, message: { type: 'string' }, time: { type: 'string' } },
      },
      CheckpointEvent: {
        type: 'object',
        required: ['type', 'time'],
        properties: { type: { enum: ['accepted', 'resolved', 'heartbeat', 'completed', 'failed', 'sealing', 'uploading', 'stored', 'store_failed'] }, time: { type: 'string' } },
        oneOf: [
          { properties: { type: { const: 'accepted' } }, required: ['requestId', 'node', 'target', 'timeoutSeconds', 'queuePosition'] },
          { properties: { type: { const: 'resolved' } }, required: ['containerId', 'runtime'] },
          { properties: { type: { const: 'heartbeat' }, phase: { enum: ['queued', 'checkpointing', 'hashing'] } }, required: ['elapsedMs', 'phase'] },
          { properties: { type: { const: 'completed' }, archive: ref('Archive'), runtime: ref('Runtime') }, required: ['items', 'archive', 'runtime', 'containerId', 'durationMs'] },
          { properties: { type: { const: 'failed' }, code: { enum: Object.keys(ERROR_STATUS) }, status: { type: 'integer' }, runtimeLog: { type: 'array', items: { type: 'string' } } }, required: ['status', 'code', 'message'] },
          { properties: { type: { const: 'sealing' } }, required: ['read', 'total', 'sealed'] },
          { properties: { type: { const: 'uploading' } }, required: ['part', 'sentBytes'] },
          ref('Stored'),
          ref('StoreFailed'),
        ],
      },
      HookAnswer: {
        type: 'object',
        required: ['accepted', 'duplicate', 'skipped', 'truncatedAlerts', 'alerts'],
        properties: {
          receiver: { type: 'string' }, status: { type: 'string' }, truncatedAlerts: { type: 'integer' },
          accepted: { type: 'integer' }, duplicate: { type: 'integer' }, skipped: { type: 'integer' }, alerts: { type: 'array', items: alertSummary },
        },
      },
      PermissionChange: {
        type: 'object',
        required: ['change', 'caller', 'action', 'clusters', 'namespaces', 'rules'],
        properties: {
          change: { enum: ['gained', 'lost'] }, caller: str('^(subject|group|client):'), action: { enum: ['create', 'read', 'delete', 'admin'] },
          clusters: { type: 'array', items: { type: 'string' } }, namespaces: { type: 'array', items: { type: 'string' } },
          pods: { type: 'array', items: { type: 'string' } }, containers: { type: 'array', items: { type: 'string' } }, rules: { type: 'array', items: { type: 'string' } },
        },
      },
      ConfigSummary: {
        type: 'object',
        required: ['clusters', 'rules', 'permissions', 'sections'],
        properties: {
          clusters: ref('ChangedIds'), rules: ref('ChangedIds'), permissions: { type: 'array', items: ref('PermissionChange') },
          sections: { type: 'array', items: { type: 'string' } }, truncated: { type: 'boolean' },
        },
      },
      ChangedIds: {
        type: 'object',
        required: ['added', 'removed', 'changed'],
        properties: { added: { type: 'array', items: { type: 'string' } }, removed: { type: 'array', items: { type: 'string' } }, changed: { type: 'array', items: { type: 'string' } } },
      },
      Operation: {
        type: 'object',
        required: ['id', 'state', 'source', 'alert', 'cluster', 'namespace', 'pod', 'container', 'attempts', 'createdAt', 'updatedAt'],
        properties: {
          id: { type: 'string' }, state: { enum: ['queued', 'running', 'succeeded', 'failed', 'skipped'] }, source: { enum: ['alertmanager', 'grafana'] },
          alert: { type: 'object', properties: { name: { type: 'string' }, fingerprint: { type: 'string' }, startsAt: { type: 'string' } } },
          cluster: { type: 'string' }, namespace: { type: 'string' }, pod: { type: 'string' }, container: { type: 'string' }, node: { type: 'string' },
          attempts: { type: 'integer' }, createdAt: { type: 'string' }, updatedAt: { type: 'string' }, nextAttemptAt: { type: 'string' },
          reason: { type: 'string' }, archive: ref('Archive'), download: { type: 'string' },
          stored: {
            type: 'object', description: 'hooks.store: where the vault holds the archive (`key` is its evidence id)', required: ['bucket', 'key', 'sealed'],
            properties: { bucket: { type: 'string' }, key: { type: 'string' }, sealed: { type: 'object', required: ['sha256', 'size'], properties: { sha256: { type: 'string' }, size: { type: 'integer' } } } },
          },
          storeFailed: { type: 'object', description: 'hooks.store: why storing failed (the archive stays on the node)', required: ['code', 'message'], properties: { code: { enum: Object.keys(ERROR_STATUS) }, message: { type: 'string' } } },
          error: {
            type: 'object',
            required: ['code', 'status', 'attempts'],
            properties: { code: { enum: Object.keys(ERROR_STATUS) }, status: { type: 'integer' }, message: { type: 'string' }, attempts: { type: 'integer' }, runtimeLog: { type: 'array', items: { type: 'string' } } },
          },
        },
      },
    },
  },
  security: [{ bearer: [] }],
  paths: {
    '/healthz': { get: op('Liveness', { auth: false, ok: { '200': json('ok', { type: 'object', required: ['status'], properties: { status: { const: 'ok' } } }) }, codes: [] }) },
    '/openapi.json': { get: op('This document', { auth: false, ok: { '200': json('OpenAPI 3.1', { type: 'object' }) }, codes: [] }) },
    '/.well-known/jwks.json': {
      get: op('The public grant-signing keys, for the agents\' --grant-jwks-url', { auth: false, ok: { '200': json('a JWK set without private members', { type: 'object', required: ['keys'], properties: { keys: { type: 'array', items: { type: 'object', not: { required: ['d'] } } } } }) }, codes: [] }),
    },
    '/v1/clusters/{cluster}/nodes/{node}/checkpoint/{namespace}/{pod}/{container}': {
      post: op('Checkpoint a container on a named node', { params: [PARAMS.cluster, PARAMS.node, PARAMS.namespace, PARAMS.pod, PARAMS.container, PARAMS.timeout, PARAMS.reason, PARAMS.store, PARAMS.recipient], ok: checkpointOk, codes: CREATE_CODES }),
    },
    '/v1/clusters/{cluster}/checkpoint/{namespace}/{pod}/{container}': {
      post: op('Checkpoint a container; the node comes from the cluster\'s Kubernetes API', { params: [PARAMS.cluster, PARAMS.namespace, PARAMS.pod, PARAMS.container, PARAMS.timeout, PARAMS.reason, PARAMS.store, PARAMS.recipient], ok: checkpointOk, codes: [...CREATE_CODES, 'conflict'] }),
    },
    '/v1/clusters/{cluster}/nodes/{node}/checkpoints': {
      get: op('The node\'s archives the caller may read', { params: [PARAMS.cluster, PARAMS.node], ok: { '200': json('archives, each with its download path', ref('ArchiveList')) }, codes: ['invalid_name', 'invalid_body', 'not_found', 'bad_gateway', 'timeout', 'runtime_unavailable', 'shutting_down', 'internal'] }),
    },
    '/v1/clusters/{cluster}/nodes/{node}/checkpoints/{name}': {
      get: op('Download an archive (Range, If-Range, If-None-Match)', {
        params: [PARAMS.cluster, PARAMS.node, PARAMS.name, PARAMS.archiveNamespace],
        ok: {
          '200': { description: 'the archive, streamed', content: { 'application/x-tar': { schema: { type: 'string', format: 'binary' } } } },
          '206': { description: 'the requested range', content: { 'application/x-tar': { schema: { type: 'string', format: 'binary' } } } },
          '304': { description: 'not modified (If-None-Match)' },
        },
        codes: ['invalid_name', 'invalid_archive_name', 'invalid_body', 'not_found', ...AGENT_ARCHIVE],
      }),
      delete: op('Delete an archive', { params: [PARAMS.cluster, PARAMS.node, PARAMS.name, PARAMS.archiveNamespace], ok: { '204': { description: 'deleted' } }, codes: ['invalid_name', 'invalid_archive_name', 'invalid_body', 'not_found', ...AGENT_ARCHIVE] }),
    },
    '/v1/clusters/{cluster}/nodes/{node}/checkpoints/{name}/store': {
      post: op('Seal an archive already on the node and store it in the evidence vault (needs the read action on its target). NDJSON streams sealing/uploading and ends with stored or store_failed; JSON waits: 200 with `stored`, or the failure as a problem', {
        params: [PARAMS.cluster, PARAMS.node, PARAMS.name, { ...PARAMS.archiveNamespace, description: 'the archive\'s namespace; needed when its name reads more than one way' }, PARAMS.recipient],
        ok: {
          '200': {
            description: 'the store\'s events (NDJSON), or `{stored}`',
            content: { 'application/json': { schema: { type: 'object', required: ['stored'], properties: { stored: ref('Stored') } } }, 'application/x-ndjson': { schema: ref('CheckpointEvent') } },
          },
        },
        codes: ['invalid_name', 'invalid_archive_name', 'invalid_body', 'invalid_recipient', 'not_found', 'archive_not_found', 'storage_rejected', 'storage_unavailable', 'too_many_requests', ...AGENT_ARCHIVE],
      }),
    },
    '/v1/clusters/{cluster}/statement-keys': {
      get: op('The agents\' statement-signing public keys the gateway collected from them (over mutual TLS, key id checked against the key) when their statements named a key it had not seen; for verifying signed statements', {
        params: [PARAMS.cluster, { name: 'node', in: 'query', schema: PARAMS.node.schema, description: 'one node\'s keys' }],
        ok: {
          '200': json('keys by node, oldest first', {
            type: 'object', required: ['cluster', 'keys'],
            properties: {
              cluster: { type: 'string' },
              keys: { type: 'array', items: { type: 'object', required: ['node', 'keyid', 'alg', 'publicKey', 'firstSeen'], properties: { node: { type: 'string' }, keyid: str('^[0-9a-f]{64}$'), alg: { type: 'string' }, publicKey: { type: 'string', description: 'PEM, SubjectPublicKeyInfo' }, firstSeen: { type: 'string' } } } },
            },
          }),
        },
        codes: ['invalid_name', 'not_found'],
      }),
    },
    '/v1/custody/{cluster}/{node}/{name}': {
      get: op('An archive\'s custody log (created, stored, downloaded, deleted, refused), hash-chained, with the result of checking the chain', {
        params: [PARAMS.cluster, PARAMS.node, PARAMS.name, PARAMS.archiveNamespace],
        ok: { '200': json('the entries, oldest first', { type: 'object', required: ['subject', 'entries', 'verified'], properties: { subject: { type: 'string' }, verified: { type: 'boolean' }, broken: { type: 'object' }, entries: { type: 'array', items: { type: 'object', required: ['seq', 'at', 'event', 'actor', 'requestId', 'details', 'prev', 'hash'] } } } }) },
        codes: ['invalid_name', 'invalid_archive_name', 'invalid_body', 'archive_not_found'],
      }),
    },
    '/v1/evidence': {
      get: op('Archives stored in the vault that the caller may read, newest first', {
        params: ['cluster', 'namespace', 'pod', 'limit'].map((name) => ({ name, in: 'query', schema: { type: 'string' } })),
        ok: { '200': json('stored evidence', { type: 'object', required: ['items'], properties: { items: { type: 'array', items: ref('Evidence') }, incomplete: { type: 'boolean', description: 'true when the scan stopped at its bound (100,000 stored objects) before `limit` items: narrow with cluster/namespace/pod' } } }) },
        codes: ['invalid_name'],
      }),
    },
    '/v1/evidence/{id}': {
      get: op('A short-lived (300 s) presigned download URL for one sealed object, with its digests; the issue is a custody entry', {
        params: [pathParam('id', { type: 'string' }, '<cluster>/<namespace>/<pod>/<container>/<archive>.zst.age (slashes as they are)')],
        ok: { '200': json('the URL and the evidence', { allOf: [ref('Evidence'), { type: 'object', required: ['url', 'expiresAt', 'custody'], properties: { url: { type: 'string' }, statementUrl: { type: 'string', description: 'presigned GET of the agent\'s signed statement, stored beside the object' }, custody: { type: 'string', description: 'the path of the archive\'s custody log' }, expiresAt: { type: 'string' } } }] }) },
        codes: ['invalid_archive_name', 'archive_not_found'],
      }),
    },
    '/v1/vault/uploads/{upload}/parts/{part}': {
      put: op('r2 vault backend: one part of a sealed archive from an agent into the R2 multipart upload. No bearer token: the `cap` query parameter (a capability the gateway signed, naming this object, upload and part, valid `vault.urlTtlSec`) is the only credential; the agent is handed the whole URL in its upload plan', {
        auth: false,
        params: [
          pathParam('upload', { type: 'string' }, 'the R2 multipart upload id'),
          pathParam('part', str('^\\d{1,5}$'), 'the part number, 1..10000'),
          { name: 'cap', in: 'query', required: true, schema: { type: 'string' }, description: 'the capability' },
          { name: 'Content-Length', in: 'header', required: true, schema: { type: 'string' }, description: 'the part\'s size, at most the configured part size' },
        ],
        body: { required: true, content: { 'application/octet-stream': { schema: { type: 'string', format: 'binary' } } } },
        ok: { '200': { description: 'stored; `ETag` is the part\'s tag, reported back in the agent\'s `sealed` event', headers: { ETag: { schema: { type: 'string' } } } } },
        codes: ['invalid_grant', 'grant_mismatch', 'invalid_query', 'invalid_body', 'payload_too_large', 'conflict', 'storage_unavailable', 'malformed_request', 'headers_too_large'],
      }),
    },
    '/v1/vault/objects/{key}': {
      get: op('r2 vault backend: a stored object (sealed archive or its statement) streamed from the binding — the `url` and `statementUrl` of GET /v1/evidence/{id}. Single `Range` requests, `If-Range` with the ETag', {
        auth: false,
        params: [
          pathParam('key', { type: 'string' }, 'the object key (slashes as they are)'),
          { name: 'cap', in: 'query', required: true, schema: { type: 'string' }, description: 'the capability (300 s)' },
          { name: 'Range', in: 'header', schema: { type: 'string' } },
          { name: 'If-Range', in: 'header', schema: { type: 'string' } },
        ],
        ok: {
          '200': { description: 'the object', content: { 'application/octet-stream': { schema: { type: 'string', format: 'binary' } } } },
          '206': { description: 'the range asked for', content: { 'application/octet-stream': { schema: { type: 'string', format: 'binary' } } } },
        },
        codes: ['invalid_grant', 'grant_mismatch', 'invalid_query', 'archive_not_found', 'invalid_range', 'conflict', 'storage_unavailable', 'malformed_request', 'headers_too_large'],
      }),
    },
    '/v1/hooks/alertmanager': { post: hookOp('Alertmanager', '4') },
    '/v1/hooks/grafana': { post: hookOp('Grafana Alerting', '1') },
    '/v1/operations': {
      get: op('Alert-triggered operations the caller may read', {
        params: ['cluster', 'namespace', 'alert', 'state', 'limit'].map((name) => ({ name, in: 'query', schema: { type: 'string' } })),
        ok: { '200': json('newest first', { type: 'object', required: ['items'], properties: { items: { type: 'array', items: ref('Operation') } } }) },
        codes: ['invalid_name', 'not_found'],
      }),
    },
    '/v1/admin/config': {
      get: op('The newest configuration document (scope checkpoint:admin and a rule with the admin action)', {
        ok: { '200': { description: 'the document as stored', headers: configHeaders, content: { 'application/json': { schema: configDocument } } } },
        codes: ADMIN_CODES,
      }),
      put: op('Store a new version (If-Match: the ETag it replaces), or with dryRun=true only validate it and say what it changes', {
        params: [
          { name: 'dryRun', in: 'query', schema: { enum: ['true', 'false'] }, description: 'validate and summarize, store nothing (If-Match optional; works with the variable source)' },
          { name: 'If-Match', in: 'header', schema: { type: 'string' }, description: 'the ETag of the newest version; required unless dryRun' },
        ],
        body: { required: true, content: { 'application/json': { schema: configDocument } } },
        ok: {
          '200': {
            description: 'stored and active in this isolate (others within GATEWAY_CONFIG_REFRESH_MS), `unchanged` when it is the newest document already; or the dry run\'s summary',
            headers: configHeaders,
            content: {
              'application/json': {
                schema: {
                  oneOf: [
                    { type: 'object', required: ['version', 'etag', 'summary'], properties: { version: { type: 'integer' }, etag: { type: 'string' }, unchanged: { const: true }, summary: ref('ConfigSummary') } },
                    { type: 'object', required: ['dryRun', 'base', 'summary'], properties: { dryRun: { const: true }, base: { type: 'object', required: ['version', 'etag'], properties: { version: { type: 'integer' }, etag: { type: 'string' } } }, summary: ref('ConfigSummary') } },
                  ],
                },
              },
            },
          },
        },
        codes: ['invalid_config', 'conflict', 'precondition_failed', 'precondition_required', 'payload_too_large', 'internal'],
      }),
    },
    '/v1/admin/config/history': {
      get: op('Configuration versions, newest first, with who stored them, when, and what changed', {
        params: [{ name: 'limit', in: 'query', schema: str('^\\d{1,3}$'), description: '1..500, default 50' }],
        ok: {
          '200': json('versions (none for the variable source)', {
            type: 'object',
            required: ['source', 'items'],
            properties: {
              source: { enum: ['variable', 'store', 'file', 'bundled'] },
              items: {
                type: 'array',
                items: { type: 'object', required: ['version', 'etag', 'author', 'createdAt', 'summary'], properties: { version: { type: 'integer' }, etag: { type: 'string' }, author: { type: 'string' }, createdAt: { type: 'string', format: 'date-time' }, summary: ref('ConfigSummary') } },
              },
            },
          }),
        },
        codes: ADMIN_CODES,
      }),
    },
    '/v1/operations/{id}': {
      get: op('One operation', { params: [pathParam('id', { type: 'string' }, 'the operation id')], ok: { '200': json('the operation', ref('Operation')) }, codes: ['not_found'] }),
    },
  },
} as const
